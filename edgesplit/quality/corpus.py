"""Text corpora for quality measurements, always named in every output.

- ``default``: the English reference documentation that ships inside every CPython (``pydoc_data.topics``, ~465 k
  characters of prose and code). Exists on any Python install, so tests and offline runs never need a download.
- ``wikitext2``: WikiText-2 raw test split through the ``datasets`` library (needs the ``datasets`` extra and
  internet on first use); the standard LLM perplexity corpus.
- a path to a local UTF-8 text file (for example ``../shared/data/wikitext-2-raw/wiki.test.raw``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CORPORA = ("default", "wikitext2", "<path to a text file>")


@dataclass(frozen=True)
class Corpus:
    """A named body of text."""

    name: str
    """What the text is, as written into every result (e.g. ``python-docs (pydoc_data.topics)``)."""
    text: str
    """The raw text."""

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"corpus {self.name!r} is empty")


def _python_docs() -> Corpus:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    return Corpus(name="python-docs (pydoc_data.topics)", text=text)


def _wikitext2() -> Corpus:
    try:
        import datasets
    except ImportError:
        raise ValueError("corpus 'wikitext2' needs the datasets library: pip install 'edgesplit[datasets]' "
                         "(or pass the path of wiki.test.raw as --corpus)") from None
    rows = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test")["text"]
    return Corpus(name="wikitext-2-raw-v1 (test)", text="".join(rows))


def load_corpus(spec: str) -> Corpus:
    """Load ``default``, ``wikitext2`` or a local text file; ``ValueError`` says what is accepted otherwise."""
    if spec == "default":
        return _python_docs()
    if spec == "wikitext2":
        return _wikitext2()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(f"corpus {spec!r} is neither a known corpus nor an existing file; accepted: "
                         f"{', '.join(CORPORA)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus file {path} is not UTF-8 text: {err}") from None
    return Corpus(name=f"file:{path.name}", text=text)


def tokenize_corpus(corpus: Corpus, tokenizer: Any, max_tokens: int | None = None) -> torch.Tensor:
    """The corpus as a 1-D tensor of token ids, cut to the first ``max_tokens`` (deterministic slice)."""
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2 (one context token and one target), got {max_tokens}")
    # Tokenise only what is needed: ~8 characters per token is a generous upper bound for English text.
    text = corpus.text if max_tokens is None else corpus.text[: max_tokens * 8]
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    if max_tokens is not None:
        if ids.numel() < max_tokens:
            raise ValueError(f"corpus {corpus.name!r} has only {ids.numel()} tokens, {max_tokens} requested")
        ids = ids[:max_tokens]
    return ids
