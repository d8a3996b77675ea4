"""Continuous-channel mode: every block scored at its own SNR rounded to 0.5 dB, each distinct (split, SNR) a new
counted real evaluation for a learner without a model."""

from __future__ import annotations

from rllib_env.baselines import FixedSplit
from rllib_env.evaluate import heldout_seeds, rollout
from rllib_env.registry import describe, replay_oracle
from rllib_env.sources import RealRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.fine_grid import refine_snr
from surrogate.synthetic import MODEL_NAME, synthetic_cells

GRID = tuple(i * 0.5 for i in range(51))  # 0 … 25 dB, the synthetic grid's range
CONTINUOUS = {"model": MODEL_NAME, "snr_grid_db": GRID, "episode_steps": 24}


def fine_cells():
    cells = synthetic_cells(seed=0)
    return refine_snr(cells[cells["channel"] == "awgn"], step_db=0.5)


def test_each_distinct_half_db_snr_is_one_real_evaluation():
    fine = fine_cells()
    real = RealRewardSource(replay_oracle(fine), describe(MODEL_NAME))
    steps = rollout(FixedSplit(3), SplitEnv(CONTINUOUS, source=real), heldout_seeds(3), with_oracle=False)
    distinct = steps["reward_snr_db"].nunique()
    assert distinct > 10  # the blocks really land on many fine-grid SNRs
    assert real.stats.llm_evaluations == distinct == real.oracle.stats.evaluations
    assert real.stats.queries == len(steps)
    # the same blocks again: nothing new to measure
    rollout(FixedSplit(3), SplitEnv(CONTINUOUS, source=real), heldout_seeds(3), with_oracle=False)
    assert real.stats.llm_evaluations == distinct
    # another split on the same blocks: every SNR is new again; a lossless split never costs one
    rollout(FixedSplit(5), SplitEnv(CONTINUOUS, source=real), heldout_seeds(3), with_oracle=False)
    rollout(FixedSplit(0), SplitEnv(CONTINUOUS, source=real), heldout_seeds(3), with_oracle=False)
    assert real.stats.llm_evaluations == 2 * distinct


def test_the_snapped_grid_sees_far_fewer_cells_on_the_same_traces():
    cells = synthetic_cells(seed=0)
    cells = cells[cells["channel"] == "awgn"]
    coarse = RealRewardSource(replay_oracle(cells), describe(MODEL_NAME))
    fine = RealRewardSource(replay_oracle(fine_cells()), describe(MODEL_NAME))
    snapped = {**CONTINUOUS, "snr_grid_db": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)}
    rollout(FixedSplit(3), SplitEnv(snapped, source=coarse), heldout_seeds(3), with_oracle=False)
    rollout(FixedSplit(3), SplitEnv(CONTINUOUS, source=fine), heldout_seeds(3), with_oracle=False)
    assert coarse.stats.llm_evaluations <= 6 < fine.stats.llm_evaluations


def test_measured_cells_score_as_in_the_measured_table():
    cells = synthetic_cells(seed=0)
    measured = TableRewardSource(cells, describe(MODEL_NAME))
    fine = TableRewardSource(fine_cells(), describe(MODEL_NAME))
    env, checked = SplitEnv(CONTINUOUS, source=fine), 0
    for seed in heldout_seeds(6):
        env.reset(seed=seed)
        for _ in range(24):
            if env.reward_snr_db() % 5 == 0:
                assert (fine.quality([3], [env.setting()]) == measured.quality([3], [env.setting()])).all()
                checked += 1
            env.step(3)
    assert checked >= 3
