"""The switching planner: its penalty tables are the env's, its DP is exact when the forecast is, it is the greedy
oracle without switching costs, and on a stochastic channel it earns between the greedy oracle and hindsight."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rllib_env.baselines import GreedyOracle
from rllib_env.evaluate import evaluate_policies, heldout_seeds, rollout
from rllib_env.hindsight import HindsightOracle
from rllib_env.planner import ChannelForecaster, ForecasterConfig, SwitchingPlanner, device_transition
from rllib_env.registry import describe
from rllib_env.sources import RealRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.evaluator import TableOracle
from surrogate.synthetic import MODEL_NAME, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "episode_steps": 16}
SWITCHING = {**BASE, "switching": True, "switch_latency_weight": 100.0, "switch_energy_weight": 100.0}


@pytest.fixture(scope="module")
def table() -> TableRewardSource:
    return TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME))


@pytest.fixture(scope="module")
def forecaster() -> ChannelForecaster:
    return ChannelForecaster.fit(SWITCHING, traces=128, seed=0)


def per_trace(steps: pd.DataFrame) -> pd.DataFrame:
    return steps.pivot_table(index="trace", columns="policy", values="reward", aggfunc="sum")


def test_forecaster_is_a_seeded_stochastic_matrix(forecaster):
    dense = forecaster.transition.toarray()
    assert np.allclose(dense.sum(axis=1), 1.0) and (dense >= 0).all()
    again = ChannelForecaster.fit(SWITCHING, traces=128, seed=0)
    np.testing.assert_array_equal(again.transition.toarray(), dense)
    np.testing.assert_array_equal(again.states, forecaster.states)
    other = ChannelForecaster.fit(SWITCHING, traces=128, seed=1)
    assert other.transition.shape != dense.shape or not np.array_equal(other.transition.toarray(), dense)
    centre = forecaster.state_of(15.0)
    assert forecaster.centres_db[centre] == 15.0
    lowest, highest = forecaster.centres_db.min(), forecaster.centres_db.max()
    assert forecaster.centres_db[forecaster.state_of(-1e3)] == lowest
    assert forecaster.centres_db[forecaster.state_of(1e3)] == highest
    # a correlated channel: the next block's SNR is most likely near this one's
    assert abs(forecaster.centres_db[dense[centre].argmax()] - 15.0) <= 3.0


def test_a_second_order_forecaster_keys_states_by_the_previous_block_too():
    second = ChannelForecaster.fit(SWITCHING, traces=64, seed=0, order=2, bin_db=1.0)
    assert second.order == 2 and second.states.shape[1] == 2
    assert np.allclose(np.asarray(second.transition.sum(axis=1)).ravel(), 1.0)
    # successor states carry the current bin as their previous one (but for the borrowed rows of states met only at
    # the end of a trace)
    rows, cols = second.transition.nonzero()
    assert (second.states[cols, 1] == second.states[rows, 0]).mean() > 0.9
    seen = second.states[0]
    assert second.state_of(seen[0] * 1.0, [seen[1] * 1.0]) == 0
    assert second.state_of(12.2) == second.state_of(12.2, [12.2])  # the first block: its own history


def test_a_hidden_state_forecaster_keys_states_by_the_mean_snr_and_plans_on_it(table):
    hidden = ChannelForecaster.fit(SWITCHING, traces=64, seed=0, hidden_state=True, mean_bin_db=2.0)
    assert hidden.order == 1 and hidden.states.shape[1] == 2
    assert np.allclose(np.asarray(hidden.transition.sum(axis=1)).ravel(), 1.0)
    env = SplitEnv(SWITCHING, source=table)
    env.reset(seed=5)
    state = env.channel_state
    expected = (round(state.snr_db / 0.5), round(state.mean_snr_db / 2.0))
    got = tuple(hidden.states[hidden.state_of_env(env)])
    assert got == expected or expected not in {tuple(s) for s in hidden.states}
    assert all(hidden.state_of_env_key(tuple(s)) == i for i, s in enumerate(hidden.states[:5]))
    with pytest.raises(ValueError, match="state_of_env"):
        hidden.state_of(10.0)
    policies = {"greedy-oracle": (GreedyOracle(), {}), "hindsight": (HindsightOracle(), {}),
                "planner": (SwitchingPlanner(table, hidden), {})}
    totals = per_trace(evaluate_policies(policies, SWITCHING, table, heldout_seeds(4))[0])
    assert (totals["planner"] <= totals["hindsight"] + 1e-9).all()


@pytest.mark.parametrize("kwargs", [{"hidden_state": True, "order": 2}, {"hidden_state": True, "mean_bin_db": 0.0}])
def test_bad_hidden_state_settings_are_rejected(kwargs):
    with pytest.raises(ValueError, match="hidden-state"):
        ForecasterConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"traces": 0}, {"bin_db": 0.0}, {"order": 0}, {"order": 5}])
def test_bad_forecaster_settings_are_rejected(kwargs):
    with pytest.raises(ValueError, match="need traces"):
        ForecasterConfig(**kwargs)


def test_penalty_tables_equal_the_envs_switch_penalties(table, forecaster):
    env = SplitEnv(SWITCHING, source=table)
    env.reset(seed=3)
    settings = []
    for _ in range(6):
        env.step(int(env.np_random.integers(env.num_layers + 1)))
        ks = [k for _, k, _ in env.action_table()]
        settings.append((env.t, env.setting(), [[env.penalty_of(env.switch_cost(a, b)) for b in ks] for a in ks]))
    tables = SwitchingPlanner.penalty_tables(env, [s for _, s, _ in settings])
    for b, (t, _, expected) in enumerate(settings):
        np.testing.assert_allclose(tables[t, b], expected, rtol=1e-12, atol=0)
    assert (tables[0] == 0).all()


def test_without_switching_costs_the_planner_is_the_greedy_oracle(table, forecaster):
    policies = {"greedy-oracle": (GreedyOracle(), {}), "planner": (SwitchingPlanner(table, forecaster), {})}
    steps, _ = evaluate_policies(policies, BASE, table, heldout_seeds(3))
    ks = steps.pivot_table(index=["trace", "t"], columns="policy", values="k")
    np.testing.assert_array_equal(ks["planner"], ks["greedy-oracle"])


def test_with_an_exact_forecast_the_planner_is_the_hindsight_optimum(table, tmp_path):
    # a looped trace of distinct SNRs (every bin has one successor) and a fixed UE: the future is known in law
    snr = np.linspace(-2.0, 27.0, 16)[np.random.default_rng(0).permutation(16)]
    pd.DataFrame({"snr_db": snr}).to_csv(tmp_path / "trace.csv", index=False)
    config = {**SWITCHING, "process": "trace", "process_params": {"path": str(tmp_path / "trace.csv")},
              "device": {"f_levels_hz": (2.0e9,), "load_levels": (0.0,), "switch_prob": 0.0},
              "switch_latency_weight": 30.0, "switch_energy_weight": 30.0}
    exact = ChannelForecaster.fit(config, ForecasterConfig(traces=1))
    policies = {"greedy-oracle": (GreedyOracle(), {}), "hindsight": (HindsightOracle(), {}),
                "planner": (SwitchingPlanner(table, exact), {})}
    totals = per_trace(evaluate_policies(policies, config, table, heldout_seeds(2))[0])
    np.testing.assert_allclose(totals["planner"], totals["hindsight"], rtol=0, atol=1e-9)
    assert (totals["hindsight"] > totals["greedy-oracle"] + 1e-3).all()  # the case is not trivial


def test_on_a_fading_channel_it_beats_greedy_and_stays_below_hindsight(table, forecaster):
    policies = {"greedy-oracle": (GreedyOracle(), {}), "hindsight": (HindsightOracle(), {}),
                "planner": (SwitchingPlanner(table, forecaster), {})}
    totals = per_trace(evaluate_policies(policies, SWITCHING, table, heldout_seeds(8))[0])
    assert (totals["planner"] <= totals["hindsight"] + 1e-9).all()
    assert totals["planner"].sum() > totals["greedy-oracle"].sum()


def test_relative_moves_respect_max_move(table, forecaster):
    config = {**SWITCHING, "action": "relative", "max_move": 2, "switch_latency_weight": 1.0}
    steps = rollout(SwitchingPlanner(table, forecaster), SplitEnv(config, source=table), heldout_seeds(3),
                    with_oracle=False)
    for _, trace in steps.groupby("trace"):
        ks = [8, *trace["k"]]
        assert max(abs(a - b) for a, b in zip(ks, ks[1:], strict=False)) <= 2


def test_device_chain_transition_matches_its_config():
    env = SplitEnv(SWITCHING, source=TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME)))
    states, matrix = device_transition(env)
    assert len(states) == 6 and np.allclose(matrix.sum(axis=1), 1.0)
    assert matrix[0, 0] == pytest.approx(0.95 + 0.05 / 6) and matrix[0, 1] == pytest.approx(0.05 / 6)


def test_a_counted_real_source_is_refused(forecaster):
    real = RealRewardSource(TableOracle(synthetic_cells(seed=0)), describe(MODEL_NAME))
    with pytest.raises(ValueError, match="counted real source"):
        SwitchingPlanner(real, forecaster)
