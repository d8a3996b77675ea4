"""SplitEnv: gymnasium's checker, seeded determinism, the SNR snapping rule, action modes and bad configs."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rllib_env.registry import describe
from rllib_env.sources import SurrogateRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv, SplitEnvConfig, snap
from surrogate.ensemble import EnsembleConfig
from surrogate.model import QualitySurrogate
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
BASE = {"model": MODEL_NAME, "snr_grid_db": GRID, "episode_steps": 16}


@pytest.fixture(scope="module")
def table() -> TableRewardSource:
    return TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME))


@pytest.fixture(scope="module")
def surrogate_source() -> SurrogateRewardSource:
    cells = synthetic_cells(seed=0)
    model = QualitySurrogate(EnsembleConfig(hidden_size=16, ensemble_size=2, epochs=150)).fit(cells)
    return SurrogateRewardSource(model, describe(MODEL_NAME))


def rollout(env: SplitEnv, seed: int, actions: list) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    out = [(obs.copy(), info["snr_db"])]
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        out.append((obs.copy(), reward, info["k"], info["reward"], info["snr_db"], info["f_hz"], info["load"]))
    return out


DROPOUT = {"channel_kind": "dropout", "snr_grid_db": (30.0,), "p_values": (0.05, 0.15, 0.3)}


@pytest.mark.parametrize("overrides", [{}, {"action": "relative", "observation": "paper"}, DROPOUT])
def test_env_passes_gymnasium_checker(table, overrides):
    env = SplitEnv({**BASE, **overrides}, source=table)
    check_env(env, skip_render_check=True)
    assert env.action_space.n == (NUM_LAYERS + 1 if "action" not in overrides else 9)


def test_multidiscrete_bits_pass_checker_and_reach_the_cost(surrogate_source):
    env = SplitEnv({**BASE, "channel_kind": "digital", "bits_options": (4, 8)}, source=surrogate_source)
    check_env(env, skip_render_check=True)
    env.reset(seed=3)
    payload = {}
    for b, bits in enumerate((4, 8)):
        _, _, _, _, info = env.step(np.array([3, b]))
        assert info["bits"] == bits
        payload[bits] = env.book(env.device_state).cost(3, env.setting(bits)).payload_bits
    assert payload[8] > payload[4]


def test_same_seed_same_rollout_and_other_seed_differs(table):
    actions = [int(a) for a in np.random.default_rng(0).integers(0, NUM_LAYERS + 1, size=40)]
    first = rollout(SplitEnv(BASE, source=table), 11, actions)
    again = rollout(SplitEnv(BASE, source=table), 11, actions)
    other = rollout(SplitEnv(BASE, source=table), 12, actions)
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert [row[-3] for row in first[1:]] != [row[-3] for row in other[1:]]  # different SNR traces


def test_channel_and_device_do_not_depend_on_actions(table):
    low = rollout(SplitEnv(BASE, source=table), 5, [1] * 30)
    high = rollout(SplitEnv(BASE, source=table), 5, [NUM_LAYERS] * 30)
    assert [r[-3:] for r in low[1:]] == [r[-3:] for r in high[1:]]
    assert len({r[-2] for r in low[1:]} | {r[-1] for r in low[1:]}) >= 1


def test_reward_snr_is_the_nearest_grid_point_and_info_reward_is_exact(table):
    env = SplitEnv({**BASE, "reward_floor": -2.0, "reward_scale": 0.5}, source=table)
    env.reset(seed=0)
    for _ in range(30):
        snr = env._state.snr_db
        assert env.reward_snr_db() == GRID[int(np.argmin([abs(g - snr) for g in GRID]))]
        candidates = env.candidate_rewards()
        k = int(np.argmin(np.where(candidates["feasible"], candidates["reward"], np.inf)))
        _, learner_reward, _, _, info = env.step(k)
        assert info["reward"] == pytest.approx(candidates["reward"][k])
        assert learner_reward == pytest.approx(0.5 * max(info["reward"], -2.0))
    assert snap(-12.0, GRID) == 0.0 and snap(2.5, GRID) == 0.0 and snap(99.0, GRID) == 25.0


def test_k0_is_infeasible_and_floored(table):
    env = SplitEnv(BASE, source=table)
    env.reset(seed=0)
    _, learner_reward, _, _, info = env.step(0)
    assert not info["feasible"] and info["reward"] == -1e6 and learner_reward == -100.0


def test_relative_moves_stay_in_the_allowed_range(table):
    env = SplitEnv({**BASE, "action": "relative"}, source=table)
    env.reset(seed=0)
    assert env.prev_k == NUM_LAYERS
    ks = [env.step(a)[4]["k"] for a in (8, 0, 0, 0, 0, 8, 3)]  # +4, then four times -4, +4, -1
    assert ks == [8, 4, 1, 1, 1, 5, 4]


def test_table_source_refuses_off_grid_snr(table):
    env = SplitEnv({**BASE, "snr_grid_db": None}, source=table)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="snr_grid_db"):
        for _ in range(10):
            env.step(3)


@pytest.mark.parametrize("bad, message", [
    ({"channel_kind": "fog"}, "channel_kind"), ({"action": "sideways"}, "action"),
    ({"bits_options": (4, 8)}, "digital"), ({"reward": "nope"}, "preset"), ({"episode_steps": 0}, "episode_steps"),
    ({"snr_grid_db": ()}, "snr_grid_db"), ({"device": {"f_levels_hz": [9e9]}}, "f_hz"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        SplitEnvConfig.from_dict({**BASE, **bad})
