"""NR carrier, MCS tables, TBS and BLER curves against the standards' numbers and the abstraction's invariants."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sionna.phy", reason="the coded NR link needs the nr extra: pip install 'edgesplit[nr]'")

from edgesplit.channel.nr import (  # noqa: E402
    CarrierConfig,
    NrLinkConfig,
    available_mcs,
    failure_probabilities,
    mcs_parameters,
    tb_error_rate,
    transport_block,
)
from edgesplit.channel.nr.bler import bler_tables  # noqa: E402


@pytest.mark.parametrize(
    ("bandwidth_hz", "scs_hz", "prbs", "slot_s"),
    [(20e6, 30_000, 51, 0.5e-3), (100e6, 30_000, 273, 0.5e-3), (20e6, 15_000, 106, 1e-3), (50e6, 60_000, 65, 0.25e-3)],
)
def test_carrier_prbs_from_38101_table_5_3_2_1(bandwidth_hz: float, scs_hz: int, prbs: int, slot_s: float) -> None:
    carrier = CarrierConfig(bandwidth_hz=bandwidth_hz, subcarrier_spacing_hz=scs_hz)
    assert carrier.prbs == prbs and carrier.slot_s == pytest.approx(slot_s)
    assert carrier.data_re_per_prb == 156 and carrier.dmrs_overhead == pytest.approx(1 / 14)


# Hand-read from TS 38.214 Table 5.1.3.1-1 / 5.1.3.1-2: (table, MCS) -> (Qm, R x 1024)
HAND_READ = {(1, 0): (2, 120), (1, 9): (2, 679), (1, 10): (4, 340), (1, 17): (6, 438), (1, 28): (6, 948),
             (2, 0): (2, 120), (2, 4): (2, 602), (2, 5): (4, 378), (2, 20): (8, 682.5), (2, 27): (8, 948)}


@pytest.mark.parametrize(("key", "expected"), sorted(HAND_READ.items()))
def test_mcs_tables_match_38214(key: tuple[int, int], expected: tuple[int, float]) -> None:
    qm, rate = mcs_parameters(*key)
    assert (qm, rate * 1024) == pytest.approx(expected)


def test_tbs_by_hand_38214_5_1_3_2() -> None:
    # 1 PRB: N_RE = 12*14 - 12 = 156; MCS 9: N_info = 156 * 679/1024 * 2 = 206.88; n = max(3, 7 - 6) = 3;
    # N'_info = max(24, 8 * floor(206.88 / 8)) = 200 -> smallest Table 5.1.3.2-1 entry >= 200 is 208.
    small = transport_block(CarrierConfig(num_prbs=1), 1, 9)
    assert (small.tbs_bits, small.num_code_blocks, small.code_block_bits, small.coded_bits) == (208, 1, 224, 312)
    # 51 PRB, MCS 20 (Qm 6, R 567/1024): N_info = 7956 * 6 * 567/1024 = 26431.89; n = floor(log2(26407.89)) - 5 = 9;
    # N'_info = 512 * round(26407.89 / 512) = 26624; C = ceil(26648 / 8424) = 4; TBS = 32 * ceil(26648 / 32) - 24.
    large = transport_block(CarrierConfig(), 1, 20)
    assert (large.tbs_bits, large.num_code_blocks) == (26632, 4)
    assert large.code_block_bits == (26632 + 24) // 4 + 24 and large.coded_bits == 7956 * 6


def test_tables_cover_the_codable_mcs_only() -> None:
    assert available_mcs(1) == tuple(range(3, 29)) and available_mcs(2) == tuple(range(2, 28))
    assert not transport_block(CarrierConfig(), 1, 0, check=False).codable  # R_eff < 1/5: Sionna cannot code it
    with pytest.raises(ValueError, match=r"outside the LDPC chain's \[0.2, 0.95\]"):
        transport_block(CarrierConfig(), 1, 0)


@pytest.mark.parametrize(("table", "mcs", "prbs"), [(1, 3, 1), (1, 9, 1), (1, 17, 8), (1, 28, 51), (2, 27, 51)])
def test_bler_non_increasing_in_snr(table: int, mcs: int, prbs: int) -> None:
    info = transport_block(CarrierConfig(num_prbs=prbs), table, mcs)
    snr = np.linspace(-12.0, 45.0, 2000)
    tbler = tb_error_rate(info, snr)
    assert np.all(np.diff(tbler) <= 0.0) and tbler[0] > 0.99 and tbler[-1] == 0.0
    for channel in ("awgn", "rayleigh"):
        q = failure_probabilities(info, 10.0, 4, channel)
        assert q[0] == 1.0 and np.all(np.diff(q) <= 0.0)


def test_bler_reproduces_the_shipped_table_points() -> None:
    # PDSCH_table1.json, MCS 17, CBS 500: BLER 0.9983 at 7.5 dB and 0.1473 at 9.2857 dB (grid points; raw tables)
    tables = bler_tables()
    assert tables.cb_error_rate(1, 17, 500, 7.5, calibrated=False) == pytest.approx(0.9983, abs=2e-3)
    assert tables.cb_error_rate(1, 17, 500, 9.2857, calibrated=False) == pytest.approx(0.1473, abs=5e-3)
    # beyond CBS 2000 the curve comes from the CBS-2000 one: clamped to it when asked
    assert np.allclose(tables.curve(1, 17, 6000, large=None), tables.curve(1, 17, 2000))


def test_link_adaptation_picks_highest_mcs_under_target() -> None:
    link = NrLinkConfig(carrier=CarrierConfig(num_prbs=4), target_bler=0.1)
    chosen = [link.select_mcs(snr) for snr in np.arange(-8.0, 30.0, 1.0)]
    assert chosen == sorted(chosen) and chosen[0] == 3 and chosen[-1] == 28
    snr = 9.0
    mcs = link.select_mcs(snr)
    info = transport_block(link.carrier, 1, mcs)
    assert link.first_tb_error_rate(info, snr) <= 0.1
    assert link.first_tb_error_rate(transport_block(link.carrier, 1, mcs + 1), snr) > 0.1
    fading = NrLinkConfig(carrier=CarrierConfig(num_prbs=4), channel="rayleigh")
    assert fading.select_mcs(snr) < mcs  # the Rayleigh-averaged error rate asks for margin


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"bandwidth_hz": 21e6}, r"not a TS 38.101-1 channel bandwidth.*\[5, 10, 15, 20"),
        ({"subcarrier_spacing_hz": 120_000}, r"\[15000, 30000, 60000\]"),
        ({"bandwidth_hz": 5e6, "subcarrier_spacing_hz": 60_000}, "valid"),
        ({"num_prbs": 52}, r"1\.\.51"),
        ({"pusch_symbols": 15}, r"1\.\.14"),
        ({"dmrs_symbols": 0}, "dmrs_symbols"),
        ({"pusch_symbols": 2, "dmrs_symbols": 2}, "below pusch_symbols"),
        ({"harq_rtt_slots": 0}, "harq_rtt_slots"),
    ],
)
def test_bad_carrier_raises(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CarrierConfig(**params)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"mcs_table": 3}, r"mcs_table must be one of \[1, 2\]"),
        ({"mcs": 29}, r"0\.\.28"),
        ({"mcs_table": 2, "mcs": 28}, r"0\.\.27"),
        ({"target_bler": 1.0}, r"\(0, 1\)"),
        ({"max_transmissions": 0}, r"1\.\.16"),
        ({"channel": "tdl-a"}, r"\['awgn', 'rayleigh', 'tdl'\]"),
        ({"carrier": {"prbs": 3}}, r"unknown carrier field.*'num_prbs'"),
        ({"rate_correction": "yes"}, "bool"),
    ],
)
def test_bad_link_raises(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NrLinkConfig(**params)
