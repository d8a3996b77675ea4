"""Code-block and transport-block error rates from Sionna's shipped AWGN BLER tables (the abstracted link).

Source. ``sionna.sys.PHYAbstraction`` loads and interpolates the tables shipped in ``sionna/sys/bler_tables``:
AWGN, one LDPC code block of ``CBS`` information bits at the MCS's target rate, APP demapping, 20 BP
iterations, SNR = Es/N0 per QAM symbol from -5 dB to 20 dB (table 1) / 25 dB (table 2) in ~1.8 dB steps, and
code-block sizes 24, 100, 500, 1000 and 2000 only. Which files: the ``PUSCH_table{1,2}.json`` files of Sionna
2.2 were simulated with the *transform-precoding* MCS tables (TS 38.214 Tables 6.1.4.1-1/-2): PUSCH table 1's
MCS k curve equals PDSCH table 1's MCS k+1 for k >= 17 (the 6.1.4.1-1 table drops 5.1.3.1-1's MCS 17), and
PUSCH table 2's MCS 9 curve is a QPSK R=251/1024 curve (6.1.4.1-2), not 16QAM R=616/1024 (5.1.3.1-2). Our
CP-OFDM PUSCH uses Tables 5.1.3.1-1/-2, which are the MCS definitions of the ``PDSCH_table{1,2}.json`` files;
the coded chain they simulate (LDPC + rate matching over AWGN) is the same for PUSCH and PDSCH, so those are
the files loaded here. MCS 0..2 of table 1 and MCS 0..1 of table 2 have no curve (:func:`available_mcs`).

Interpolation. Sionna's default interpolator is linear in log10(BLER); across a waterfall sampled every 1.8 dB
that is far from the true sigmoid. Here the tables go through PHYAbstraction with a probit interpolator
(:class:`ProbitInterpolation`): BLER is mapped to ``z = Phi^-1(BLER)`` (clipped to [1e-5, 1 - 1e-5]), ``z`` is
interpolated linearly in SNR (dB) and in log(CBS), and extrapolated linearly in SNR beyond the simulated range
(a waterfall stays a waterfall), then mapped back; values at the clip are exactly 0 / 1. Beyond CBS 2000 the
curve is the CBS-2000 one extended by the calibration's
:class:`~edgesplit.channel.nr.calibration.LargeBlockRule` (steeper and moved, as larger code blocks are; fitted on
bit-true code blocks of 4,000..8,216 bits), or **clamped** to it where the calibration has no such rule or
``large=None`` is asked (then pessimistic above the waterfall's middle and optimistic below it;
``benchmarks/coded_link_check.py`` part (b) measures both). Every curve is made non-increasing in SNR (running
minimum over a 0.1 dB grid).

Rate correction. The tables were simulated at the MCS's *target* rate R; a real TB carries CRC bits and a
quantised TBS, so its effective rate R_eff = C · CBS / G differs. With ``rate_correction=True`` the table is
read at ``SNR - Delta``, ``Delta = 10 log10((2^(Qm R_eff) - 1) / (2^(Qm R) - 1))`` (the SNR a constant gap to
capacity asks for at the higher spectral efficiency).

Calibration. Each MCS's curves are then moved and steepened by the (delta, kappa) fitted on Sionna's bit-true
chain (:mod:`edgesplit.channel.nr.calibration`): the 1.8 dB table grid fixes a waterfall's place, not its slope.

A TB of C code blocks fails when any fails: ``TBLER = 1 - (1 - BLER)^C``.
"""

from __future__ import annotations

import math
import os
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from scipy import special

from edgesplit.channel.nr._sionna import load_sionna, preserve_global_rng
from edgesplit.channel.nr.calibration import LargeBlockRule, calibration_for, large_block_rule, midpoint_db
from edgesplit.channel.nr.carrier import CarrierConfig
from edgesplit.channel.nr.mcs import MAX_MCS, TransportBlockInfo, check_mcs, check_mcs_table

if TYPE_CHECKING:
    from edgesplit.channel.nr.tdl import TdlConfig

TABLE_FILES: dict[int, str] = {1: "PDSCH_table1.json", 2: "PDSCH_table2.json"}
"""Sionna BLER table file per 38.214 §5.1.3.1 MCS table (see the module docstring for why PDSCH)."""
TABLE_CATEGORY = 1
"""Sionna's category index of those files."""
CLIP = 1e-5
"""BLER clip for the probit transform (below the tables' Monte Carlo resolution of ~3e-4)."""
SNR_GRID_DB = (-10.0, 40.0, 0.1)
"""(min, max, step) of the SNR grid in dB the curves are tabulated on."""
CBS_GRID = (24, 2000, 26)
"""(min, max, step) of the code-block-size grid: the simulated range (clamped beyond 2000)."""
CHANNELS = ("awgn", "rayleigh", "tdl")
"""Per-transmission channel of the coded link: constant SNR, Rayleigh block fading per slot, or a TR 38.901 TDL
profile (frequency-selective per RE, one realisation per slot; :mod:`edgesplit.channel.nr.tdl`)."""


def _probit(p: np.ndarray) -> np.ndarray:
    return special.ndtri(np.clip(p, CLIP, 1.0 - CLIP))


def _unprobit(z: np.ndarray) -> np.ndarray:
    zmax = float(special.ndtri(1.0 - CLIP)) * (1.0 - 1e-9)
    return np.where(z >= zmax, 1.0, np.where(z <= -zmax, 0.0, special.ndtr(z)))


def probit_interpolate(z: np.ndarray, cbs: np.ndarray, snr_db: np.ndarray, cbs_interp: np.ndarray,
                       snr_interp: np.ndarray) -> np.ndarray:
    """BLER table [len(cbs), len(snr_db)] on a new (CBS, SNR) grid: probit-linear in SNR (extrapolated) and log CBS."""
    cbs, snr_db = np.asarray(cbs, dtype=float), np.asarray(snr_db, dtype=float)
    probit = _probit(np.asarray(z, dtype=float))
    zmax = float(special.ndtri(1.0 - CLIP))
    rows = np.empty((len(cbs), len(snr_interp)))
    for i, row in enumerate(probit):
        inner = np.interp(snr_interp, snr_db, row)
        lo_slope = (row[1] - row[0]) / (snr_db[1] - snr_db[0])
        hi_slope = (row[-1] - row[-2]) / (snr_db[-1] - snr_db[-2])
        inner = np.where(snr_interp < snr_db[0], row[0] + np.minimum(lo_slope, 0.0) * (snr_interp - snr_db[0]), inner)
        inner = np.where(snr_interp > snr_db[-1], row[-1] + np.minimum(hi_slope, 0.0) * (snr_interp - snr_db[-1]),
                         inner)
        rows[i] = np.clip(inner, -zmax, zmax)
    log_cbs = np.log(cbs)
    order = np.argsort(log_cbs)
    out = np.empty((len(cbs_interp), len(snr_interp)))
    for j in range(len(snr_interp)):
        out[:, j] = np.interp(np.log(np.asarray(cbs_interp, dtype=float)), log_cbs[order], rows[order, j])
    return _unprobit(out)


def _make_interpolator():
    """A ``sionna.phy.utils.Interpolate`` whose rectangular-grid method is :func:`probit_interpolate`."""
    base = load_sionna().utils.SplineGriddataInterpolation

    class ProbitInterpolation(base):
        """Probit-linear BLER interpolation (SNR from BLER, ``unstruct``, stays Sionna's griddata)."""

        def struct(self, z, x, y, x_interp, y_interp, **kwargs):  # noqa: ANN001, ANN201 - Sionna's signature
            return probit_interpolate(z, x, y, x_interp, y_interp)

    return ProbitInterpolation()


class BlerTables:
    """Sionna's AWGN code-block BLER curves for the 5.1.3.1 MCS tables on a fine (CBS, SNR) grid.

    Built once per process by :func:`bler_tables` (~1 s); lookups are NumPy and vectorised over SNR.
    """

    def __init__(self) -> None:
        sn = load_sionna()
        folder = os.path.join(os.path.dirname(sn.sys.__file__), "bler_tables")
        files = [os.path.join(folder, TABLE_FILES[t]) for t in sorted(TABLE_FILES)]
        with preserve_global_rng():
            phy_abs = sn.sys.PHYAbstraction(
                interp_fun=_make_interpolator(), load_bler_tables_from=files,
                snr_db_interp_min_max_delta=(SNR_GRID_DB[0], SNR_GRID_DB[1] + SNR_GRID_DB[2] / 2, SNR_GRID_DB[2]),
                cbs_interp_min_max_delta=(CBS_GRID[0], CBS_GRID[1] + 1, CBS_GRID[2]), device="cpu",
            )
        grid = phy_abs.bler_table_interp[TABLE_CATEGORY].cpu().double().numpy()  # [table, mcs, cbs, snr]
        self.snr_grid_db = np.arange(len(grid[0, 0, 0])) * SNR_GRID_DB[2] + SNR_GRID_DB[0]
        self.cbs_grid = np.arange(CBS_GRID[0], CBS_GRID[1] + 1, CBS_GRID[2])
        self.available = {t: tuple(m for m in range(MAX_MCS[t] + 1) if m < grid.shape[1]
                                   and np.isfinite(grid[t - 1, m]).all()) for t in sorted(TABLE_FILES)}
        # a curve must never rise with SNR (Monte Carlo noise, interpolation): running minimum along SNR
        self.grid = np.minimum.accumulate(np.where(np.isfinite(grid), grid, 1.0), axis=-1)

    def curve(self, mcs_table: int, mcs: int, cb_bits: int, large: LargeBlockRule | None | str = "shipped"
              ) -> np.ndarray:
        """BLER on :attr:`snr_grid_db` for one MCS and code-block size (linear between CBS grid rows).

        Above the largest tabulated size the curve is the largest one's extended by ``large`` ("shipped": the
        calibration's :class:`~edgesplit.channel.nr.calibration.LargeBlockRule`; None: clamped to it).
        """
        check_mcs(mcs_table, mcs)
        if mcs not in self.available[mcs_table]:
            raise ValueError(
                f"no shipped BLER curve for MCS {mcs} of table {mcs_table}; the abstracted path covers "
                f"MCS {self.available[mcs_table][0]}..{self.available[mcs_table][-1]} (use path='bit_true' below)"
            )
        pos = np.clip((cb_bits - self.cbs_grid[0]) / CBS_GRID[2], 0.0, len(self.cbs_grid) - 1.0)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(self.cbs_grid) - 1)
        rows = self.grid[mcs_table - 1, mcs]
        rule = large_block_rule() if isinstance(large, str) and large == "shipped" else large
        if cb_bits > self.cbs_grid[-1] and rule is not None:
            return rule.extend(self.snr_grid_db, rows[-1], cb_bits / float(self.cbs_grid[-1]))
        return rows[lo] + (pos - lo) * (rows[hi] - rows[lo])

    def cb_error_rate(self, mcs_table: int, mcs: int, cb_bits: int, snr_db: np.ndarray | float,
                      calibrated: bool = True) -> np.ndarray:
        """Code-block error rate at Es/N0 ``snr_db`` (array-like; clamped to the grid's SNR range).

        ``calibrated`` applies the MCS's bit-true calibration (:mod:`edgesplit.channel.nr.calibration`) if it has one.
        """
        curve = self.curve(mcs_table, mcs, cb_bits)
        snr = np.asarray(snr_db, dtype=float)
        cal = calibration_for(mcs_table, mcs) if calibrated else None
        if cal is not None:
            snr = cal.table_snr(snr, midpoint_db(self.snr_grid_db, curve))
        return np.interp(snr, self.snr_grid_db, curve)


@cache
def bler_tables() -> BlerTables:
    """The process-wide :class:`BlerTables` (loaded on first use)."""
    return BlerTables()


def available_mcs(mcs_table: int) -> tuple[int, ...]:
    """MCS indices of a table that have a shipped BLER curve (the abstracted path's and link adaptation's set)."""
    return bler_tables().available[check_mcs_table(mcs_table)]


def rate_shift_db(info: TransportBlockInfo) -> float:
    """Delta (dB) the effective code rate asks for over the table's target rate (constant gap to capacity)."""
    qm = info.modulation_order
    return 10.0 * math.log10((2.0 ** (qm * info.effective_code_rate) - 1.0) / (2.0 ** (qm * info.code_rate) - 1.0))


def tb_error_rate(info: TransportBlockInfo, snr_db: np.ndarray | float, rate_correction: bool = True,
                  calibrated: bool = True) -> np.ndarray:
    """Transport-block error rate of one transmission at Es/N0 ``snr_db`` over AWGN: 1 - (1 - BLER)^C.

    ``calibrated=False`` reads Sionna's tables without the bit-true calibration (for comparisons).
    """
    shift = rate_shift_db(info) if rate_correction else 0.0
    bler = bler_tables().cb_error_rate(info.mcs_table, info.mcs, info.code_block_bits, np.asarray(snr_db) - shift,
                                       calibrated)
    return bler if info.num_code_blocks == 1 else 1.0 - (1.0 - bler) ** info.num_code_blocks


# Gamma(j, 1) quadrature for Rayleigh chase combining: the sum of j Exp(1) gains, on a log grid of the gain
_GAIN_EDGES = np.geomspace(1e-8, 80.0, 1201)
_GAIN_NODES = np.sqrt(_GAIN_EDGES[1:] * _GAIN_EDGES[:-1])


@cache
def _gamma_weights(shape: int) -> np.ndarray:
    return np.diff(special.gammainc(shape, _GAIN_EDGES))


def failure_probabilities(info: TransportBlockInfo, snr_db: float, max_transmissions: int, channel: str = "awgn",
                          rate_correction: bool = True, *, carrier: CarrierConfig | None = None,
                          tdl: TdlConfig | None = None) -> np.ndarray:
    """q[j] = P(TB still undecoded after j chase-combined transmissions), j = 0..N (q[0] = 1).

    Chase-combining rule of the abstraction: after j transmissions the decoder sees the sum of their linear
    SNRs, so ``q[j] = TBLER(S_j)``. ``awgn``: every transmission at ``snr_db``, S_j = j · SNR. ``rayleigh``:
    ``snr_db`` is the mean and each transmission draws |h|² ~ Exp(1), so S_j = SNR · Gamma(j, 1) and q[j] is
    its expectation (exact quadrature over the gamma law, no randomness). ``tdl`` (needs ``carrier``, the TB's
    allocation; ``tdl`` defaults to :class:`~edgesplit.channel.nr.tdl.TdlConfig`): per-RE SNRs add, then the EESM,
    averaged over a fixed seeded realisation set (:func:`~edgesplit.channel.nr.tdl.tdl_failure_probabilities`).
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {list(CHANNELS)}, got {channel!r}")
    if channel == "tdl":
        from edgesplit.channel.nr.tdl import TdlConfig, tdl_failure_probabilities

        if carrier is None:
            raise ValueError("channel 'tdl' needs carrier= (the allocation's PRBs, SCS and symbols set its REs)")
        return tdl_failure_probabilities(info, carrier, TdlConfig.coerce(tdl), float(snr_db), max_transmissions,
                                         rate_correction).copy()
    gamma = 10.0 ** (snr_db / 10.0)
    q = np.ones(max_transmissions + 1)
    for j in range(1, max_transmissions + 1):
        if channel == "awgn":
            q[j] = float(tb_error_rate(info, 10.0 * math.log10(j * gamma), rate_correction))
        else:
            tbler = tb_error_rate(info, 10.0 * np.log10(gamma * _GAIN_NODES), rate_correction)
            q[j] = float(np.dot(_gamma_weights(j), tbler) + special.gammainc(j, _GAIN_EDGES[0]))
    return np.minimum.accumulate(np.clip(q, 0.0, 1.0))
