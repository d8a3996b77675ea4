"""Bit-true calibration of the abstracted link's code-block BLER curves: one SNR shift and one steepness per MCS.

Why. Sionna's shipped AWGN tables (:mod:`edgesplit.channel.nr.bler`) sample SNR every ~1.8 dB, while a code-block
waterfall of 200..2000 bits is 0.5..1.5 dB wide: a curve has one table point inside its waterfall, at most two.
The tables pin roughly *where* a waterfall is, not *how steep* it is (the probit interpolation between that point
and the next one, at the 1e-5 clip, sets the steepness), and our chain is not exactly the one that made them:
uncalibrated, the abstraction missed the bit-true chain by up to ~0.3 dB in the waterfall. The shipped fit moves
waterfalls by |delta| <= 0.24 dB (median 0.03) and scales their steepness by kappa = 0.82..1.34; uncalibrated,
103 of its 468 bit-true points fall outside their 99 % Clopper-Pearson interval, calibrated 2 (in-sample; the
held-out check is ``benchmarks/coded_link_check.py``).

Rule. For MCS m of table t with calibration (delta, kappa), the calibrated curve of a code block at table SNR s
(after the effective-rate shift of :func:`~edgesplit.channel.nr.bler.rate_shift_db`) is the table curve read at

    s' = s50 + kappa · (s - delta - s50)

where ``s50`` is the uncalibrated curve's 50 % SNR for that code-block size: the waterfall moves by ``delta`` dB
(+ = the bit-true chain needs more SNR) and gets ``kappa`` times steeper around its middle. The curve stays
monotone and keeps its exact 0 / 1 floors. The same (delta, kappa) applies to every code-block size of the MCS
(fitted on one size per MCS).

Code blocks above the tables' 2000 bits (every MCS on a 20 MHz carrier has 3,000..8,448-bit code blocks) have no
curve at all. Clamping them to the 2000-bit curve is pessimistic at mid-waterfall and far too shallow (a larger
block has a steeper waterfall). :class:`LargeBlockRule` extends the 2000-bit curve instead: with ``r = CBS /
2000``, it is made ``r ** exponent`` times steeper around its 50 % point (the normal approximation of
finite-length coding says the probit slope grows as sqrt(n), exponent 1/2) and moved by ``shift_db_per_doubling ·
log2 r``; both are global (one pair for every MCS), fitted on bit-true code blocks of 4,000..8,448 bits of a few
MCSs and checked on others; the per-MCS (delta, kappa) then apply on top.

Fit. ``benchmarks/calibrate_bler.py`` sends TBs of the smallest codable allocation (2 PRB, one code block of
168..2232 bits; 3 PRB for table 2's MCS 27) through Sionna's bit-true chain (20 BP iterations, AWGN, one
transmission) at SNRs across each MCS's waterfall, and fits (delta, kappa) by maximum likelihood on the
binomial TB-error counts. Its output, :data:`CALIBRATION_FILE`, ships with the package and records the command,
seed, Sionna version and per-MCS counts; an MCS missing from it is used uncalibrated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("bler_calibration.json")
"""The fitted (delta, kappa) per (MCS table, MCS), written by ``benchmarks/calibrate_bler.py``."""
FORMAT_VERSION = 1
DELTA_RANGE_DB = (-3.0, 3.0)
"""Accepted SNR shifts (dB): a larger one would mean the tables describe another chain."""
KAPPA_RANGE = (0.25, 8.0)
"""Accepted steepness factors."""


@dataclass(frozen=True)
class CurveCalibration:
    """The calibration of one MCS's code-block curves (the module docstring's rule)."""

    delta_db: float
    """SNR shift in dB (+ = the bit-true chain needs more SNR than the table says)."""
    kappa: float
    """Steepness factor around the curve's 50 % point (> 1: steeper than the table's interpolation)."""

    def __post_init__(self) -> None:
        lo, hi = DELTA_RANGE_DB
        if not (isinstance(self.delta_db, float | int) and math.isfinite(self.delta_db) and lo <= self.delta_db <= hi):
            raise ValueError(f"delta_db must be a finite number in [{lo}, {hi}], got {self.delta_db!r}")
        lo, hi = KAPPA_RANGE
        if not (isinstance(self.kappa, float | int) and math.isfinite(self.kappa) and lo <= self.kappa <= hi):
            raise ValueError(f"kappa must be a finite number in [{lo}, {hi}], got {self.kappa!r}")

    def table_snr(self, snr_db: np.ndarray, s50_db: float) -> np.ndarray:
        """The SNR at which to read the uncalibrated curve (whose 50 % point is ``s50_db``)."""
        return s50_db + self.kappa * (np.asarray(snr_db, dtype=float) - self.delta_db - s50_db)


@dataclass(frozen=True)
class LargeBlockRule:
    """How a curve for a code block above the tables' largest one is made from that largest one's curve."""

    exponent: float
    """Steepness grows as (CBS / largest) ** exponent around the curve's 50 % point."""
    shift_db_per_doubling: float
    """SNR shift per doubling of the code block (dB; - = larger blocks need less SNR)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.exponent, float | int) and math.isfinite(self.exponent)
                and 0.0 <= self.exponent <= 1.5):
            raise ValueError(f"exponent must be a finite number in [0, 1.5], got {self.exponent!r}")
        if not (isinstance(self.shift_db_per_doubling, float | int) and math.isfinite(self.shift_db_per_doubling)
                and abs(self.shift_db_per_doubling) <= 1.0):
            raise ValueError(f"shift_db_per_doubling must be a finite number in [-1, 1], got "
                             f"{self.shift_db_per_doubling!r}")

    def extend(self, snr_grid_db: np.ndarray, largest: np.ndarray, ratio: float) -> np.ndarray:
        """The curve on ``snr_grid_db`` of a code block ``ratio`` (> 1) times the largest tabulated one."""
        s50 = midpoint_db(snr_grid_db, largest)
        steep, shift = ratio ** self.exponent, self.shift_db_per_doubling * math.log2(ratio)
        return np.interp(s50 + steep * (snr_grid_db - shift - s50), snr_grid_db, largest)


def midpoint_db(snr_grid_db: np.ndarray, curve: np.ndarray) -> float:
    """The SNR where a non-increasing BLER curve on ``snr_grid_db`` crosses 0.5 (linear between grid points)."""
    below = np.flatnonzero(curve <= 0.5)
    if below.size == 0:
        return float(snr_grid_db[-1])
    i = int(below[0])
    if i == 0:
        return float(snr_grid_db[0])
    hi, lo = curve[i - 1], curve[i]
    frac = (hi - 0.5) / (hi - lo) if hi > lo else 0.0
    return float(snr_grid_db[i - 1] + frac * (snr_grid_db[i] - snr_grid_db[i - 1]))


def parse_calibration(data: object, source: str) -> dict[tuple[int, int], CurveCalibration]:
    """Validate a calibration document and return its entries keyed by (MCS table, MCS)."""
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{source}: not a BLER calibration of format_version {FORMAT_VERSION}")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise ValueError(f"{source}: 'entries' must be a list")
    out: dict[tuple[int, int], CurveCalibration] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: entry {i} must be an object")
        try:
            key = (int(entry["mcs_table"]), int(entry["mcs"]))
            cal = CurveCalibration(delta_db=float(entry["delta_db"]), kappa=float(entry["kappa"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: entry {i} is invalid ({exc}); needs mcs_table, mcs, delta_db, kappa") from exc
        if key in out:
            raise ValueError(f"{source}: MCS {key[1]} of table {key[0]} appears twice")
        out[key] = cal
    return out


def parse_large_block_rule(data: object, source: str) -> LargeBlockRule | None:
    """The document's ``large_cbs`` rule (None when it has none)."""
    if not isinstance(data, dict) or data.get("large_cbs") is None:
        return None
    rule = data["large_cbs"]
    try:
        return LargeBlockRule(float(rule["exponent"]), float(rule["shift_db_per_doubling"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: 'large_cbs' is invalid ({exc}); needs exponent, shift_db_per_doubling") from exc


@cache
def _document() -> dict | None:
    return json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else None


@cache
def calibrations() -> dict[tuple[int, int], CurveCalibration]:
    """The shipped calibration (:data:`CALIBRATION_FILE`); an empty dict when the file is absent."""
    doc = _document()
    return {} if doc is None else parse_calibration(doc, str(CALIBRATION_FILE))


@cache
def large_block_rule() -> LargeBlockRule | None:
    """The shipped rule for code blocks above the tables (None: they are clamped to the largest one)."""
    doc = _document()
    return None if doc is None else parse_large_block_rule(doc, str(CALIBRATION_FILE))


def calibration_for(mcs_table: int, mcs: int) -> CurveCalibration | None:
    """The calibration of one MCS, or None (used uncalibrated)."""
    return calibrations().get((mcs_table, mcs))
