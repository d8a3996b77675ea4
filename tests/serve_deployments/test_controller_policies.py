"""The split controller without Ray: request schema, the three policies, reload semantics and versions."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from edgesplit.packet import ENCODINGS
from edgesplit.reward import best_split, reward_preset
from edgesplit.scenario import ChannelSetting
from rllib_env.device_state import DeviceAwareReward, DeviceState
from rllib_env.registry import describe
from rllib_env.sources import cell_frame
from serve_deployments.controller import ControllerArgs, SplitController
from serve_deployments.split_policies import (
    RULE_VERSION,
    PolicySpec,
    RuleTablePolicy,
    SurrogateGreedyPolicy,
    light_profile,
    load_policy,
)
from serve_deployments.split_schema import ENCODING_WIDTHS, SplitDecision, UEState
from surrogate.checkpoint import save_surrogate
from surrogate.ensemble import EnsembleConfig
from surrogate.model import QualitySurrogate, quality_args
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

ARGS = {"model": MODEL_NAME}


@pytest.fixture(scope="module")
def surrogate_dir(tmp_path_factory):
    config = EnsembleConfig(hidden_size=16, depth=1, epochs=150, ensemble_size=3, lr=1e-2, seed=0)
    surrogate = QualitySurrogate(config).fit(synthetic_cells(seed=0))
    return save_surrogate(surrogate, tmp_path_factory.mktemp("surrogate") / "ckpt")


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile")
    synthetic_cells(seed=0).drop(columns=["log_ppl_ratio"]).to_parquet(path / "cells.parquet")
    return path


def state(snr: float | list[float], **fields) -> UEState:
    return UEState(snr_db_history=snr if isinstance(snr, list) else [snr], **fields)


# ---- schema --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"snr_db_history": []}, "at least 1 item"),
    ({"snr_db_history": [1.0] * 257}, "at most 256"),
    ({"snr_db_history": [math.nan]}, "finite"),
    ({"snr_db_history": [81.0]}, "less than or equal to 80"),
    ({"snr_db_history": ["12"]}, "valid number"),
    ({"snr_db_history": [10.0], "loss_rate": 1.5}, "less than or equal to 1"),
    ({"snr_db_history": [10.0], "device": "toaster"}, "phone-soc"),
    ({"snr_db_history": [10.0], "cpu_freq_hz": 9e9}, "f_hz must be in"),
    ({"snr_db_history": [10.0], "battery": -0.1}, "greater than or equal to 0"),
    ({"snr_db_history": [10.0], "latency_budget_s": 0.0}, "greater than 0"),
    ({"snr_db_history": [10.0], "context_tokens": 2_000_000}, "less than or equal to 1000000"),
    ({"snr_db_history": [10.0], "current_k": 2.0}, "valid integer"),
    ({"snr_db_history": [10.0], "policy_path": "/etc/passwd"}, "Extra inputs are not permitted"),
])
def test_ue_state_rejects_bad_reports(fields, message):
    with pytest.raises(ValueError, match=message):
        UEState.model_validate(fields)


def test_ue_state_defaults_and_decision_consistency():
    ue = state([3.0, 12.3])
    assert ue.snr_db == 12.3 and ue.device == "phone-soc" and ue.f_hz == 2.0e9
    assert set(ENCODING_WIDTHS) == set(ENCODINGS)
    good = {"k": 4, "encoding": "int8", "bits": 8, "policy": "rule", "policy_version": "v", "reason": "r",
            "num_layers": 8}
    assert SplitDecision(**good).k == 4
    for change, message in [({"k": 9}, "exceeds"), ({"k": 0}, "token_ids"), ({"bits": 16}, "do not fit"),
                            ({"encoding": "token_ids", "bits": None}, "token_ids"), ({"policy": "magic"}, "rllib")]:
        with pytest.raises(ValueError, match=message):
            SplitDecision(**{**good, **change})


# ---- policies ------------------------------------------------------------------------------------------------------
def test_builtin_rule_moves_k_with_snr_and_respects_budget_and_battery():
    rule = load_policy(PolicySpec(kind="rule", model=MODEL_NAME))
    assert rule.version == RULE_VERSION
    ks = [rule.decide(state(snr)).k for snr in (-5.0, 5.0, 12.3, 19.9, 25.0)]
    assert ks == [NUM_LAYERS, NUM_LAYERS, NUM_LAYERS // 2, NUM_LAYERS // 2, 1]
    decision = rule.decide(state([2.0, 12.3]))
    assert decision.reason == "snr 12.3 dB >= 10 dB threshold -> k=4" and decision.encoding == "float32"
    priced = rule.pricer.price(state(25.0))
    latency, fastest = priced.latency_s, priced.latency_s[priced.feasible].min()
    assert fastest < latency[1]
    budget = float(latency[1] + fastest) / 2  # the rule's k=1 no longer fits
    tight = rule.decide(state(25.0, latency_budget_s=budget))
    assert tight.k != 1 and latency[tight.k] <= budget and "budget" in tight.reason
    low = rule.decide(state(12.3, battery=0.05))  # fewer UE layers, same payload: less UE energy
    assert low.k < NUM_LAYERS // 2 and "battery" in low.reason


def test_profile_table_rule_moves_k_with_snr(table_dir):
    rule = load_policy(PolicySpec(kind="rule", path=str(table_dir), model=MODEL_NAME))
    assert isinstance(rule, RuleTablePolicy) and rule.version.startswith("rule:") and rule.version != RULE_VERSION
    ks = [rule.decide(state(snr)).k for snr in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1]  # a better link offloads more
    assert "profile table at 10 dB" in rule.decide(state(11.0)).reason


def expected_greedy(surrogate, ue: UEState) -> int:
    """The surrogate's argmax computed independently: predictions of every split + the paper reward."""
    profile = light_profile(MODEL_NAME)
    reward = DeviceAwareReward(reward_preset("paper"), profile, DeviceState(ue.f_hz, 0.0))
    setting = ChannelSetting(kind="awgn", snr_db=round(ue.snr_db, 1), loss_rate=round(ue.loss_rate, 2))
    ks = list(range(NUM_LAYERS + 1))
    prediction = surrogate.predict(cell_frame(describe(MODEL_NAME), [(k, setting) for k in ks]))
    rewards, feasible = reward.rewards(ks, [setting] * len(ks), **quality_args(prediction.mean, prediction.targets))
    return best_split(rewards, feasible)


def test_surrogate_greedy_is_the_argmax_of_the_surrogates_predictions(surrogate_dir):
    policy = load_policy(PolicySpec(kind="surrogate_greedy", path=str(surrogate_dir), model=MODEL_NAME))
    assert isinstance(policy, SurrogateGreedyPolicy)
    rng = np.random.default_rng(0)
    expected, got = [], []
    for snr, loss in zip(np.round(rng.uniform(-5, 30, 40), 1), rng.choice([0.0, 0.0, 0.05], 40), strict=True):
        ue = state(float(snr), loss_rate=float(loss))
        expected.append(expected_greedy(policy.source.model, ue))
        got.append(policy.decide(ue).k)
    assert got == expected and len(set(got)) > 1
    assert "surrogate argmax" in policy.decide(state(12.3)).reason


# ---- controller ----------------------------------------------------------------------------------------------------
def test_reconfigure_swaps_policy_and_keeps_the_old_one_on_bad_specs(surrogate_dir, tmp_path):
    controller = SplitController(ARGS)
    assert controller.info()["policy"] == "rule" and controller.decide(state(12.3)).policy_version == RULE_VERSION
    controller.reconfigure({"policy": {"kind": "surrogate_greedy", "path": str(surrogate_dir)}})
    version = controller.decide(state(12.3)).policy_version
    assert version.startswith("surrogate_greedy:")
    broken = tmp_path / "broken"
    shutil.copytree(surrogate_dir, broken)
    (broken / "weights.safetensors").write_bytes(b"not safetensors")
    wrong_layers = tmp_path / "wrong"
    wrong_layers.mkdir()
    synthetic_cells().assign(num_layers=30).to_parquet(wrong_layers / "cells.parquet")
    for bad in [{"policy": {"kind": "rllib", "path": str(tmp_path / "nope")}},
                {"policy": {"kind": "surrogate_greedy"}},
                {"policy": {"kind": "oracle", "path": str(surrogate_dir)}},
                {"policy": {"kind": "surrogate_greedy", "path": str(broken)}},
                {"policy": {"kind": "rule", "path": str(wrong_layers)}},
                {"policy": {"kind": "rllib", "path": str(surrogate_dir)}},
                {"policy": "surrogate"}, {"polcy": None}]:
        with pytest.raises(ValueError):
            controller.reconfigure(bad)
        assert controller.decide(state(12.3)).policy_version == version
    controller.reconfigure({"policy": None})
    assert controller.decide(state(12.3)).policy_version == RULE_VERSION
    assert controller.info()["reloads"] == 2


def test_versions_follow_file_content_and_explicit_names(surrogate_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(surrogate_dir, copy)
    same = PolicySpec(kind="surrogate_greedy", path=str(copy)).version
    assert same == PolicySpec(kind="surrogate_greedy", path=str(surrogate_dir)).version
    (copy / "surrogate.json").write_text((copy / "surrogate.json").read_text() + "\n")
    assert PolicySpec(kind="surrogate_greedy", path=str(copy)).version != same
    assert PolicySpec(kind="surrogate_greedy", path=str(copy), version="v7").version == "v7"


def test_args_policy_is_the_base_and_failures_fall_back(surrogate_dir):
    args = ControllerArgs(model=MODEL_NAME, policy=PolicySpec(kind="surrogate_greedy", path=str(surrogate_dir)))
    controller = SplitController(args)
    base = controller.info()["policy_version"]
    controller.reconfigure({"policy": None})
    controller.reconfigure({})
    assert controller.info()["policy_version"] == base
    with pytest.raises(ValueError, match="current_k"):
        controller.decide(state(10.0, current_k=NUM_LAYERS + 1))

    def broken(ue):
        raise RuntimeError("boom")

    controller.policy.decide = broken
    decision = controller.decide(state(12.3))
    assert decision.policy == "rule" and decision.reason.startswith("fallback (surrogate_greedy failed")
    assert controller.info()["fallback_decisions"] == 1


def test_fallback_from_a_profile_table(table_dir, surrogate_dir):
    controller = SplitController({**ARGS, "fallback": {"kind": "rule", "path": str(table_dir)}})
    decision = controller.decide(state(11.0))
    assert decision.policy == "rule" and decision.policy_version == controller.info()["fallback_version"]
    assert decision.policy_version != RULE_VERSION and "profile table" in decision.reason
    with pytest.raises(ValueError, match="fallback must be a rule"):
        SplitController({**ARGS, "fallback": {"kind": "surrogate_greedy", "path": str(surrogate_dir)}})
    with pytest.raises(ValueError, match="unknown reward preset"):
        PolicySpec(kind="rule", reward="fastest")
