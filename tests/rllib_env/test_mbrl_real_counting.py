"""The model-based loop spends exactly the real evaluations it reports, never more than its budget."""

from __future__ import annotations

import pytest

from rllib_env.mbrl import MbrlConfig, budget_ratio, candidate_cells, initial_design, run_mbrl
from rllib_env.registry import describe
from rllib_env.sources import RealRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.evaluator import TableOracle
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 16}
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1},
        "env_runners": {"num_envs_per_env_runner": 2}}
SMALL_SURROGATE = {"hidden_size": 16, "ensemble_size": 2, "epochs": 100}


def test_candidates_and_design_are_lossy_allowed_grid_cells():
    env = SplitEnv(BASE, source=TableRewardSource(synthetic_cells(), describe(MODEL_NAME)))
    cells = candidate_cells(env)
    assert len(cells) == 6 * (NUM_LAYERS - 1)  # k = 1..L-1 (k = L is lossless) × 6 SNRs
    design = initial_design(env, 6, seed=0)
    assert len(set(design)) == 6 and set(design) <= set(cells)
    assert design == initial_design(env, 6, seed=0)
    assert len({s.snr_db for _, s in design}) >= 3  # space-filling spreads over the grid


def test_mbrl_loop_counts_real_evaluations_exactly(ray_session, tmp_path):
    cells = synthetic_cells(seed=0)
    oracle = TableOracle(cells)  # a counted replay of measured real evaluations
    real = RealRewardSource(oracle, describe(MODEL_NAME))
    config = MbrlConfig(budget=11, initial=6, per_round=3, iterations_first=1, iterations_per_round=1,
                        final_iterations=0, rollout_traces=1, max_rounds=4, surrogate_config=SMALL_SURROGATE)
    outcome = run_mbrl(real, BASE, config, tmp_path, overrides=TINY, progress=False)
    spent = real.stats.llm_evaluations
    assert 6 < spent <= 11
    assert spent == len(outcome.evaluations) == oracle.stats.evaluations  # three counters, one number
    assert list(outcome.evaluations["evaluation"]) == list(range(1, spent + 1))
    keys = outcome.evaluations[["k", "snr_db"]].apply(tuple, axis=1)
    assert keys.is_unique  # a cell is never paid for twice
    assert (outcome.evaluations["tag"] == "design").sum() == 6
    assert outcome.rounds["real_evaluations"].is_monotonic_increasing
    assert outcome.rounds["real_evaluations"].iloc[-1] == spent
    assert real.stats.queries > spent  # rollouts re-query cached cells for free
    assert outcome.surrogate.trained_on == spent
    for name in ("evaluations.parquet", "surrogate/surrogate.json", "policy/curve.parquet"):
        assert (tmp_path / name).is_file()


def test_budget_ratio_reads_the_model_free_curve():
    import pandas as pd

    curve = pd.DataFrame({"real_evaluations": [10, 40, 100, 200], "heldout_reward": [0.1, 0.2, 0.3, 0.35]})
    assert budget_ratio(20, curve, 0.3)["ratio"] == pytest.approx(0.2)
    never = budget_ratio(20, curve, 0.5)
    assert never["model_free_needed"] != never["model_free_needed"] and never["ratio_upper_bound"] == 0.1


@pytest.mark.parametrize("explore", ["thompson", "ucb"])
def test_exploration_scores_only_open_cells_and_spends_its_limit(explore):
    from edgesplit.scenario import ChannelSetting
    from rllib_env.device_state import DeviceState
    from rllib_env.mbrl import MbrlLoop

    real = RealRewardSource(TableOracle(synthetic_cells(seed=0)), describe(MODEL_NAME))
    loop = MbrlLoop(real, BASE, MbrlConfig(budget=12, initial=6, surrogate_config=SMALL_SURROGATE, explore=explore,
                                           ucb_beta=3.0))
    try:
        loop.design()
        device = DeviceState(2e9, 0.0)
        visited = [(device, ChannelSetting(kind="awgn", snr_db=snr)) for snr in (15.0, 20.0, 20.0, 25.0)]
        score = loop.best_probability if explore == "thompson" else loop.optimistic_gains
        scores = [(s, k, g) for s in {s for _, s in visited} for k, g in score(s, device)]
        assert scores and all(real.would_evaluate(k, s) and 1 <= k < NUM_LAYERS for s, k, _ in scores)
        if explore == "thompson":
            for setting in {s for s, _, _ in scores}:
                assert sum(g for s, _, g in scores if s == setting) <= 1.0 + 1e-9
        else:
            assert all(g > 0 for _, _, g in scores)
        loop.explore(visited, 2, "explore")
        assert real.stats.llm_evaluations == 8 and set(real.log_frame()["tag"]) == {"design", "explore"}
    finally:
        loop.close()
