"""Distortion measures against hand-computed cases: weights zeroed by hand, identical models, HF's own hidden states."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from edgesplit.models import from_model
from edgesplit.pruning.distortion import (
    DenseReference,
    _Accumulator,
    compare_weights,
    output_distortion,
    param_distortion,
)
from edgesplit.pruning.linear import prunable_linears
from edgesplit.pruning.spec import LayerRecord, PruneConfig, PruneResult
from tests.conftest import make_tiny


@pytest.fixture(scope="module")
def dense():
    return make_tiny("llama")


@pytest.fixture(scope="module")
def zeroed(dense):
    """A copy of ``dense`` with hand-chosen weights zeroed: q_proj of layer 1 (first 3 rows), down_proj of layer 2."""
    pruned = from_model(copy.deepcopy(dense.model), name="zeroed")
    with torch.no_grad():
        pruned.adapter.layers[1].self_attn.q_proj.weight[:3] = 0.0
        pruned.adapter.layers[2].mlp.down_proj.weight[:, ::2] = 0.0
    return pruned


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(2, 128, (70,), generator=torch.Generator().manual_seed(1))


def test_param_distortion_equals_the_zeroed_weights(dense, zeroed):
    q = dense.adapter.layers[1].self_attn.q_proj.weight.detach().double()
    down = dense.adapter.layers[2].mlp.down_proj.weight.detach().double()
    records = compare_weights(dense, zeroed)
    assert [(r.layer, r.module) for r in records] == [(1, "self_attn.q_proj"), (2, "mlp.down_proj")]
    dist = param_distortion(records)
    expected = q[:3].pow(2).sum() + down[:, ::2].pow(2).sum()
    assert dist.total_sq == pytest.approx(float(expected), rel=1e-12)
    assert dist.weight_sq == pytest.approx(float(q.pow(2).sum() + down.pow(2).sum()), rel=1e-12)
    assert dist.relative == pytest.approx(float(expected / (q.pow(2).sum() + down.pow(2).sum())), rel=1e-12)
    assert records[0].removed == 3 * 64 and records[1].removed == 64 * 64
    assert dist.achieved_ratio == pytest.approx((3 * 64 + 64 * 64) / (64 * 64 + 64 * 128))
    per_layer = dist.per_layer().set_index("layer")
    assert per_layer.loc[1, "param_dist_rel"] == pytest.approx(float(q[:3].pow(2).sum() / q.pow(2).sum()))
    assert list(dist.table()["param_dist_rel"].round(12)) == list(
        (dist.table()["param_dist_sq"] / dist.table()["weight_sq"]).round(12))


def test_param_distortion_from_a_prune_result_and_by_layer():
    records = [LayerRecord(0, "a", 10, 5, 2.0, 8.0), LayerRecord(0, "b", 10, 0, 0.0, 2.0),
               LayerRecord(3, "a", 20, 10, 1.0, 1.0)]
    result = PruneResult(model=None, config=PruneConfig("magnitude", 0.5, 4), layers=records)
    dist = param_distortion(result)
    assert dist.total_sq == 3.0 and dist.weight_sq == 11.0 and dist.relative == pytest.approx(3 / 11)
    assert dist.per_layer()[["layer", "param_dist_sq", "param_dist_rel"]].values.tolist() == [[0, 2.0, 0.2],
                                                                                               [3, 1.0, 1.0]]
    assert param_distortion([]).relative == 0.0


def test_compare_weights_leaves_out_untouched_matrices_and_refuses_other_shapes(dense):
    assert compare_weights(dense, dense) == []
    sliced = from_model(copy.deepcopy(dense.model), name="sliced")
    layer = sliced.adapter.layers[0].mlp
    layer.up_proj = torch.nn.Linear(64, 100, bias=False)
    with pytest.raises(ValueError, match="shape"):
        compare_weights(dense, sliced)
    assert len(prunable_linears(sliced.adapter.layers[0])) == 7


def test_identical_models_have_no_output_distortion(dense, tokens):
    out = output_distortion(dense, dense, tokens, k=2, context=32, batch_size=2)
    assert out.hidden_mse == 0 and out.logits_mse == 0 and out.kl_nats == pytest.approx(0, abs=1e-7)
    assert out.top1_agreement == 1.0 and out.perplexity == pytest.approx(out.dense_perplexity)
    assert out.scored_tokens == 70 - 3  # 3 non-overlapping windows, each first token unscored


def test_output_distortion_matches_hugging_face_hidden_states(dense, zeroed, tokens):
    """Against an independent computation: HF ``output_hidden_states`` (entry k enters layer k) and its logits."""
    k = 3
    out = output_distortion(dense, zeroed, tokens, k=k, context=70)
    with torch.inference_mode():
        a = dense.model(tokens[None], output_hidden_states=True)
        b = zeroed.model(tokens[None], output_hidden_states=True)
    ha, hb = a.hidden_states[k][0, :-1].double(), b.hidden_states[k][0, :-1].double()
    la, lb = a.logits[0, :-1].double(), b.logits[0, :-1].double()
    assert out.hidden_mse == pytest.approx(float((ha - hb).pow(2).mean()), rel=1e-6)
    assert out.hidden_rel == pytest.approx(float((ha - hb).pow(2).sum() / ha.pow(2).sum()), rel=1e-6)
    assert out.logits_mse == pytest.approx(float((la - lb).pow(2).mean()), rel=1e-6)
    pa, pb = F.log_softmax(la, -1), F.log_softmax(lb, -1)
    assert out.kl_nats == pytest.approx(float((pa.exp() * (pa - pb)).sum(-1).mean()), rel=1e-4)
    targets = tokens[1:]
    assert out.perplexity == pytest.approx(math.exp(float(-pb.gather(-1, targets[:, None]).mean())), rel=1e-6)
    assert out.dense_perplexity == pytest.approx(math.exp(float(-pa.gather(-1, targets[:, None]).mean())), rel=1e-6)
    assert out.top1_agreement == pytest.approx(float((la.argmax(-1) == lb.argmax(-1)).double().mean()))
    assert out.hidden_mse > 0 and out.kl_nats > 0
    # the state entering layer 1 is before any zeroed weight
    assert output_distortion(dense, zeroed, tokens, k=1, context=70).hidden_mse == 0


def test_accumulator_on_a_two_word_vocabulary():
    """p = (1/2, 1/2), q = (3/4, 1/4): KL = ½ ln(4/3); logits MSE = (ln 3)² / 2; NLL of target 1."""
    acc = _Accumulator()
    acc.add(torch.zeros(1, 2), torch.tensor([[0.0, 2.0]]), torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]]),
            torch.tensor([1]))
    out = acc.result(k=1)
    assert out.kl_nats == pytest.approx(0.5 * math.log(4 / 3))
    assert out.logits_mse == pytest.approx(math.log(3) ** 2 / 2)
    assert out.hidden_mse == pytest.approx(2.0) and out.hidden_rel == 0.0
    assert out.perplexity == pytest.approx(4.0) and out.dense_perplexity == pytest.approx(2.0)
    assert out.top1_agreement == 1.0  # both argmax at index 0 (ties go to the first)


def test_dense_reference_matches_the_two_model_pass_and_can_start_at_the_split(dense, tokens):
    server = from_model(copy.deepcopy(dense.model), name="server-pruned")
    with torch.no_grad():
        server.adapter.layers[3].mlp.up_proj.weight[::3] = 0.0
    reference = DenseReference(dense, tokens, [2, 3], context=32, batch_size=2)
    assert reference.scored_tokens == 67
    direct = output_distortion(dense, server, tokens, k=3, context=32, batch_size=2)
    full = reference.compare(server, k=3)
    started = reference.compare(server, k=3, start_layer=3)
    for a, b in ((direct, full), (full, started)):
        for key, value in a.to_dict().items():
            assert getattr(b, key) == pytest.approx(value, rel=1e-5, abs=1e-9), key
    assert full.hidden_mse == 0 and full.kl_nats > 0
    with pytest.raises(ValueError, match="splits"):
        reference.compare(server, k=1)
    with pytest.raises(ValueError, match="after"):
        reference.compare(server, k=2, start_layer=3)


def test_bad_inputs_are_value_errors(dense, tokens):
    with pytest.raises(ValueError, match="k must be"):
        output_distortion(dense, dense, tokens, k=5)
    with pytest.raises(ValueError, match="1-D"):
        output_distortion(dense, dense, tokens[None], k=1)
    with pytest.raises(ValueError, match="None in the pruned one"):
        compare_weights(dense, make_tiny("gpt2"))  # other module names: nothing to compare with
