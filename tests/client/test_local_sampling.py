"""k = L in the UE client: the whole model on the UE, tokens chosen as the edge chooses them (temperature, top-p,
seed by position, log-probabilities), so a seeded sampled request does not depend on where the split fell."""

from __future__ import annotations

import torch

from edgesplit.client import SplitClient
from edgesplit.split.sampling import Sampler


def reference(model, ids: list[int], new: int, sampler: Sampler) -> list[int]:
    """The unsplit model, token by token, with the edge's sampler at the edge's positions (the whole history)."""
    history, out = list(ids), []
    for _ in range(new):
        with torch.no_grad():
            logits = model.model(torch.tensor([history])).logits[0, -1]
        token = sampler.choose(logits, len(history))
        out.append(token)
        history.append(token)
    return out


def test_k_equals_l_samples_with_the_edges_sampler(tiny_llama):
    ids = [5, 9, 2, 7]
    with SplitClient(tiny_llama, "http://127.0.0.1:9") as client:  # k = L never calls the edge
        sampled = client.generate(ids, 8, k=tiny_llama.num_layers, temperature=0.9, top_p=0.95, seed=7, logprobs=2)
        again = client.generate(ids, 8, k=tiny_llama.num_layers, temperature=0.9, top_p=0.95, seed=7)
        other = client.generate(ids, 8, k=tiny_llama.num_layers, temperature=0.9, top_p=0.95, seed=8)
        greedy = client.generate(ids, 8, k=tiny_llama.num_layers)
    assert sampled.tokens == again.tokens == reference(tiny_llama, ids, 8, Sampler(0.9, 0.95, seed=7))
    assert other.tokens != sampled.tokens
    assert greedy.tokens == reference(tiny_llama, ids, 8, Sampler())
    assert all(e.logprob is not None and len(e.top_logprobs) == 2 for e in sampled.events)
    assert all(e.logprob is None for e in again.events)
