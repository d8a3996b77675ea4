"""The split decision as a gymnasium environment: channel and device states in, a split ``k`` out, a reward back.

env = SplitEnv({"model": "smollm2-135m", "reward": "paper", "source": {"kind": "table", "path": "runs/truth"}})
obs, info = env.reset(seed=0); obs, reward, terminated, truncated, info = env.step(12)

One step is one fading block. The channel follows a seeded process of the core (:func:`edgesplit.channel.
make_process`: ``gauss_markov`` mobility + correlated fading by default, ``rayleigh``, ``trace`` replay, ...), the
UE's clock and load a seeded :class:`~rllib_env.device_state.DeviceChain`; both are exogenous (the action never
changes them), so the same seed replays the same trace for every policy — baselines are compared on identical
traces.

Observation (``observation="full"``, float32, clipped to ±10): instantaneous SNR ``(snr_db − 15) / 15``; the
reported SNR the reward is computed at (the grid point, like a CQI report; same scaling); the ``history`` previous
SNRs (most recent first); the block's loss rate; the dropout probability ``p`` (0 unless
``channel_kind="dropout"``); CPU clock / 3.2 GHz; background load; previous split ``k / L``; with ``bits_options``,
previous bits / 32. ``observation="paper"`` keeps the reference paper's two inputs: the channel parameter (the
reported SNR, or ``p`` for dropout) and the previous split.

Actions: ``absolute`` — ``Discrete(L + 1)``, the split itself (``MultiDiscrete([L + 1, len(bits_options)])`` with
``bits_options``: split × activation bits of a ``digital`` channel); ``relative`` — the reference paper's moves,
``Discrete(2·max_move + 1)`` moving the previous split by −max_move..+max_move within the allowed range.

Reward: quality from the pluggable source (:mod:`rllib_env.sources`, named by ``source``, see
:mod:`rllib_env.registry`) plus the analytic cost part of :class:`~edgesplit.reward.SplitReward` priced at the
block's device state. ``info["reward"]`` is that reward exactly; the value returned to the learner is
``reward_scale · max(reward, reward_floor)``, because an infeasible split's −1e6 (or the paper preset's unbounded
perplexity penalty) would swamp PPO's value targets.

SNR snapping (the documented rule): with ``snr_grid_db`` set, the reward of a block is computed at the grid SNR
nearest to the block's instantaneous SNR (fading included; clipped to the grid's ends) — quality *and* cost, for
every source, so surrogate, real and table sources score the same cells and a measured table is an exact oracle.
Without a grid the reward uses the instantaneous SNR rounded to ``snr_resolution_db`` (surrogate and real sources
only; a table source then fails with a message asking for a grid). The observation always shows the continuous SNR.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np

from edgesplit.channel import ChannelState, make_process
from edgesplit.cost import get_device
from edgesplit.reward import reward_preset
from edgesplit.scenario import ChannelSetting
from rllib_env.device_state import DeviceChain, DeviceChainConfig, DeviceState, RewardBook
from rllib_env.registry import source_from_spec
from rllib_env.sources import RewardSource
from surrogate.dataset import model_profile

DEFAULT_PROCESS = {"distance_m": 60.0, "distance_sigma_m": 25.0, "distance_rho": 0.98, "shadowing_sigma_db": 4.0,
                   "shadowing_rho": 0.95, "fading": "rayleigh", "fading_rho": 0.9}
"""A UE moving 35–85 m from the edge: mean SNR ≈ 14 dB, blocks from below 0 dB to ~30 dB."""
OBS_BOUND = 10.0
F_SCALE_HZ = 3.2e9


@dataclass(frozen=True)
class SplitEnvConfig:
    """Everything a :class:`SplitEnv` is built from (``env_config`` as a dict, see :meth:`from_dict`)."""

    model: str = "smollm2-135m"
    """Model whose split is chosen (built-in name, local directory or ``synthetic-8l``); only its config is read."""
    reward: str = "paper"
    """Reward preset (:func:`edgesplit.reward.reward_preset`)."""
    reward_overrides: dict = field(default_factory=dict)
    """RewardConfig fields overriding the preset."""
    source: dict = field(default_factory=lambda: {"kind": "table", "path": "runs/surrogate_truth_awgn"})
    """Reward source spec (:func:`rllib_env.registry.source_from_spec`)."""
    process: str = "gauss_markov"
    """Channel process kind (:data:`edgesplit.channel.PROCESSES`)."""
    process_params: dict = field(default_factory=lambda: dict(DEFAULT_PROCESS))
    """Parameters of the channel process (``trace`` takes ``path``)."""
    channel_kind: str = "awgn"
    """What impairs the activations: awgn, digital or dropout."""
    modulation: str = "qpsk"
    """Digital modulation (digital only)."""
    bits: int = 8
    """Activation bits of a digital channel when ``bits_options`` is None."""
    bits_options: tuple[int, ...] | None = None
    """Activation bit widths the agent chooses from (digital only; makes the action MultiDiscrete)."""
    p_values: tuple[float, ...] = (0.02, 0.06, 0.1, 0.14, 0.18, 0.22, 0.26, 0.3)
    """Dropout probabilities a dropout channel moves between (dropout only)."""
    p_switch_prob: float = 0.1
    """Probability per block that the dropout probability is redrawn (dropout only)."""
    snr_grid_db: tuple[float, ...] | None = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
    """SNRs the reward is computed at (nearest one; see the module docstring); None: continuous."""
    snr_resolution_db: float = 0.1
    """Rounding of the reward SNR when ``snr_grid_db`` is None."""
    history: int = 4
    """Previous SNRs in the observation."""
    episode_steps: int = 64
    """Blocks per episode (then truncated)."""
    device: DeviceChainConfig = field(default_factory=DeviceChainConfig)
    """UE clock/load levels and switching rate."""
    action: str = "absolute"
    """absolute (choose k) or relative (move k by up to ``max_move``)."""
    max_move: int = 4
    """Largest relative move."""
    observation: str = "full"
    """full or paper (see the module docstring)."""
    reward_floor: float = -100.0
    """Learner reward floor (``info["reward"]`` is never floored)."""
    reward_scale: float = 1.0
    """Learner reward scale."""

    def __post_init__(self) -> None:
        checks = {"channel_kind": ("awgn", "digital", "dropout"), "action": ("absolute", "relative"),
                  "observation": ("full", "paper")}
        for name, accepted in checks.items():
            if getattr(self, name) not in accepted:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; accepted: {', '.join(accepted)}")
        if self.bits_options is not None and (self.channel_kind != "digital" or self.action != "absolute"):
            raise ValueError("bits_options needs channel_kind='digital' and action='absolute'")
        if self.history < 0 or self.episode_steps < 1 or self.max_move < 1:
            raise ValueError("history must be >= 0, episode_steps >= 1 and max_move >= 1")
        if self.snr_grid_db is not None and len(self.snr_grid_db) == 0:
            raise ValueError("snr_grid_db must be None or hold at least one SNR")
        if not (self.snr_resolution_db > 0 and self.reward_scale > 0 and 0 <= self.p_switch_prob <= 1):
            raise ValueError("snr_resolution_db and reward_scale must be > 0 and p_switch_prob in [0, 1]")
        for p in self.p_values:
            ChannelSetting(kind="dropout", p=p)
        device = get_device(reward_preset(self.reward, **self.reward_overrides).device)  # bad preset fails here
        for f_hz in self.device.f_levels_hz:
            device.check_frequency(f_hz)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitEnvConfig:
        """From an ``env_config`` dict (lists become tuples; RLlib's extra keys such as ``num_envs`` are ignored)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(data).items() if k in names}
        for key in ("bits_options", "p_values", "snr_grid_db"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if isinstance(values.get("device"), dict):
            values["device"] = DeviceChainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in values["device"].items()})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (inverse of :meth:`from_dict`)."""
        return asdict(self)


def snap(value: float, grid: tuple[float, ...]) -> float:
    """The grid value nearest to ``value`` (the lower one on a tie)."""
    points = np.asarray(sorted(grid), dtype=float)
    return float(points[int(np.argmin(np.abs(points - value)))])


class SplitEnv(gym.Env):
    """See the module docstring. ``source`` overrides the config's spec (an in-process object)."""

    metadata = {"render_modes": []}

    def __init__(self, config: dict[str, Any] | SplitEnvConfig | None = None, source: RewardSource | None = None):
        self.config = config if isinstance(config, SplitEnvConfig) else SplitEnvConfig.from_dict(config or {})
        c = self.config
        self.profile = model_profile(c.model)
        self.num_layers = self.profile.num_layers
        self.reward_config = reward_preset(c.reward, **c.reward_overrides)
        self.low_k, self.high_k = self.reward_config.split_range(self.num_layers)
        self.source = source if source is not None else source_from_spec(c.source, c.model)
        if self.source.descriptor.num_layers != self.num_layers:
            raise ValueError(f"source describes {self.source.descriptor.num_layers} layers, model {c.model!r} has "
                             f"{self.num_layers}")
        self.book = RewardBook(self.reward_config, self.profile)
        self.action_space = self._action_space()
        size = 2 if c.observation == "paper" else 7 + c.history + (c.bits_options is not None)
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (size,), np.float32)
        self._state: ChannelState | None = None

    def _action_space(self) -> gym.Space:
        c = self.config
        if c.action == "relative":
            return gym.spaces.Discrete(2 * c.max_move + 1)
        if c.bits_options is not None:
            return gym.spaces.MultiDiscrete([self.num_layers + 1, len(c.bits_options)])
        return gym.spaces.Discrete(self.num_layers + 1)

    # ---- dynamics ---------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        c = self.config
        seeds = self.np_random.integers(2**63, size=3)
        self.channel = make_process(c.process, seed=int(seeds[0]), **c.process_params)
        self.device = DeviceChain(c.device, int(seeds[1]))
        self._p_rng = np.random.default_rng(int(seeds[2]))
        self.p = float(self._p_rng.choice(c.p_values))
        self.t, self.prev_k = 0, self.high_k
        self.prev_bits = c.bits_options[-1] if c.bits_options else c.bits
        self._state, self.device_state = self.channel.step(), self.device.state
        self.snr_history = deque([self._state.snr_db] * c.history, maxlen=max(c.history, 1))
        return self._observation(), self._block_info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        k, bits = self.decode(action)
        setting = self.setting(bits)
        reward_fn = self.book(self.device_state)
        quality = self.source.quality([k], [setting])[0]
        reward, feasible = reward_fn.rewards([k], [setting], *quality)
        cost = reward_fn.cost(k, setting)
        info = {**self._block_info(), "k": k, "bits": bits, "reward": float(reward[0]), "feasible": bool(feasible[0]),
                "latency_s": cost.total_latency_s, "ue_energy_j": cost.ue_energy_j,
                "log_ppl_ratio": float(quality[0]), "kl_nats": float(quality[1])}
        learner_reward = self.config.reward_scale * max(float(reward[0]), self.config.reward_floor)
        self._advance(k, bits)
        truncated = self.t >= self.config.episode_steps
        return self._observation(), learner_reward, False, truncated, info

    def _advance(self, k: int, bits: int) -> None:
        c = self.config
        self.t, self.prev_k, self.prev_bits = self.t + 1, k, bits
        self.snr_history.appendleft(self._state.snr_db)
        self._state, self.device_state = self.channel.step(), self.device.step()
        if self._p_rng.random() < c.p_switch_prob:
            self.p = float(self._p_rng.choice(c.p_values))

    # ---- mapping ----------------------------------------------------------------------------------------------
    def decode(self, action: Any) -> tuple[int, int]:
        """(k, bits) of an action."""
        c = self.config
        if c.action == "relative":
            move = int(np.asarray(action).reshape(-1)[0]) - c.max_move
            return int(np.clip(self.prev_k + move, self.low_k, self.high_k)), c.bits
        if c.bits_options is not None:
            k, b = (int(v) for v in np.asarray(action).reshape(-1)[:2])
            return k, c.bits_options[b]
        return int(np.asarray(action).reshape(-1)[0]), c.bits

    def reward_snr_db(self) -> float:
        """The SNR the current block's reward is computed at (snapping rule in the module docstring)."""
        snr, c = self._state.snr_db, self.config
        if c.snr_grid_db is not None:
            return snap(snr, c.snr_grid_db)
        return float(np.clip(round(snr / c.snr_resolution_db) * c.snr_resolution_db, -30.0, 60.0))

    def setting(self, bits: int | None = None) -> ChannelSetting:
        """The channel setting the current block is scored at."""
        c = self.config
        loss = round(min(self._state.loss_rate, 0.99), 2)
        if c.channel_kind == "dropout":
            return ChannelSetting(kind="dropout", snr_db=self.reward_snr_db(), p=self.p, loss_rate=loss)
        if c.channel_kind == "digital":
            return ChannelSetting(kind="digital", snr_db=self.reward_snr_db(), bits=bits or c.bits,
                                  modulation=c.modulation, loss_rate=loss)
        return ChannelSetting(kind="awgn", snr_db=self.reward_snr_db(), loss_rate=loss)

    def action_table(self) -> list[tuple[Any, int, int]]:
        """Every absolute action with its (k, bits) — what an oracle or a fixed rule chooses among."""
        c = self.config
        if c.bits_options is not None:
            return [(np.array([k, b]), k, bits) for k in range(self.num_layers + 1)
                    for b, bits in enumerate(c.bits_options)]
        return [(k, k, c.bits) for k in range(self.num_layers + 1)]

    def candidate_rewards(self, source: RewardSource | None = None) -> dict[str, np.ndarray]:
        """Reward, feasibility, latency and energy of every (k, bits) for the current block (one query of
        ``source``, by default the env's own)."""
        table = self.action_table()
        settings = [self.setting(bits) for _, _, bits in table]
        ks = [k for _, k, _ in table]
        reward_fn = self.book(self.device_state)
        quality = (source or self.source).quality(ks, settings)
        reward, feasible = reward_fn.rewards(ks, settings, quality[:, 0], quality[:, 1], quality[:, 2])
        costs = [reward_fn.cost(k, s) for k, s in zip(ks, settings, strict=True)]
        return {"k": np.array(ks), "bits": np.array([b for _, _, b in table]), "reward": reward, "feasible": feasible,
                "analytic": reward_fn.cost_terms(ks, settings)[0], "log_ppl_ratio": quality[:, 0],
                "latency_s": np.array([x.total_latency_s for x in costs]),
                "ue_energy_j": np.array([x.ue_energy_j for x in costs])}

    def analytic_rewards(self) -> dict[str, np.ndarray]:
        """The cost part (offload, latency, energy) and feasibility of every (k, bits); never queries the source."""
        table = self.action_table()
        settings = [self.setting(bits) for _, _, bits in table]
        ks = [k for _, k, _ in table]
        analytic, feasible = self.book(self.device_state).cost_terms(ks, settings)
        return {"k": np.array(ks), "bits": np.array([b for _, _, b in table]), "analytic": analytic,
                "feasible": feasible}

    def action_for(self, k: int, bits: int | None = None) -> Any:
        """The action that picks split ``k`` (and ``bits``) from the current block (relative moves are clipped)."""
        c = self.config
        if c.action == "relative":
            return int(np.clip(k - self.prev_k, -c.max_move, c.max_move) + c.max_move)
        if c.bits_options is not None:
            return np.array([k, c.bits_options.index(bits if bits is not None else c.bits_options[-1])])
        return int(k)

    def _block_info(self) -> dict[str, Any]:
        p = self.p if self.config.channel_kind == "dropout" else 0.0
        return {"t": self.t, "snr_db": float(self._state.snr_db), "reward_snr_db": self.reward_snr_db(),
                "loss_rate": float(self._state.loss_rate), "p": p,
                "f_hz": self.device_state.f_hz, "load": self.device_state.load, "prev_k": self.prev_k}

    def _observation(self) -> np.ndarray:
        c, state = self.config, self._state
        snr, reported = (state.snr_db - 15.0) / 15.0, (self.reward_snr_db() - 15.0) / 15.0
        prev = self.prev_k / self.num_layers
        if c.observation == "paper":
            values = [self.p if c.channel_kind == "dropout" else reported, prev]
        else:
            history = [(s - 15.0) / 15.0 for s in list(self.snr_history)[:c.history]]
            values = [snr, reported, *history, state.loss_rate, self.p if c.channel_kind == "dropout" else 0.0,
                      self.device_state.f_hz / F_SCALE_HZ, self.device_state.load, prev]
            if c.bits_options is not None:
                values.append(self.prev_bits / 32.0)
        return np.clip(np.asarray(values, dtype=np.float32), -OBS_BOUND, OBS_BOUND)


def best_option(options: dict[str, np.ndarray], column: str = "reward") -> int:
    """Index of the feasible option (from :meth:`SplitEnv.candidate_rewards` or :meth:`SplitEnv.analytic_rewards`)
    with the highest ``column`` (the first on a tie)."""
    return int(np.argmax(np.where(options["feasible"], options[column], -np.inf)))


def make_env(env_config: dict[str, Any]) -> SplitEnv:
    """RLlib env creator (``PPOConfig().environment(make_env, env_config=...)`` or ``SplitEnv`` directly)."""
    return SplitEnv(env_config)


__all__ = ["DEFAULT_PROCESS", "DeviceState", "SplitEnv", "SplitEnvConfig", "best_option", "make_env", "snap"]
