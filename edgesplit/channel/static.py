"""A channel that never changes: the same SNR, fading gain and loss rate in every block."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgesplit.channel.process import ChannelProcess, LossConfig
from edgesplit.channel.state import ChannelState


@dataclass(kw_only=True)
class StaticConfig(LossConfig):
    """A fixed link (e.g. a sweep point of the profiler)."""

    mean_snr_db: float = 10.0
    """Received SNR in dB (Es/N0 per symbol)."""
    fading_gain: float = 1.0
    """Constant small-scale power gain |h|²; 1.0 means no fading."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.mean_snr_db):
            raise ValueError(f"mean_snr_db must be finite, got {self.mean_snr_db!r}")
        if not (math.isfinite(self.fading_gain) and self.fading_gain > 0.0):
            raise ValueError(f"fading_gain must be a finite positive number, got {self.fading_gain!r}")


class StaticProcess(ChannelProcess):
    """Returns the configured state at every step (the seed is accepted for interface symmetry)."""

    config: StaticConfig

    def _next(self) -> ChannelState:
        return self._state(self.config.mean_snr_db, self.config.fading_gain)
