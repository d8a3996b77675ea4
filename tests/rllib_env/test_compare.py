"""The single-seed comparison end to end on the synthetic grid (tiny budgets): every learner and rule scored on the
same traces, the surrogate-greedy row beside the model-based policy, the bars and the budget plot written."""

from __future__ import annotations

import json
import math

from rllib_env.compare import CompareConfig, compare
from rllib_env.mbrl import MbrlConfig
from rllib_env.registry import describe, replay_oracle
from rllib_env.sources import TableRewardSource
from surrogate.synthetic import MODEL_NAME, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 8}
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1},
        "env_runners": {"num_envs_per_env_runner": 2}}


def test_compare_runs_every_policy_and_writes_the_bars(ray_session, tmp_path):
    cells = synthetic_cells(seed=0)
    cells = cells[cells["channel"] == "awgn"].reset_index(drop=True)
    truth = TableRewardSource(cells, describe(MODEL_NAME))
    mbrl = MbrlConfig(budget=6, initial=4, per_round=2, iterations_first=1, iterations_per_round=1,
                      final_iterations=0, rollout_traces=1)
    config = CompareConfig(mbrl=mbrl, mf_iterations=1, paper_iterations=1, traces=2, curve_traces=1,
                           overrides=TINY)
    result = compare(replay_oracle(cells), truth, BASE, config, tmp_path, progress=False)
    policies = set(result.summary["policy"])
    assert {"mbrl", "surrogate-greedy", "model-free", "paper", "greedy-oracle", "neurosurgeon"} <= policies
    bars = result.bars()
    assert bars["mbrl_evaluations"] <= 6 and math.isfinite(bars["surrogate_greedy_reward"])
    assert bars["surrogate_greedy_reward"] <= bars["oracle_reward"] + 1e-9
    assert math.isfinite(result.surrogate_greedy_curve)
    written = json.loads((tmp_path / "bars.json").read_text())
    assert written["bars"]["surrogate_greedy_heldout_reward"] == result.surrogate_greedy_curve
    assert (tmp_path / "reward_vs_real_evaluations.png").stat().st_size > 0
