"""Statistics and determinism of the channel processes, and the process factory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from edgesplit.channel import (
    PROCESSES,
    ChannelState,
    GaussMarkovConfig,
    GaussMarkovProcess,
    PathLossConfig,
    jakes_rho,
    make_config,
    make_process,
    packet_error_rate,
)


def _gains(kind: str, n: int, seed: int = 0, **params) -> np.ndarray:
    return np.array([s.fading_gain for s in make_process(kind, seed=seed, **params).sample(n)])


def _lag1(x: np.ndarray) -> float:
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


def test_rayleigh_gain_is_exponential_with_mean_one() -> None:
    g = _gains("rayleigh", 4000)
    assert g.mean() == pytest.approx(1.0, abs=0.06)
    assert stats.kstest(g, stats.expon().cdf).pvalue > 1e-3
    # The same test rejects a wrong law, so it has power.
    assert stats.kstest(g, stats.gamma(2.0, scale=0.5).cdf).pvalue < 1e-6


@pytest.mark.parametrize("m", [0.5, 2.0, 5.0])
def test_nakagami_gain_is_gamma_m_over_m(m: float) -> None:
    g = _gains("nakagami", 4000, m=m)
    assert g.mean() == pytest.approx(1.0, abs=0.06)
    assert stats.kstest(g, stats.gamma(m, scale=1.0 / m).cdf).pvalue > 1e-3
    assert stats.kstest(g, stats.expon().cdf).pvalue < 1e-6


def test_state_snr_is_mean_plus_fading() -> None:
    for s in make_process("rayleigh", seed=3, mean_snr_db=7.0).sample(20):
        assert s.mean_snr_db == 7.0
        assert s.snr_db == pytest.approx(7.0 + 10 * math.log10(s.fading_gain))


def test_link_budget_matches_hand_calculation() -> None:
    cfg = PathLossConfig()
    fspl_1m = 20 * math.log10(4 * math.pi * 1.0 * 3.5e9 / 299_792_458.0)
    expected = 23.0 - (fspl_1m + 35.0 * math.log10(100.0)) - (-174.0 + 10 * math.log10(10e6) + 7.0)
    assert cfg.mean_snr_db(100.0) == pytest.approx(expected, abs=1e-9)
    assert PathLossConfig(reference_loss_db=40.0).mean_snr_db(1.0) == pytest.approx(23 - 40 + 97, abs=1e-9)


def test_path_loss_slope_and_shadowing_std() -> None:
    exponent, sigma = 3.2, 6.0
    distances = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    means = []
    for d in distances:
        proc = make_process("path_loss", seed=int(d), distance_m=d, path_loss_exponent=exponent,
                            shadowing_sigma_db=sigma, fading="none")
        snr = np.array([s.mean_snr_db for s in proc.sample(2000)])
        means.append(snr.mean())
        assert snr.std(ddof=1) == pytest.approx(sigma, abs=0.4)
    slope = np.polyfit(10 * np.log10(distances), means, 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.05)


def test_path_loss_fading_options() -> None:
    g = _gains("path_loss", 3000, fading="nakagami", nakagami_m=3.0)
    assert stats.kstest(g, stats.gamma(3.0, scale=1 / 3.0).cdf).pvalue > 1e-3
    assert np.all(_gains("path_loss", 10, fading="none") == 1.0)


def test_gauss_markov_shadowing_and_distance_are_ar1() -> None:
    cfg = GaussMarkovConfig(shadowing_sigma_db=5.0, shadowing_rho=0.8, distance_sigma_m=10.0, distance_rho=0.9,
                            fading="none")
    proc = GaussMarkovProcess(cfg, seed=11)
    shadowing, distance = [], []
    for _ in range(6000):
        proc.step()
        shadowing.append(proc.shadowing_db)
        distance.append(proc.distance_m)
    shadowing, distance = np.array(shadowing), np.array(distance)
    assert _lag1(shadowing) == pytest.approx(0.8, abs=0.03)
    assert shadowing.std() == pytest.approx(5.0, abs=0.4)
    assert _lag1(distance) == pytest.approx(0.9, abs=0.03)
    assert distance.mean() == pytest.approx(100.0, abs=1.5)


def test_gauss_markov_mean_snr_tracks_shadowing() -> None:
    cfg = GaussMarkovConfig(shadowing_sigma_db=4.0, shadowing_rho=0.7, fading="none")
    snr = np.array([s.mean_snr_db for s in GaussMarkovProcess(cfg, seed=2).sample(5000)])
    assert _lag1(snr) == pytest.approx(0.7, abs=0.03)
    assert snr.mean() == pytest.approx(cfg.mean_snr_db(100.0), abs=0.3)


def test_gauss_markov_fading_correlated_but_exponential() -> None:
    rho = 0.7
    g = _gains("gauss_markov", 20000, seed=4, fading_rho=rho, shadowing_sigma_db=0.0)
    assert _lag1(g) == pytest.approx(rho**2, abs=0.03)  # corr(|h_t|², |h_t-1|²) = |rho|² for complex Gaussian h
    assert g.mean() == pytest.approx(1.0, abs=0.05)
    thinned = g[::20]  # lag-20 correlation rho^40 ≈ 0, so KS sees independent draws
    assert stats.kstest(thinned, stats.expon().cdf).pvalue > 1e-3
    assert _lag1(_gains("rayleigh", 20000, seed=4)) == pytest.approx(0.0, abs=0.03)


def test_jakes_rho() -> None:
    assert jakes_rho(0.0, 3.5e9, 1e-3) == 1.0
    # 30 m/s at 3.5 GHz: f_D ≈ 350 Hz; over 1 ms, J0(2.2) ≈ 0.11.
    assert jakes_rho(30.0, 3.5e9, 1e-3) == pytest.approx(0.1105, abs=2e-3)


def test_loss_rate_fixed_or_derived_from_snr() -> None:
    assert {s.loss_rate for s in make_process("rayleigh", seed=0, loss_rate=0.05).sample(10)} == {0.05}
    proc = make_process("rayleigh", seed=0, mean_snr_db=8.0, loss_modulation="qpsk", loss_packet_bits=2000)
    for s in proc.sample(50):
        assert s.loss_rate == pytest.approx(min(packet_error_rate("qpsk", s.snr_db, 2000), 0.999))
    assert len({round(s.loss_rate, 6) for s in proc.sample(50)}) > 10


def _kinds_with_params(tmp_path) -> dict[str, dict]:
    trace = tmp_path / "trace.csv"
    trace.write_text("snr_db\n" + "\n".join(str(v) for v in np.linspace(0, 20, 50)) + "\n")
    return {
        "static": {"mean_snr_db": 5.0},
        "path_loss": {},
        "rayleigh": {},
        "nakagami": {"m": 1.5},
        "gauss_markov": {"distance_sigma_m": 5.0},
        "trace": {"path": str(trace), "random_start": True},
    }


def test_every_kind_is_tested() -> None:
    assert set(PROCESSES) == {"static", "path_loss", "rayleigh", "nakagami", "gauss_markov", "trace"}


@pytest.mark.parametrize("kind", sorted(PROCESSES))
def test_seeded_determinism(kind: str, tmp_path) -> None:
    params = _kinds_with_params(tmp_path)[kind]
    a = make_process(kind, seed=42, **params).sample(30)
    b = make_process(kind, seed=42, **params).sample(30)
    assert a == b and all(isinstance(s, ChannelState) for s in a)
    proc = make_process(kind, seed=42, **params)
    proc.sample(7)
    proc.reset(42)
    assert proc.sample(30) == a
    if kind != "static":
        assert make_process(kind, seed=43, **params).sample(30) != a


def test_factory_errors_name_valid_values() -> None:
    with pytest.raises(ValueError, match=r"unknown channel process kind 'rician'.*gauss_markov.*rayleigh"):
        make_process("rician")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['snr'\].*mean_snr_db"):
        make_process("rayleigh", snr=3.0)
    with pytest.raises(ValueError, match=r"unknown fading 'rician'.*nakagami"):
        make_config("path_loss", fading="rician")
    with pytest.raises(ValueError, match="nakagami_m"):
        make_config("path_loss", fading="nakagami", nakagami_m=0.2)
    with pytest.raises(ValueError, match="loss_rate"):
        make_config("static", loss_rate=1.0)
    with pytest.raises(ValueError, match=r"loss_modulation.*qpsk"):
        make_config("static", loss_modulation="8psk")
    with pytest.raises(ValueError, match="distance_m"):
        make_config("path_loss", distance_m=0.5)
    with pytest.raises(ValueError, match="fading_rho"):
        make_config("gauss_markov", fading_rho=1.5)
    with pytest.raises(ValueError, match="n must be"):
        make_process("static").sample(-1)
