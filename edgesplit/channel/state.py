"""The state of the UE→edge link during one fading block.

SNR convention (used by every module): ``mean_snr_db`` is the average received SNR at the link
profile's reference transmit power (path loss + shadowing, no small-scale fading); ``fading_gain``
is the small-scale power gain ``|h|²`` of the current block (mean 1); the instantaneous received
SNR is therefore ``mean_snr_db + 10·log10(fading_gain)``. A different transmit power ``p_w``
scales the linear SNR by ``p_w / p_ref_w`` (see :mod:`edgesplit.cost`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ChannelState:
    """One block of the uplink, as seen by impairments and the cost model."""

    mean_snr_db: float
    """Average received SNR in dB at the reference transmit power (no small-scale fading)."""
    fading_gain: float = 1.0
    """Small-scale power gain |h|² of this block; 1.0 means no fading."""
    loss_rate: float = 0.0
    """Probability that a packet (or a fragment of one) is erased, in [0, 1)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean_snr_db):
            raise ValueError(f"mean_snr_db must be finite, got {self.mean_snr_db!r}")
        if not (math.isfinite(self.fading_gain) and self.fading_gain > 0.0):
            raise ValueError(f"fading_gain must be a finite positive number, got {self.fading_gain!r}")
        if not (0.0 <= self.loss_rate < 1.0):
            raise ValueError(f"loss_rate must be in [0, 1), got {self.loss_rate!r}")

    @property
    def snr_db(self) -> float:
        """Instantaneous received SNR in dB (mean SNR plus the block's fading gain)."""
        return self.mean_snr_db + 10.0 * math.log10(self.fading_gain)

    @property
    def snr_linear(self) -> float:
        """Instantaneous received SNR as a linear power ratio."""
        return 10.0 ** (self.snr_db / 10.0)

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for parquet rows and JSON), including the derived ``snr_db``."""
        return {**asdict(self), "snr_db": self.snr_db}
