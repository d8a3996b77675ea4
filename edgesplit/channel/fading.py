"""Block fading: one small-scale power gain |h|² per block, i.i.d. across blocks, mean 1.

Rayleigh fading (no line of sight) gives |h|² ~ Exp(1); Nakagami-m gives |h|² ~ Gamma(m, 1/m)
(m = 1 is Rayleigh, larger m is milder fading, m -> inf is no fading). For time-correlated Rayleigh
fading see :mod:`edgesplit.channel.gauss_markov`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesplit.channel.process import ChannelProcess, LossConfig
from edgesplit.channel.state import ChannelState

FADING_KINDS = ("none", "rayleigh", "nakagami")
"""Small-scale fading models accepted by processes that take a ``fading`` field."""


def check_fading(fading: str, nakagami_m: float) -> None:
    """Raise ValueError for an unknown fading kind or an invalid Nakagami shape."""
    if fading not in FADING_KINDS:
        raise ValueError(f"unknown fading {fading!r}; valid: {list(FADING_KINDS)}")
    if fading == "nakagami" and not (math.isfinite(nakagami_m) and nakagami_m >= 0.5):
        raise ValueError(f"nakagami_m must be a finite number >= 0.5, got {nakagami_m!r}")


def draw_fading_gain(rng: np.random.Generator, fading: str, nakagami_m: float = 1.0) -> float:
    """One block's |h|² (mean 1) under ``fading`` ('none', 'rayleigh' or 'nakagami')."""
    if fading == "rayleigh":
        return float(rng.exponential(1.0))
    if fading == "nakagami":
        return float(rng.gamma(nakagami_m, 1.0 / nakagami_m))
    return 1.0


def _check_snr(mean_snr_db: float) -> None:
    if not math.isfinite(mean_snr_db):
        raise ValueError(f"mean_snr_db must be finite, got {mean_snr_db!r}")


@dataclass(kw_only=True)
class RayleighConfig(LossConfig):
    """I.i.d. Rayleigh block fading around a fixed mean SNR."""

    mean_snr_db: float = 10.0
    """Average received SNR in dB (Es/N0 per symbol) before fading."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_snr(self.mean_snr_db)


class RayleighProcess(ChannelProcess):
    """|h|² ~ Exp(1) per block."""

    config: RayleighConfig

    def _next(self) -> ChannelState:
        return self._state(self.config.mean_snr_db, draw_fading_gain(self.rng, "rayleigh"))


@dataclass(kw_only=True)
class NakagamiConfig(LossConfig):
    """I.i.d. Nakagami-m block fading around a fixed mean SNR."""

    mean_snr_db: float = 10.0
    """Average received SNR in dB (Es/N0 per symbol) before fading."""
    m: float = 2.0
    """Nakagami shape parameter (>= 0.5); m = 1 is Rayleigh, larger is milder."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_snr(self.mean_snr_db)
        check_fading("nakagami", self.m)


class NakagamiProcess(ChannelProcess):
    """|h|² ~ Gamma(m, 1/m) per block."""

    config: NakagamiConfig

    def _next(self) -> ChannelState:
        return self._state(self.config.mean_snr_db, draw_fading_gain(self.rng, "nakagami", self.config.m))
