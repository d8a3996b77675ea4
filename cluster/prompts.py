"""Deterministic prompts for fleet runs: equal-length token windows cut from a corpus at seeded offsets.

Equal lengths keep requests comparable and let edges batch sessions that start together (same cache length).
A model without a tokenizer (tiny random test models) gets seeded random token ids instead.
"""

from __future__ import annotations

import numpy as np

from edgesplit.models import LoadedModel
from edgesplit.quality import load_corpus, tokenize_corpus

CORPUS_TOKENS = 20_000
"""How much of the corpus prompts are drawn from (its first tokens)."""


def make_prompts(loaded: LoadedModel, n: int, prompt_tokens: int, seed: int = 0,
                 corpus: str = "default") -> tuple[list[tuple[int, ...]], str]:
    """``n`` prompts of ``prompt_tokens`` ids each, and where they came from (for the run's config)."""
    if n < 1 or prompt_tokens < 1:
        raise ValueError(f"need n >= 1 prompts of >= 1 tokens, got n={n}, prompt_tokens={prompt_tokens}")
    rng = np.random.default_rng([seed, 7])
    if loaded.tokenizer is None:
        ids = rng.integers(0, loaded.adapter.vocab_size, size=(n, prompt_tokens))
        return [tuple(int(t) for t in row) for row in ids], "random token ids (model has no tokenizer)"
    text = load_corpus(corpus)
    ids = tokenize_corpus(text, loaded.tokenizer, max_tokens=max(CORPUS_TOKENS, 2 * prompt_tokens))
    starts = rng.choice(ids.numel() - prompt_tokens, size=n, replace=n > ids.numel() - prompt_tokens)
    return [tuple(ids[s : s + prompt_tokens].tolist()) for s in starts], text.name
