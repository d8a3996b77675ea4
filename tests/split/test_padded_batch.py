"""Padded cross-session decode batching: sessions at one split with different cache lengths, one forward, same
results as decoding each session alone (greedy tokens identical, logits to 1e-4)."""

from __future__ import annotations

import pytest
import torch

from edgesplit.split import DeviceHead, EdgeTail
from edgesplit.split.padded_batch import batched_decode_logits, can_pad_stack
from tests.conftest import make_tiny


def _prefilled(loaded, k, prompts):
    head, tail = DeviceHead(loaded, k), EdgeTail(loaded, k)
    states = []
    for ids in prompts:
        hs, ts = head.new_session(), tail.new_session()
        logits = tail(head(ids, session=hs), session=ts, last_only=True)[:, -1, :]
        states.append((hs, ts, int(logits.argmax())))
    return head, tail, states


def _run(loaded, k, prompts, steps, batched):
    head, tail, states = _prefilled(loaded, k, prompts)
    tokens = [[s[2]] for s in states]
    all_logits = []
    for _ in range(steps):
        payloads = [head(torch.tensor([[t[-1]]]), session=s[0]) for t, s in zip(tokens, states, strict=True)]
        if batched:
            logits = batched_decode_logits(tail, payloads, [s[1] for s in states])
        else:
            pairs = zip(payloads, states, strict=True)
            logits = torch.cat([batched_decode_logits(tail, [p], [s[1]]) for p, s in pairs])
        all_logits.append(logits)
        for row, t in enumerate(tokens):
            t.append(int(logits[row].argmax()))
    return tokens, torch.stack(all_logits)


def _prompts(vocab, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (1, n), generator=g) for n in lengths]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_mixed_lengths_equal_unbatched_tiny(tiny_llama, k):
    prompts = _prompts(tiny_llama.adapter.vocab_size, [3, 11, 1, 7, 7])
    tok_b, log_b = _run(tiny_llama, k, prompts, 6, batched=True)
    tok_u, log_u = _run(tiny_llama, k, prompts, 6, batched=False)
    assert tok_b == tok_u
    assert (log_b - log_u).abs().max().item() < 1e-4


def test_families_that_slide_are_not_pad_stacked():
    assert not can_pad_stack(EdgeTail(make_tiny("mistral"), 1))
    assert can_pad_stack(EdgeTail(make_tiny("qwen3"), 1))
    assert not can_pad_stack(EdgeTail(make_tiny("llama"), 4))  # k = L: nothing runs on the edge


@pytest.mark.parametrize("family", ["gpt2", "qwen3", "opt", "gpt_neox"])
def test_mixed_lengths_other_families(family):
    loaded = make_tiny(family)
    prompts = _prompts(loaded.adapter.vocab_size, [2, 9, 5])
    tok_b, log_b = _run(loaded, 2, prompts, 4, batched=True)
    tok_u, log_u = _run(loaded, 2, prompts, 4, batched=False)
    assert tok_b == tok_u
    assert (log_b - log_u).abs().max().item() < 1e-4


@pytest.mark.slow
def test_mixed_lengths_real_model(real_model):
    tok = real_model.tokenizer
    texts = ["The capital of France is", "Once upon a time, in a small village by the sea, there lived",
             "def fibonacci(n):", "Water boils at"]
    prompts = [tok(t, return_tensors="pt").input_ids for t in texts]
    tok_b, log_b = _run(real_model, 15, prompts, 8, batched=True)
    tok_u, log_u = _run(real_model, 15, prompts, 8, batched=False)
    assert tok_b == tok_u
    assert (log_b - log_u).abs().max().item() < 1e-4
