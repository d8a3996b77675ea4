"""The hindsight optimum with switching costs: Viterbi against brute force, and the oracle policy on SplitEnv."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rllib_env.baselines import GreedyOracle
from rllib_env.evaluate import evaluate_policies, heldout_seeds, rollout
from rllib_env.hindsight import HindsightOracle, hindsight_plan, plan_trace, plan_value, trace_tables
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


def brute_force(base, penalty, feasible, start) -> float:
    horizon, size = base.shape
    best = -np.inf
    for plan in itertools.product(range(size), repeat=horizon):
        if all(feasible[t, a] for t, a in enumerate(plan)):
            best = max(best, plan_value(base, penalty, plan, start))
    return best


def random_problem(rng: np.random.Generator):
    horizon, size = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    base = rng.normal(size=(horizon, size))
    penalty = rng.exponential(size=(horizon, size, size))
    penalty[:, np.arange(size), np.arange(size)] = 0.0
    penalty[rng.random(penalty.shape) < 0.1] = np.inf  # a few forbidden transitions
    feasible = rng.random((horizon, size)) > 0.3
    start = rng.exponential(size=size) if rng.random() < 0.5 else None
    return base, penalty, feasible, start


def test_viterbi_equals_brute_force_on_random_problems():
    rng = np.random.default_rng(0)
    solved = 0
    for _ in range(300):
        base, penalty, feasible, start = random_problem(rng)
        expected = brute_force(base, penalty, feasible, start)
        if not np.isfinite(expected):
            with pytest.raises(ValueError, match="no feasible plan"):
                hindsight_plan(base, penalty, feasible, start)
            continue
        plan, total = hindsight_plan(base, penalty, feasible, start)
        solved += 1
        assert total == pytest.approx(expected, abs=1e-12)
        assert total == plan_value(base, penalty, plan, start)
        assert all(feasible[t, a] for t, a in enumerate(plan))
        _, again = hindsight_plan(base, lambda t, i, j: penalty[t, i, j], feasible, start)  # noqa: B023
        assert again == pytest.approx(total)
    assert solved > 150


def test_without_penalties_the_plan_is_the_per_block_best():
    base = np.random.default_rng(1).normal(size=(6, 4))
    plan, total = hindsight_plan(base, np.zeros((6, 4, 4)))
    np.testing.assert_array_equal(plan, base.argmax(axis=1))
    assert total == pytest.approx(base.max(axis=1).sum())


def test_a_costly_switch_is_skipped_and_penalty_zero_is_unused():
    base = np.array([[1.0, 0.0], [0.0, 1.5], [1.0, 0.0]])
    penalty = np.full((3, 2, 2), 1.0)
    penalty[:, [0, 1], [0, 1]] = 0.0
    penalty[0] = 1e9  # never charged: the first block has no previous one
    plan, total = hindsight_plan(base, penalty)
    assert plan.tolist() == [0, 0, 0] and total == 2.0
    assert hindsight_plan(base, penalty * 0.1)[0].tolist() == [0, 1, 0]


@pytest.mark.parametrize("args, message", [
    ((np.zeros(3), np.zeros((3, 1, 1))), "non-empty"), ((np.zeros((2, 3)), np.zeros((2, 3, 2))), "shape"),
    ((np.zeros((2, 3)), np.zeros((2, 3, 3)), np.ones((3, 3))), "feasible"),
    ((np.zeros((2, 3)), np.zeros((2, 3, 3)), None, np.zeros(2)), "start_penalty"),
    ((np.full((2, 3), np.nan), np.zeros((2, 3, 3))), "NaN"), ((np.zeros((2, 3)), np.full((2, 3, 3), np.nan)), "NaN"),
    ((np.zeros((2, 3)), np.zeros((2, 3, 3)), np.zeros((2, 3))), "no feasible plan"),
])
def test_bad_inputs_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        hindsight_plan(*args)


def per_trace(steps):
    return steps.pivot_table(index="trace", columns="policy", values="reward", aggfunc="sum")


def test_hindsight_bounds_greedy_on_every_trace_and_beats_it_somewhere(table):
    policies = {"greedy-oracle": (GreedyOracle(), {}), "hindsight": (HindsightOracle(), {})}
    steps, summary = evaluate_policies(policies, SWITCHING, table, heldout_seeds(6))
    totals = per_trace(steps)
    assert (totals["hindsight"] >= totals["greedy-oracle"] - 1e-9).all()
    assert (totals["hindsight"] > totals["greedy-oracle"] + 1e-3).any()
    assert set(summary["policy"]) == set(policies)


def test_the_executed_plan_earns_exactly_the_planned_total(table):
    env = SplitEnv(SWITCHING, source=table)
    oracle = HindsightOracle()
    for seed in heldout_seeds(4):
        obs, _ = env.reset(seed=seed)
        plan, total = plan_trace(env)
        earned, ks = 0.0, []
        for _ in range(env.config.episode_steps):
            obs, _, _, truncated, info = env.step(oracle(env, obs))
            earned += info["reward"]
            ks.append(info["k"])
        assert truncated and oracle.total == total
        assert earned == pytest.approx(total, rel=1e-12, abs=1e-12)
        assert ks == [env.action_table()[row][1] for row in plan]


def test_planning_does_not_move_the_env(table):
    env = SplitEnv(SWITCHING, source=table)
    env.reset(seed=5)
    env.step(4)
    before = (env.t, env.prev_k, env._state, env.device_state, env._observation().tolist())
    tables = trace_tables(env)
    assert (env.t, env.prev_k, env._state, env.device_state, env._observation().tolist()) == before
    assert tables["base_reward"].shape == (15, 9) and tables["penalty"].shape == (15, 9, 9)
    assert tables["start_penalty"][4] == 0.0 and tables["start_penalty"][1] > 0  # replanning mid-trace pays from k=4
    untouched = SplitEnv(SWITCHING, source=table)
    untouched.reset(seed=5)
    untouched.step(4)
    assert [env.step(3)[4]["reward"] for _ in range(5)] == [untouched.step(3)[4]["reward"] for _ in range(5)]


def test_switching_off_hindsight_equals_greedy(table):
    policies = {"greedy-oracle": (GreedyOracle(), {}), "hindsight": (HindsightOracle(), {})}
    steps, _ = evaluate_policies(policies, BASE, table, heldout_seeds(3))
    totals = per_trace(steps)
    np.testing.assert_allclose(totals["hindsight"], totals["greedy-oracle"], rtol=0, atol=1e-9)


def test_relative_moves_respect_max_move(table):
    config = {**SWITCHING, "action": "relative", "max_move": 2, "switch_latency_weight": 1.0}
    steps = rollout(HindsightOracle(), SplitEnv(config, source=table), heldout_seeds(3), with_oracle=False)
    for _, trace in steps.groupby("trace"):
        ks = [8, *trace["k"]]  # a relative episode starts from k = L
        assert max(abs(a - b) for a, b in zip(ks, ks[1:], strict=False)) <= 2


def test_a_counted_real_source_is_never_charged(table):
    real = RealRewardSource(TableOracle(synthetic_cells(seed=0)), describe(MODEL_NAME))
    env = SplitEnv(SWITCHING, source=real)
    env.reset(seed=heldout_seeds(1)[0])
    spent = real.stats.to_dict()
    with pytest.raises(ValueError, match="never spends real evaluations"):
        plan_trace(env)
    assert real.stats.to_dict() == spent
    rollout(GreedyOracle(), env, heldout_seeds(1))  # measures every candidate of every block of this trace
    spent = (real.stats.llm_evaluations, real.stats.queries, real.oracle.stats.evaluations)
    env.reset(seed=heldout_seeds(1)[0])
    plan, total = plan_trace(env)
    assert (real.stats.llm_evaluations, real.stats.queries, real.oracle.stats.evaluations) == spent
    table_env = SplitEnv(SWITCHING, source=table)
    table_env.reset(seed=heldout_seeds(1)[0])
    assert total == pytest.approx(plan_trace(table_env)[1])
