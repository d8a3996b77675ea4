"""Log-distance path loss with log-normal shadowing: the mean SNR of a UE at a given distance.

Link budget (all in dB / dBm):

    mean_snr_db = tx_power_dbm - PL(d) - X_sigma - (noise_psd_dbm_per_hz + 10 log10(bandwidth_hz) + noise_figure_db)
    PL(d)       = reference_loss_db + 10 · path_loss_exponent · log10(d / reference_distance_m),   d >= d0

``X_sigma ~ N(0, shadowing_sigma_db²)`` is the shadowing of the block (a positive draw is a loss). When
``reference_loss_db`` is None it is the free-space loss at ``reference_distance_m`` and ``carrier_hz``.
The defaults (23 dBm UE, 10 MHz, 7 dB noise figure, exponent 3.5, 3.5 GHz) give ≈ 6.7 dB at 100 m and ≈ 17.2 dB at 50 m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesplit.channel.fading import check_fading, draw_fading_gain
from edgesplit.channel.process import ChannelProcess, LossConfig
from edgesplit.channel.state import ChannelState

SPEED_OF_LIGHT_M_PER_S = 299_792_458.0


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


@dataclass(kw_only=True)
class LinkBudgetConfig(LossConfig):
    """Transmitter, receiver noise and large-scale propagation parameters of the uplink."""

    tx_power_dbm: float = 23.0
    """UE transmit power in dBm (23 dBm = 200 mW, the LTE/NR handset class)."""
    bandwidth_hz: float = 10e6
    """Uplink bandwidth in Hz."""
    noise_figure_db: float = 7.0
    """Receiver noise figure in dB."""
    noise_psd_dbm_per_hz: float = -174.0
    """Thermal noise power spectral density in dBm/Hz (-174 at 290 K)."""
    path_loss_exponent: float = 3.5
    """Log-distance exponent n (2 free space, 3-4 urban macro, up to 6 indoors through walls)."""
    reference_distance_m: float = 1.0
    """Reference distance d0 in metres; the model holds for d >= d0."""
    reference_loss_db: float | None = None
    """Path loss at d0 in dB; None means free-space loss at d0 and ``carrier_hz``."""
    carrier_hz: float = 3.5e9
    """Carrier frequency in Hz (only used for the free-space reference loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("bandwidth_hz", "path_loss_exponent", "reference_distance_m", "carrier_hz"):
            _positive(name, getattr(self, name))
        for name in ("tx_power_dbm", "noise_figure_db", "noise_psd_dbm_per_hz"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.reference_loss_db is not None and not math.isfinite(self.reference_loss_db):
            raise ValueError(f"reference_loss_db must be finite or None, got {self.reference_loss_db!r}")

    @property
    def reference_loss(self) -> float:
        """Path loss at the reference distance in dB."""
        if self.reference_loss_db is not None:
            return self.reference_loss_db
        wavelength_m = SPEED_OF_LIGHT_M_PER_S / self.carrier_hz
        return 20.0 * math.log10(4.0 * math.pi * self.reference_distance_m / wavelength_m)

    @property
    def noise_power_dbm(self) -> float:
        """Receiver noise power over the bandwidth in dBm."""
        return self.noise_psd_dbm_per_hz + 10.0 * math.log10(self.bandwidth_hz) + self.noise_figure_db

    def path_loss_db(self, distance_m: np.ndarray | float) -> np.ndarray | float:
        """Log-distance path loss in dB (vectorised); distances below d0 raise ValueError."""
        d = np.asarray(distance_m, dtype=float)
        if not np.all(np.isfinite(d)) or np.any(d < self.reference_distance_m):
            raise ValueError(f"distance_m must be finite and >= reference_distance_m={self.reference_distance_m}")
        loss = self.reference_loss + 10.0 * self.path_loss_exponent * np.log10(d / self.reference_distance_m)
        return float(loss) if loss.ndim == 0 else loss

    def mean_snr_db(self, distance_m: np.ndarray | float, shadowing_db: np.ndarray | float = 0.0):
        """Mean received SNR in dB at ``distance_m`` with shadowing loss ``shadowing_db``."""
        return self.tx_power_dbm - self.path_loss_db(distance_m) - shadowing_db - self.noise_power_dbm


@dataclass(kw_only=True)
class PathLossConfig(LinkBudgetConfig):
    """A UE at a fixed distance: i.i.d. shadowing and small-scale fading per block."""

    distance_m: float = 100.0
    """UE-to-edge distance in metres (>= reference_distance_m)."""
    shadowing_sigma_db: float = 6.0
    """Standard deviation of log-normal shadowing in dB, drawn independently per block (0 disables)."""
    fading: str = "rayleigh"
    """Small-scale fading per block: one of ``FADING_KINDS`` ('none', 'rayleigh', 'nakagami')."""
    nakagami_m: float = 2.0
    """Nakagami shape (>= 0.5); used only when ``fading == 'nakagami'``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("distance_m", self.distance_m)
        if self.distance_m < self.reference_distance_m:
            raise ValueError(f"distance_m={self.distance_m} is below reference_distance_m={self.reference_distance_m}")
        if not (math.isfinite(self.shadowing_sigma_db) and self.shadowing_sigma_db >= 0.0):
            raise ValueError(f"shadowing_sigma_db must be finite and >= 0, got {self.shadowing_sigma_db!r}")
        check_fading(self.fading, self.nakagami_m)


class PathLossProcess(ChannelProcess):
    """mean SNR = link budget at ``distance_m`` minus a fresh shadowing draw; |h|² drawn per block."""

    config: PathLossConfig

    def _next(self) -> ChannelState:
        cfg = self.config
        shadowing_db = cfg.shadowing_sigma_db * self.rng.standard_normal()
        gain = draw_fading_gain(self.rng, cfg.fading, cfg.nakagami_m)
        return self._state(cfg.mean_snr_db(cfg.distance_m, shadowing_db), gain)

