"""The fine SNR grid of the continuous-channel benchmark: measured cells kept, the geometric rule between them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rllib_env.registry import describe
from rllib_env.sources import TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.dataset import add_targets
from surrogate.fine_grid import interpolate_excess, leave_one_out, refine_snr
from surrogate.synthetic import MODEL_NAME, synthetic_cells


def test_geometric_where_both_knots_are_positive_linear_otherwise():
    values = interpolate_excess(0.0, np.array([1.0, 0.0, -0.2]), 10.0, np.array([0.01, 0.4, 0.2]), 5.0)
    np.testing.assert_allclose(values, [0.1, 0.2, 0.0])
    # an excess ∝ 10^(−SNR/10) is interpolated exactly
    exact = interpolate_excess(0.0, np.array([2.0]), 10.0, np.array([0.2]), 3.0)
    assert exact[0] == pytest.approx(2.0 * 10 ** (-0.3))
    with pytest.raises(ValueError, match="in between"):
        interpolate_excess(0.0, np.ones(1), 10.0, np.ones(1), 11.0)


def test_refined_grid_keeps_measured_cells_and_fills_every_step():
    cells = synthetic_cells(seed=0)
    fine = refine_snr(cells, step_db=0.5)
    awgn = fine[fine["channel"] == "awgn"]
    assert sorted(awgn["snr_db"].unique()) == [i * 0.5 for i in range(51)]  # 0 … 25 dB
    assert (awgn.groupby("k").size() == 51).all()
    measured = fine[~fine["interpolated"]].drop(columns="interpolated").reset_index(drop=True)
    expected = add_targets(cells).sort_values(["channel", "k", "snr_db"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(measured[expected.columns], expected, check_dtype=False)
    dropout = fine[fine["channel"] == "dropout"]
    assert len(dropout) == (cells["channel"] == "dropout").sum() and not dropout["interpolated"].any()
    inner = awgn[awgn["interpolated"]]
    np.testing.assert_allclose(inner["perplexity"], inner["clean_perplexity"] * np.exp(inner["log_ppl_ratio"]))
    assert inner["top1_agreement"].between(cells["top1_agreement"].min(), cells["top1_agreement"].max()).all()


def test_interpolated_values_lie_between_their_knots():
    fine = refine_snr(synthetic_cells(seed=0), step_db=1.0)
    for _, part in fine[fine["channel"] == "awgn"].groupby("k"):
        measured = part[~part["interpolated"]].set_index("snr_db")["kl_nats"]
        for _, row in part[part["interpolated"]].iterrows():
            lo, hi = measured[measured.index < row["snr_db"]].iloc[-1], measured[measured.index > row["snr_db"]].iloc[0]
            assert min(lo, hi) - 1e-12 <= row["kl_nats"] <= max(lo, hi) + 1e-12


def test_a_table_source_on_the_fine_grid_scores_a_half_db_environment():
    fine = refine_snr(synthetic_cells(seed=0), step_db=0.5)
    grid = tuple(i * 0.5 for i in range(51))
    env = SplitEnv({"model": MODEL_NAME, "snr_grid_db": grid, "episode_steps": 8},
                   source=TableRewardSource(fine, describe(MODEL_NAME)))
    env.reset(seed=0)
    seen = set()
    for _ in range(8):
        seen.add(env.reward_snr_db())
        assert env.reward_snr_db() in grid
        env.step(3)
    assert len(seen) > 1


def test_unpooled_tables_and_bad_steps_are_rejected():
    cells = synthetic_cells(seed=0)
    with pytest.raises(ValueError, match="pool the seeds"):
        refine_snr(pd.concat([cells, cells]))
    with pytest.raises(ValueError, match="step_db"):
        refine_snr(cells, step_db=0.0)


def test_leave_one_out_predicts_each_interior_snr_from_its_neighbours():
    errors = leave_one_out(synthetic_cells(seed=0))
    assert set(errors["snr_db"]) == {5.0, 10.0, 15.0, 20.0}
    assert np.allclose(errors["error"], errors["predicted"] - errors["measured"])


def test_the_linear_rule_is_the_alternative_and_unknown_rules_are_refused():
    assert interpolate_excess(0.0, np.array([1.0]), 10.0, np.array([0.01]), 5.0, rule="linear")[0] == \
        pytest.approx(0.505)
    with pytest.raises(ValueError, match="unknown interpolation rule"):
        interpolate_excess(0.0, np.ones(1), 10.0, np.ones(1), 5.0, rule="cubic")
    cells = synthetic_cells(seed=0)
    assert not np.allclose(leave_one_out(cells, "linear")["predicted"], leave_one_out(cells)["predicted"])
