"""Model-based planning of the split under switching costs: a channel forecaster, a reward model, and dynamic
programming over the rest of the generation in expectation.

from rllib_env.planner import ChannelForecaster, SwitchingPlanner
forecaster = ChannelForecaster.fit(env_config, traces=512, seed=0)      # simulated channel only: no LLM evaluation
planner = SwitchingPlanner(surrogate_source, forecaster)                # a policy (env, obs) -> action

Why. With switching costs (:mod:`rllib_env.split_env`, ``switching=True``) the best split of a block depends on the
blocks to come: a move pays a KV migration now and only pays off if the new split stays better for a while. The
greedy oracle is myopic; the hindsight optimum (:mod:`rllib_env.hindsight`) knows the future. A causal policy can
only know the future in distribution, and that is what this planner uses.

The model. The channel and the device are exogenous. :class:`ChannelForecaster` is a Markov chain whose state is
the binned SNR (``bin_db``, default 0.5 dB) of the current block and of the ``order − 1`` previous ones (what the
policy observes anyway), its transitions counted on simulated traces of the env's own channel process (``process``
+ ``process_params``, seeds disjoint from the evaluation's) — in a deployment the same counts come from the UE's
CQI log. A state met in evaluation but never in simulation is mapped to the nearest simulated one (L1 in bins), and
a simulated state with no outgoing count takes the transitions of the nearest one that has some. The device chain's
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

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
    order: int = 1
    """Blocks in the forecaster's state: the current SNR bin and the ``order − 1`` previous ones."""
    hidden_state: bool = False
    """Key the state by the current SNR bin and the bin of the block's *mean* SNR (path loss + shadowing, before
    fading) instead of SNR history: a planner that knows how much of the current SNR is a fade. No UE observes
    that split directly; it bounds what a better channel estimate could buy (order must be 1)."""
    mean_bin_db: float = 1.0
    """Width of the mean-SNR bins (``hidden_state`` only)."""

    def __post_init__(self) -> None:
        if self.traces < 1 or not self.bin_db > 0 or not 1 <= self.order <= 4:
            raise ValueError(f"need traces >= 1, bin_db > 0 and order in 1..4, got {self.traces}, {self.bin_db}, "
                             f"{self.order}")
        if self.hidden_state and (self.order != 1 or not self.mean_bin_db > 0):
            raise ValueError(f"a hidden-state forecaster needs order 1 and mean_bin_db > 0, got order {self.order}, "
                             f"mean_bin_db {self.mean_bin_db}")


class ChannelForecaster:
    """Markov chain over the binned SNRs of the current and ``order − 1`` previous blocks (module docstring)."""

    def __init__(self, states: np.ndarray, transition: Any, bin_db: float, loss_rate: np.ndarray,
                 mean_bin_db: float | None = None) -> None:
        self.states = np.asarray(states, dtype=int).reshape(len(states), -1)
        self.transition = sparse.csr_matrix(transition, dtype=float)
        self.bin_db, self.loss_rate = float(bin_db), np.asarray(loss_rate, dtype=float)
        self.mean_bin_db = None if mean_bin_db is None else float(mean_bin_db)
        """Set for a hidden-state forecaster: states are (SNR bin, mean-SNR bin)."""
        size = len(self.states)
        if self.transition.shape != (size, size) or len(self.loss_rate) != size:
            raise ValueError(f"{size} states need a {size}×{size} transition matrix and {size} loss rates, got "
                             f"{self.transition.shape} and {len(self.loss_rate)}")
        if not np.allclose(np.asarray(self.transition.sum(axis=1)).ravel(), 1.0):
            raise ValueError("every row of the transition matrix must sum to 1")
        self._index = {tuple(row): i for i, row in enumerate(self.states)}

    @property
    def order(self) -> int:
        return 1 if self.mean_bin_db is not None else self.states.shape[1]

    @staticmethod
    def _key(blocks: Sequence[ChannelState], t: int, c: ForecasterConfig) -> tuple:
        """Block ``t``'s state; the first block has itself as its history, as :class:`SplitEnv` fills it."""
        if c.hidden_state:
            return round(blocks[t].snr_db / c.bin_db), round(blocks[t].mean_snr_db / c.mean_bin_db)
        return tuple(round(blocks[max(t - j, 0)].snr_db / c.bin_db) for j in range(c.order))

    @classmethod
    def fit(cls, env_config: dict[str, Any] | SplitEnvConfig, config: ForecasterConfig | None = None,
            **overrides: Any) -> ChannelForecaster:
        """Count transitions on ``config.traces`` simulated traces of the env's channel process."""
        c = config or ForecasterConfig(**overrides)
        env = env_config if isinstance(env_config, SplitEnvConfig) else SplitEnvConfig.from_dict(env_config)
        index: dict[tuple, int] = {}
        pairs, losses = [], []
        for trace in range(c.traces):
            process = make_process(env.process, seed=2**32 + c.seed * 100_003 + trace, **env.process_params)
            blocks = [process.step() for _ in range(env.episode_steps)]
            keys = [cls._key(blocks, t, c) for t in range(len(blocks))]
            ids = [index.setdefault(key, len(index)) for key in keys]
            pairs.extend(zip(ids[:-1], ids[1:], strict=True))
            losses.extend(zip(ids, (b.loss_rate for b in blocks), strict=True))
        size = len(index)
        states = np.array(list(index), dtype=int).reshape(size, -1)
        counts = sparse.coo_matrix((np.ones(len(pairs)), tuple(np.array(pairs).T)), shape=(size, size)).tocsr()
        rows = np.asarray(counts.sum(axis=1)).ravel()
        counted = np.flatnonzero(rows > 0)
        # a state seen only at the end of a trace takes the transitions of the nearest counted state
        source = np.array([i if rows[i] > 0 else counted[np.abs(states[counted] - states[i]).sum(axis=1).argmin()]
                           for i in range(size)])
        transition = sparse.diags(1.0 / rows[source]) @ counts[source]
        loss_sum = np.zeros(size)
        seen = np.zeros(size)
        for i, loss in losses:
            loss_sum[i] += loss
            seen[i] += 1
        return cls(states, transition, c.bin_db, loss_sum / np.maximum(seen, 1),
                   c.mean_bin_db if c.hidden_state else None)

    @property
    def centres_db(self) -> np.ndarray:
        """SNR at the centre of every state's current bin."""
        return self.states[:, 0] * self.bin_db

    def state_of_env(self, env: SplitEnv) -> int:
        """The state of ``env``'s current block: from its SNR history, or (hidden-state) its channel state."""
        if self.mean_bin_db is None:
            return self.state_of(env.block_snr_db, list(env.snr_history))
        key = (round(env.block_snr_db / self.bin_db), round(env.channel_state.mean_snr_db / self.mean_bin_db))
        return self.state_of_env_key(key)

    def state_of_env_key(self, key: tuple) -> int:
        """The state with this key if seen in simulation, else the nearest one (L1 in bins)."""
        if key in self._index:
            return self._index[key]
        return int(np.abs(self.states - np.array(key)).sum(axis=1).argmin())

    def state_of(self, snr_db: float, previous_db: Sequence[float] = ()) -> int:
        """The state of a block with SNR ``snr_db`` after ``previous_db`` (most recent first; padded with the
        oldest, as SplitEnv's history is): the exact state if seen in simulation, else the nearest (L1 in bins)."""
        history = [*previous_db[: self.order - 1]] or [snr_db]
        history += [history[-1]] * (self.order - 1 - len(history))
        if self.mean_bin_db is not None:
            raise ValueError("a hidden-state forecaster needs the block's channel state: use state_of_env")
        return self.state_of_env_key(tuple(round(v / self.bin_db) for v in [snr_db, *history[: self.order - 1]]))


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
            b = self.forecaster.state_of_env(env)
            value = value + self.continuation[env.t + 1, b, self.devices.index(env.device_state)]
        feasible = candidates["feasible"] if candidates["feasible"].any() else np.ones_like(candidates["feasible"])
        if env.config.action == "relative":
            feasible = feasible & (np.abs(candidates["k"] - env.prev_k) <= env.config.max_move)
        best = int(np.argmax(np.where(feasible, value, -np.inf)))
        return env.action_for(int(candidates["k"][best]), int(candidates["bits"][best]))

    def build(self, env: SplitEnv) -> None:
        """The continuation values ``C_t(b, d, j)`` for ``t = 1 … T`` (``C_T = 0``) of ``env``'s configuration."""
        rewards, feasible, (penalties, setting_of) = self.tables(env)
        transition_d = device_transition(env)[1]
        steps = env.config.episode_steps
        bins, devices, rows = rewards.shape
        continuation = np.zeros((steps + 1, bins, devices, rows), dtype=np.float32)
        for t in range(steps - 1, 0, -1):
            q = rewards[:, :, None, :] - penalties[t][setting_of][:, None, :, :] + continuation[t + 1][:, :, None, :]
            value = np.where(feasible[:, :, None, :], q, -np.inf).max(axis=3)  # [b, d, i]
            value = np.where(np.isfinite(value), value, q.max(axis=3))  # no feasible reachable row: the exact reward
            mixed = np.einsum("cd,bdi->bci", transition_d, value).reshape(bins, devices * rows)
            continuation[t] = (self.forecaster.transition @ mixed).reshape(bins, devices, rows)
        self.continuation = continuation
        self._key = (id(env.config), env.config)

    def tables(self, env: SplitEnv) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Base rewards ``[b, d, j]`` and feasibility ``[b, d, j]`` (all rows where none is feasible) of every
        forecaster state and device state, each state scored at its reward setting; the penalties ``[t, s, i, j]``
        of every block and distinct reward setting, with each state's setting index ``[b]``."""
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
        rewards = np.array([[r for r, _ in by_setting[s]] for s in settings], dtype=np.float32)
        feasible = np.array([[f if f.any() else np.ones_like(f) for _, f in by_setting[s]] for s in settings])
        distinct = list(by_setting)
        return rewards, feasible, (self.penalty_tables(env, distinct), np.array([distinct.index(x) for x in settings]))

    @staticmethod
    def penalty_tables(env: SplitEnv, settings: list) -> np.ndarray:
        """``[t, s, i, j]``: the env's switch penalty at block ``t``'s context under each of ``settings`` (equal to
        :meth:`SplitEnv.switch_penalties` at that block and setting)."""
        c = env.config
        ks = [k for _, k, _ in env.action_table()]
        distinct = list(dict.fromkeys(settings))
        index = [distinct.index(s) for s in settings]
        states = [s.state() for s in distinct]
        link = env.hardware[2]
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
