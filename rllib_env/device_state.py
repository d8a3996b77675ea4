"""The UE's own state (CPU clock and background load) as a seeded Markov chain, and a reward priced with it.

The device state changes the analytic cost of a split, never its quality: a slower clock makes the UE's layers take
longer but cost less energy (``e = kappa · cycles · f²``), and background load leaves a smaller share of the CPU to
the model (the profile's ``utilisation`` times ``1 − load``). :class:`DeviceChain` steps through a few DVFS levels
and load levels: every block it keeps its state with probability ``1 − switch_prob`` and otherwise draws a fresh
(frequency, load) pair uniformly. :class:`DeviceAwareReward` is :class:`~edgesplit.reward.SplitReward` with the cost
model called at that state (``f_hz`` and the loaded utilisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from edgesplit.cost import ModelProfile
from edgesplit.reward import RewardConfig, SplitReward


@dataclass(frozen=True)
class DeviceState:
    """The UE during one block."""

    f_hz: float
    """CPU clock frequency."""
    load: float
    """Share of the CPU taken by other work, in [0, 1)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.f_hz) and self.f_hz > 0):
            raise ValueError(f"f_hz must be > 0, got {self.f_hz!r}")
        if not 0.0 <= self.load < 1.0:
            raise ValueError(f"load must be in [0, 1), got {self.load!r}")


@dataclass(frozen=True)
class DeviceChainConfig:
    """Levels and switching rate of the UE state."""

    f_levels_hz: tuple[float, ...] = (1.0e9, 2.0e9, 3.0e9)
    """DVFS levels the UE may run at (each within the device preset's range)."""
    load_levels: tuple[float, ...] = (0.0, 0.5)
    """Background-load levels, each in [0, 1)."""
    switch_prob: float = 0.05
    """Probability per block of drawing a fresh (frequency, load) pair."""

    def __post_init__(self) -> None:
        if not self.f_levels_hz or not self.load_levels:
            raise ValueError("f_levels_hz and load_levels must each hold at least one level")
        for f in self.f_levels_hz:
            DeviceState(f, 0.0)
        for load in self.load_levels:
            DeviceState(1.0, load)
        if not 0.0 <= self.switch_prob <= 1.0:
            raise ValueError(f"switch_prob must be in [0, 1], got {self.switch_prob!r}")


class DeviceChain:
    """Seeded Markov chain over :class:`DeviceChainConfig` levels (same seed, same sequence)."""

    def __init__(self, config: DeviceChainConfig, seed: int) -> None:
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.state = self._draw()

    def _draw(self) -> DeviceState:
        c = self.config
        return DeviceState(float(c.f_levels_hz[self.rng.integers(len(c.f_levels_hz))]),
                           float(c.load_levels[self.rng.integers(len(c.load_levels))]))

    def step(self) -> DeviceState:
        """The next block's state."""
        if self.rng.random() < self.config.switch_prob:
            self.state = self._draw()
        return self.state


class DeviceAwareReward(SplitReward):
    """:class:`SplitReward` whose cost part is priced at one :class:`DeviceState` (see the module docstring)."""

    def __init__(self, config: RewardConfig, profile: ModelProfile, state: DeviceState) -> None:
        super().__init__(config, profile)
        self._device.check_frequency(state.f_hz)
        self.state = state
        # the base class prices every split with this device profile (split_costs runs at its f_hz)
        self._device = replace(self._device, f_hz=state.f_hz, utilisation=self._device.utilisation * (1.0 - state.load))


class RewardBook:
    """One :class:`DeviceAwareReward` per device state met so far (their cost memos are kept)."""

    def __init__(self, config: RewardConfig, profile: ModelProfile) -> None:
        self.config, self.profile = config, profile
        self._by_state: dict[DeviceState, DeviceAwareReward] = {}

    def __call__(self, state: DeviceState) -> DeviceAwareReward:
        if state not in self._by_state:
            self._by_state[state] = DeviceAwareReward(self.config, self.profile, state)
        return self._by_state[state]


__all__ = ["DeviceAwareReward", "DeviceChain", "DeviceChainConfig", "DeviceState", "RewardBook"]
