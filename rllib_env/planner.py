"""Model-based planning of the split under switching costs: a channel forecaster, a reward model, and dynamic
programming over the rest of the generation in expectation.

from rllib_env.planner import ChannelForecaster, SwitchingPlanner
forecaster = ChannelForecaster.fit(env_config, traces=512, seed=0)      # simulated channel only: no LLM evaluation
planner = SwitchingPlanner(surrogate_source, forecaster)                # a policy (env, obs) -> action

Why. With switching costs (:mod:`rllib_env.split_env`, ``switching=True``) the best split of a block depends on the
blocks to come: a move pays a KV migration now and only pays off if the new split stays better for a while. The
greedy oracle is myopic; the hindsight optimum (:mod:`rllib_env.hindsight`) knows the future. A causal policy can
only know the future in distribution, and that is what this planner uses.

The model. The channel and the device are exogenous. :class:`ChannelForecaster` is a first-order Markov chain over
the block's instantaneous SNR binned to ``bin_db`` (default 0.5 dB), its transitions counted on simulated traces
of the env's own channel process (``process`` + ``process_params``, seeds disjoint from the evaluation's) — in a
deployment the same counts come from the UE's CQI log; the kernel smoothing (a Gaussian of ``smooth_bins`` bins
mixed in with weight ``smooth_weight``) keeps rarely visited bins from having empty rows. The device chain's
transitions are taken from its config (:class:`~rllib_env.device_state.DeviceChainConfig`: keep the state with
probability ``1 − switch_prob``, else a uniform fresh draw). A future block in SNR bin ``b`` is scored at the
reward setting the env would use for an SNR at the bin's centre (the grid point it snaps to, or the 0.5-dB
rounding of the continuous mode): quality from ``source`` (the surrogate, with measured cells at their measured
values — the model-based policy — or a measured table, which makes it the causal planner's bound), the cost part
at every device state, and the switch penalty of every pair of splits at the block's context
(:func:`edgesplit.cost.switch_cost_table`, the env's weights).

The plan. Backward induction over blocks ``t = T−1 … 1`` (``T = episode_steps``) on states (SNR bin, device state,
previous split)::

    V_t(b, d, i) = max_j feasible [ R(b, d, j) − P_t(b, i, j) + C_{t+1}(b, d, j) ]
    C_t(b, d, j) = Σ_{b', d'} Pr(b' | b) · Pr(d' | d) · V_t(b', d', j)                 (C_T = 0)

built once per (source, env config). At block ``t`` the current block is known exactly — its reward and the
penalty from the previous split are the env's own (:meth:`SplitEnv.candidate_rewards` on ``source``) — so the
action is ``argmax_j`` over feasible rows of that reward plus ``C_{t+1}(bin of the current SNR, device, j)``. The
greedy oracle is the special case ``C = 0``. Planning spends no real evaluation: with a counted
:class:`~rllib_env.sources.RealRewardSource` it would, so the planner refuses one (give it a surrogate or a table).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesplit.channel import ChannelState, make_process
from edgesplit.cost import switch_cost_table
from rllib_env.device_state import DeviceState
from rllib_env.sources import RealRewardSource, RewardSource
from rllib_env.split_env import SplitEnv, SplitEnvConfig


@dataclass(frozen=True)
class ForecasterConfig:
    """How the channel forecaster is counted."""

    traces: int = 512
    """Simulated traces of the env's channel process."""
    seed: int = 0
    """Seed of the simulated traces (they start at ``2**32 + seed``, away from the evaluation's trace seeds)."""
    bin_db: float = 0.5
    """Width of the SNR bins."""
    smooth_bins: float = 2.0
    """Standard deviation, in bins, of the Gaussian kernel mixed into every row."""
    smooth_weight: float = 0.02
    """Weight of that kernel against the counted transitions (a row with few counts is mostly kernel)."""

    def __post_init__(self) -> None:
        if self.traces < 1 or not self.bin_db > 0 or not self.smooth_bins > 0 or not 0 <= self.smooth_weight < 1:
            raise ValueError("need traces >= 1, bin_db > 0, smooth_bins > 0 and smooth_weight in [0, 1)")


class ChannelForecaster:
    """First-order Markov chain over binned block SNRs (see the module docstring)."""

    def __init__(self, low_bin: int, transition: np.ndarray, bin_db: float, loss_rate: np.ndarray) -> None:
        self.low_bin, self.bin_db = int(low_bin), float(bin_db)
        self.transition = np.asarray(transition, dtype=float)
        self.loss_rate = np.asarray(loss_rate, dtype=float)
        if self.transition.ndim != 2 or self.transition.shape[0] != self.transition.shape[1]:
            raise ValueError(f"transition must be square, got shape {self.transition.shape}")
        if not np.allclose(self.transition.sum(axis=1), 1.0):
            raise ValueError("every row of the transition matrix must sum to 1")

    @classmethod
    def fit(cls, env_config: dict[str, Any] | SplitEnvConfig, config: ForecasterConfig | None = None,
            **overrides: Any) -> ChannelForecaster:
        """Count transitions on ``config.traces`` simulated traces of the env's channel process."""
        c = config or ForecasterConfig(**overrides)
        env = env_config if isinstance(env_config, SplitEnvConfig) else SplitEnvConfig.from_dict(env_config)
        pairs, losses = [], []
        for trace in range(c.traces):
            process = make_process(env.process, seed=2**32 + c.seed * 100_003 + trace, **env.process_params)
            states = [process.step() for _ in range(env.episode_steps)]
            bins = np.array([round(s.snr_db / c.bin_db) for s in states])
            pairs.append(np.stack([bins[:-1], bins[1:]], axis=1))
            losses.extend((int(b), s.loss_rate) for b, s in zip(bins, states, strict=True))
        pairs = np.concatenate(pairs)
        low, high = int(pairs.min()), int(pairs.max())
        size = high - low + 1
        counts = np.zeros((size, size))
        np.add.at(counts, (pairs[:, 0] - low, pairs[:, 1] - low), 1.0)
        offsets = np.arange(size)
        kernel = np.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / c.smooth_bins) ** 2)
        kernel /= kernel.sum(axis=1, keepdims=True)
        rows = counts.sum(axis=1, keepdims=True)
        empirical = np.divide(counts, rows, out=kernel.copy(), where=rows > 0)
        weight = c.smooth_weight + (1 - c.smooth_weight) * (rows == 0)
        transition = (1 - weight) * empirical + weight * kernel
        loss = np.zeros(size)
        for b in range(size):
            seen = [x for bb, x in losses if bb - low == b]
            loss[b] = float(np.mean(seen)) if seen else 0.0
        return cls(low, transition, c.bin_db, loss)

    @property
    def centres_db(self) -> np.ndarray:
        """SNR at the centre of every bin."""
        return (self.low_bin + np.arange(len(self.transition))) * self.bin_db

    def bin_of(self, snr_db: float) -> int:
        """Row of the bin holding ``snr_db`` (clipped to the bins seen in simulation)."""
        return int(np.clip(round(snr_db / self.bin_db) - self.low_bin, 0, len(self.transition) - 1))


def device_transition(env: SplitEnv) -> tuple[list[DeviceState], np.ndarray]:
    """The device chain's states and its transition matrix (from its config, see the module docstring)."""
    c = env.config.device
    states = [DeviceState(float(f), float(load)) for f, load in itertools.product(c.f_levels_hz, c.load_levels)]
    n = len(states)
    return states, (1 - c.switch_prob) * np.eye(n) + c.switch_prob / n


class SwitchingPlanner:
    """Causal expected-value planner over the rest of the episode (see the module docstring)."""

    def __init__(self, source: RewardSource, forecaster: ChannelForecaster) -> None:
        if isinstance(source, RealRewardSource):
            raise ValueError("the planner scores every cell of every future block; a counted real source would spend "
                             "an LLM evaluation on each — give it a surrogate or a measured table")
        self.source, self.forecaster = source, forecaster
        self._key: Any = None
        self.continuation: np.ndarray | None = None
        self.devices: list[DeviceState] = []

    def __call__(self, env: SplitEnv, obs: np.ndarray) -> Any:
        if self._key != (id(env.config), env.config):
            self.build(env)
        candidates = env.candidate_rewards(self.source)
        value = candidates["reward"].astype(float)
        if env.t + 1 < env.config.episode_steps:
            b = self.forecaster.bin_of(env.block_snr_db)
            value = value + self.continuation[env.t + 1, b, self.devices.index(env.device_state)]
        feasible = candidates["feasible"] if candidates["feasible"].any() else np.ones_like(candidates["feasible"])
        if env.config.action == "relative":
            feasible = feasible & (np.abs(candidates["k"] - env.prev_k) <= env.config.max_move)
        best = int(np.argmax(np.where(feasible, value, -np.inf)))
        return env.action_for(int(candidates["k"][best]), int(candidates["bits"][best]))

    def build(self, env: SplitEnv) -> None:
        """The continuation values ``C_t(b, d, j)`` for ``t = 1 … T`` (``C_T = 0``) of ``env``'s configuration."""
        rewards, feasible, penalties = self.tables(env)
        transition_d = device_transition(env)[1]
        steps = env.config.episode_steps
        bins, devices, rows = rewards.shape
        continuation = np.zeros((steps + 1, bins, devices, rows))
        for t in range(steps - 1, 0, -1):
            q = rewards[:, :, None, :] - penalties[t][:, None, :, :] + continuation[t + 1][:, :, None, :]
            value = np.where(feasible[:, :, None, :], q, -np.inf).max(axis=3)  # [b, d, i]
            value = np.where(np.isfinite(value), value, q.max(axis=3))  # no feasible reachable row: the exact reward
            continuation[t] = np.einsum("ab,cd,bdi->aci", self.forecaster.transition, transition_d, value)
        self.continuation = continuation
        self._key = (id(env.config), env.config)

    def tables(self, env: SplitEnv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Base rewards ``[b, d, j]``, feasibility ``[b, d, j]`` (all rows where none is feasible) and penalties
        ``[t, b, i, j]`` of every SNR bin, device state and block, each bin scored at its reward setting."""
        self.devices = device_transition(env)[0]
        shared = {id(x): x for x in (env.source, self.source, env.profile, env.book, env.config)}
        shadow = copy.deepcopy(env, memo=shared)
        shadow.t = 0  # base rewards only: no switch into the first block
        settings, by_setting = [], {}
        for centre, loss in zip(self.forecaster.centres_db, self.forecaster.loss_rate, strict=True):
            shadow._state = ChannelState(mean_snr_db=float(centre), loss_rate=float(min(loss, 0.99)))
            setting = shadow.setting()
            settings.append(setting)
            if setting not in by_setting:
                by_setting[setting] = []
                for state in self.devices:
                    shadow.device_state = state
                    cand = shadow.candidate_rewards(self.source)
                    by_setting[setting].append((cand["base_reward"], cand["feasible"]))
        rewards = np.array([[r for r, _ in by_setting[s]] for s in settings], dtype=float)
        feasible = np.array([[f if f.any() else np.ones_like(f) for _, f in by_setting[s]] for s in settings])
        return rewards, feasible, self.penalty_tables(env, settings)

    @staticmethod
    def penalty_tables(env: SplitEnv, settings: list) -> np.ndarray:
        """``[t, b, i, j]``: the env's switch penalty at block ``t``'s context under each bin's reward setting
        (equal to :meth:`SplitEnv.switch_penalties` at that block and setting)."""
        c = env.config
        ks = [k for _, k, _ in env.action_table()]
        distinct = list(dict.fromkeys(settings))
        index = [distinct.index(s) for s in settings]
        states = [s.state() for s in distinct]
        device, edge, link = env.hardware
        del device, edge
        out = np.zeros((c.episode_steps, len(distinct), len(ks), len(ks)))
        for t in range(1, c.episode_steps if c.switching else 1):
            cost = switch_cost_table(env.profile, ks, link, states, c.prompt_tokens + t * c.tokens_per_block,
                                     c.kv_bits)
            out[t] = c.switch_latency_weight * cost["latency_s"] + c.switch_energy_weight * cost["ue_energy_j"]
        if c.action == "relative":  # moves beyond max_move cannot be taken
            moves = np.abs(np.array(ks)[:, None] - np.array(ks)[None, :])
            out[:, :, moves > c.max_move] = np.inf
        return out[:, index]


__all__ = ["ChannelForecaster", "ForecasterConfig", "SwitchingPlanner", "device_transition"]
