"""Rate-distortion bounds, magnitude-pruning closed forms (Monte Carlo), distribution fits, c of output <= c·param."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from edgesplit.pruning import bounds as B
from tests.conftest import make_tiny

RATIOS = (0.05, 0.3, 0.5, 0.7, 0.9)


@pytest.mark.parametrize("ratio", RATIOS)
def test_laplacian_closed_form_matches_monte_carlo(ratio):
    w = np.random.default_rng(0).laplace(0.0, 0.7, 400_000)
    measured = B.magnitude_curve(w, ratio) * np.mean(w ** 2)
    assert measured == pytest.approx(B.magnitude_distortion_laplacian(ratio, 0.7), rel=0.02)


@pytest.mark.parametrize("ratio", RATIOS)
def test_gaussian_closed_form_matches_monte_carlo(ratio):
    w = np.random.default_rng(1).normal(0.0, 1.3, 400_000)
    measured = B.magnitude_curve(w, ratio) * np.mean(w ** 2)
    assert measured == pytest.approx(B.magnitude_distortion_gaussian(ratio, 1.3), rel=0.02)


def test_closed_forms_at_the_ends():
    assert B.magnitude_distortion_laplacian(0.0, 2.0) == pytest.approx(0.0, abs=1e-12)
    assert B.magnitude_distortion_gaussian(0.0, 2.0) == pytest.approx(0.0, abs=1e-12)
    # everything pruned: the whole variance (2b², σ²)
    assert B.magnitude_distortion_laplacian(1 - 1e-12, 2.0) == pytest.approx(8.0, rel=1e-6)
    assert B.magnitude_distortion_gaussian(1 - 1e-12, 2.0) == pytest.approx(4.0, rel=1e-6)


def test_magnitude_curve_by_hand():
    w = np.array([[3.0, -1.0], [0.5, -2.0]])  # squares 9, 1, 0.25, 4; total 14.25
    assert B.magnitude_curve(w, [0.0, 0.25, 0.5, 0.75]).tolist() == pytest.approx(
        [0.0, 0.25 / 14.25, 1.25 / 14.25, 5.25 / 14.25])


def test_laplacian_entropy_and_shannon_lower_bound_constant():
    b = 0.4
    h_nats, _ = integrate.quad(lambda x: -(np.exp(-abs(x) / b) / (2 * b)) * (-abs(x) / b - math.log(2 * b)),
                               -60 * b, 60 * b, points=[0.0], limit=200)
    assert B.laplacian_entropy_bits(b) == pytest.approx(h_nats / math.log(2), rel=1e-9)
    for rate in (0.0, 1.0, 3.5):
        slb = B.shannon_lower_bound(rate, B.laplacian_entropy_bits(b))
        assert slb == pytest.approx(2 * math.e / math.pi * b * b * 2 ** (-2 * rate), rel=1e-12)
        assert B.laplacian_slb(rate, b) == pytest.approx(slb, rel=1e-12)
        # e/π of the Gaussian bound of equal variance 2b² (Gaussian maximises entropy)
        assert slb / B.gaussian_rd(rate, 2 * b * b) == pytest.approx(math.e / math.pi)
    # the Gaussian's SLB is its RD function
    h_gauss = 0.5 * math.log2(2 * math.pi * math.e * 1.7)
    assert B.shannon_lower_bound(2.0, h_gauss) == pytest.approx(B.gaussian_rd(2.0, 1.7))


@pytest.mark.parametrize("slope", [0.5, 2.0, 6.0])
def test_blahut_arimoto_sits_between_the_laplacian_slb_and_the_gaussian_bound(slope):
    x = np.linspace(-14, 14, 561)  # Laplace(0, 1): variance 2
    rate, dist = B.blahut_arimoto(x, np.exp(-np.abs(x)), slope, iters=400)
    assert B.laplacian_slb(rate, 1.0) * (1 - 5e-3) <= dist <= B.gaussian_rd(rate, 2.0)


def test_blahut_arimoto_recovers_the_gaussian_rd_function():
    x = np.linspace(-8, 8, 401)
    rate, dist = B.blahut_arimoto(x, np.exp(-x ** 2 / 2), 2.0, iters=400)
    assert rate == pytest.approx(1.0, abs=0.01) and dist == pytest.approx(B.gaussian_rd(rate, 1.0), rel=0.01)


def test_rate_mapping_and_its_inverse():
    assert B.rate_from_ratio(0.0, 16) == 16.0
    assert B.rate_from_ratio(0.5, 16) == pytest.approx(9.0)  # 8 bits of values + 1 bit of mask
    assert B.rate_from_ratio(0.5, 16, mapping="values") == pytest.approx(8.0)
    assert B.binary_entropy_bits([0.0, 1.0]).tolist() == [0.0, 0.0]
    assert float(B.effective_rate(B.gaussian_rd(3.0, 1.0))) == pytest.approx(3.0)
    assert float(B.effective_rate(B.laplacian_slb(2.0, 1.0) / 2.0, math.e / math.pi)) == pytest.approx(2.0)
    assert float(B.effective_rate(2.0)) == 0.0
    with pytest.raises(ValueError, match="mapping"):
        B.rate_from_ratio(0.5, mapping="bits")
    with pytest.raises(ValueError, match="ratio"):
        B.rate_from_ratio(1.0)
    with pytest.raises(ValueError, match="b must"):
        B.magnitude_distortion_laplacian(0.5, -1.0)


def test_fits_tell_laplacian_from_gaussian():
    rng = np.random.default_rng(2)
    lap = B.fit_distribution(rng.laplace(0, 0.02, 50_000))
    gau = B.fit_distribution(rng.normal(0, 0.02, 50_000))
    assert lap.better == "laplace" and gau.better == "gaussian"
    assert lap.ks_laplace < lap.ks_gauss and gau.ks_gauss < gau.ks_laplace
    assert lap.gennorm_beta == pytest.approx(1.0, abs=0.05) and gau.gennorm_beta == pytest.approx(2.0, abs=0.1)
    assert lap.laplace_b == pytest.approx(0.02, rel=0.02) and gau.std == pytest.approx(0.02, rel=0.02)
    assert lap.ll_gennorm >= max(lap.ll_laplace, lap.ll_gauss) - 1e-4
    sub = B.fit_distribution(rng.normal(size=5000), max_samples=1000)
    assert sub.fitted == 1000 and sub.numel == 5000
    with pytest.raises(ValueError, match="constant"):
        B.fit_distribution(np.ones(100))


def test_fit_model_weights_has_a_row_per_projection():
    table = B.fit_model_weights(make_tiny("llama"), layers=[0, 2], max_samples=2000)
    assert len(table) == 14 and set(table["layer"]) == {0, 2}
    assert {"module", "better", "gennorm_beta", "ks_laplace"} <= set(table.columns)


def test_bound_constant_and_tightness_by_hand():
    table = pd.DataFrame({"out": [1.0, 10.0, 0.5, 0.0, 3.0, np.nan], "param": [1.0, 1.0, 5.0, 0.0, 0.0, 1.0]})
    fit = B.fit_bound_constant(table, "out", "param")
    assert fit.c == 10.0 and fit.rows == 3 and fit.violations == 1  # row 4: output without parameter change
    assert fit.tightness.to_dict() == pytest.approx({0: 0.1, 1: 1.0, 2: 0.01})
    assert fit.slack_decades_max == pytest.approx(2.0) and fit.slack_decades_median == pytest.approx(1.0)
    assert "tightness" not in fit.summary()
    with pytest.raises(ValueError, match="column"):
        B.fit_bound_constant(table, "kl", "param")
    with pytest.raises(ValueError, match="nothing to fit"):
        B.fit_bound_constant(table.iloc[3:5], "out", "param")
