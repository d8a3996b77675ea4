"""The reward of choosing split ``k`` under a channel setting: quality gain minus latency, UE energy and UE work.

For a feasible split (see below) the reward is::

    reward = quality_weight · Q  +  offload_weight · (L − k) / L
             − latency_weight · latency_s / latency_scale_s  −  energy_weight · ue_energy_j / energy_scale_j  +  bias

with the quality gain ``Q`` chosen by ``quality_metric``:

- ``ppl_gain``: ``(PPL0 − PPL) / PPL0 = 1 − exp(log(PPL / PPL0))`` (the reference paper's relative perplexity change);
- ``log_ppl``: ``−log(PPL / PPL0)`` (the same ordering, without the paper's unbounded penalty for a collapsed model);
- ``kl``: ``−KL(clean ‖ split)`` in nats per token;
- ``top1``: ``top1_agreement − 1``.

``(L − k) / L`` is the share of the layers the edge runs (a penalty on the UE compute share ``k / L``). Latency and
UE energy come from the analytic cost model (:func:`edgesplit.cost.split_costs`, one prefill request of ``tokens``
tokens on the ``device`` / ``edge`` / ``link`` presets, at the setting's SNR, fading gain, loss rate and bit width;
for a ``coded`` setting the uplink is priced by the 5G NR cost model, :mod:`edgesplit.cost.coded_uplink`).
Only ``Q`` needs the LLM; a surrogate predicts it and this module adds the analytic part.

Infeasible splits. A split is infeasible when ``k < min_device_layers`` (``k = 0`` sends the raw prompt, which split
inference exists to avoid: both presets require one UE layer), ``k > L − min_edge_layers``, the cost model says a
side runs out of memory, or a hard limit (``max_latency_s``, ``max_ue_energy_j``, ``max_device_memory_bytes``) is
exceeded. It then gets ``reward = infeasible_reward`` (default −1e6, far below any feasible reward of the presets)
**and** ``feasible = False``: decisions should use the mask (:func:`best_split`), agents may use either.

Presets (:func:`reward_preset`): ``paper`` — ``10.5 · (PPL0 − PPL)/PPL0 + (L − k)/L`` (the reference paper used
``(10 − split)/10`` over its 10-split range; here scaled to ``L``); ``latency-energy`` — ``−10 · log(PPL/PPL0)``
minus latency in seconds minus UE energy in joules. The config is a frozen dataclass that round-trips through JSON
(:meth:`RewardConfig.to_json`), so every run can record exactly which reward it optimised.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from edgesplit.cost import ModelProfile, SplitCost, get_device, get_edge, get_link, split_costs
from edgesplit.scenario import ChannelSetting

QUALITY_METRICS = ("ppl_gain", "log_ppl", "kl", "top1")
INFEASIBLE_REWARD = -1e6
"""Default reward of an infeasible split (also flagged by ``feasible = False``)."""


@dataclass(frozen=True)
class QualityMetrics:
    """The LLM-measured quality of one split under one channel (what the surrogate predicts)."""

    log_ppl_ratio: float
    """``log(PPL / PPL0)``: 0 when the split is as good as the unsplit model."""
    kl_nats: float = 0.0
    """Mean KL(clean ‖ split) per scored token, in nats (≥ 0)."""
    top1_agreement: float = 1.0
    """Fraction of positions whose argmax matches the clean model's, in [0, 1]."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.log_ppl_ratio):
            raise ValueError(f"log_ppl_ratio must be finite, got {self.log_ppl_ratio!r}")
        if not (math.isfinite(self.kl_nats) and self.kl_nats >= -1e-9):
            raise ValueError(f"kl_nats must be finite and >= 0, got {self.kl_nats!r}")
        if not 0.0 <= self.top1_agreement <= 1.0:
            raise ValueError(f"top1_agreement must be in [0, 1], got {self.top1_agreement!r}")

    @classmethod
    def from_perplexity(cls, perplexity: float, clean_perplexity: float, kl_nats: float = 0.0,
                        top1_agreement: float = 1.0) -> QualityMetrics:
        """From measured perplexities (both > 0)."""
        if not (perplexity > 0 and clean_perplexity > 0):
            raise ValueError(f"perplexities must be > 0, got {perplexity!r} and {clean_perplexity!r}")
        return cls(math.log(perplexity / clean_perplexity), kl_nats, top1_agreement)


@dataclass(frozen=True)
class RewardConfig:
    """A reward definition (recorded as JSON with every run that uses it)."""

    preset: str = "custom"
    """Name of the preset this came from (``custom`` when built by hand or overridden)."""
    quality_metric: str = "ppl_gain"
    """Quality gain Q: ppl_gain, log_ppl, kl or top1 (see the module docstring)."""
    quality_weight: float = 10.5
    """Weight of Q."""
    offload_weight: float = 1.0
    """Weight of the edge's share of the layers ``(L − k) / L``."""
    latency_weight: float = 0.0
    """Weight of ``latency_s / latency_scale_s``."""
    latency_scale_s: float = 1.0
    """Latency that costs ``latency_weight`` reward."""
    energy_weight: float = 0.0
    """Weight of ``ue_energy_j / energy_scale_j``."""
    energy_scale_j: float = 1.0
    """UE energy that costs ``energy_weight`` reward."""
    bias: float = 0.0
    """Constant added to every feasible reward."""
    min_device_layers: int = 1
    """Fewest layers the UE must run (k ≥ this); 1 keeps the raw prompt on the device."""
    min_edge_layers: int = 0
    """Fewest layers the edge must run (k ≤ L − this)."""
    max_latency_s: float | None = None
    """Hard latency limit of one request (None: no limit)."""
    max_ue_energy_j: float | None = None
    """Hard UE energy limit of one request (None: no limit)."""
    max_device_memory_bytes: float | None = None
    """Hard UE memory limit, on top of the device preset's own (None: the preset's only)."""
    infeasible_reward: float = INFEASIBLE_REWARD
    """Reward given to an infeasible split (it is also flagged ``feasible = False``)."""
    device: str = "phone-soc"
    """UE preset of the cost model."""
    edge: str = "a100"
    """Edge preset of the cost model."""
    link: str = "5g-nr-20mhz"
    """Radio-link preset of the cost model."""
    tokens: int = 256
    """Prompt tokens of the priced request (prefill)."""

    def __post_init__(self) -> None:
        if self.quality_metric not in QUALITY_METRICS:
            raise ValueError(f"unknown quality_metric {self.quality_metric!r}; accepted: {', '.join(QUALITY_METRICS)}")
        for name in ("quality_weight", "offload_weight", "latency_weight", "energy_weight", "bias",
                     "infeasible_reward"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        for name in ("latency_scale_s", "energy_scale_j"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_latency_s", "max_ue_energy_j", "max_device_memory_bytes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value!r}")
        if self.min_device_layers < 0 or self.min_edge_layers < 0:
            raise ValueError("min_device_layers and min_edge_layers must be >= 0")
        if self.tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {self.tokens}")
        get_device(self.device), get_edge(self.edge), get_link(self.link)  # unknown presets fail here

    def quality_gain(self, log_ppl_ratio: Any, kl_nats: Any = 0.0, top1_agreement: Any = 1.0) -> np.ndarray:
        """Q for scalars or arrays of the three quality metrics (only the chosen one is used)."""
        if self.quality_metric == "ppl_gain":
            # exp overflows to inf for a collapsed model; clip at a ratio of e^50, already a meaningless model
            return 1.0 - np.exp(np.minimum(np.asarray(log_ppl_ratio, dtype=float), 50.0))
        if self.quality_metric == "log_ppl":
            return -np.asarray(log_ppl_ratio, dtype=float)
        if self.quality_metric == "kl":
            return -np.asarray(kl_nats, dtype=float)
        return np.asarray(top1_agreement, dtype=float) - 1.0

    def split_range(self, num_layers: int) -> tuple[int, int]:
        """Lowest and highest split allowed by the layer limits (inclusive)."""
        return self.min_device_layers, num_layers - self.min_edge_layers

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown RewardConfig field(s) {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RewardConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


PRESETS: dict[str, RewardConfig] = {
    "paper": RewardConfig(preset="paper", quality_metric="ppl_gain", quality_weight=10.5, offload_weight=1.0),
    "latency-energy": RewardConfig(preset="latency-energy", quality_metric="log_ppl", quality_weight=10.0,
                                   offload_weight=0.0, latency_weight=1.0, latency_scale_s=1.0, energy_weight=1.0,
                                   energy_scale_j=1.0),
}


def reward_preset(name: str, **overrides: Any) -> RewardConfig:
    """A preset by name (``paper`` or ``latency-energy``), with fields overridden (then ``preset`` says custom)."""
    if name not in PRESETS:
        raise ValueError(f"unknown reward preset {name!r}; accepted: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in fields(RewardConfig)})
    if unknown:
        raise ValueError(f"unknown RewardConfig field(s) {unknown}")
    if not overrides:
        return PRESETS[name]
    return replace(PRESETS[name], **{"preset": f"{name}+custom", **overrides})


@dataclass(frozen=True)
class RewardBreakdown:
    """One split's reward and the terms it is made of."""

    k: int
    """Split point."""
    reward: float
    """Total reward (``infeasible_reward`` when infeasible)."""
    feasible: bool
    """False when a limit rules the split out."""
    quality_term: float
    """``quality_weight · Q``."""
    offload_term: float
    """``offload_weight · (L − k) / L``."""
    latency_term: float
    """``−latency_weight · latency_s / latency_scale_s``."""
    energy_term: float
    """``−energy_weight · ue_energy_j / energy_scale_j``."""
    latency_s: float
    """Latency of the priced request."""
    ue_energy_j: float
    """UE energy of the priced request."""
    reason: str | None = None
    """Why the split is infeasible (None when feasible)."""


class SplitReward:
    """A :class:`RewardConfig` bound to one model's cost profile; prices and scores splits."""

    def __init__(self, config: RewardConfig, profile: ModelProfile) -> None:
        self.config = config
        self.profile = profile
        self._device, self._edge, self._link = get_device(config.device), get_edge(config.edge), get_link(config.link)
        self._costs: dict[tuple[int, ChannelSetting], SplitCost] = {}

    @property
    def num_layers(self) -> int:
        """L of the bound model."""
        return self.profile.num_layers

    def cost(self, k: int, setting: ChannelSetting) -> SplitCost:
        """The cost model's price of split ``k`` under ``setting`` (memoised: the grid repeats cells)."""
        key = (int(k), setting)
        if key not in self._costs:
            self._costs[key] = split_costs(self.profile, int(k), self._device, self._edge, self._link,
                                           setting.state(), self.config.tokens, setting.bits_per_element,
                                           phase="prefill", nr_link=setting.nr_link())
        return self._costs[key]

    def infeasible_reason(self, k: int, setting: ChannelSetting) -> str | None:
        """Why split ``k`` is ruled out under ``setting`` (None when it is allowed)."""
        c, (low, high) = self.config, self.config.split_range(self.num_layers)
        if not low <= k <= high:
            return f"k={k} outside the allowed range {low}..{high}"
        cost = self.cost(int(k), setting)
        limits = ((cost.total_latency_s, c.max_latency_s, "latency_s"), (cost.ue_energy_j, c.max_ue_energy_j,
                  "ue_energy_j"), (cost.device_memory_bytes, c.max_device_memory_bytes, "device_memory_bytes"))
        over = [f"{name} {value:.4g} > {limit:.4g}" for value, limit, name in limits
                if limit is not None and value > limit]
        return cost.infeasible_reason or ("; ".join(over) or None)

    def evaluate(self, k: int, setting: ChannelSetting, quality: QualityMetrics) -> RewardBreakdown:
        """The reward of split ``k`` under ``setting`` with measured (or predicted) ``quality``."""
        self.profile.check_split(k)
        c, cost = self.config, self.cost(int(k), setting)
        q = float(c.quality_weight * c.quality_gain(quality.log_ppl_ratio, quality.kl_nats, quality.top1_agreement))
        terms = {"quality_term": q, "offload_term": c.offload_weight * (self.num_layers - k) / self.num_layers,
                 "latency_term": -c.latency_weight * cost.total_latency_s / c.latency_scale_s,
                 "energy_term": -c.energy_weight * cost.ue_energy_j / c.energy_scale_j}
        reason = self.infeasible_reason(k, setting)
        total = sum(terms.values()) + c.bias if reason is None else c.infeasible_reward
        return RewardBreakdown(k=k, reward=total, feasible=reason is None, latency_s=cost.total_latency_s,
                               ue_energy_j=cost.ue_energy_j, reason=reason, **terms)

    def cost_terms(self, ks: Any, settings: list[ChannelSetting]) -> tuple[np.ndarray, np.ndarray]:
        """Per cell: the analytic part (offload − latency − energy + bias) and the feasibility mask."""
        c, n = self.config, self.num_layers
        analytic, feasible = np.empty(len(settings)), np.empty(len(settings), dtype=bool)
        for i, (k, setting) in enumerate(zip(np.asarray(ks).tolist(), settings, strict=True)):
            cost = self.cost(int(k), setting)
            analytic[i] = (c.offload_weight * (n - k) / n - c.latency_weight * cost.total_latency_s / c.latency_scale_s
                           - c.energy_weight * cost.ue_energy_j / c.energy_scale_j + c.bias)
            feasible[i] = self.infeasible_reason(int(k), setting) is None
        return analytic, feasible

    def rewards(self, ks: Any, settings: list[ChannelSetting], log_ppl_ratio: Any, kl_nats: Any = 0.0,
                top1_agreement: Any = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`evaluate`: (reward, feasible) arrays for cells given as parallel sequences.

        The quality arrays may carry a leading axis (e.g. ensemble members: ``[members, cells]``); the reward
        then has the same shape.
        """
        analytic, feasible = self.cost_terms(ks, settings)
        quality = self.config.quality_weight * self.config.quality_gain(log_ppl_ratio, kl_nats, top1_agreement)
        reward = np.where(feasible, quality + analytic, self.config.infeasible_reward)
        return reward, feasible


def best_split(rewards: Any, feasible: Any) -> int:
    """Index of the highest reward among feasible entries; ValueError when none is feasible."""
    rewards, feasible = np.asarray(rewards, dtype=float), np.asarray(feasible, dtype=bool)
    if not feasible.any():
        raise ValueError("no feasible split: every candidate violates a limit")
    return int(np.argmax(np.where(feasible, rewards, -np.inf)))


__all__ = ["INFEASIBLE_REWARD", "PRESETS", "QUALITY_METRICS", "QualityMetrics", "RewardBreakdown", "RewardConfig",
           "SplitReward", "best_split", "reward_preset"]
