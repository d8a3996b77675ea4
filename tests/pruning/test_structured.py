"""Structured pruning: shapes shrink as asked, the ratio is hit, the split stays exact, KV groups stay whole."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from edgesplit.cost import ModelProfile
from edgesplit.models import from_model
from edgesplit.pruning import structured
from edgesplit.pruning.spec import PruneConfig
from edgesplit.pruning.structured import (
    choose_widths,
    load_pruned,
    prune_structured,
    pruned_layer_flops,
    pruned_profile,
    save_pruned,
)
from edgesplit.pruning.structured_shapes import LayerGeometry, layer_geometry
from edgesplit.split import DeviceHead, EdgeTail, positions_from_mask, split_generate
from tests.conftest import make_tiny

ATOL = 1e-4
SMOLLM2 = LayerGeometry(hidden=576, head_dim=64, kv_heads=3, group_size=3, intermediate=1536)


def _cfg(ratio: float = 0.3, k: int = 2, side: str = "device") -> PruneConfig:
    return PruneConfig(method="structured", ratio=ratio, k=k, side=side)


def _ids(vocab: int, rows: int = 2, tokens: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(2, vocab, (rows, tokens), generator=torch.Generator().manual_seed(seed))


def _layer_weights(g: LayerGeometry) -> int:
    return 2 * g.hidden * g.head_dim * (g.heads + g.kv_heads) + 3 * g.hidden * g.intermediate


def _wide_gqa_llama(seed: int = 0):
    """8 query heads in 2 KV groups of 4, so some ratios prune query heads inside the groups."""
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=8,
                         num_key_value_heads=2, vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=None)
    return from_model(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"), name="tiny-gqa8")


# ---- widths ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9])
def test_widths_hit_the_ratio_within_half_a_channel(ratio):
    w = choose_widths(SMOLLM2, ratio)
    kept = LayerGeometry(576, 64, w.kv_heads, w.group_size, w.channels)
    achieved = 1 - _layer_weights(kept) / _layer_weights(SMOLLM2)
    assert abs(achieved - ratio) <= 0.5 * 3 * 576 / _layer_weights(SMOLLM2) + 1e-12


def test_smollm2_at_0_3_loses_one_kv_group_and_29_percent_of_the_channels():
    w = choose_widths(SMOLLM2, 0.3)
    assert (w.kv_heads, w.group_size, w.heads) == (2, 3, 6)
    assert w.channels == 1536 - 444
    assert choose_widths(SMOLLM2, 0.0) == type(w)(kv_heads=3, group_size=3, channels=1536)


def test_floors_keep_one_group_one_head_and_one_channel():
    w = choose_widths(LayerGeometry(16, 4, 2, 2, 4), 0.95)
    assert (w.kv_heads, w.group_size, w.channels) == (1, 1, 1)


# ---- shapes and ratio --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("side,k,pruned", [("device", 2, {0, 1}), ("server", 1, {1, 2, 3}), ("both", 3, {0, 1, 2, 3})])
def test_shapes_shrink_only_in_the_selected_layers(tiny_llama, side, k, pruned):
    result = prune_structured(tiny_llama, _cfg(0.3, k, side))
    dense = layer_geometry(tiny_llama.adapter.layers[0])
    want = choose_widths(dense, 0.3)
    for i, layer in enumerate(result.model.adapter.layers):
        g = layer_geometry(layer)
        if i in pruned:
            assert (g.kv_heads, g.group_size, g.intermediate) == (want.kv_heads, want.group_size, want.channels)
            assert layer.self_attn.num_key_value_groups == g.group_size
        else:
            assert g == dense
    assert {r.layer for r in result.layers} == pruned
    assert len(result.layers) == 7 * len(pruned)
    assert abs(result.achieved_ratio - 0.3) <= 0.5 * 3 * dense.hidden / _layer_weights(dense)
    assert 0 < result.param_dist_rel < 1


def test_dense_input_model_is_unchanged(tiny_llama):
    before = {name: t.clone() for name, t in tiny_llama.model.state_dict().items()}
    result = prune_structured(tiny_llama, _cfg(0.5, 4, "both"), _ids(128))
    after = tiny_llama.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert result.model.model is not tiny_llama.model
    assert layer_geometry(tiny_llama.adapter.layers[0]).intermediate == 128


def test_ratio_zero_keeps_every_weight(tiny_llama):
    result = prune_structured(tiny_llama, _cfg(0.0, 4, "both"), _ids(128, rows=8, tokens=64))
    assert result.achieved_ratio == 0.0 and result.param_dist_sq == 0.0
    ids = _ids(128, seed=6)
    with torch.inference_mode():
        torch.testing.assert_close(result.model.model(ids).logits, tiny_llama.model(ids).logits, rtol=0, atol=0)


def test_no_selected_layer_returns_an_unpruned_copy(tiny_llama):
    result = prune_structured(tiny_llama, _cfg(0.3, 0, "device"))
    assert result.layers == [] and result.achieved_ratio == 0.0
    assert result.model.model is not tiny_llama.model


# ---- exactness ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
@pytest.mark.parametrize("side,k", [("device", 2), ("server", 1), ("both", 4)])
def test_pruned_model_splits_exactly_at_every_k(family, side, k):
    loaded = make_tiny(family)
    ids = _ids(128, rows=3)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding
    ids = ids.masked_fill(mask == 0, 0)
    pruned = prune_structured(loaded, _cfg(0.4, k, side), _ids(128, seed=2)).model
    with torch.inference_mode():
        reference = pruned.model(input_ids=ids, attention_mask=mask,
                                 position_ids=positions_from_mask(mask, ids.shape[1])).logits
    for split in range(pruned.num_layers + 1):
        logits = EdgeTail(pruned, split)(DeviceHead(pruned, split)(ids, mask), mask)
        err = (logits - reference)[mask.bool()].abs().max().item()
        assert err <= ATOL, f"{family} {side} k={k}, split {split}: max-abs logit error {err:.3g}"


def test_pruned_split_generation_matches_generate(tiny_llama):
    pruned = prune_structured(tiny_llama, _cfg(0.5, 2, "device")).model
    ids = _ids(128, rows=1, tokens=6)
    with torch.inference_mode():
        expected = pruned.model.generate(input_ids=ids, max_new_tokens=12, min_new_tokens=12,
                                         do_sample=False)[:, ids.shape[1]:]
    for split in (0, 2, 4):
        got = split_generate(DeviceHead(pruned, split), EdgeTail(pruned, split), ids, max_new_tokens=12)
        assert torch.equal(got, expected), f"split {split} diverged"


def _kept_rows(pruned: torch.Tensor, dense: torch.Tensor, width: int) -> list[int]:
    """Original index of every ``width``-row block of ``pruned`` (found by exact equality with ``dense``)."""
    blocks = dense.reshape(-1, width, dense.shape[1])
    return [next(i for i in range(blocks.shape[0]) if torch.equal(blocks[i], block))
            for block in pruned.reshape(-1, width, pruned.shape[1])]


@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_pruning_equals_masking_the_removed_heads_and_channels(ratio, monkeypatch):
    """The sliced layer computes what the dense layer computes with the removed units' outputs zeroed, so every kept
    query head still reads its own KV head (the GQA grouping survived)."""
    monkeypatch.setattr(structured, "REFIT_TOKENS_PER_INPUT", float("inf"))  # slice only: kept weights unchanged
    loaded = _wide_gqa_llama()
    pruned = prune_structured(loaded, _cfg(ratio, 3, "both"), _ids(128)).model
    masked = from_model(AutoModelForCausalLM.from_config(loaded.model.config, attn_implementation="sdpa"))
    masked.model.load_state_dict(loaded.model.state_dict())
    for dense_layer, layer, mask_layer in zip(loaded.adapter.layers, pruned.adapter.layers, masked.adapter.layers,
                                              strict=True):
        a, d = layer.self_attn, dense_layer.self_attn
        hd = d.head_dim
        heads = _kept_rows(a.q_proj.weight, d.q_proj.weight, hd)
        kv = _kept_rows(a.k_proj.weight, d.k_proj.weight, hd)
        n_new, n_old = len(heads) // len(kv), 8 // 2
        assert [h // n_old for h in heads] == [kv[i // n_new] for i in range(len(heads))]  # groups stay whole
        channels = _kept_rows(layer.mlp.gate_proj.weight, dense_layer.mlp.gate_proj.weight, 1)
        with torch.no_grad():
            o = mask_layer.self_attn.o_proj.weight.view(64, 8, hd)
            o[:, [h for h in range(8) if h not in heads]] = 0
            down = mask_layer.mlp.down_proj.weight
            down[:, [c for c in range(96) if c not in channels]] = 0
    ids = _ids(128, rows=2, tokens=10, seed=5)
    with torch.inference_mode():
        err = (pruned.model(ids).logits - masked.model(ids).logits).abs().max().item()
    assert err <= 1e-5


def test_some_ratio_prunes_query_heads_inside_groups():
    w = choose_widths(layer_geometry(_wide_gqa_llama().adapter.layers[0]), 0.2)
    assert w.kv_heads == 2 and w.group_size < 4


# ---- importance --------------------------------------------------------------------------------------------------
def test_calibrated_scores_are_the_units_output_norms(tiny_llama):
    from edgesplit.pruning.structured import _LayerStream

    layer = tiny_llama.adapter.layers[1]
    geom = layer_geometry(layer)
    seen = {}
    hooks = [layer.self_attn.o_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("o", a[0].clone())),
             layer.mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("down", a[0].clone()))]
    ids = _ids(128, rows=1, tokens=9)
    try:
        with torch.inference_mode():
            tiny_llama.model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    stream = _LayerStream(tiny_llama, ids, 2, batch_size=4)
    stream.advance(0)
    scores = stream.scores(1, geom)
    x = seen["o"].reshape(-1, geom.heads, geom.head_dim).double()
    w_o = layer.self_attn.o_proj.weight.detach().double().reshape(geom.hidden, geom.heads, geom.head_dim)
    direct = torch.stack([(x[:, h] @ w_o[:, h].T).pow(2).sum() for h in range(geom.heads)])
    torch.testing.assert_close(scores.head, direct, rtol=1e-6, atol=1e-9)
    a = seen["down"].reshape(-1, geom.intermediate).double()
    w_down = layer.mlp.down_proj.weight.detach().double()
    direct = torch.stack([torch.outer(a[:, j], w_down[:, j]).pow(2).sum() for j in range(geom.intermediate)])
    torch.testing.assert_close(scores.channel, direct, rtol=1e-6, atol=1e-9)


def test_calibration_drops_a_heavy_channel_that_never_fires():
    """A channel with the largest weights but a zero up projection: magnitude keeps it, calibration drops it."""
    loaded = make_tiny("llama", seed=3)
    mlp = loaded.adapter.layers[0].mlp
    with torch.no_grad():
        mlp.up_proj.weight[5] = 0.0
        mlp.gate_proj.weight[5] *= 10.0
        mlp.down_proj.weight[:, 5] *= 10.0
    kept = {}
    for name, ids in (("magnitude", None), ("calibrated", _ids(128, rows=4, tokens=16))):
        pruned = prune_structured(loaded, _cfg(0.5, 1), ids).model
        kept[name] = _kept_rows(pruned.adapter.layers[0].mlp.gate_proj.weight, mlp.gate_proj.weight, 1)
    assert 5 in kept["magnitude"] and 5 not in kept["calibrated"]


def test_refit_fits_the_dense_output_better_than_slicing():
    from edgesplit.pruning.structured import _refit

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 24, generator=gen, dtype=torch.float64) @ torch.randn(24, 24, generator=gen,
                                                                                 dtype=torch.float64)
    w = torch.randn(10, 24, generator=gen, dtype=torch.float64)
    cols = torch.tensor([0, 3, 4, 9, 12, 17, 20, 23])
    target = x @ w.T
    sliced = (x[:, cols] @ w[:, cols].T - target).norm()
    refit = (x[:, cols] @ _refit(w, x.T @ x, cols).T - target).norm()
    assert refit < 0.9 * sliced


@pytest.mark.parametrize("rows,length,refit", [(2, 12, False), (8, 64, True)])
def test_refit_needs_enough_calibration_tokens(tiny_llama, rows, length, refit):
    """down_proj has 128 inputs: 24 calibration tokens only slice it, 512 (>= 3 x 128) refit its kept columns."""
    result = prune_structured(tiny_llama, _cfg(0.3, 1), _ids(128, rows=rows, tokens=length))
    dense, layer = tiny_llama.adapter.layers[0].mlp, result.model.adapter.layers[0].mlp
    kept = _kept_rows(layer.gate_proj.weight, dense.gate_proj.weight, 1)
    w = dense.down_proj.weight.detach().double()
    assert torch.equal(layer.down_proj.weight, dense.down_proj.weight[:, kept]) is not refit
    down = next(r for r in result.layers if r.module == "mlp.down_proj")
    removed_sq = float(w.pow(2).sum() - w[:, kept].pow(2).sum())
    assert (down.param_dist_sq > removed_sq + 1e-9) is refit  # a refit moves the kept weights too


# ---- cost from shapes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
def test_profile_from_shapes_equals_the_config_profile_when_dense(family):
    loaded = make_tiny(family)
    assert pruned_profile(loaded) == ModelProfile.from_config(loaded.model.config)


def test_profile_counts_the_pruned_shapes(tiny_llama):
    result = prune_structured(tiny_llama, _cfg(0.3, 2, "device"))
    dense, profile = ModelProfile.from_config(tiny_llama.model.config), pruned_profile(result.model)
    params = sum(p.numel() for p in result.model.model.parameters())
    assert profile.total_params == params
    assert profile.layers[2:] == dense.layers[2:]
    layer = profile.layers[0]
    removed = sum(r.removed for r in result.layers if r.layer == 0)
    assert layer.dense_flops_per_token == dense.layers[0].dense_flops_per_token - 2 * removed
    w = choose_widths(layer_geometry(tiny_llama.adapter.layers[0]), 0.3)  # 4 heads in 2 groups -> 1 per group
    assert layer.kv_elements_per_token == 2 * w.kv_heads * 16 and layer.attn_flops_per_position == 4 * w.heads * 16
    assert pruned_layer_flops(result.model, 0, 16) == layer.flops_per_token(16) < dense.layers[0].flops_per_token(16)


# ---- save / load -------------------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tiny_llama, tmp_path):
    pruned = prune_structured(tiny_llama, _cfg(0.3, 3, "device"), _ids(128)).model
    folder = save_pruned(pruned, tmp_path / "pruned")
    again = load_pruned(folder)
    ids = _ids(128, seed=4)
    with torch.inference_mode():
        torch.testing.assert_close(again.model(ids).logits, pruned.model(ids).logits, rtol=0, atol=0)
    assert [layer_geometry(a) for a in again.adapter.layers] == [layer_geometry(b) for b in pruned.adapter.layers]
    logits = EdgeTail(again, 2)(DeviceHead(again, 2)(ids))
    assert (logits - again.model(ids).logits).abs().max().item() <= ATOL


def test_load_refuses_a_folder_without_widths(tmp_path):
    with pytest.raises(ValueError, match="not a structured-pruned model folder"):
        load_pruned(tmp_path)


# ---- refusals ----------------------------------------------------------------------------------------------------
def test_bad_requests_raise(tiny_llama):
    with pytest.raises(ValueError, match="method 'structured'"):
        prune_structured(tiny_llama, PruneConfig(method="magnitude", ratio=0.3, k=2))
    with pytest.raises(ValueError, match="beyond the model's 4 layers"):
        prune_structured(tiny_llama, _cfg(0.3, 5))
    with pytest.raises(ValueError, match="integer tensor"):
        prune_structured(tiny_llama, _cfg(), torch.rand(2, 8))
    with pytest.raises(ValueError, match="the vocabulary"):
        prune_structured(tiny_llama, _cfg(), torch.full((1, 4), 500))


@pytest.mark.parametrize("family", ["gpt2", "opt", "gpt_neox", "gemma3_text"])
def test_other_families_are_refused_by_name(family):
    with pytest.raises(ValueError, match="structured pruning supports: llama, mistral"):
        prune_structured(make_tiny(family), _cfg())


# ---- the real model ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_model_device_side_pruning(real_model):
    ids = real_model.tokenizer(["The edge server runs the remaining layers of the model"],
                               return_tensors="pt").input_ids
    result = prune_structured(real_model, _cfg(0.3, 4, "device"), ids)
    attn, mlp = result.model.adapter.layers[0].self_attn, result.model.adapter.layers[0].mlp
    assert (attn.q_proj.out_features, attn.k_proj.out_features, mlp.gate_proj.out_features) == (384, 128, 1092)
    assert abs(result.achieved_ratio - 0.3) < 1e-3
    with torch.inference_mode():
        reference = result.model.model(input_ids=ids).logits
    for split in (0, 2, 4, 15, 30):
        logits = EdgeTail(result.model, split)(DeviceHead(result.model, split)(ids))
        assert (logits - reference).abs().max().item() <= ATOL
