"""Sharing a model through the object store: packed once, rebuilt without copying, identical outputs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cluster.weights import build_model, pack_model
from tests.conftest import make_tiny


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
def test_rebuilt_model_matches_the_original(family: str) -> None:
    loaded = make_tiny(family, seed=3)
    shared = pickle.loads(pickle.dumps(pack_model(loaded), protocol=5))
    rebuilt = build_model(shared)
    ids = torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(loaded.model(ids).logits, rebuilt.model(ids).logits)
    assert rebuilt.num_layers == loaded.num_layers


def test_tensors_are_views_of_the_shared_arrays_and_ties_survive() -> None:
    loaded = make_tiny("gpt2")  # ties the LM head to the token embedding
    shared = pack_model(loaded)
    assert "lm_head.weight" in shared.aliases and shared.aliases["lm_head.weight"] != "lm_head.weight"
    rebuilt = build_model(shared)
    pointers = {a.__array_interface__["data"][0] for a in shared.arrays.values()}
    for name, param in rebuilt.model.named_parameters(remove_duplicate=False):
        assert param.data_ptr() in pointers, f"{name} was copied"
    assert rebuilt.model.lm_head.weight is rebuilt.model.transformer.wte.weight


def test_weights_pickle_out_of_band() -> None:
    shared = pack_model(make_tiny("llama"))
    buffers: list[pickle.PickleBuffer] = []
    pickle.dumps(shared, protocol=5, buffer_callback=buffers.append)
    # Every weight array travels as an out-of-band buffer: what Ray maps zero-copy from shared memory.
    assert len(buffers) == len(shared.arrays)
    assert sum(memoryview(b).nbytes for b in buffers) == shared.nbytes


def test_missing_tensor_is_reported() -> None:
    shared = pack_model(make_tiny("llama"))
    del shared.aliases["model.norm.weight"]
    with pytest.raises(ValueError, match="model.norm.weight"):
        build_model(shared)


def test_bfloat16_round_trip() -> None:
    loaded = make_tiny("llama")
    loaded.model.to(torch.bfloat16)
    shared = pack_model(loaded)
    assert all(a.dtype == np.int16 for k, a in shared.arrays.items() if shared.dtypes[k] == "bfloat16")
    rebuilt = build_model(shared)
    assert rebuilt.model.model.norm.weight.dtype == torch.bfloat16
    assert torch.equal(rebuilt.model.model.embed_tokens.weight, loaded.model.model.embed_tokens.weight)
