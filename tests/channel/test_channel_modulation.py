"""Closed-form BER against known values, numerical integration and symbol-level Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from edgesplit.channel.modulation import (
    MODULATIONS,
    ber_awgn,
    ber_fading_avg,
    ber_rayleigh_avg,
    ber_terms,
    demodulate,
    modulate,
    packet_error_rate,
    transmit_bits,
)


def _all_bit_patterns(k: int) -> torch.Tensor:
    values = torch.arange(2**k)
    return ((values.unsqueeze(-1) >> torch.arange(k - 1, -1, -1)) & 1).bool()


def test_known_values() -> None:
    # BPSK at Es/N0 = 0 dB: Q(sqrt 2) = 0.0786496; QPSK at Es/N0 = 3.0103 dB has Eb/N0 = 0 dB, same BER.
    assert ber_awgn("bpsk", 0.0) == pytest.approx(0.0786496, abs=1e-6)
    assert ber_awgn("qpsk", 10 * math.log10(2)) == pytest.approx(0.0786496, abs=1e-6)
    # 16-QAM Gray at Eb/N0 = 10 dB: 0.75 Q(sqrt(8)) + higher-order terms = 1.754e-3 (textbook value).
    assert ber_awgn("16qam", 10 + 10 * math.log10(4)) == pytest.approx(1.7542e-3, rel=1e-3)
    # Rayleigh BPSK at 10 dB: (1 - sqrt(10/11)) / 2.
    assert ber_rayleigh_avg("bpsk", 10.0) == pytest.approx(0.5 * (1 - math.sqrt(10 / 11)), rel=1e-12)


@pytest.mark.parametrize("mod", ["16qam", "64qam"])
def test_exact_qam_matches_approximation_at_high_snr_and_exceeds_it_at_low(mod: str) -> None:
    exact_hi, approx_hi = ber_awgn(mod, 25.0), ber_awgn(mod, 25.0, exact=False)
    assert exact_hi == pytest.approx(approx_hi, rel=1e-3)
    leading = ber_terms(mod)[0]
    assert leading == pytest.approx(ber_terms(mod, exact=False)[0])
    assert abs(ber_awgn(mod, 0.0) - ber_awgn(mod, 0.0, exact=False)) > 1e-3


@pytest.mark.parametrize("mod", sorted(MODULATIONS))
def test_ber_monotone_and_bounded(mod: str) -> None:
    snr = np.linspace(-10, 30, 41)
    awgn, ray = ber_awgn(mod, snr), ber_rayleigh_avg(mod, snr)
    assert np.all(np.diff(awgn) <= 0) and np.all(np.diff(ray) < 0)
    assert np.all(np.diff(awgn[awgn > 1e-200]) < 0)  # strictly decreasing until float underflow
    assert np.all((awgn >= 0) & (awgn <= 0.5)) and np.all(ray >= awgn)  # fading only hurts (Jensen)


@pytest.mark.parametrize("mod", sorted(MODULATIONS))
@pytest.mark.parametrize("snr_db", [0.0, 15.0, 30.0])
def test_rayleigh_closed_form_matches_numerical_integration(mod: str, snr_db: float) -> None:
    assert ber_fading_avg(mod, snr_db, "rayleigh") == pytest.approx(ber_rayleigh_avg(mod, snr_db), rel=1e-5)


def test_nakagami_average_between_rayleigh_and_awgn() -> None:
    values = [ber_fading_avg("qpsk", 15.0, "nakagami", m) for m in (1.0, 2.0, 4.0, 50.0)]
    assert values[0] == pytest.approx(ber_rayleigh_avg("qpsk", 15.0), rel=1e-5)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] > ber_awgn("qpsk", 15.0)
    with pytest.raises(ValueError, match="rayleigh"):
        ber_fading_avg("qpsk", 15.0, "rician")


@pytest.mark.parametrize("mod", sorted(MODULATIONS))
def test_mapping_round_trip_unit_energy_and_gray(mod: str) -> None:
    k = MODULATIONS[mod]
    bits = _all_bit_patterns(k)
    symbols = modulate(bits, mod)
    assert torch.equal(demodulate(symbols, mod), bits)
    assert float(symbols.abs().pow(2).mean()) == pytest.approx(1.0, rel=1e-6)
    assert len(set(symbols.tolist())) == 2**k
    # Gray: nearest neighbours (minimum distance) differ in exactly one bit.
    dist = (symbols.unsqueeze(0) - symbols.unsqueeze(1)).abs()
    d_min = float(dist[dist > 0].min())
    i, j = torch.nonzero((dist - d_min).abs() < 1e-5, as_tuple=True)
    assert torch.all((bits[i] != bits[j]).sum(-1) == 1)


@pytest.mark.parametrize(
    ("mod", "snr_db", "rayleigh"),
    [("bpsk", 0.0, False), ("bpsk", 6.0, False), ("qpsk", 3.0, False), ("qpsk", 9.0, False),
     ("16qam", 8.0, False), ("16qam", 14.0, False), ("64qam", 14.0, False), ("64qam", 20.0, False),
     ("bpsk", 10.0, True), ("qpsk", 15.0, True), ("16qam", 20.0, True), ("64qam", 25.0, True)],
)
def test_symbol_monte_carlo_matches_closed_form(mod: str, snr_db: float, rayleigh: bool) -> None:
    k = MODULATIONS[mod]
    gen = torch.Generator().manual_seed(1234)
    bits = torch.rand(240_000, generator=gen) < 0.5
    errors = (transmit_bits(bits, mod, snr_db, gen, rayleigh=rayleigh) != bits).view(-1, k).float()
    # Bit errors within a symbol are correlated, so use the CLT with the per-symbol variance (99.9%).
    per_symbol = errors.sum(-1).double()
    half_width = 3.29 * float(per_symbol.std()) / math.sqrt(per_symbol.numel()) / k
    expected = ber_rayleigh_avg(mod, snr_db) if rayleigh else ber_awgn(mod, snr_db)
    assert abs(float(errors.mean()) - expected) < half_width, (float(errors.mean()), expected, half_width)


def test_monte_carlo_rejects_wrong_snr() -> None:
    # The check above can fail: 1 dB off is far outside the interval.
    gen = torch.Generator().manual_seed(5)
    bits = torch.rand(240_000, generator=gen) < 0.5
    measured = float((transmit_bits(bits, "qpsk", 6.0, gen) != bits).float().mean())
    n = bits.numel()
    lo, hi = stats.binom.interval(0.999, n, ber_awgn("qpsk", 7.0))
    assert not lo / n <= measured <= hi / n


def test_packet_error_rate() -> None:
    ber = ber_awgn("qpsk", 8.0)
    assert packet_error_rate("qpsk", 8.0, 1) == pytest.approx(ber)
    assert packet_error_rate("qpsk", 8.0, 1000) == pytest.approx(1 - (1 - ber) ** 1000, rel=1e-9)


def test_bad_modulation_names_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"8psk.*'16qam'.*'bpsk'"):
        ber_awgn("8psk", 3.0)
    with pytest.raises(ValueError, match="finite"):
        ber_awgn("bpsk", float("nan"))
    with pytest.raises(ValueError, match="2 bits per symbol"):
        modulate(torch.zeros(3, 4, dtype=torch.bool), "qpsk")
