"""The coded uplink's configuration and its link adaptation (MCS choice from the reported SNR).

Link adaptation is ideal-CQI inner-loop link adaptation, the rule of ``sionna.sys.InnerLoopLinkAdaptation``:
the MCS is the highest one whose first-transmission TB error rate at the reported SNR (for the actual TBS,
code-block size and number of code blocks of the allocation, from :mod:`edgesplit.channel.nr.bler`) is at most
``target_bler``; when none is, the lowest usable one. Candidates are the MCSs with a shipped BLER curve whose TB
the LDPC chain can code on the allocation. The reported SNR is exact (no CQI quantisation, delay or estimation
error): ``awgn`` reports the state's instantaneous ``snr_db``; ``rayleigh`` and ``tdl`` (per-slot fading nobody
can foresee) report the state's ``mean_snr_db`` and the TB error rate checked is the Rayleigh-averaged one (exact
quadrature) or the TDL-averaged one (EESM over a fixed seeded realisation set, :mod:`edgesplit.channel.nr.tdl`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np

from edgesplit.channel.nr.bler import CHANNELS, available_mcs, failure_probabilities
from edgesplit.channel.nr.carrier import CarrierConfig, coerce_config
from edgesplit.channel.nr.mcs import TransportBlockInfo, check_mcs, check_mcs_table, transport_block
from edgesplit.channel.nr.tdl import TdlConfig
from edgesplit.channel.state import ChannelState


@dataclass(frozen=True)
class NrLinkConfig:
    """Carrier, MCS policy, HARQ and channel of the coded 5G NR uplink (everything but the activations)."""

    carrier: CarrierConfig = field(default_factory=CarrierConfig)
    """Carrier, numerology and per-slot allocation (a dict of its fields is accepted)."""
    mcs_table: int = 1
    """TS 38.214 MCS table: 1 = Table 5.1.3.1-1 (up to 64QAM), 2 = Table 5.1.3.1-2 (up to 256QAM)."""
    mcs: int | None = None
    """Fixed MCS index; None chooses it per packet from the reported SNR (ideal-CQI link adaptation)."""
    target_bler: float = 0.1
    """Link adaptation's first-transmission TB error rate target, in (0, 1)."""
    max_transmissions: int = 4
    """HARQ: transmissions per TB at most (1 = no HARQ); chase combining across them."""
    channel: str = "awgn"
    """'awgn' (every transmission at the state's snr_db), 'rayleigh' (|h|² ~ Exp(1) per slot around mean_snr_db) or
    'tdl' (a TR 38.901 TDL realisation per slot, per-RE gains of unit mean, around mean_snr_db)."""
    tdl: TdlConfig = field(default_factory=TdlConfig)
    """TDL profile, delay spread, UE speed and carrier frequency (used by channel 'tdl'; a dict of its fields too)."""
    rate_correction: bool = True
    """Read the BLER tables at the TB's effective code rate (:func:`~edgesplit.channel.nr.bler.rate_shift_db`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "carrier", CarrierConfig.coerce(self.carrier))
        object.__setattr__(self, "tdl", TdlConfig.coerce(self.tdl))
        check_mcs_table(self.mcs_table)
        if self.mcs is not None:
            check_mcs(self.mcs_table, self.mcs)
            transport_block(self.carrier, self.mcs_table, self.mcs)  # raises if the allocation cannot code it
        if not (isinstance(self.target_bler, int | float) and 0.0 < self.target_bler < 1.0):
            raise ValueError(f"target_bler must be a number in (0, 1), got {self.target_bler!r}")
        mt = self.max_transmissions
        if not (isinstance(mt, int) and not isinstance(mt, bool) and 1 <= mt <= 16):
            raise ValueError(f"max_transmissions must be an int in 1..16, got {mt!r}")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {list(CHANNELS)}, got {self.channel!r}")
        if not isinstance(self.rate_correction, bool):
            raise ValueError(f"rate_correction must be a bool, got {self.rate_correction!r}")

    @classmethod
    def coerce(cls, value: NrLinkConfig | dict[str, Any] | None) -> NrLinkConfig:
        """An NrLinkConfig from itself, a dict of its fields or None (the defaults)."""
        return coerce_config(cls, value, "link")

    def reported_snr_db(self, state: ChannelState) -> float:
        """The SNR link adaptation sees: the instantaneous snr_db (awgn) or the mean_snr_db (rayleigh, tdl)."""
        return state.snr_db if self.channel == "awgn" else state.mean_snr_db

    def candidates(self) -> tuple[TransportBlockInfo, ...]:
        """TBs of the MCSs link adaptation may pick (shipped BLER curve, codable on the allocation), lowest first."""
        return _candidates(self.carrier, self.mcs_table)

    def failure_probabilities(self, info: TransportBlockInfo, snr_db: float) -> np.ndarray:
        """q[0..N] of a TB of this link at reported SNR ``snr_db`` (see :func:`.bler.failure_probabilities`)."""
        return failure_probabilities(info, snr_db, self.max_transmissions, self.channel, self.rate_correction,
                                     carrier=self.carrier, tdl=self.tdl)

    def first_tb_error_rate(self, info: TransportBlockInfo, snr_db: float) -> float:
        """TB error rate of a first transmission at the reported SNR (Rayleigh- or TDL-averaged for those channels)."""
        return float(failure_probabilities(info, snr_db, 1, self.channel, self.rate_correction, carrier=self.carrier,
                                           tdl=self.tdl)[1])

    def select_mcs(self, snr_db: float) -> int:
        """The fixed MCS, or the highest candidate with first-transmission TB error rate <= target_bler."""
        if self.mcs is not None:
            return self.mcs
        if not math.isfinite(snr_db):
            raise ValueError(f"snr_db must be finite, got {snr_db!r}")
        candidates = self.candidates()
        chosen = candidates[0].mcs
        for info in candidates:
            if self.first_tb_error_rate(info, snr_db) <= self.target_bler:
                chosen = info.mcs
        return chosen

    def transport_block(self, snr_db: float) -> TransportBlockInfo:
        """The TB format of a packet sent at reported SNR ``snr_db``."""
        return transport_block(self.carrier, self.mcs_table, self.select_mcs(snr_db))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for JSON)."""
        return asdict(self)


@cache
def _candidates(carrier: CarrierConfig, mcs_table: int) -> tuple[TransportBlockInfo, ...]:
    infos = [transport_block(carrier, mcs_table, m, check=False) for m in available_mcs(mcs_table)]
    usable = tuple(info for info in infos if info.codable)
    if not usable:
        raise ValueError(f"no MCS of table {mcs_table} can be coded on {carrier.prbs} PRB x {carrier.pusch_symbols} "
                         "symbols; enlarge the allocation")
    return usable
