"""Unstructured / N:M pruning: exact ratios and patterns, hand-checked cases, OBS beats magnitude, exact splits."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from edgesplit.models.adapters import SUPPORTED_MODEL_TYPES
from edgesplit.pruning.calibration import calibration_windows, layerwise_stats
from edgesplit.pruning.linear import prunable_linears
from edgesplit.pruning.prune import prune
from edgesplit.pruning.spec import PruneConfig
from edgesplit.pruning.unstructured import magnitude_prune, removal_count, sparsegpt_prune, wanda_prune
from edgesplit.split import DeviceHead, EdgeTail
from tests.conftest import TINY_CONFIGS, make_tiny

ATOL = 1e-4
PATTERNS = [None, "2:4", "4:8"]


def _correlated(rows: int, cols: int, tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight and calibration inputs with strongly correlated, unevenly scaled channels."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(cols // 4, cols, generator=gen)
    x = torch.randn(tokens, cols // 4, generator=gen) @ mixing + 0.1 * torch.randn(tokens, cols, generator=gen)
    x = x * torch.rand(cols, generator=gen).add(0.2)
    return torch.randn(rows, cols, generator=gen), x


def _ids(vocab: int, windows: int = 4, tokens: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(2, vocab, (windows, tokens), generator=torch.Generator().manual_seed(seed))


def _prune(method, w, x, ratio, pattern=None):
    if method == "magnitude":
        return magnitude_prune(w, ratio, pattern)
    if method == "wanda":
        return wanda_prune(w, x.double().pow(2).sum(0), ratio, pattern)
    return sparsegpt_prune(w, x.double().t() @ x.double(), ratio, pattern)


# ---- one matrix -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.37, 0.5, 0.9])
def test_unstructured_ratio_is_exact(method, ratio):
    w, x = _correlated(24, 200, 256)  # 200 columns: two SparseGPT blocks, the second partial
    zeros = _prune(method, w, x, ratio) == 0
    if method == "wanda":  # per output row
        assert (zeros.sum(1) == removal_count(200, ratio)).all()
    else:
        assert int(zeros.sum()) == removal_count(w.numel(), ratio)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_nm_pattern_holds_in_every_group(method, pattern):
    n, m = (int(v) for v in pattern.split(":"))
    w, x = _correlated(16, 256, 256)
    kept = (_prune(method, w, x, 0.5, pattern) != 0).reshape(16, -1, m).sum(-1)
    assert (kept == n).all()


def test_magnitude_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0], [4.0, 3.0, -2.0, 1.5]])
    expected = torch.tensor([[0.0, 0.0, 3.0, -4.0], [4.0, 3.0, 0.0, 0.0]])  # the four smallest |W| of the matrix
    assert torch.equal(magnitude_prune(w, 0.5), expected)
    w_rows = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])  # per matrix, not per row
    assert torch.equal(magnitude_prune(w_rows, 0.5), torch.tensor([[0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 8.0]]))
    assert torch.equal(magnitude_prune(w_rows, 0.5, "2:4"), torch.tensor([[0.0, 0.0, 3.0, 4.0], [0.0, 0.0, 7.0, 8.0]]))


def test_wanda_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0], [4.0, 3.0, -2.0, 1.0]])
    sq_norm = torch.tensor([16.0, 1.0, 1.0, 1.0])  # ||X_j|| = 4, 1, 1, 1
    # scores row 0: 4, 2, 3, 4 -> drop columns 1, 2; row 1: 16, 3, 2, 1 -> drop columns 2, 3
    expected = torch.tensor([[1.0, 0.0, 0.0, -4.0], [4.0, 3.0, 0.0, 0.0]])
    assert torch.equal(wanda_prune(w, sq_norm, 0.5), expected)
    assert torch.equal(magnitude_prune(w, 0.5), torch.tensor([[0.0, 0.0, 3.0, -4.0], [4.0, 3.0, 0.0, 0.0]]))


def test_sparsegpt_by_hand():
    # H = [[2, 1], [1, 2]] damped by 1 % of its mean diagonal: pruning w0 moves w1 to the least-squares optimum
    # w1 + w0 * H01 / H11 (the OBS update), here 3 + 1 / 2.02.
    got = sparsegpt_prune(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 1.0], [1.0, 2.0]]), 0.5)
    assert got[0, 0] == 0
    assert got[0, 1].item() == pytest.approx(3 + 1 / 2.02, abs=1e-6)


def test_sparsegpt_with_uncorrelated_inputs_is_magnitude():
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sparsegpt_prune(w, 5.0 * torch.eye(32), 0.5), magnitude_prune(w, 0.5))


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda(pattern):
    w, x = _correlated(32, 192, 512, seed=1)
    error = {m: ((w - _prune(m, w, x, 0.5, pattern)) @ x.t()).norm().item() for m in ("magnitude", "wanda",
                                                                                     "sparsegpt")}
    assert error["sparsegpt"] < 0.8 * error["wanda"] < 0.8 * error["magnitude"], error


def test_matrix_functions_leave_their_input_alone():
    w, x = _correlated(8, 64, 64)
    before = w.clone()
    for method in ("magnitude", "wanda", "sparsegpt"):
        _prune(method, w, x, 0.5, "2:4")
    assert torch.equal(w, before)


@pytest.mark.parametrize("call, match", [
    (lambda w: magnitude_prune(w, 1.0), "ratio"),
    (lambda w: magnitude_prune(w, 0.4, "2:4"), "prunes exactly 0.5"),
    (lambda w: magnitude_prune(w[:, :6], 0.5, "4:8"), "multiple of 8"),
    (lambda w: magnitude_prune(w, 0.5, "1:3"), "pattern"),
    (lambda w: magnitude_prune(w[0], 0.5), r"\[out, in\]"),
    (lambda w: wanda_prune(w, torch.ones(3), 0.5), "one entry per input"),
    (lambda w: sparsegpt_prune(w, torch.eye(3), 0.5), "hessian"),
    (lambda w: sparsegpt_prune(w, -torch.eye(16), 0.5), "positive definite"),
    (lambda w: sparsegpt_prune(w, torch.eye(16), 0.5, "4:8", block_size=12), "block size"),
])
def test_bad_matrix_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(4, 16))


# ---- whole models ---------------------------------------------------------------------------------------------------
def test_tiny_families_cover_every_supported_type():
    assert set(TINY_CONFIGS) >= set(SUPPORTED_MODEL_TYPES) - {"smollm3"}


def test_linear_views_are_out_by_in(tiny_model):
    layer = tiny_model.adapter.layers[0]
    linears = prunable_linears(layer)
    assert len(linears) >= 4
    for linear in linears:
        out_in = linear.weight().shape
        probe = torch.randn(1, out_in[1])
        assert linear.module(probe).shape[-1] == out_in[0], linear.name  # columns are the module's inputs


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_pruned_model_splits_exactly(family):
    dense = make_tiny(family)
    ids = _ids(dense.adapter.vocab_size)
    probe = _ids(dense.adapter.vocab_size, windows=2, tokens=10, seed=9)
    for config in (PruneConfig("wanda", 0.5, k=1, side="device"), PruneConfig("sparsegpt", 0.5, k=3, side="server",
                   pattern="2:4"), PruneConfig("magnitude", 0.6, k=2, side="both")):
        model = prune(dense, config, ids).model
        with torch.inference_mode():
            reference = model.model(input_ids=probe).logits
        for k in (0, 1, 2, model.num_layers):
            logits = EdgeTail(model, k)(DeviceHead(model, k)(probe))
            err = (logits - reference).abs().max().item()
            assert err <= ATOL, f"{family} {config.label} split k={k}: max-abs logit error {err:.3g}"


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_prune_touches_only_the_chosen_side_and_keeps_the_input(tiny_llama, method):
    before = {name: p.clone() for name, p in tiny_llama.model.state_dict().items()}
    result = prune(tiny_llama, PruneConfig(method, 0.5, k=1, side="server", pattern="4:8"), _ids(128))
    assert all(torch.equal(before[name], p) for name, p in tiny_llama.model.state_dict().items())
    assert result.model.model is not tiny_llama.model and result.model.adapter.model is result.model.model
    pruned = result.model.model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], pruned[name])}
    assert changed and all(".layers.0." not in name and name.endswith(".weight") and "norm" not in name
                           for name in changed)
    assert {r.layer for r in result.layers} == {1, 2, 3} and len(result.layers) == 3 * 7
    assert result.achieved_ratio == 0.5
    assert all(r.removed == r.numel // 2 and 0 < r.param_dist_sq < r.weight_sq for r in result.layers)
    assert result.prune_s > 0 and (result.calibration_s > 0) == (method != "magnitude")


def test_records_match_the_weights(tiny_llama):
    result = prune(tiny_llama, PruneConfig("sparsegpt", 0.3, k=2, side="device"), _ids(128))
    record = result.layers[0]
    dense = prunable_linears(tiny_llama.adapter.layers[0])[0].weight(torch.float64)
    after = prunable_linears(result.model.adapter.layers[0])[0].weight(torch.float64)
    assert record.module == "self_attn.q_proj" and record.removed == removal_count(dense.numel(), 0.3)
    assert record.param_dist_sq == pytest.approx(float((dense - after).pow(2).sum()))
    assert record.weight_sq == pytest.approx(float(dense.pow(2).sum()))


def test_calibration_is_sequential_over_pruned_layers(tiny_llama):
    """Layer 1's statistics depend on whether layer 0 was pruned before them."""
    ids = _ids(128)

    def layer1_norm(prune_first: bool) -> torch.Tensor:
        model = prune(tiny_llama, PruneConfig("magnitude", 0.0, k=0, side="device")).model  # a fresh copy
        for index, linears, stats in layerwise_stats(model, ids, [0, 1], hessian=False):
            if index == 1:
                return stats[linears[0].name].sq_norm
            if prune_first:
                for linear in linears:
                    linear.set_weight(torch.zeros(linear.shape))
        raise AssertionError("layer 1 never came")

    assert not torch.allclose(layer1_norm(False), layer1_norm(True))


def test_calibration_windows_are_seeded():
    stream = torch.arange(1000)
    a, b = calibration_windows(stream, 5, 32, seed=1), calibration_windows(stream, 5, 32, seed=1)
    assert a.shape == (5, 32) and torch.equal(a, b)
    assert not torch.equal(a, calibration_windows(stream, 5, 32, seed=2))
    assert (a[:, 1:] - a[:, :-1] == 1).all()  # contiguous slices of the stream


@pytest.mark.parametrize("kwargs, ids, match", [
    ({"method": "wanda", "ratio": 0.5, "k": 2}, None, "needs calibration_ids"),
    ({"method": "sparsegpt", "ratio": 0.5, "k": 2}, torch.rand(2, 8), "integer tensor"),
    ({"method": "wanda", "ratio": 0.5, "k": 2}, torch.full((2, 8), 500), r"0\.\.127"),
    ({"method": "magnitude", "ratio": 0.5, "k": 9}, None, "beyond the model's 4 layers"),
])
def test_bad_prune_calls_raise(tiny_llama, kwargs, ids, match):
    with pytest.raises(ValueError, match=match):
        prune(tiny_llama, PruneConfig(**kwargs), ids)


def test_structured_is_delegated(tiny_llama, monkeypatch):
    calls = []
    fake = types.ModuleType("edgesplit.pruning.structured")
    fake.prune_structured = lambda *args: calls.append(args) or "sliced"
    monkeypatch.setitem(sys.modules, "edgesplit.pruning.structured", fake)
    config, ids = PruneConfig("structured", 0.25, k=2), _ids(128)
    assert prune(tiny_llama, config, ids) == "sliced"
    assert calls == [(tiny_llama, config, ids)]


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="prunes exactly 0.5"):
        PruneConfig("wanda", 0.3, k=2, pattern="2:4")
    with pytest.raises(ValueError, match="method"):
        PruneConfig("random", 0.3, k=2)
    with pytest.raises(ValueError, match="PruneConfig"):
        prune(make_tiny("llama"), {"method": "wanda"})


# ---- the real built-in model ----------------------------------------------------------------------------------------
def _real_calibration(real_model) -> torch.Tensor:
    from edgesplit.quality import load_corpus, tokenize_corpus

    stream = tokenize_corpus(load_corpus("default"), real_model.tokenizer, max_tokens=4096)
    return calibration_windows(stream, 4, 128, seed=0)


@pytest.mark.slow
def test_real_model_sparsegpt_reconstructs_its_calibration_best(real_model):
    """On layer 2's real inputs, ||(W - W') X|| is smallest for SparseGPT and largest for magnitude, summed."""
    error = dict.fromkeys(("magnitude", "wanda", "sparsegpt"), 0.0)
    for _, linears, stats in layerwise_stats(real_model, _real_calibration(real_model), [2], hessian=True):
        for linear in linears:
            w, s = linear.weight(torch.float64), stats[linear.name]
            pruned = {"magnitude": magnitude_prune(w, 0.5), "wanda": wanda_prune(w, s.sq_norm, 0.5),
                      "sparsegpt": sparsegpt_prune(w, s.hessian, 0.5)}
            for method, w2 in pruned.items():
                delta = w - w2
                error[method] += float(torch.einsum("oi,ij,oj->", delta, s.hessian, delta))  # ||ΔW X^T||^2
    assert error["sparsegpt"] < error["wanda"] < error["magnitude"], error


@pytest.mark.slow
def test_real_model_pruned_device_side_splits_exactly(real_model):
    model = prune(real_model, PruneConfig("wanda", 0.5, k=4, side="device", pattern="2:4"),
                  _real_calibration(real_model)).model
    probe = _real_calibration(real_model)[:1, :32]
    with torch.inference_mode():
        reference = model.model(input_ids=probe).logits
    for k in (2, 4, 17):
        err = (EdgeTail(model, k)(DeviceHead(model, k)(probe)) - reference).abs().max().item()
        assert err <= ATOL, f"k={k}: max-abs logit error {err:.3g}"
