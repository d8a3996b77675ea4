"""The common interface of channel processes: seeded generators of one :class:`ChannelState` per block.

Every process is built from a ``*Config`` dataclass, owns a ``numpy.random.Generator`` and exposes
``reset(seed)``, ``step()`` and ``sample(n)``. The same seed gives a bit-identical sequence of states.

The packet-loss rate of each state is either fixed (``loss_rate``) or derived from the block's
instantaneous SNR through the digital link (``loss_modulation``): the probability that a packet of
``loss_packet_bits`` bits holds at least one bit error, which is what a CRC-checked link discards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesplit.channel.modulation import MODULATIONS, packet_error_rate
from edgesplit.channel.state import ChannelState

MIN_FADING_GAIN = 1e-12
"""Floor on |h|² so that a (measure-zero) exact-zero draw still gives a finite SNR in dB."""


@dataclass(kw_only=True)
class LossConfig:
    """Packet-loss fields shared by every process config."""

    loss_rate: float = 0.0
    """Fixed probability that a packet (fragment) is erased, in [0, 1); used when ``loss_modulation`` is None."""
    loss_modulation: str | None = None
    """If set (one of ``MODULATIONS``), derive the loss rate per block from the instantaneous SNR instead."""
    loss_packet_bits: int = 12_000
    """Packet length in bits for the SNR-derived loss rate (12,000 bits = one 1,500-byte frame)."""
    max_loss_rate: float = 0.999
    """Cap on the SNR-derived loss rate (ChannelState requires a rate below 1)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_rate < 1.0:
            raise ValueError(f"loss_rate must be in [0, 1), got {self.loss_rate!r}")
        if self.loss_modulation is not None and self.loss_modulation not in MODULATIONS:
            valid = sorted(MODULATIONS)
            raise ValueError(f"loss_modulation must be None or one of {valid}, got {self.loss_modulation!r}")
        if self.loss_packet_bits < 1:
            raise ValueError(f"loss_packet_bits must be a positive integer, got {self.loss_packet_bits!r}")
        if not 0.0 <= self.max_loss_rate < 1.0:
            raise ValueError(f"max_loss_rate must be in [0, 1), got {self.max_loss_rate!r}")

    def loss_for(self, snr_db: float) -> float:
        """The packet-loss rate of a block whose instantaneous SNR is ``snr_db``."""
        if self.loss_modulation is None:
            return self.loss_rate
        per = packet_error_rate(self.loss_modulation, snr_db, self.loss_packet_bits)
        return float(min(per, self.max_loss_rate))


class ChannelProcess(ABC):
    """A seeded generator of channel states, one per fading block / decoding step."""

    config: Any
    """The ``*Config`` dataclass the process was built from."""

    def __init__(self, config: Any, seed: int | None = None) -> None:
        self.config = config
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Restart the process; ``seed=None`` draws fresh OS entropy (not reproducible)."""
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self._reset_state()

    def _reset_state(self) -> None:
        """Hook for processes with memory (AR(1) states, trace cursors); called by :meth:`reset`."""
        return None

    @abstractmethod
    def _next(self) -> ChannelState:
        """Draw the state of the next block."""

    def step(self) -> ChannelState:
        """The next block's channel state."""
        state = self._next()
        self.t += 1
        return state

    def sample(self, n: int) -> list[ChannelState]:
        """The next ``n`` states (continues the sequence; call :meth:`reset` to restart it)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        return [self.step() for _ in range(n)]

    def _state(self, mean_snr_db: float, fading_gain: float = 1.0) -> ChannelState:
        """Build a state, deriving its loss rate from the config's :class:`LossConfig` fields."""
        gain = max(float(fading_gain), MIN_FADING_GAIN)
        state = ChannelState(mean_snr_db=float(mean_snr_db), fading_gain=gain)
        loss = self.config.loss_for(state.snr_db)
        return ChannelState(mean_snr_db=state.mean_snr_db, fading_gain=gain, loss_rate=loss)
