"""The cost side of a live split decision: price every split at a UE's reported state and pick the best one.

pricer = Pricer(reward_preset("paper"), profile)
choice = pricer.choose(ks, bits, quality, state, channel="awgn")   # best feasible (k, bits), its reward, a note

The reward of a candidate split is the reward of :mod:`edgesplit.reward` (quality term + offload − latency −
energy), priced by the cost model (:func:`edgesplit.cost.split_costs`) at what the UE reported: its device preset
and clock (:class:`~rllib_env.device_state.DeviceAwareReward`, background load 0), its newest SNR and loss rate,
and a request of ``context_tokens`` tokens (rounded up to a power of two; 0: the reward config's ``tokens``). Two
terms come from the UE state and not from the reward config:

- ``latency_budget_s``: a hard limit — splits priced above it are infeasible. When none meets it the fastest
  feasible split is taken and the note says so.
- ``battery``: an extra UE-energy penalty ``BATTERY_ENERGY_WEIGHT · (1 − battery) · ue_energy_j /
  energy_scale_j``: a full battery adds nothing, an empty one charges every joule the UE spends.

Prices are cached on rounded keys (SNR 0.1 dB — SplitEnv's ``snr_resolution_db`` —, loss 0.01, clock 1 MHz), so a
steady stream of reports costs a dictionary lookup and a few numpy operations per decision; policies price a
default UE over :data:`WARM_RANGE_DB` when they are built (:meth:`Pricer.warm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from edgesplit.cost import ModelProfile, get_device
from edgesplit.reward import RewardConfig
from edgesplit.scenario import ChannelSetting
from rllib_env.device_state import DeviceAwareReward, DeviceState
from serve_deployments.split_schema import UEState

BATTERY_ENERGY_WEIGHT = 1.0
"""Reward per ``energy_scale_j`` of UE energy charged at an empty battery (scaled by ``1 − battery``)."""
SNR_STEP_DB = 0.1
"""Resolution of the SNR a decision is priced (and a surrogate queried) at."""
SNR_RANGE_DB = (-30.0, 60.0)
"""SNRs outside this range are priced at its ends (the surrogate's accepted input range)."""
CACHE_SIZE = 8192
"""Priced (state, channel) keys kept per pricer."""
WARM_RANGE_DB = (-10.0, 40.0)
"""SNRs a policy prices a default UE at when it is built (every 0.1 dB)."""


def rounded_snr(snr_db: float) -> float:
    """The SNR a decision uses: clipped to :data:`SNR_RANGE_DB`, rounded to :data:`SNR_STEP_DB`."""
    return round(round(min(max(snr_db, SNR_RANGE_DB[0]), SNR_RANGE_DB[1]) / SNR_STEP_DB) * SNR_STEP_DB, 1)


def warm_grid() -> np.ndarray:
    """The SNRs of :data:`WARM_RANGE_DB` at :data:`SNR_STEP_DB`."""
    count = int(round((WARM_RANGE_DB[1] - WARM_RANGE_DB[0]) / SNR_STEP_DB)) + 1
    return np.round(WARM_RANGE_DB[0] + SNR_STEP_DB * np.arange(count), 1)


def rounded_loss(loss_rate: float) -> float:
    """The loss rate a decision uses (SplitEnv's rule: capped at 0.99, two decimals)."""
    return round(min(loss_rate, 0.99), 2)


def request_tokens(state: UEState, default: int) -> int:
    """Tokens of the priced request: ``context_tokens`` rounded up to a power of two, or ``default`` when 0."""
    return default if state.context_tokens == 0 else 1 << (state.context_tokens - 1).bit_length()


ANALOG_ENCODINGS = {32: "float32", 16: "float16", 8: "int8", 4: "int4"}
"""Packet encoding of an analog candidate by its bits per element (other widths price as float32)."""


def make_setting(channel: str, snr_db: float, loss_rate: float, bits: int, modulation: str) -> ChannelSetting:
    """The channel setting of a candidate: ``digital`` quantised to ``bits``, or analog (``awgn``) in the packet
    encoding of that width."""
    if channel == "digital":
        return ChannelSetting(kind="digital", snr_db=snr_db, bits=bits, modulation=modulation, loss_rate=loss_rate)
    return ChannelSetting(kind=channel, snr_db=snr_db, loss_rate=loss_rate,
                          encoding=ANALOG_ENCODINGS.get(bits, "float32"))


@dataclass(frozen=True)
class PricedSplits:
    """The cost side of every split ``0..L`` at one state (index = k)."""

    analytic: np.ndarray
    """Offload − latency − energy (+ bias) terms of the reward config."""
    feasible: np.ndarray
    """Allowed by the split range, the memory model and the config's hard limits."""
    latency_s: np.ndarray
    """Latency of the priced request."""
    ue_energy_j: np.ndarray
    """UE energy of the priced request."""


@dataclass(frozen=True)
class Choice:
    """The pick among candidates."""

    index: int
    """Index of the chosen candidate."""
    reward: float
    """Its reward (battery penalty included)."""
    feasible: int
    """How many candidates were feasible (latency budget included)."""
    note: str
    """Empty, or what the budget forced."""


class Pricer:
    """Prices splits for a reward config and model (see the module docstring)."""

    def __init__(self, config: RewardConfig, profile: ModelProfile) -> None:
        self.config, self.profile = config, profile
        self.ks = np.arange(profile.num_layers + 1)
        self._price = lru_cache(maxsize=CACHE_SIZE)(self._compute)

    def price(self, state: UEState, channel: str = "awgn", bits: int = 32, modulation: str = "qpsk") -> PricedSplits:
        """Every split's cost terms at ``state`` (cached on rounded keys)."""
        device = get_device(state.device)
        f_hz = min(max(round(state.f_hz, -6), device.f_min_hz), device.f_max_hz)
        return self._price(state.device, f_hz, request_tokens(state, self.config.tokens), rounded_snr(state.snr_db),
                           rounded_loss(state.loss_rate), channel, bits, modulation)

    def warm(self, snrs_db: np.ndarray, channel: str = "awgn", bits: int = 32, modulation: str = "qpsk") -> None:
        """Price a default UE (default device and clock, no loss, default request) at ``snrs_db`` ahead of time."""
        for snr in snrs_db:
            self.price(UEState(snr_db_history=[float(snr)]), channel, bits, modulation)

    def _compute(self, device: str, f_hz: float, tokens: int, snr_db: float, loss_rate: float, channel: str,
                 bits: int, modulation: str) -> PricedSplits:
        reward = DeviceAwareReward(replace(self.config, device=device, tokens=tokens), self.profile,
                                   DeviceState(f_hz, 0.0))  # a fresh object per key: its own memo dies with it
        settings = [make_setting(channel, snr_db, loss_rate, bits, modulation)] * len(self.ks)
        analytic, feasible = reward.cost_terms(self.ks, settings)
        costs = [reward.cost(int(k), settings[0]) for k in self.ks]
        return PricedSplits(analytic, feasible, np.array([c.total_latency_s for c in costs]),
                            np.array([c.ue_energy_j for c in costs]))

    def choose(self, ks: np.ndarray, bits: np.ndarray, quality: np.ndarray, state: UEState, channel: str = "awgn",
               modulation: str = "qpsk") -> Choice:
        """The best feasible candidate ``(ks[i], bits[i])`` with ``quality[i]`` = (log PPL ratio, KL, top-1)."""
        ks, bits = np.asarray(ks, dtype=int), np.asarray(bits, dtype=int)
        analytic, feasible = np.empty(len(ks)), np.empty(len(ks), dtype=bool)
        latency, energy = np.empty(len(ks)), np.empty(len(ks))
        for b in np.unique(bits):
            rows = bits == b
            priced = self.price(state, channel, int(b), modulation)
            analytic[rows], feasible[rows] = priced.analytic[ks[rows]], priced.feasible[ks[rows]]
            latency[rows], energy[rows] = priced.latency_s[ks[rows]], priced.ue_energy_j[ks[rows]]
        c = self.config
        reward = c.quality_weight * c.quality_gain(quality[:, 0], quality[:, 1], quality[:, 2]) + analytic
        if state.battery is not None:
            reward = reward - BATTERY_ENERGY_WEIGHT * (1.0 - state.battery) * energy / c.energy_scale_j
        return self._pick(reward, feasible, latency, state.latency_budget_s)

    @staticmethod
    def _pick(reward: np.ndarray, feasible: np.ndarray, latency: np.ndarray, budget: float | None) -> Choice:
        within = feasible if budget is None else feasible & (latency <= budget)
        if within.any():
            best = int(np.argmax(np.where(within, reward, -np.inf)))
            return Choice(best, float(reward[best]), int(within.sum()), "")
        if feasible.any():
            best = int(np.argmin(np.where(feasible, latency, np.inf)))
            return Choice(best, float(reward[best]), 0, f"no split meets the {budget:g} s budget; fastest")
        best = int(np.argmax(reward))
        return Choice(best, float(reward[best]), 0, "no feasible split")

    def nearest_feasible(self, k: int, state: UEState) -> tuple[int, str]:
        """The split nearest ``k`` that is feasible within the latency budget (the lower one on a tie)."""
        priced = self.price(state)
        budget = state.latency_budget_s
        within = priced.feasible if budget is None else priced.feasible & (priced.latency_s <= budget)
        if within[k]:
            return k, ""
        if not within.any():
            choice = self._pick(np.zeros(len(self.ks)), priced.feasible, priced.latency_s, budget)
            return int(self.ks[choice.index]), choice.note
        candidates = np.flatnonzero(within)
        best = int(candidates[np.argmin(np.abs(candidates - k))])
        why = f"latency {priced.latency_s[k]:.3g} s > {budget:g} s budget" if priced.feasible[k] else "infeasible"
        return best, f"k={k} {why}"

    def least_energy(self, k_max: int, state: UEState) -> int:
        """The feasible split ``<= k_max`` (within the latency budget where possible) that spends the least UE
        energy."""
        priced = self.price(state)
        allowed = priced.feasible & (self.ks <= k_max)
        if state.latency_budget_s is not None and (allowed & (priced.latency_s <= state.latency_budget_s)).any():
            allowed &= priced.latency_s <= state.latency_budget_s
        if not allowed.any():
            return k_max
        return int(np.argmin(np.where(allowed, priced.ue_energy_j, math.inf)))


__all__ = ["ANALOG_ENCODINGS", "BATTERY_ENERGY_WEIGHT", "CACHE_SIZE", "SNR_RANGE_DB", "SNR_STEP_DB", "WARM_RANGE_DB",
           "Choice", "PricedSplits", "Pricer", "make_setting", "request_tokens", "rounded_loss", "rounded_snr",
           "warm_grid"]
