"""Baselines on a measured table: rules, the greedy oracle bound, the paper's scheme and model-free PPO."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_env.baselines import (
    PAPER_OVERRIDES,
    CostOnlyRule,
    best_fixed,
    rule_policies,
    train_model_free,
    train_paper_scheme,
)
from rllib_env.evaluate import evaluate_policies, heldout_seeds, rollout, write_evaluation
from rllib_env.registry import describe
from rllib_env.sources import RealRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.evaluator import TableOracle
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 16}
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1},
        "env_runners": {"num_envs_per_env_runner": 2}}


@pytest.fixture(scope="module")
def table():
    return TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME))


@pytest.mark.parametrize("preset", ["paper", "latency-energy"])
def test_rule_baselines_and_the_oracle_bound(table, preset, tmp_path):
    config = {**BASE, "reward": preset}
    env = SplitEnv(config, source=table)
    steps, summary = evaluate_policies(rule_policies(env), config, table, heldout_seeds(2))
    assert set(summary["policy"]) == {"greedy-oracle", "random", "neurosurgeon", *(f"fixed-k{k}" for k in
                                                                                  range(1, NUM_LAYERS + 1))}
    per_block = steps.pivot_table(index=["trace", "t"], columns="policy", values="reward")
    assert (per_block["greedy-oracle"].to_numpy()[:, None] >= per_block.to_numpy() - 1e-12).all()
    oracle = summary.set_index("policy").loc["greedy-oracle"]
    assert oracle["regret"] == pytest.approx(0.0) and oracle["gap_closed_pct"] == pytest.approx(100.0)
    assert steps.loc[steps["policy"] == "fixed-k3", "k"].eq(3).all()
    assert best_fixed(summary)["policy"].startswith("fixed-k")
    assert (steps["trace"].nunique(), len(steps)) == (2, 2 * 16 * len(summary))
    write_evaluation(steps, summary, tmp_path)
    assert (tmp_path / "splits.png").is_file()


def test_cost_only_rule_never_asks_for_quality(table):
    source = TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME))
    env = SplitEnv(BASE, source=source)
    steps = rollout(CostOnlyRule(), env, heldout_seeds(2), with_oracle=False)
    assert source.stats.queries == len(steps)  # only the env's own reward of the chosen split
    assert steps["k"].eq(1).all()  # paper preset: the offload share alone prefers the fewest UE layers


def test_paper_scheme_and_model_free_ppo_produce_results(ray_session, table):
    cells = synthetic_cells(seed=0)
    labelled = cells[(cells["channel"] == "awgn") & cells["k"].between(1, NUM_LAYERS - 1)].iloc[::4]
    paper, overrides, curve = train_paper_scheme(labelled, BASE, iterations=1, overrides=TINY)
    assert overrides == PAPER_OVERRIDES and len(curve) == 1
    oracle = TableOracle(cells)
    real = RealRewardSource(oracle, describe(MODEL_NAME))
    model_free, mf_curve = train_model_free(real, BASE, iterations=1, overrides=TINY)
    assert mf_curve["real_evaluations"].iloc[-1] == real.stats.llm_evaluations == oracle.stats.evaluations > 0
    assert mf_curve["source_queries"].iloc[-1] >= 64
    policies = {"paper": (paper, overrides), "model-free": (model_free, {})}
    steps, summary = evaluate_policies(policies, BASE, table, heldout_seeds(2))
    assert set(summary["policy"]) == {"paper", "model-free"}
    assert np.isfinite(summary["mean_reward"]).all()
    paper_k = steps.loc[steps["policy"] == "paper"].groupby("trace")["k"].apply(lambda k: k.diff().abs().max())
    assert (paper_k <= 4).all()  # relative moves of at most ±4
