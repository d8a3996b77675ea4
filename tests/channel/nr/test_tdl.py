"""Channel 'tdl' of the coded uplink: the TDL realisations, the EESM abstraction, link adaptation, seeds, errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytest.importorskip("sionna.phy", reason="the coded NR link needs the nr extra: pip install 'edgesplit[nr]'")

from edgesplit.channel import ChannelState, make_impairment  # noqa: E402
from edgesplit.channel.digital import dequantize_codes, quantize_codes  # noqa: E402
from edgesplit.channel.nr import (  # noqa: E402
    CarrierConfig,
    NrLinkConfig,
    TdlConfig,
    effective_snr,
    failure_probabilities,
    frequency_response,
    transport_block,
)
from edgesplit.channel.nr.tdl import draw_tdl_abstracted  # noqa: E402

TWO_PRB = CarrierConfig(num_prbs=2)
FLAT = TdlConfig(delay_spread_s=1e-9)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_same_generator_same_channel_and_global_rngs_untouched() -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    expected = (torch.rand(2), np.random.rand(2), random.random())
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    a = frequency_response(TWO_PRB, TdlConfig(), 5, _gen(1))
    imp = make_impairment("coded", path="abstracted", channel="tdl", carrier={"num_prbs": 2}, mcs=9)
    first = imp.apply(torch.ones(4, 32), ChannelState(mean_snr_db=6.0), 7)
    bit_true = make_impairment("coded", path="bit_true", channel="tdl", carrier={"num_prbs": 2}, mcs=9)
    bt = bit_true.apply(torch.randn(4, 32, generator=_gen(0)), ChannelState(mean_snr_db=5.0), 7)
    assert torch.equal(torch.rand(2), expected[0]) and np.array_equal(np.random.rand(2), expected[1])
    assert random.random() == expected[2]
    assert a.shape == (5, TWO_PRB.data_re) and a.dtype == torch.complex64
    assert torch.equal(a, frequency_response(TWO_PRB, TdlConfig(), 5, _gen(1)))
    assert not torch.equal(a, frequency_response(TWO_PRB, TdlConfig(), 5, _gen(2)))
    again = imp.apply(torch.ones(4, 32), ChannelState(mean_snr_db=6.0), 7)
    assert torch.equal(first.x, again.x) and first.stats == again.stats
    bt_again = bit_true.apply(torch.randn(4, 32, generator=_gen(0)), ChannelState(mean_snr_db=5.0), 7)
    assert torch.equal(bt.x, bt_again.x) and bt.stats == bt_again.stats
    other = bit_true.apply(torch.randn(4, 32, generator=_gen(0)), ChannelState(mean_snr_db=5.0), 8)
    assert other.stats["mean_tx_snr_db"] != bt.stats["mean_tx_snr_db"]


@pytest.mark.parametrize("profile", ["A", "C", "D", "E"])
def test_unit_average_power(profile: str) -> None:
    h = frequency_response(TWO_PRB, TdlConfig(profile=profile), 2000, _gen(0))
    assert h.abs().square().mean().item() == pytest.approx(1.0, abs=0.08)


def test_frequency_selective_for_tdl_c_300ns_and_flat_for_1ns() -> None:
    carrier = CarrierConfig(num_prbs=24)  # 8.6 MHz: ~13 coherence bandwidths of a 300 ns channel

    def spread(tdl: TdlConfig) -> float:  # median over slots of std/mean of |h|² across one symbol's subcarriers
        power = frequency_response(carrier, tdl, 50, _gen(0)).abs().square()[:, : 12 * 24]
        return (power.std(dim=1) / power.mean(dim=1)).median().item()

    assert spread(TdlConfig()) > 0.5  # ~Rayleigh across subcarriers (coefficient of variation ~1)
    assert spread(FLAT) < 0.05  # 1 ns: the band is << the coherence bandwidth (measured ~0.02)


def test_re_order_is_frequency_first() -> None:
    # flat in frequency, fast in time (500 km/h at 30 GHz: f_D ~ 14 kHz): REs of one symbol share one coefficient
    fast = TdlConfig(delay_spread_s=1e-9, ue_speed_kmh=500.0, carrier_frequency_hz=30e9)
    h = frequency_response(TWO_PRB, fast, 3, _gen(0)).reshape(3, TWO_PRB.pusch_symbols - 1, 24)
    within_symbol = (h - h[:, :, :1]).abs().max().item()  # measured ~0.01 (1 ns phase ramp over 720 kHz)
    across_symbols = (h[:, 1:, 0] - h[:, :-1, 0]).abs().median().item()  # measured ~1.1
    assert within_symbol < 0.05 * h.abs().mean().item() and across_symbols > 20 * within_symbol


def test_eesm_of_a_flat_channel_is_the_flat_snr_and_lies_between_min_and_mean() -> None:
    for table, mcs in [(1, 4), (1, 15), (1, 24), (2, 25)]:
        for snr_db in (-5.0, 7.0, 25.0):
            eff = effective_snr(np.full((3, 312), 10 ** (snr_db / 10)), table, mcs)
            assert 10 * np.log10(eff) == pytest.approx(np.full(3, snr_db), abs=1e-9)
    gains = frequency_response(TWO_PRB, TdlConfig(), 50, _gen(0)).abs().square().double().numpy() * 10.0
    eff = effective_snr(gains, 1, 15)
    assert np.all(eff <= gains.mean(axis=1) + 1e-9) and np.all(eff >= gains.min(axis=1) - 1e-9)


def test_expected_error_rate_monotone_deterministic_and_flat_tdl_matches_rayleigh() -> None:
    info = transport_block(TWO_PRB, 1, 9)
    snrs = np.arange(-2.0, 20.0, 2.0)
    first = np.array([failure_probabilities(info, s, 1, "tdl", carrier=TWO_PRB)[1] for s in snrs])
    assert first[0] > 0.6 and first[-1] < 0.02 and np.all(np.diff(first) <= 0.0)
    q = failure_probabilities(info, 6.0, 2, "tdl", carrier=TWO_PRB)
    assert q[0] == 1.0 and np.all(np.diff(q) <= 0.0) and q[1] == first[4]  # q_1 does not depend on N
    assert np.array_equal(q, failure_probabilities(info, 6.0, 2, "tdl", carrier=TWO_PRB, tdl=TdlConfig()))
    # a 1 ns TDL-C is flat Rayleigh: the EESM average must match the exact Rayleigh quadrature (MC: 8192 sets;
    # measured q_1, q_2 = 0.282, 0.040 vs 0.279, 0.044)
    flat = failure_probabilities(info, 8.0, 2, "tdl", carrier=TWO_PRB, tdl=FLAT)
    assert flat == pytest.approx(failure_probabilities(info, 8.0, 2, "rayleigh"), abs=0.02)
    # frequency diversity over 300 ns: TDL-C loses fewer TBs after HARQ than flat fading at the same mean SNR
    assert q[2] < failure_probabilities(info, 6.0, 2, "tdl", carrier=TWO_PRB, tdl=FLAT)[2]


def test_abstracted_draws_follow_the_expected_rate() -> None:
    info = transport_block(TWO_PRB, 1, 9)
    q = failure_probabilities(info, 7.0, 2, "tdl", carrier=TWO_PRB)
    outcome, snr_tx = draw_tdl_abstracted(info, TWO_PRB, TdlConfig(), 3000, 7.0, 2, _gen(0))
    first_failed = outcome.transmissions > 1
    assert first_failed.mean() == pytest.approx(q[1], abs=4 * np.sqrt(q[1] * (1 - q[1]) / 3000) + 0.015)
    assert np.isnan(snr_tx[~first_failed, 1]).all() and np.isfinite(snr_tx[first_failed]).all()
    assert 10 * np.log10(np.mean(10 ** (snr_tx[:, 0] / 10))) == pytest.approx(7.0, abs=0.3)  # unit mean gain


def test_bit_true_is_error_free_at_high_snr() -> None:
    x = torch.randn(3, 40, generator=_gen(0))
    imp = make_impairment("coded", bits=8, path="bit_true", channel="tdl", carrier={"num_prbs": 2}, mcs=4,
                          max_transmissions=2)
    result = imp.apply(x, ChannelState(mean_snr_db=40.0), 0)
    q, scales = quantize_codes(x, 8)
    assert torch.equal(result.x, dequantize_codes(q, scales, 8))
    assert result.stats["failed_tbs"] == 0 and result.stats["residual_code_errors"] == 0
    assert result.stats["transmissions"] == result.stats["num_tbs"]


def test_bit_true_fades_where_awgn_does_not() -> None:
    # MCS 9 at 6 dB mean SNR: AWGN decodes (waterfall ~3 dB); TDL over 2 PRB fades some TBs below it
    x = torch.randn(16, 64, generator=_gen(1))
    common = {"bits": 8, "path": "bit_true", "carrier": {"num_prbs": 2}, "mcs": 9, "max_transmissions": 1}
    state = ChannelState(mean_snr_db=6.0)
    awgn = make_impairment("coded", channel="awgn", **common).apply(x, state, 0).stats
    tdl = make_impairment("coded", channel="tdl", **common).apply(x, state, 0).stats
    assert awgn["failed_tbs"] == 0 and 0 < tdl["failed_tbs"] < tdl["num_tbs"]


def test_link_adaptation_backs_off_on_tdl() -> None:
    for snr_db in (5.0, 15.0):
        awgn = NrLinkConfig(carrier=TWO_PRB).select_mcs(snr_db)
        tdl = NrLinkConfig(carrier=TWO_PRB, channel="tdl").select_mcs(snr_db)
        assert tdl < awgn
    link = NrLinkConfig(carrier=TWO_PRB, channel="tdl")
    info = link.transport_block(15.0)
    assert link.first_tb_error_rate(info, 15.0) <= 0.1
    assert link.reported_snr_db(ChannelState(mean_snr_db=15.0, fading_gain=0.1)) == 15.0


@pytest.mark.parametrize(
    ("tdl", "match"),
    [
        ({"profile": "F"}, r"TDL profile must be one of \['A', 'B', 'C', 'D', 'E'\].*'F'"),
        ({"profile": "C300"}, r"one of \['A', 'B', 'C', 'D', 'E'\]"),
        ({"delay_spread_s": 0.0}, r"delay_spread_s must be a number in \[1e-09, 1e-06\] s, got 0\.0"),
        ({"delay_spread_s": 300.0}, r"delay_spread_s .*got 300\.0"),
        ({"delay_spread_s": "300ns"}, r"delay_spread_s .*'300ns'"),
        ({"ue_speed_kmh": -3.0}, r"ue_speed_kmh must be a number in \[0, 500\] km/h"),
        ({"ue_speed_kmh": float("nan")}, "ue_speed_kmh"),
        ({"ue_speed_kmh": True}, "ue_speed_kmh"),
        ({"carrier_frequency_hz": 3.5}, r"carrier_frequency_hz must be a number in \[5e\+08, 1e\+11\] Hz"),
        ({"speed": 3.0}, r"unknown tdl field.*'ue_speed_kmh'"),
    ],
)
def test_bad_tdl_values_raise(tdl: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_impairment("coded", channel="tdl", tdl=tdl)
    with pytest.raises(ValueError, match=match):
        NrLinkConfig(channel="tdl", tdl=tdl)


def test_tdl_needs_its_carrier() -> None:
    info = transport_block(TWO_PRB, 1, 9)
    with pytest.raises(ValueError, match="needs carrier="):
        failure_probabilities(info, 5.0, 1, "tdl")
    with pytest.raises(ValueError, match="does not belong"):
        failure_probabilities(info, 5.0, 1, "tdl", carrier=CarrierConfig(num_prbs=3))
