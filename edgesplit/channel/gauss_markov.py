"""Time-correlated channels: Gauss–Markov (AR(1)) mobility, shadowing and Rayleigh fading.

Three independent AR(1) processes, each started from its stationary law so that every block has
the same marginal distribution:

* UE distance ``d_t = d̄ + rho_d (d_{t-1} - d̄) + sqrt(1 - rho_d²) σ_d w_t`` (mobility around a mean
  distance; clamped at the reference distance when the link budget is evaluated);
* shadowing ``s_t = rho_s s_{t-1} + sqrt(1 - rho_s²) σ_s w_t`` in dB (correlated log-normal shadowing);
* complex gain ``h_t = rho_h h_{t-1} + sqrt(1 - rho_h²) w_t`` with ``w_t ~ CN(0, 1)``: |h_t|² stays
  Exp(1) marginally (Rayleigh) while the correlation of |h|² between blocks is rho_h².
  :func:`jakes_rho` turns a UE speed into rho_h via Clarke's model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from edgesplit.channel.path_loss import SPEED_OF_LIGHT_M_PER_S, LinkBudgetConfig
from edgesplit.channel.process import ChannelProcess
from edgesplit.channel.state import ChannelState

CORRELATED_FADING_KINDS = ("none", "rayleigh")
"""Fading models with a Gauss–Markov (AR(1)) form."""


def jakes_rho(speed_mps: float, carrier_hz: float, block_s: float) -> float:
    """Lag-one correlation of the complex gain under Clarke/Jakes: J0(2π f_D T), f_D = v f_c / c."""
    doppler_hz = speed_mps * carrier_hz / SPEED_OF_LIGHT_M_PER_S
    return float(special.j0(2.0 * math.pi * doppler_hz * block_s))


def _check_rho(name: str, value: float) -> None:
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [-1, 1], got {value!r}")


def _check_sigma(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


@dataclass(kw_only=True)
class GaussMarkovConfig(LinkBudgetConfig):
    """A moving UE: AR(1) distance, AR(1) shadowing and AR(1) Rayleigh fading."""

    distance_m: float = 100.0
    """Mean UE-to-edge distance in metres (>= reference_distance_m)."""
    distance_sigma_m: float = 0.0
    """Stationary standard deviation of the distance in metres (0 keeps the UE still)."""
    distance_rho: float = 0.99
    """Lag-one correlation of the distance between blocks, in [-1, 1]."""
    shadowing_sigma_db: float = 6.0
    """Stationary standard deviation of shadowing in dB (0 disables)."""
    shadowing_rho: float = 0.95
    """Lag-one correlation of shadowing between blocks, in [-1, 1]."""
    fading: str = "rayleigh"
    """Small-scale fading: 'rayleigh' (AR(1) complex gain) or 'none'."""
    fading_rho: float = 0.9
    """Lag-one correlation of the complex gain h, in [-1, 1]; |h|² correlates with rho²."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.distance_m) and self.distance_m >= self.reference_distance_m):
            raise ValueError(f"distance_m must be >= reference_distance_m={self.reference_distance_m}, "
                             f"got {self.distance_m!r}")
        _check_sigma("distance_sigma_m", self.distance_sigma_m)
        _check_sigma("shadowing_sigma_db", self.shadowing_sigma_db)
        for name in ("distance_rho", "shadowing_rho", "fading_rho"):
            _check_rho(name, getattr(self, name))
        if self.fading not in CORRELATED_FADING_KINDS:
            raise ValueError(f"unknown fading {self.fading!r} for gauss_markov; valid: {list(CORRELATED_FADING_KINDS)}")


class GaussMarkovProcess(ChannelProcess):
    """Steps the three AR(1) states once per block; the current values are readable attributes."""

    config: GaussMarkovConfig
    distance_m: float
    """Current (unclamped) UE distance in metres."""
    shadowing_db: float
    """Current shadowing loss in dB."""
    h: complex
    """Current complex small-scale gain."""

    def _reset_state(self) -> None:
        cfg = self.config
        self.distance_m = cfg.distance_m + cfg.distance_sigma_m * self.rng.standard_normal()
        self.shadowing_db = cfg.shadowing_sigma_db * self.rng.standard_normal()
        self.h = self._complex_normal()

    def _complex_normal(self) -> complex:
        re, im = self.rng.standard_normal(2) / math.sqrt(2.0)
        return complex(re, im)

    def _advance(self) -> None:
        cfg = self.config
        w_d, w_s = self.rng.standard_normal(2)
        d_rho, s_rho, h_rho = cfg.distance_rho, cfg.shadowing_rho, cfg.fading_rho
        self.distance_m = cfg.distance_m + d_rho * (self.distance_m - cfg.distance_m)
        self.distance_m += math.sqrt(1.0 - d_rho**2) * cfg.distance_sigma_m * w_d
        self.shadowing_db = s_rho * self.shadowing_db + math.sqrt(1.0 - s_rho**2) * cfg.shadowing_sigma_db * w_s
        self.h = h_rho * self.h + math.sqrt(1.0 - h_rho**2) * self._complex_normal()

    def _next(self) -> ChannelState:
        # The first block is the stationary draw made by reset, so sample(n) starts at the stationary law.
        if self.t > 0:
            self._advance()
        cfg = self.config
        distance = max(self.distance_m, cfg.reference_distance_m)
        gain = abs(self.h) ** 2 if cfg.fading == "rayleigh" else 1.0
        return self._state(cfg.mean_snr_db(distance, self.shadowing_db), gain)
