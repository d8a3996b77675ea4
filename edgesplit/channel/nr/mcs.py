"""MCS tables (TS 38.214 §5.1.3.1) and transport-block sizes (§5.1.3.2) of the coded uplink, via Sionna.

PUSCH without transform precoding (CP-OFDM) uses the PDSCH MCS tables of TS 38.214 §5.1.3.1 (38.214
§6.1.4.1): ``mcs_table=1`` is Table 5.1.3.1-1 (QPSK..64QAM, MCS 0..28), ``mcs_table=2`` is Table 5.1.3.1-2
(QPSK..256QAM, MCS 0..27). The modulation order Qm and target code rate R come from
``sionna.phy.nr.utils.decode_mcs_index``; the TBS of one slot's allocation, its code-block segmentation and the
rate-matched codeword length G from ``calculate_tb_size`` / ``calculate_codeword_bits`` (one layer, no
xOverhead, TB scaling 1). Results are cached per (carrier, table, MCS): sweeps call these a lot.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

from edgesplit.channel.nr._sionna import load_sionna, preserve_global_rng
from edgesplit.channel.nr.carrier import CarrierConfig

MCS_TABLES: dict[int, str] = {
    1: "TS 38.214 Table 5.1.3.1-1 (QPSK..64QAM)",
    2: "TS 38.214 Table 5.1.3.1-2 (QPSK..256QAM)",
}
"""The supported MCS tables."""
MAX_MCS: dict[int, int] = {1: 28, 2: 27}
"""Highest (non-reserved) MCS index of each table."""
MIN_EFFECTIVE_CODE_RATE = 0.2
"""Lowest effective rate Sionna's LDPC5GEncoder codes (BG2's 1/5; it has no outer repetition)."""
MAX_EFFECTIVE_CODE_RATE = 0.95
"""Highest effective rate TS 38.212 §5.4.2.1 (and LDPC5GEncoder) allows."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_mcs_table(mcs_table: int) -> int:
    """Validate an MCS table index (1 or 2)."""
    if not (_is_int(mcs_table) and mcs_table in MCS_TABLES):
        raise ValueError(f"mcs_table must be one of {sorted(MCS_TABLES)} ({MCS_TABLES}), got {mcs_table!r}")
    return mcs_table


def check_mcs(mcs_table: int, mcs: int) -> int:
    """Validate an MCS index for a table (0..28 for table 1, 0..27 for table 2)."""
    check_mcs_table(mcs_table)
    if not (_is_int(mcs) and 0 <= mcs <= MAX_MCS[mcs_table]):
        raise ValueError(f"mcs must be an int in 0..{MAX_MCS[mcs_table]} for mcs_table={mcs_table}, got {mcs!r}")
    return mcs


@dataclass(frozen=True)
class TransportBlockInfo:
    """One slot's transport block for an MCS on an allocation (TS 38.214 §5.1.3.2, TS 38.212 §5.2.2)."""

    mcs_table: int
    """MCS table (1 or 2)."""
    mcs: int
    """MCS index."""
    modulation_order: int
    """Qm: bits per QAM symbol (2, 4, 6, 8)."""
    code_rate: float
    """Target code rate R of the MCS (table value / 1024)."""
    tbs_bits: int
    """Transport-block size: information bits per slot."""
    num_code_blocks: int
    """Code blocks C the TB is segmented into."""
    code_block_bits: int
    """LDPC information bits per code block, TB and CB CRCs included (the BLER tables' code-block size)."""
    tb_crc_bits: int
    """TB CRC length (16 for TBS <= 3824, else 24)."""
    cb_crc_bits: int
    """CB CRC length (24 when C > 1, else 0)."""
    coded_bits: int
    """G: coded bits per slot after rate matching (data REs · Qm)."""
    data_re: int
    """Data REs per slot."""

    @property
    def effective_code_rate(self) -> float:
        """LDPC information bits (CRCs included) over coded bits: the rate the decoder actually sees."""
        return self.num_code_blocks * self.code_block_bits / self.coded_bits

    @property
    def codable(self) -> bool:
        """Whether the effective rate lies in [0.2, 0.95], the range the 5G LDPC chain (and Sionna) codes."""
        return MIN_EFFECTIVE_CODE_RATE <= self.effective_code_rate <= MAX_EFFECTIVE_CODE_RATE

    @property
    def symbols(self) -> int:
        """QAM symbols per slot (G / Qm)."""
        return self.coded_bits // self.modulation_order

    def to_dict(self) -> dict[str, float]:
        """Plain dict with the effective code rate (for stats and parquet rows)."""
        return {**asdict(self), "effective_code_rate": self.effective_code_rate}


def mcs_parameters(mcs_table: int, mcs: int) -> tuple[int, float]:
    """(Qm, R) of an MCS from ``sionna.phy.nr.utils.decode_mcs_index`` (PUSCH, no transform precoding)."""
    return _mcs_parameters(check_mcs_table(mcs_table), check_mcs(mcs_table, mcs))


@cache
def _mcs_parameters(mcs_table: int, mcs: int) -> tuple[int, float]:
    nr_utils = load_sionna().nr_utils
    with preserve_global_rng():
        qm, rate = nr_utils.decode_mcs_index(mcs, table_index=mcs_table, is_pusch=True, transform_precoding=False,
                                             device="cpu")
    return int(qm), float(rate)


def transport_block(carrier: CarrierConfig, mcs_table: int, mcs: int, check: bool = True) -> TransportBlockInfo:
    """The TB one slot of ``carrier``'s allocation carries at an MCS (cached per carrier, table and MCS).

    With ``check`` a TB the LDPC chain cannot code (effective rate outside [0.2, 0.95], see
    :attr:`TransportBlockInfo.codable`) raises ValueError.
    """
    if not isinstance(carrier, CarrierConfig):
        raise ValueError(f"carrier must be a CarrierConfig, got {type(carrier).__name__}")
    info = _transport_block(carrier, check_mcs_table(mcs_table), check_mcs(mcs_table, mcs))
    if check and not info.codable:
        raise ValueError(
            f"MCS {mcs} (table {mcs_table}) on {carrier.prbs} PRB x {carrier.pusch_symbols} symbols gives a "
            f"{info.tbs_bits}-bit TB coded at rate {info.effective_code_rate:.3f}, outside the LDPC chain's "
            f"[{MIN_EFFECTIVE_CODE_RATE}, {MAX_EFFECTIVE_CODE_RATE}] (CRC and TBS quantisation included); "
            "pick another MCS or allocation"
        )
    return info


@cache
def _transport_block(carrier: CarrierConfig, mcs_table: int, mcs: int) -> TransportBlockInfo:
    qm, rate = _mcs_parameters(mcs_table, mcs)
    nr_utils = load_sionna().nr_utils
    grid = {"num_prbs": carrier.prbs, "num_ofdm_symbols": carrier.pusch_symbols,
            "num_dmrs_per_prb": carrier.dmrs_re_per_prb}
    with preserve_global_rng():
        tbs, cbs, num_cb, tb_crc, cb_crc = nr_utils.calculate_tb_size(
            qm, rate, **grid, return_cw_length=False, device="cpu"
        )
        coded = nr_utils.calculate_codeword_bits(qm, **grid)
    return TransportBlockInfo(
        mcs_table=mcs_table, mcs=mcs, modulation_order=qm, code_rate=rate, tbs_bits=int(tbs),
        num_code_blocks=int(num_cb), code_block_bits=int(cbs), tb_crc_bits=int(tb_crc), cb_crc_bits=int(cb_crc),
        coded_bits=int(coded), data_re=carrier.data_re,
    )


def spectral_efficiency(info: TransportBlockInfo) -> float:
    """TBS bits per data RE of the slot."""
    return info.tbs_bits / info.data_re if info.data_re else math.nan
