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
reported SNR, or ``p`` for dropout) and the previous split. With ``switching``, both end with the context fraction.

Actions: ``absolute`` — ``Discrete(L + 1)``, the split itself (``MultiDiscrete([L + 1, len(bits_options)])`` with
``bits_options``: split × activation bits of a ``digital`` or ``coded`` channel); ``relative`` — the reference
paper's moves, ``Discrete(2·max_move + 1)`` moving the previous split by −max_move..+max_move within the allowed
range.

Reward: quality from the pluggable source (:mod:`rllib_env.sources`, named by ``source``, see
:mod:`rllib_env.registry`) plus the analytic cost part of :class:`~edgesplit.reward.SplitReward` priced at the
block's device state. ``channel_kind="coded"`` scores blocks on the 5G NR link (:mod:`rllib_env.coded_channel`):
uplink time and UE transmit energy (KV migrations' too) come from the NR cost model, not Shannon.
``info["reward"]`` is that reward exactly; the value returned to the learner is
``reward_scale · max(reward, reward_floor)``, because an infeasible split's −1e6 (or the paper preset's unbounded
perplexity penalty) would swamp PPO's value targets.

SNR snapping (the documented rule): with ``snr_grid_db`` set, the reward of a block is computed at the grid SNR
nearest to the block's instantaneous SNR (fading included; clipped to the grid's ends) — quality *and* cost, for
every source, so surrogate, real and table sources score the same cells and a measured table is an exact oracle.
Without a grid the reward uses the instantaneous SNR rounded to ``snr_resolution_db`` (surrogate and real sources
only; a table source then fails with a message asking for a grid). The observation always shows the continuous SNR.

Switching (``switching=True``; off by default, and then every reward, observation and action is as without it).
Changing the split mid-generation costs a KV migration (:mod:`edgesplit.cost.switching`): the side that gains
layers receives their KV cache for every past token. Block ``t`` starts with ``prompt_tokens + t · tokens_per_block``
tokens in the cache (:meth:`SplitEnv.context_tokens`). Choosing ``k`` at block ``t ≥ 1`` after ``k_prev`` at block
``t − 1`` costs::

    switch_penalty = switch_latency_weight · stall_s + switch_energy_weight · ue_energy_j

priced by :func:`edgesplit.cost.switch_costs` at the block's context, its reward setting's channel state (the same
snapped SNR and loss the block's cost is priced at), the reward preset's device/edge/link and ``kv_bits``; the first
block of an episode pays none (the session is opened at that split). ``info["reward"]`` is the block's reward minus
the penalty, exactly (``info["base_reward"]`` is the part without it); ``info`` also carries ``switch_latency_s``,
``switch_energy_j``, ``switch_penalty`` and ``context_tokens`` (zeros for the penalty terms with switching off).
:meth:`SplitEnv.candidate_rewards` and :meth:`SplitEnv.analytic_rewards` subtract the penalty of reaching each
candidate from the current previous split (so rules choosing on them, e.g. the greedy oracle, see it — myopically);
:meth:`SplitEnv.switch_penalties` gives the whole ``[from, to]`` penalty matrix of a block, for planners
(:mod:`rllib_env.hindsight`). The observation gains one last value, the context fraction
``context_tokens / (prompt_tokens + episode_steps · tokens_per_block)`` in [0, 1] (both observation modes).

Default weights: 1 reward per second of stall and 1 per UE joule — the weights the ``latency-energy`` preset puts on
a request's latency and energy, so a stall is worth what request latency is worth. With the ``paper`` preset (no
latency or energy term) they make a switch cost about a few layers' offload term: on smollm2-135m (30 layers, 3 KV
heads × 64) over 5G NR 20 MHz at 14 dB, moving 3 layers at a 768-token context is a ~14.5 Mbit migration, a
0.15 s stall (+0.03 J up to the edge), i.e. a penalty of 0.15–0.19, while each layer's offload term is 1/30 ≈ 0.033:
a switch pays for itself only when the new split stays better for a few blocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np

from edgesplit.channel import ChannelState, make_process
from edgesplit.cost import KV_BITS, SwitchCost, get_device, get_edge, get_link, switch_cost_table, switch_costs
from edgesplit.reward import reward_preset
from edgesplit.scenario import ChannelSetting
from rllib_env.coded_channel import check_coded, coded_setting
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
    """What impairs the activations: awgn, digital, coded (5G NR: LDPC, MCS, HARQ) or dropout."""
    modulation: str = "qpsk"
    """Digital modulation (digital only)."""
    bits: int = 8
    """Activation bits of a digital or coded channel when ``bits_options`` is None."""
    bits_options: tuple[int, ...] | None = None
    """Activation bit widths the agent chooses from (digital or coded; makes the action MultiDiscrete)."""
    mcs_table: int = 1
    """Coded only: TS 38.214 MCS table 1 (up to 64QAM) or 2 (up to 256QAM)."""
    target_bler: float = 0.1
    """Coded only: link adaptation's first-transmission TB error rate target."""
    harq_transmissions: int = 4
    """Coded only: HARQ transmissions per TB at most (1 = no HARQ)."""
    coded_path: str = "abstracted"
    """Coded only: ``abstracted`` (BLER tables) or ``bit_true`` (Sionna's LDPC chain; for a real source)."""
    coded_channel: str = "awgn"
    """Coded only: per-transmission channel, ``awgn``, ``rayleigh`` (flat per slot) or ``tdl`` (TR 38.901 TDL)."""
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
    switching: bool = False
    """Charge KV migration for split changes and observe the context length (see the module docstring)."""
    prompt_tokens: int = 256
    """Tokens in the KV cache at the first block (switching only; the reward presets price 256-token requests)."""
    tokens_per_block: int = 16
    """Tokens generated per fading block: block t starts at ``prompt_tokens + t · tokens_per_block`` (switching)."""
    kv_bits: int = KV_BITS
    """Bits per migrated KV element (switching only)."""
    switch_latency_weight: float = 1.0
    """Reward lost per second of migration stall (switching only; default: see the module docstring)."""
    switch_energy_weight: float = 1.0
    """Reward lost per joule of UE migration energy (switching only)."""

    def __post_init__(self) -> None:
        checks = {"channel_kind": ("awgn", "digital", "coded", "dropout"), "action": ("absolute", "relative"),
                  "observation": ("full", "paper")}
        for name, accepted in checks.items():
            if getattr(self, name) not in accepted:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; accepted: {', '.join(accepted)}")
        if self.bits_options is not None and (self.channel_kind not in ("digital", "coded")
                                              or self.action != "absolute"):
            raise ValueError("bits_options needs channel_kind='digital' or 'coded' and action='absolute'")
        check_coded(self, get_link(reward_preset(self.reward, **self.reward_overrides).link).bandwidth_hz)
        if self.history < 0 or self.episode_steps < 1 or self.max_move < 1:
            raise ValueError("history must be >= 0, episode_steps >= 1 and max_move >= 1")
        if self.snr_grid_db is not None and len(self.snr_grid_db) == 0:
            raise ValueError("snr_grid_db must be None or hold at least one SNR")
        if not (self.snr_resolution_db > 0 and self.reward_scale > 0 and 0 <= self.p_switch_prob <= 1):
            raise ValueError("snr_resolution_db and reward_scale must be > 0 and p_switch_prob in [0, 1]")
        self._check_switching()
        for p in self.p_values:
            ChannelSetting(kind="dropout", p=p)
        device = get_device(reward_preset(self.reward, **self.reward_overrides).device)  # bad preset fails here
        for f_hz in self.device.f_levels_hz:
            device.check_frequency(f_hz)

    def _check_switching(self) -> None:
        if self.prompt_tokens < 1 or self.tokens_per_block < 0:
            raise ValueError(f"prompt_tokens must be >= 1 and tokens_per_block >= 0, got {self.prompt_tokens} and "
                             f"{self.tokens_per_block}")
        if not 1 <= self.kv_bits <= 32:
            raise ValueError(f"kv_bits must be in 1..32, got {self.kv_bits}")
        for name in ("switch_latency_weight", "switch_energy_weight"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)!r}")

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
        rc = self.reward_config
        self.hardware = (get_device(rc.device), get_edge(rc.edge), get_link(rc.link))
        self.action_space = self._action_space()
        size = (2 if c.observation == "paper" else 7 + c.history + (c.bits_options is not None)) + c.switching
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
        switch = self._switch_into(k)
        penalty = self.penalty_of(switch)
        total = float(reward[0]) - penalty
        info = {**self._block_info(), "k": k, "bits": bits, "reward": total, "feasible": bool(feasible[0]),
                "latency_s": cost.total_latency_s, "ue_energy_j": cost.ue_energy_j,
                "log_ppl_ratio": float(quality[0]), "kl_nats": float(quality[1]), "base_reward": float(reward[0]),
                "switch_latency_s": switch.latency_s if switch else 0.0,
                "switch_energy_j": switch.ue_energy_j if switch else 0.0, "switch_penalty": penalty}
        learner_reward = self.config.reward_scale * max(total, self.config.reward_floor)
        self._advance(k, bits)
        truncated = self.t >= self.config.episode_steps
        return self._observation(), learner_reward, False, truncated, info

    def next_block(self) -> None:
        """Move to the next block without choosing a split: only the exogenous channel and device states (and the
        block counter) advance. For planners stepping a copy of the env (:mod:`rllib_env.hindsight`)."""
        self._advance(self.prev_k, self.prev_bits)

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

    @property
    def channel_state(self) -> ChannelState:
        """The current block's channel state (mean SNR, fading gain, loss rate): what the process drew."""
        return self._state

    @property
    def block_snr_db(self) -> float:
        """Instantaneous SNR of the current block (fading included) — what the observation shows first."""
        return float(self._state.snr_db)

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
        if c.channel_kind == "coded":
            return coded_setting(c, self.reward_snr_db(), bits or c.bits, loss, self.hardware[2].bandwidth_hz)
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
        ``source``, by default the env's own). ``reward`` and ``analytic`` include the switching penalty from the
        previous split (``base_reward`` is the reward without it; ``switch_*`` its terms, zeros when none applies)."""
        table = self.action_table()
        settings = [self.setting(bits) for _, _, bits in table]
        ks = [k for _, k, _ in table]
        reward_fn = self.book(self.device_state)
        quality = (source or self.source).quality(ks, settings)
        reward, feasible = reward_fn.rewards(ks, settings, quality[:, 0], quality[:, 1], quality[:, 2])
        costs = [reward_fn.cost(k, s) for k, s in zip(ks, settings, strict=True)]
        switch = self._switch_columns(ks)
        return {"k": np.array(ks), "bits": np.array([b for _, _, b in table]),
                "reward": reward - switch["switch_penalty"], "base_reward": reward, "feasible": feasible,
                "analytic": reward_fn.cost_terms(ks, settings)[0] - switch["switch_penalty"],
                "log_ppl_ratio": quality[:, 0], "latency_s": np.array([x.total_latency_s for x in costs]),
                "ue_energy_j": np.array([x.ue_energy_j for x in costs]), **switch}

    def analytic_rewards(self) -> dict[str, np.ndarray]:
        """The cost part (offload, latency, energy, minus the switching penalty from the previous split) and
        feasibility of every (k, bits); never queries the source."""
        table = self.action_table()
        settings = [self.setting(bits) for _, _, bits in table]
        ks = [k for _, k, _ in table]
        analytic, feasible = self.book(self.device_state).cost_terms(ks, settings)
        switch = self._switch_columns(ks)
        return {"k": np.array(ks), "bits": np.array([b for _, _, b in table]),
                "analytic": analytic - switch["switch_penalty"], "feasible": feasible, **switch}

    # ---- switching --------------------------------------------------------------------------------------------
    def context_tokens(self) -> int:
        """Tokens in the KV cache when the current block starts: ``prompt_tokens + t · tokens_per_block``."""
        return self.config.prompt_tokens + self.t * self.config.tokens_per_block

    def switch_cost(self, k_from: int, k_to: int) -> SwitchCost:
        """The KV migration from ``k_from`` to ``k_to`` at the start of the current block (its context, its reward
        setting's channel state, the reward preset's hardware; see the module docstring)."""
        device, edge, link = self.hardware
        setting = self.setting()
        return switch_costs(self.profile, int(k_from), int(k_to), device, edge, link, setting.state(),
                            self.context_tokens(), self.config.kv_bits, nr_link=setting.nr_link())

    def penalty_of(self, switch: SwitchCost | None) -> float:
        """Reward lost to a switch: ``switch_latency_weight · stall_s + switch_energy_weight · ue_energy_j``."""
        if switch is None:
            return 0.0
        c = self.config
        return c.switch_latency_weight * switch.latency_s + c.switch_energy_weight * switch.ue_energy_j

    def _switch_into(self, k: int) -> SwitchCost | None:
        """The switch that choosing ``k`` now costs; None when switching is off or on the first block."""
        if not self.config.switching or self.t == 0:
            return None
        return self.switch_cost(self.prev_k, k)

    def _switch_columns(self, ks: list[int]) -> dict[str, np.ndarray]:
        switches = [self._switch_into(k) for k in ks]
        return {"switch_latency_s": np.array([x.latency_s if x else 0.0 for x in switches]),
                "switch_energy_j": np.array([x.ue_energy_j if x else 0.0 for x in switches]),
                "switch_penalty": np.array([self.penalty_of(x) for x in switches])}

    def switch_penalties(self) -> np.ndarray:
        """``[n, n]`` over :meth:`action_table` rows: the penalty of moving from row i's split (previous block) to
        row j's at the current block, whatever the block (the env itself charges none at t = 0); zeros with
        switching off. What a planner over the whole trace needs (:mod:`rllib_env.hindsight`)."""
        ks = [k for _, k, _ in self.action_table()]
        if not self.config.switching:
            return np.zeros((len(ks), len(ks)))
        c, setting = self.config, self.setting()
        table = switch_cost_table(self.profile, ks, self.hardware[2], [setting.state()], self.context_tokens(),
                                  c.kv_bits, nr_link=setting.nr_link())  # switch_costs for every pair (tested equal)
        return c.switch_latency_weight * table["latency_s"][0] + c.switch_energy_weight * table["ue_energy_j"][0]

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
                "f_hz": self.device_state.f_hz, "load": self.device_state.load, "prev_k": self.prev_k,
                "context_tokens": self.context_tokens()}

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
        if c.switching:
            values.append(self.context_tokens() / (c.prompt_tokens + c.episode_steps * c.tokens_per_block))
        return np.clip(np.asarray(values, dtype=np.float32), -OBS_BOUND, OBS_BOUND)


def best_option(options: dict[str, np.ndarray], column: str = "reward") -> int:
    """Index of the feasible option (from :meth:`SplitEnv.candidate_rewards` or :meth:`SplitEnv.analytic_rewards`)
    with the highest ``column`` (the first on a tie)."""
    return int(np.argmax(np.where(options["feasible"], options[column], -np.inf)))


def make_env(env_config: dict[str, Any]) -> SplitEnv:
    """RLlib env creator (``PPOConfig().environment(make_env, env_config=...)`` or ``SplitEnv`` directly)."""
    return SplitEnv(env_config)


__all__ = ["DEFAULT_PROCESS", "DeviceState", "SplitEnv", "SplitEnvConfig", "best_option", "make_env", "snap"]
