"""SplitEnv with switching: KV-migration penalty in the reward, the context in the observation, and switching off."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from edgesplit.cost import get_device, get_edge, get_link, switch_costs
from rllib_env.baselines import GreedyOracle
from rllib_env.evaluate import evaluate_policies, heldout_seeds
from rllib_env.registry import describe
from rllib_env.sources import TableRewardSource
from rllib_env.split_env import SplitEnv, SplitEnvConfig
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
BASE = {"model": MODEL_NAME, "snr_grid_db": GRID, "episode_steps": 12}
SWITCHING = {**BASE, "switching": True, "prompt_tokens": 100, "tokens_per_block": 20,
             "switch_latency_weight": 30.0, "switch_energy_weight": 50.0}
ACTIONS = [5, 5, 2, 8, 8, 3, 1, 1, 6, 4, 4, 7]


@pytest.fixture(scope="module")
def table() -> TableRewardSource:
    return TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME))


def run(env: SplitEnv, seed: int, actions: list[int]) -> tuple[list[np.ndarray], list[float], list[dict]]:
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
    return observations, rewards, infos


@pytest.mark.parametrize("overrides", [{}, {"action": "relative", "observation": "paper"}])
def test_switching_env_passes_the_checker_and_observes_the_context(table, overrides):
    env = SplitEnv({**SWITCHING, **overrides}, source=table)
    check_env(env, skip_render_check=True)
    plain = SplitEnv({**BASE, **overrides}, source=table)
    assert env.observation_space.shape[0] == plain.observation_space.shape[0] + 1
    observations, _, infos = run(env, 3, [4] * 12)
    for t, obs in enumerate(observations):
        assert obs[-1] == pytest.approx((100 + 20 * t) / (100 + 12 * 20))
    assert [info["context_tokens"] for info in infos] == [100 + 20 * t for t in range(12)]


def test_switching_off_keeps_observations_and_rewards_exactly(table):
    default, _, default_infos = run(SplitEnv(BASE, source=table), 7, ACTIONS)
    off, off_rewards, off_infos = run(SplitEnv({**SWITCHING, "switching": False}, source=table), 7, ACTIONS)
    assert SplitEnv(BASE, source=table).observation_space.shape == (7 + 4,)
    for a, b in zip(default, off, strict=True):
        np.testing.assert_array_equal(a, b)
    for info, base, learner in zip(off_infos, default_infos, off_rewards, strict=True):
        assert info["reward"] == base["reward"] == info["base_reward"]
        assert learner == max(info["reward"], -100.0)
        assert info["switch_penalty"] == info["switch_latency_s"] == info["switch_energy_j"] == 0.0
    env = SplitEnv(BASE, source=table)
    env.reset(seed=7)
    for action, info in zip(ACTIONS, off_infos, strict=True):  # the reward as it was before switching existed
        setting = env.setting()
        expected = env.book(env.device_state).rewards([action], [setting], *table.quality([action], [setting])[0])
        assert env.step(action)[4]["reward"] == float(expected[0][0]) == info["reward"]
    env.reset(seed=7)
    env.step(5)
    candidates = env.candidate_rewards()
    np.testing.assert_array_equal(candidates["reward"], candidates["base_reward"])
    assert not candidates["switch_penalty"].any() and not env.switch_penalties().any()


def test_switching_subtracts_the_penalty_from_the_same_base_reward(table):
    _, _, off = run(SplitEnv(BASE, source=table), 7, ACTIONS)
    _, learner, on = run(SplitEnv(SWITCHING, source=table), 7, ACTIONS)
    assert on[0]["switch_penalty"] == 0.0  # the session opens at the first split
    for prev, (info, base) in zip([None, *ACTIONS], zip(on, off, strict=True), strict=False):
        assert info["base_reward"] == base["reward"]
        assert info["reward"] == info["base_reward"] - info["switch_penalty"]
        assert (info["switch_penalty"] > 0) == (prev is not None and prev != info["k"])
    assert learner == [max(info["reward"], -100.0) for info in on]


def test_env_switch_cost_equals_the_cost_function(table):
    env = SplitEnv(SWITCHING, source=table)
    env.reset(seed=11)
    hardware = get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz")
    for action in ACTIONS:
        prev, context, state = env.prev_k, env.context_tokens(), env.setting().state()
        _, _, _, _, info = env.step(action)
        if info["t"] == 0:
            continue
        cost = switch_costs(env.profile, prev, action, *hardware, state, context, 16)
        assert info["switch_latency_s"] == cost.latency_s and info["switch_energy_j"] == cost.ue_energy_j
        assert info["switch_penalty"] == pytest.approx(30.0 * cost.latency_s + 50.0 * cost.ue_energy_j)
        assert (cost.direction == "uplink") == (action < prev) and (cost.ue_energy_j > 0) == (action < prev)


def test_candidates_and_penalty_matrix_price_the_switch_from_the_previous_split(table):
    env = SplitEnv(SWITCHING, source=table)
    env.reset(seed=2)
    assert not env.candidate_rewards()["switch_penalty"].any()  # first block: no switch
    for action in ACTIONS[:6]:
        candidates, analytic = env.candidate_rewards(), env.analytic_rewards()
        matrix = env.switch_penalties()
        if env.t > 0:
            np.testing.assert_allclose(candidates["switch_penalty"], matrix[env.prev_k])
            assert candidates["switch_penalty"][env.prev_k] == 0.0
        np.testing.assert_allclose(candidates["reward"], candidates["base_reward"] - candidates["switch_penalty"])
        np.testing.assert_allclose(analytic["switch_penalty"], candidates["switch_penalty"])
        _, _, _, _, info = env.step(action)
        assert info["reward"] == pytest.approx(candidates["reward"][action])
    assert np.all(np.diag(matrix) == 0) and matrix.shape == (NUM_LAYERS + 1, NUM_LAYERS + 1)


def test_greedy_oracle_sees_the_penalty(table):
    config = {**SWITCHING, "switch_latency_weight": 1e5, "switch_energy_weight": 1e5}
    steps, _ = evaluate_policies({"greedy-oracle": (GreedyOracle(), {})}, config, table, heldout_seeds(3))
    assert steps.groupby("trace")["k"].nunique().eq(1).all()  # no gain is worth a switch at this price
    free, _ = evaluate_policies({"greedy-oracle": (GreedyOracle(), {})}, BASE, table, heldout_seeds(3))
    assert free.groupby("trace")["k"].nunique().gt(1).any()


def test_penalty_ignores_the_bit_width():
    env = SplitEnv({**SWITCHING, "channel_kind": "digital", "bits_options": (4, 8)},
                   source=TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME)))
    env.reset(seed=0)
    env.next_block()
    matrix, ks = env.switch_penalties(), [k for _, k, _ in env.action_table()]
    assert matrix.shape == (len(ks), len(ks)) == (2 * (NUM_LAYERS + 1),) * 2
    assert matrix[ks.index(5), ks.index(2)] == matrix[ks.index(5) + 1, ks.index(2) + 1] > 0


@pytest.mark.parametrize("bad, message", [
    ({"prompt_tokens": 0}, "prompt_tokens"), ({"tokens_per_block": -1}, "tokens_per_block"),
    ({"kv_bits": 0}, "kv_bits"), ({"switch_latency_weight": -1.0}, "switch_latency_weight"),
    ({"switch_energy_weight": float("nan")}, "switch_energy_weight"),
])
def test_bad_switching_config_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        SplitEnvConfig.from_dict({**SWITCHING, **bad})
