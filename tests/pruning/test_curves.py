"""Quality curves fitted from a pruning-sweep table, and the bound-based objective (synthetic tables only)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from edgesplit.pruning.curves import (
    BoundObjective,
    QualityCurves,
    gaussian_prune_distortion,
    isotonic,
    rate_distortion_bound,
)

L = 12
PPL0 = 30.0
KS = (0, 3, 6, 9, 12)
RATIOS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)


def synthetic_table(a: float = 0.1, side: str = "device", method: str = "structured", noise: float = 0.0,
                    seed: int = 0) -> pd.DataFrame:
    """ppl = ppl0 · exp(a · pruned_layers · rho²), optionally with multiplicative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in KS:
        pruned = {"device": k, "server": L - k, "both": L}[side]
        for r in RATIOS:
            ppl = PPL0 * math.exp(a * pruned * r * r + noise * rng.standard_normal())
            rows.append({"method": method, "pattern": None, "side": side, "k": k, "ratio": r, "ppl": ppl,
                         "ppl_dense": PPL0, "achieved_ratio": r, "param_dist_rel": r})
    return pd.DataFrame(rows)


def test_isotonic_pools_violators_with_weights():
    fitted = isotonic(np.array([0.0, 2.0, 1.0, 3.0]), np.array([1.0, 1.0, 3.0, 1.0]))
    assert np.allclose(fitted, [0.0, 1.25, 1.25, 3.0])
    assert np.all(np.diff(isotonic(np.array([3.0, 2.0, 1.0]), np.ones(3))) >= 0)


def test_curve_reproduces_measured_points_and_interpolates_across_k():
    objective = QualityCurves.fit(synthetic_table(), L).objective("structured", "device")
    for k in KS[1:]:
        for r in RATIOS:
            assert objective.loss(k, r) == pytest.approx(0.1 * k * r * r, abs=1e-12)
    # halfway between k=3 and k=6 the prediction is the mean of the two measured curves
    assert objective.loss(4, 0.5) == pytest.approx((2 * 0.1 * 3 * 0.25 + 0.1 * 6 * 0.25) / 3)
    assert objective.loss(0, 0.9) == 0.0  # nothing is pruned on the device at k = 0
    assert objective.ppl(6, 0.5) == pytest.approx(PPL0 * math.exp(0.15))
    assert objective.rho_limit(5) == pytest.approx(0.9)


def test_between_positive_knots_the_curve_is_geometric_and_under_the_chord():
    """y = 0.1·k·rho²: between knots 0.3 and 0.5 the prediction is y_a·(y_b/y_a)^t, below the straight chord and
    within 7 % of the truth here; from the 0 knot (ratio 0) to the first positive one it is linear."""
    objective = QualityCurves.fit(synthetic_table(), L).objective("structured", "device")
    ya, yb = 0.1 * 6 * 0.09, 0.1 * 6 * 0.25
    for t in (0.25, 0.5, 0.75):
        rho = 0.3 + 0.2 * t
        predicted, chord, truth = objective.loss(6, rho), ya + (yb - ya) * t, 0.1 * 6 * rho * rho
        assert predicted == pytest.approx(ya * (yb / ya) ** t, rel=1e-12)
        assert predicted < chord and abs(predicted / truth - 1) < 0.07
    assert objective.loss(6, 0.05) == pytest.approx(0.5 * 0.1 * 6 * 0.01)  # linear from the dense knot
    assert objective.loss(6, np.array([0.4]))[0] == pytest.approx(objective.loss(6, 0.4))


def test_curve_is_monotone_in_rho_even_for_noisy_tables():
    table = synthetic_table(noise=0.05, seed=3)
    objective = QualityCurves.fit(table, L).objective("structured", "device")
    grid = np.linspace(0, 0.9, 181)
    for k in range(L + 1):
        values = objective.loss(k, grid)
        assert np.all(np.diff(values) >= -1e-15) and values[0] == 0.0 and np.all(values >= 0)


def test_negative_losses_are_clipped_and_patterned_rows_ignored():
    table = synthetic_table()
    table.loc[(table.k == 6) & (table.ratio == 0.1), "ppl"] = PPL0 * 0.9  # "better than dense": noise
    nm = table.iloc[[0]].assign(pattern="2:4", ratio=0.5, ppl=1e6, k=6)
    objective = QualityCurves.fit(pd.concat([table, nm]), L).objective("structured", "device")
    assert objective.loss(6, 0.1) == 0.0
    assert objective.loss(6, 0.5) == pytest.approx(0.1 * 6 * 0.25)


def test_extrapolation_beyond_measured_splits_is_flagged():
    table = synthetic_table()
    objective = QualityCurves.fit(table[table.k <= 9], L).objective("structured", "device")
    assert objective.extrapolated(11) and not objective.extrapolated(7)
    assert objective.loss(11, 0.5) == pytest.approx(objective.loss(9, 0.5) * 11 / 9)
    assert objective.measured_splits == (3, 6, 9)


def test_server_side_anchor_is_at_the_last_layer_and_both_ignores_k():
    table = synthetic_table(side="server")
    server = QualityCurves.fit(table[table.k >= 3], L).objective("structured", "server")
    assert server.extrapolated(1) and server.loss(1, 0.5) == pytest.approx(server.loss(3, 0.5) * 11 / 9)
    assert server.loss(L, 0.9) == 0.0
    assert server.loss(3, 0.5) == pytest.approx(0.1 * 9 * 0.25)
    both = QualityCurves.fit(synthetic_table(side="both"), L).objective("structured", "both")
    assert both.loss(0, 0.5) == both.loss(L, 0.5) == pytest.approx(0.1 * L * 0.25)


def test_bad_tables_say_what_is_wrong():
    with pytest.raises(ValueError, match="lacks column"):
        QualityCurves.fit(synthetic_table().drop(columns=["ppl_dense"]), L)
    curves = QualityCurves.fit(synthetic_table(), L, source="t.parquet")
    with pytest.raises(ValueError, match=r"no rows for wanda/device; it has structured/device"):
        curves.objective("wanda", "device")
    with pytest.raises(ValueError, match="unknown method/side"):
        QualityCurves.fit(synthetic_table(method="lottery"), L)


def test_gaussian_magnitude_distortion_matches_monte_carlo():
    w = np.sort(np.square(np.random.default_rng(0).standard_normal(200_000)))
    for rho in (0.1, 0.5, 0.9):
        empirical = w[: int(rho * w.size)].sum() / w.sum()
        assert gaussian_prune_distortion(rho) == pytest.approx(empirical, abs=3e-3)
    assert gaussian_prune_distortion(0.0) == 0.0


def test_rate_distortion_bound_matches_the_bounds_module_and_is_monotone():
    grid = np.linspace(0, 0.95, 96)
    values = rate_distortion_bound(grid)
    assert np.all(np.diff(values) > 0)
    try:
        from edgesplit.pruning import bounds
    except ImportError:
        return
    expected = bounds.gaussian_rd(bounds.rate_from_ratio(grid, 16.0, "memory"))
    assert np.allclose(values, expected, rtol=1e-12)


def test_bound_objective_weights_the_pruned_share():
    from transformers import LlamaConfig

    from edgesplit.cost import ModelProfile

    profile = ModelProfile.from_config(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=128))
    bound = BoundObjective.from_profile(profile, "device", form="magnitude-gaussian")
    assert bound.loss(0, 0.5) == 0.0
    assert bound.loss(2, 0.5) == pytest.approx(0.5 * gaussian_prune_distortion(0.5))
    assert bound.loss(4, 0.5) > bound.loss(2, 0.5) > bound.loss(2, 0.3)
    with pytest.raises(ValueError, match="form must be one of"):
        BoundObjective.from_profile(profile, "device", form="vibes")
