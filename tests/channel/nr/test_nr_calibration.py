"""The bit-true calibration of the BLER curves: the rule's invariants, the shipped file, bad documents refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sionna.phy", reason="the coded NR link needs the nr extra: pip install 'edgesplit[nr]'")

from edgesplit.channel.nr import CarrierConfig, available_mcs, tb_error_rate, transport_block  # noqa: E402
from edgesplit.channel.nr.bler import bler_tables  # noqa: E402
from edgesplit.channel.nr.calibration import (  # noqa: E402
    CALIBRATION_FILE,
    CurveCalibration,
    calibration_for,
    midpoint_db,
    parse_calibration,
)


def _crossing(snr: np.ndarray, curve: np.ndarray, level: float) -> float:
    return float(np.interp(level, curve[::-1], snr[::-1]))


@pytest.mark.parametrize(("table", "mcs", "cbs"), [(1, 4, 200), (1, 20, 1048), (2, 24, 2104)])
def test_rule_moves_and_steepens_the_waterfall(table: int, mcs: int, cbs: int) -> None:
    tables = bler_tables()
    grid, curve = tables.snr_grid_db, tables.curve(table, mcs, cbs)
    s50 = midpoint_db(grid, curve)
    snr = np.linspace(grid[0], grid[-1], 20_001)
    raw = np.interp(snr, grid, curve)
    assert np.allclose(np.interp(CurveCalibration(0.0, 1.0).table_snr(snr, s50), grid, curve), raw)
    cal = CurveCalibration(0.25, 2.0)
    out = np.interp(cal.table_snr(snr, s50), grid, curve)
    assert np.all(np.diff(out) <= 0.0) and out[0] == 1.0 and out[-1] == 0.0  # monotone, exact floors kept
    assert _crossing(snr, out, 0.5) == pytest.approx(s50 + 0.25, abs=0.01)
    width_raw = _crossing(snr, raw, 0.1) - _crossing(snr, raw, 0.9)
    width_cal = _crossing(snr, out, 0.1) - _crossing(snr, out, 0.9)
    assert width_cal == pytest.approx(width_raw / 2.0, rel=0.02)


def test_shipped_calibration_covers_every_mcs_and_is_applied() -> None:
    assert CALIBRATION_FILE.exists(), "run benchmarks/calibrate_bler.py --install"
    doc = json.loads(CALIBRATION_FILE.read_text())
    assert doc["num_bp_iter"] == 20 and doc["seed"] is not None and doc["command"].startswith("benchmarks/")
    for table in (1, 2):
        assert all(calibration_for(table, m) is not None for m in available_mcs(table))
    info = transport_block(CarrierConfig(num_prbs=2), 1, 20)
    cal = calibration_for(1, 20)
    tables = bler_tables()
    s50 = midpoint_db(tables.snr_grid_db, tables.curve(1, 20, info.code_block_bits))
    snr = np.linspace(9.0, 14.0, 51)
    from edgesplit.channel.nr.bler import rate_shift_db

    expected = np.interp(cal.table_snr(snr - rate_shift_db(info), s50), tables.snr_grid_db,
                         tables.curve(1, 20, info.code_block_bits))
    assert np.allclose(tb_error_rate(info, snr), expected)
    assert np.allclose(tb_error_rate(info, snr, calibrated=False),
                       np.interp(snr - rate_shift_db(info), tables.snr_grid_db, tables.curve(1, 20, 1048)))


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ([], "format_version 1"),
        ({"format_version": 2, "entries": []}, "format_version 1"),
        ({"format_version": 1}, "'entries' must be a list"),
        ({"format_version": 1, "entries": [3]}, "entry 0 must be an object"),
        ({"format_version": 1, "entries": [{"mcs_table": 1, "mcs": 4}]}, "needs mcs_table, mcs, delta_db, kappa"),
        ({"format_version": 1, "entries": [{"mcs_table": 1, "mcs": 4, "delta_db": 0.1, "kappa": 20.0}]},
         r"kappa must be a finite number in \[0.25, 8.0\]"),
        ({"format_version": 1, "entries": [{"mcs_table": 1, "mcs": 4, "delta_db": float("nan"), "kappa": 1.0}]},
         "delta_db must be a finite number"),
        ({"format_version": 1, "entries": [{"mcs_table": 1, "mcs": 4, "delta_db": 0.0, "kappa": 1.0}] * 2},
         "appears twice"),
    ],
)
def test_bad_calibration_documents_are_refused(doc: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_calibration(doc, "test.json")


def test_large_block_rule_steepens_and_moves_the_largest_curve() -> None:
    from edgesplit.channel.nr.calibration import LargeBlockRule

    tables = bler_tables()
    grid, top = tables.snr_grid_db, tables.curve(1, 20, 2000)
    s50 = midpoint_db(grid, top)
    assert np.allclose(LargeBlockRule(0.5, -0.1).extend(grid, top, 1.0), top)
    out = LargeBlockRule(0.5, -0.1).extend(grid, top, 4.0)  # 8000 bits: 2x steeper, 0.2 dB to the left
    assert np.all(np.diff(out) <= 0.0) and out[0] == 1.0 and out[-1] == 0.0
    assert midpoint_db(grid, out) == pytest.approx(s50 - 0.2, abs=0.02)
    fine = np.linspace(grid[0], grid[-1], 50_001)

    def width(curve: np.ndarray) -> float:
        values = np.interp(fine, grid, curve)
        return _crossing(fine, values, 0.1) - _crossing(fine, values, 0.9)

    assert width(out) == pytest.approx(width(top) / 2.0, rel=0.05)
    # clamped when asked, extended by the shipped rule by default (when the calibration has one)
    assert np.allclose(tables.curve(1, 20, 8000, large=None), top)
    from edgesplit.channel.nr.calibration import large_block_rule

    rule = large_block_rule()
    expected = top if rule is None else rule.extend(grid, top, 4.0)
    assert np.allclose(tables.curve(1, 20, 8000), expected)


@pytest.mark.parametrize(("rule", "match"), [
    ({"exponent": 2.0, "shift_db_per_doubling": 0.0}, r"exponent must be a finite number in \[0, 1.5\]"),
    ({"exponent": 0.5, "shift_db_per_doubling": 3.0}, r"shift_db_per_doubling must be a finite number in \[-1, 1\]"),
    ({"exponent": 0.5}, "needs exponent, shift_db_per_doubling"),
])
def test_bad_large_block_rules_are_refused(rule: dict, match: str) -> None:
    from edgesplit.channel.nr.calibration import parse_large_block_rule

    with pytest.raises(ValueError, match=match):
        parse_large_block_rule({"format_version": 1, "entries": [], "large_cbs": rule}, "test.json")
    assert parse_large_block_rule({"format_version": 1, "entries": []}, "test.json") is None
