"""The NR carrier, numerology and PUSCH allocation of the coded uplink.

Numerology mu = log2(SCS / 15 kHz): a slot is 14 OFDM symbols (normal cyclic prefix) lasting 1 ms / 2**mu
(15 kHz: 1 ms, 30 kHz: 0.5 ms, 60 kHz: 0.25 ms). The carrier's PRB count is the maximum transmission
bandwidth configuration N_RB of TS 38.101-1 Table 5.3.2-1 (FR1), e.g. 20 MHz at 30 kHz = 51 PRB, 100 MHz at
30 kHz = 273 PRB; an allocation may use fewer (``num_prbs``).

Overhead: DMRS type 1 with both CDM groups without data (Sionna's ``PUSCHDMRSConfig`` default), so every
DMRS symbol takes all 12 subcarriers of each allocated PRB: ``12 · pusch_symbols - 12 · dmrs_symbols`` data
REs per PRB per slot. With the defaults (14 symbols, 1 front-loaded DMRS symbol) that is 156 data REs per
PRB, a DMRS overhead of 1/14 = 7.1 %. No PT-RS, UCI multiplexing or xOverhead (N_oh = 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SYMBOLS_PER_SLOT = 14
"""OFDM symbols per slot with the normal cyclic prefix."""
SUBCARRIERS_PER_PRB = 12
"""Subcarriers in one physical resource block."""

# TS 38.101-1 Table 5.3.2-1: maximum transmission bandwidth configuration N_RB (FR1), by SCS (Hz) and
# channel bandwidth (MHz).
MAX_PRBS: dict[int, dict[int, int]] = {
    15_000: {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 35: 188, 40: 216, 45: 242, 50: 270},
    30_000: {5: 11, 10: 24, 15: 38, 20: 51, 25: 65, 30: 78, 35: 92, 40: 106, 45: 119, 50: 133, 60: 162,
             70: 189, 80: 217, 90: 245, 100: 273},
    60_000: {10: 11, 15: 18, 20: 24, 25: 31, 30: 38, 35: 44, 40: 51, 45: 58, 50: 65, 60: 79, 70: 93, 80: 107,
             90: 121, 100: 135},
}
"""N_RB per subcarrier spacing (Hz) and channel bandwidth (MHz), TS 38.101-1 Table 5.3.2-1."""


def coerce_config(cls: type, value: Any, what: str) -> Any:
    """An instance of dataclass ``cls`` from itself, a dict of its fields (YAML / factory use) or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown {what} field(s) {unknown}; valid: {list(cls.__dataclass_fields__)}")
        return cls(**value)
    raise ValueError(f"{what} must be a{'n' if cls.__name__[0] in 'AEINO' else ''} {cls.__name__}, a dict of its "
                     f"fields or None, got {type(value).__name__}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class CarrierConfig:
    """One uplink carrier and the PUSCH allocation the UE gets in every slot."""

    bandwidth_hz: float = 20e6
    """Channel bandwidth (a TS 38.101-1 FR1 value for the SCS; 20 MHz like the ``5g-nr-20mhz`` link preset)."""
    subcarrier_spacing_hz: int = 30_000
    """Subcarrier spacing: 15000, 30000 or 60000 Hz (numerology 0, 1, 2)."""
    num_prbs: int | None = None
    """PRBs allocated to the UE per slot; None takes the carrier's whole N_RB (Table 5.3.2-1)."""
    pusch_symbols: int = SYMBOLS_PER_SLOT
    """OFDM symbols of the slot allocated to PUSCH, DMRS included (1..14; 14 = the whole slot)."""
    dmrs_symbols: int = 1
    """DMRS symbols per slot (1..4, fewer than ``pusch_symbols``); each costs 12 REs per PRB."""
    harq_rtt_slots: int = 4
    """HARQ round trip: slots from the end of a transmission to the earliest retransmission (decode + NACK + grant)."""

    def __post_init__(self) -> None:
        if self.subcarrier_spacing_hz not in MAX_PRBS:
            raise ValueError(
                f"subcarrier_spacing_hz must be one of {sorted(MAX_PRBS)}, got {self.subcarrier_spacing_hz!r}"
            )
        table = MAX_PRBS[self.subcarrier_spacing_hz]
        mhz = self.bandwidth_hz / 1e6 if isinstance(self.bandwidth_hz, int | float) else math.nan
        if not (math.isfinite(mhz) and round(mhz) in table and abs(mhz - round(mhz)) < 1e-9):
            raise ValueError(
                f"bandwidth_hz {self.bandwidth_hz!r} is not a TS 38.101-1 channel bandwidth at "
                f"{self.subcarrier_spacing_hz // 1000} kHz; valid (MHz): {sorted(table)}"
            )
        if self.num_prbs is not None and not (_is_int(self.num_prbs) and 1 <= self.num_prbs <= self.max_prbs):
            raise ValueError(f"num_prbs must be None or an int in 1..{self.max_prbs}, got {self.num_prbs!r}")
        if not (_is_int(self.pusch_symbols) and 1 <= self.pusch_symbols <= SYMBOLS_PER_SLOT):
            raise ValueError(f"pusch_symbols must be an int in 1..{SYMBOLS_PER_SLOT}, got {self.pusch_symbols!r}")
        if not (_is_int(self.dmrs_symbols) and 1 <= self.dmrs_symbols <= min(4, self.pusch_symbols - 1)):
            raise ValueError(
                f"dmrs_symbols must be an int in 1..4 and below pusch_symbols={self.pusch_symbols}, "
                f"got {self.dmrs_symbols!r}"
            )
        if not (_is_int(self.harq_rtt_slots) and self.harq_rtt_slots >= 1):
            raise ValueError(f"harq_rtt_slots must be an int >= 1, got {self.harq_rtt_slots!r}")

    @classmethod
    def coerce(cls, value: CarrierConfig | dict[str, Any] | None) -> CarrierConfig:
        """A CarrierConfig from itself, a dict of its fields (YAML / factory use) or None (the defaults)."""
        return coerce_config(cls, value, "carrier")

    @property
    def max_prbs(self) -> int:
        """N_RB of the carrier (TS 38.101-1 Table 5.3.2-1)."""
        return MAX_PRBS[self.subcarrier_spacing_hz][round(self.bandwidth_hz / 1e6)]

    @property
    def prbs(self) -> int:
        """PRBs allocated per slot."""
        return self.max_prbs if self.num_prbs is None else self.num_prbs

    @property
    def numerology(self) -> int:
        """mu = log2(SCS / 15 kHz)."""
        return int(math.log2(self.subcarrier_spacing_hz // 15_000))

    @property
    def slot_s(self) -> float:
        """Slot duration: 1 ms / 2**mu."""
        return 1e-3 / (1 << self.numerology)

    @property
    def dmrs_re_per_prb(self) -> int:
        """REs per PRB per slot taken by DMRS (N_DMRS^PRB of TS 38.214 §5.1.3.2)."""
        return SUBCARRIERS_PER_PRB * self.dmrs_symbols

    @property
    def data_re_per_prb(self) -> int:
        """Data REs per PRB per slot (N'_RE)."""
        return SUBCARRIERS_PER_PRB * self.pusch_symbols - self.dmrs_re_per_prb

    @property
    def data_re(self) -> int:
        """Data REs of the whole allocation per slot."""
        return self.data_re_per_prb * self.prbs

    @property
    def dmrs_overhead(self) -> float:
        """Fraction of the allocation's REs taken by DMRS (dmrs_symbols / pusch_symbols)."""
        return self.dmrs_symbols / self.pusch_symbols

    @property
    def occupied_bandwidth_hz(self) -> float:
        """Bandwidth of the allocated PRBs: num_prbs · 12 · SCS."""
        return float(self.prbs * SUBCARRIERS_PER_PRB * self.subcarrier_spacing_hz)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields plus the derived allocation figures (for JSON / parquet)."""
        return {**asdict(self), "prbs": self.prbs, "slot_s": self.slot_s, "data_re": self.data_re}
