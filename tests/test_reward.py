"""Reward presets computed by hand, limits, JSON round trip and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesplit.cost import get_device, get_edge, get_link, split_costs
from edgesplit.reward import (
    INFEASIBLE_REWARD,
    QualityMetrics,
    RewardConfig,
    SplitReward,
    best_split,
    reward_preset,
)
from edgesplit.scenario import ChannelSetting
from surrogate.synthetic import synthetic_profile

PROFILE = synthetic_profile()  # L = 8
AWGN10 = ChannelSetting("awgn", snr_db=10.0)


def test_paper_preset_by_hand():
    reward = SplitReward(reward_preset("paper"), PROFILE)
    # PPL 22 against PPL0 20: 10.5 * (20 - 22) / 20 + (8 - 2) / 8 = -1.05 + 0.75
    out = reward.evaluate(2, AWGN10, QualityMetrics.from_perplexity(22.0, 20.0))
    assert out.feasible and out.reason is None
    assert out.reward == pytest.approx(-0.3, abs=1e-12)
    assert out.quality_term == pytest.approx(-1.05) and out.offload_term == pytest.approx(0.75)
    # the full on-device split: no quality loss, no offload bonus
    assert reward.evaluate(8, AWGN10, QualityMetrics(0.0)).reward == pytest.approx(0.0)
    # k = 0 sends the raw prompt: ruled out by min_device_layers = 1
    out = reward.evaluate(0, AWGN10, QualityMetrics(0.0))
    assert not out.feasible and out.reward == INFEASIBLE_REWARD and "outside" in out.reason


def test_latency_energy_preset_by_hand():
    reward = SplitReward(reward_preset("latency-energy"), PROFILE)
    cost = split_costs(PROFILE, 3, get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz"),
                       AWGN10.state(), 256, 32, phase="prefill")
    out = reward.evaluate(3, AWGN10, QualityMetrics.from_perplexity(30.0, 20.0))
    expected = -10.0 * math.log(1.5) - cost.total_latency_s - cost.ue_energy_j
    assert out.reward == pytest.approx(expected, rel=1e-12)
    assert out.latency_s == pytest.approx(cost.total_latency_s) and out.offload_term == 0.0


def test_other_quality_metrics_and_bias():
    q = QualityMetrics(log_ppl_ratio=0.2, kl_nats=0.4, top1_agreement=0.75)
    kl = SplitReward(RewardConfig(quality_metric="kl", quality_weight=2.0, offload_weight=0.0, bias=1.0), PROFILE)
    assert kl.evaluate(4, AWGN10, q).reward == pytest.approx(1.0 - 0.8)
    top1 = SplitReward(RewardConfig(quality_metric="top1", quality_weight=4.0, offload_weight=0.0), PROFILE)
    assert top1.evaluate(4, AWGN10, q).reward == pytest.approx(-1.0)


def test_hard_limits_make_splits_infeasible():
    loose = SplitReward(reward_preset("latency-energy"), PROFILE)
    latency = loose.evaluate(8, AWGN10, QualityMetrics(0.0)).latency_s
    tight = SplitReward(reward_preset("latency-energy", max_latency_s=latency / 2), PROFILE)
    out = tight.evaluate(8, AWGN10, QualityMetrics(0.0))
    assert not out.feasible and "latency_s" in out.reason and out.reward == INFEASIBLE_REWARD
    assert tight.config.preset == "latency-energy+custom"


def test_vectorised_rewards_match_scalar_and_best_split_uses_the_mask():
    reward = SplitReward(reward_preset("paper"), PROFILE)
    ks = np.arange(9)
    ratios = np.linspace(0.5, 0.0, 9)
    values, feasible = reward.rewards(ks, [AWGN10] * 9, ratios)
    for k in ks:
        assert values[k] == pytest.approx(reward.evaluate(int(k), AWGN10, QualityMetrics(ratios[k])).reward)
    assert not feasible[0] and feasible[1:].all()
    assert best_split(values, feasible) == int(np.argmax(values[1:])) + 1
    members, _ = reward.rewards(ks, [AWGN10] * 9, np.stack([ratios, ratios * 2]))
    assert members.shape == (2, 9)
    with pytest.raises(ValueError, match="no feasible split"):
        best_split(values, np.zeros(9, dtype=bool))


def test_config_json_round_trip():
    config = reward_preset("latency-energy", max_ue_energy_j=0.5)
    assert RewardConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(("call", "message"), [
    (lambda: reward_preset("fastest"), "unknown reward preset 'fastest'"),
    (lambda: reward_preset("paper", speed=1), "unknown RewardConfig field"),
    (lambda: RewardConfig(quality_metric="bleu"), "unknown quality_metric"),
    (lambda: RewardConfig(latency_scale_s=0.0), "latency_scale_s must be > 0"),
    (lambda: RewardConfig(max_latency_s=-1.0), "max_latency_s must be > 0"),
    (lambda: RewardConfig(device="toaster"), "toaster"),
    (lambda: QualityMetrics(log_ppl_ratio=float("nan")), "log_ppl_ratio must be finite"),
    (lambda: QualityMetrics(0.0, top1_agreement=1.5), "top1_agreement"),
    (lambda: RewardConfig.from_dict({"weight": 1}), "unknown RewardConfig field"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_out_of_range_split_is_rejected():
    with pytest.raises(ValueError, match="split k"):
        SplitReward(reward_preset("paper"), PROFILE).evaluate(9, AWGN10, QualityMetrics(0.0))
