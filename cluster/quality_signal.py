"""Text-quality signals of fleet generations, computed with the clean, unsplit model in the driver.

- ``greedy_match_frac``: fraction of generated positions equal to the unsplit model's greedy continuation of the
  same prompt (1.0 for an ideal channel; the first wrong token usually derails the rest).
- ``first_divergence``: index of the first generated token that differs (``new_tokens`` when none does).
- ``clean_logprob_mean``: mean log-probability of the generated tokens under the clean model, teacher-forced —
  how plausible the text is, even after it diverged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from transformers import DynamicCache

from edgesplit.models import LoadedModel


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.inference_mode()
def clean_greedy(loaded: LoadedModel, prompts: list[tuple[int, ...]], max_new_tokens: int,
                 batch_size: int = 16) -> dict[tuple[int, ...], list[int]]:
    """The unsplit model's greedy continuation of each distinct prompt (EOS does not stop it)."""
    by_length: dict[int, list[tuple[int, ...]]] = {}
    for prompt in dict.fromkeys(prompts):
        by_length.setdefault(len(prompt), []).append(prompt)
    out: dict[tuple[int, ...], list[int]] = {}
    for group in by_length.values():  # equal lengths: no padding, so every row is what batch size 1 computes
        for chunk in _chunks(group, batch_size):
            ids, cache, generated = torch.tensor(chunk), DynamicCache(config=loaded.model.config), []
            for _ in range(max_new_tokens):
                logits = loaded.model(input_ids=ids, past_key_values=cache, use_cache=True).logits
                ids = logits[:, -1, :].argmax(dim=-1, keepdim=True)
                generated.append(ids)
            for prompt, row in zip(chunk, torch.cat(generated, dim=1).tolist(), strict=True):
                out[prompt] = row
    return out


@torch.inference_mode()
def clean_logprobs(loaded: LoadedModel, pairs: list[tuple[tuple[int, ...], list[int]]],
                   batch_size: int = 16) -> list[float]:
    """Mean log-prob of each generation given its prompt under the clean model (NaN for an empty one)."""
    result = [math.nan] * len(pairs)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (prompt, tokens) in enumerate(pairs):
        if tokens:
            groups.setdefault((len(prompt), len(tokens)), []).append(index)
    for (prompt_len, new_len), indices in groups.items():
        for chunk in _chunks(indices, batch_size):
            ids = torch.tensor([list(pairs[i][0]) + list(pairs[i][1]) for i in chunk])
            logp = torch.log_softmax(loaded.model(input_ids=ids).logits.float(), dim=-1)
            targets = ids[:, prompt_len:]
            picked = logp[:, prompt_len - 1 : prompt_len - 1 + new_len].gather(-1, targets.unsqueeze(-1))
            for i, value in zip(chunk, picked.squeeze(-1).mean(dim=1).tolist(), strict=True):
                result[i] = value
    return result


def score_rows(loaded: LoadedModel, rows: list[dict[str, Any]], prompts: dict[int, tuple[int, ...]],
               max_new_tokens: int) -> None:
    """Add the quality columns to each row in place (``prompts`` maps request id → prompt)."""
    reference = clean_greedy(loaded, list(prompts.values()), max_new_tokens)
    pairs = [(prompts[row["request_id"]], list(row["tokens"])) for row in rows]
    logprobs = clean_logprobs(loaded, pairs)
    for row, (prompt, tokens), logprob in zip(rows, pairs, logprobs, strict=True):
        ref = reference[prompt]
        matches = [a == b for a, b in zip(tokens, ref, strict=False)]
        row["greedy_match_frac"] = sum(matches) / len(tokens) if tokens else math.nan
        row["first_divergence"] = matches.index(False) if False in matches else len(tokens)
        row["clean_logprob_mean"] = logprob
