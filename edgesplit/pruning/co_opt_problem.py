"""The co-inference problem of the joint optimiser and its cost model, affine in the pruning ratio.

    problem = CoOptProblem.from_presets(profile, latency_budget_s=0.2, energy_budget_j=0.05, snr_db=10.0)
    plans = build_plans(problem)                 # one SplitPlan per allowed (k, bits)
    design_cost(problem, plans[3], rho=0.3, tx_power_w=0.1, f_hz=1.5e9).latency_s

A :class:`SplitPlan` prices one (k, bits) with :func:`edgesplit.cost.split_costs` (one prefill of ``tokens``
tokens) and adds what pruning changes: the projection and MLP FLOPs and weight bytes of the pruned layers shrink by
``(1 - rho)`` when pruning saves anything (structured, or unstructured with ``sparse_kernel=True``, an ideal sparse
kernel assumed; index storage ignored). Attention-over-context FLOPs and the KV cache are kept (conservative).
So UE cycles, edge seconds and memory are affine in rho; uplink bits (ARQ repeats included) and downlink time do not
depend on it. Nothing here depends on the budgets, so one set of plans serves a whole budget sweep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from edgesplit.channel.state import ChannelState
from edgesplit.cost import DeviceProfile, EdgeProfile, LinkProfile, ModelProfile, get_device, get_edge, get_link
from edgesplit.cost.split_cost import expected_transmissions, split_costs
from edgesplit.pruning.co_opt_energy import UeTask
from edgesplit.pruning.spec import METHODS, SIDES, STRUCTURED_METHODS

LOSSLESS_BITS = (16, 32)
"""Wire widths treated as lossless (float casts of the float32 hidden state): no quality penalty by default."""


@dataclass(frozen=True)
class CoOptProblem:
    """One prefill request under one set of budgets: everything the optimiser needs except the objective."""

    model: ModelProfile
    """FLOPs, parameters and bytes per layer of the model."""
    device: DeviceProfile
    """The UE's compute block (kappa, flops_per_cycle, utilisation, f_min_hz, memory)."""
    edge: EdgeProfile
    """The edge accelerator."""
    link: LinkProfile
    """The radio link (bandwidth, reference power, headers, downlink rate)."""
    channel: ChannelState
    """Uplink state: SNR at the link's reference power, fading gain, packet loss (ARQ)."""
    tokens: int
    """Prompt tokens of the request (one prefill)."""
    latency_budget_s: float
    """End-to-end latency budget T."""
    energy_budget_j: float
    """UE energy budget E (compute + transmit)."""
    p_max_w: float
    """Highest UE transmit power."""
    f_max_hz: float
    """Highest UE clock the design may use (at most the device's f_max_hz)."""
    device_memory_bytes: float
    """Memory the UE grants the model."""
    method: str = "structured"
    """Pruning method (one of :data:`~edgesplit.pruning.spec.METHODS`): decides whether pruning saves cost."""
    side: str = "device"
    """Which layers are pruned: ``device`` (< k), ``server`` (>= k) or ``both``."""
    bits_choices: tuple[int, ...] = (16,)
    """Candidate wire widths of the hidden state (used for 0 < k < L)."""
    bits_penalty: dict[int, float] = field(default_factory=lambda: dict.fromkeys(LOSSLESS_BITS, 0.0))
    """Quality loss (same unit as the objective) added by each wire width; every choice needs an entry."""
    sparse_kernel: bool = False
    """Assume an ideal sparse kernel, so unstructured pruning saves FLOPs and bytes in proportion (stated)."""
    min_device_layers: int = 0
    """Privacy floor: the UE runs at least this many layers (1 keeps raw token ids on the device)."""
    rho_max: float = 0.95
    """Largest pruning ratio allowed (also capped by what the objective covers)."""
    rho_step: float = 0.0
    """Grid of allowed ratios (0.01 = whole percent); 0 means continuous."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_choices()

    def _check_numbers(self) -> None:
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise ValueError(f"tokens must be an integer >= 1, got {self.tokens!r}")
        for name in ("latency_budget_s", "energy_budget_j", "p_max_w", "device_memory_bytes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not self.device.f_min_hz <= self.f_max_hz <= self.device.f_max_hz:
            raise ValueError(f"f_max_hz must be in [{self.device.f_min_hz:g}, {self.device.f_max_hz:g}] Hz for "
                             f"device {self.device.name!r}, got {self.f_max_hz!r}")
        if not 0.0 <= self.rho_max <= 0.95:
            raise ValueError(f"rho_max must be in [0, 0.95], got {self.rho_max!r}")
        if not 0.0 <= self.rho_step <= 0.5:
            raise ValueError(f"rho_step must be in [0, 0.5] (0: continuous), got {self.rho_step!r}")
        if not 0 <= self.min_device_layers <= self.model.num_layers:
            raise ValueError(f"min_device_layers must be in 0..{self.model.num_layers}, got {self.min_device_layers}")

    def _check_choices(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {self.side!r}")
        if not self.bits_choices:
            raise ValueError("bits_choices needs at least one wire width")
        for bits in self.bits_choices:
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
                raise ValueError(f"wire widths must be integers in 1..32, got {bits!r}")
            if bits not in self.bits_penalty:
                raise ValueError(f"wire width {bits} has no quality penalty in bits_penalty (lossless widths "
                                 f"{LOSSLESS_BITS} default to 0; measure the others and pass them)")

    @classmethod
    def from_presets(cls, model: ModelProfile, *, latency_budget_s: float, energy_budget_j: float,
                     device: str | DeviceProfile = "phone-soc", edge: str | EdgeProfile = "a100",
                     link: str | LinkProfile = "5g-nr-20mhz", snr_db: float = 10.0, tokens: int = 128,
                     **options) -> CoOptProblem:
        """A problem from preset names; p_max, f_max and memory default to the presets' values."""
        dev = get_device(device) if isinstance(device, str) else device
        lnk = get_link(link) if isinstance(link, str) else link
        options.setdefault("p_max_w", lnk.tx_power_w)
        options.setdefault("f_max_hz", dev.f_max_hz)
        options.setdefault("device_memory_bytes", dev.memory_bytes)
        return cls(model=model, device=dev, edge=get_edge(edge) if isinstance(edge, str) else edge, link=lnk,
                   channel=ChannelState(mean_snr_db=snr_db), tokens=tokens, latency_budget_s=latency_budget_s,
                   energy_budget_j=energy_budget_j, **options)

    @property
    def pruning_saves(self) -> bool:
        """Whether a larger ratio lowers cost (structured, or unstructured with an assumed sparse kernel)."""
        return self.method in STRUCTURED_METHODS or self.sparse_kernel

    @property
    def gain_per_w(self) -> float:
        """Linear received SNR per watt of transmit power."""
        return self.channel.snr_linear / self.link.tx_power_w

    def pruned_layers(self, k: int) -> tuple[range, range]:
        """(device layers, edge layers) that the pruning touches at split k."""
        L = self.model.num_layers
        device = range(0, k) if self.side in ("device", "both") else range(0)
        edge = range(k, L) if self.side in ("server", "both") else range(0)
        return device, edge

    def with_budgets(self, latency_budget_s: float | None = None, energy_budget_j: float | None = None,
                     device_memory_bytes: float | None = None) -> CoOptProblem:
        """A copy with some budgets replaced."""
        changes = {"latency_budget_s": latency_budget_s, "energy_budget_j": energy_budget_j,
                   "device_memory_bytes": device_memory_bytes}
        return replace(self, **{name: value for name, value in changes.items() if value is not None})


@dataclass(frozen=True)
class SplitPlan:
    """Costs of one (k, bits) as affine functions of the pruning ratio: value at rho = 0 and saving per unit rho."""

    k: int
    """Split point."""
    bits: int
    """Wire width of the hidden state (ignored at k = 0 and k = L)."""
    prunes: bool
    """Whether any layer is pruned at this k (otherwise rho is 0)."""
    cycles: float
    """UE cycles of the dense sub-model."""
    cycles_per_rho: float
    """UE cycles removed per unit of rho."""
    edge_s: float
    """Edge compute time of the dense sub-model."""
    edge_s_per_rho: float
    """Edge seconds removed per unit of rho."""
    downlink_s: float
    """Time to return the result token ids."""
    tx_bits: float
    """Expected on-air uplink bits (headers and ARQ repeats included)."""
    device_bytes: float
    """UE memory of the dense sub-model (weights, KV cache, activations)."""
    device_bytes_per_rho: float
    """UE weight bytes removed per unit of rho."""
    edge_bytes: float
    """Edge memory of the dense sub-model."""
    edge_bytes_per_rho: float
    """Edge weight bytes removed per unit of rho."""
    penalty: float
    """Quality penalty of the wire width (0 at k = 0 and k = L, where no hidden state is sent)."""

    def cycles_at(self, rho: float) -> float:
        """UE cycles at ratio rho."""
        return self.cycles - self.cycles_per_rho * rho

    def edge_s_at(self, rho: float) -> float:
        """Edge compute seconds at ratio rho."""
        return self.edge_s - self.edge_s_per_rho * rho

    def task(self, problem: CoOptProblem, rho: float) -> UeTask:
        """The UE's share at ratio rho: cycles, bits, and the time left after edge compute and downlink."""
        return UeTask(cycles=self.cycles_at(rho), tx_bits=self.tx_bits,
                      time_s=problem.latency_budget_s - self.edge_s_at(rho) - self.downlink_s,
                      kappa=problem.device.kappa, f_min_hz=problem.device.f_min_hz, f_max_hz=problem.f_max_hz,
                      bandwidth_hz=problem.link.bandwidth_hz, gain_per_w=problem.gain_per_w,
                      p_max_w=problem.p_max_w)


def _prunable(model: ModelProfile, layers: range, tokens: int) -> tuple[float, float]:
    """(FLOPs, parameters) of the projections and MLPs of ``layers``: what pruning scales by (1 - rho)."""
    chosen = [model.layers[i] for i in layers]
    return (float(sum(layer.dense_flops_per_token for layer in chosen) * tokens),
            float(sum(layer.attn_proj_params + layer.mlp_params for layer in chosen)))


def build_plan(problem: CoOptProblem, k: int, bits: int) -> SplitPlan:
    """Price split k at width ``bits`` with :func:`edgesplit.cost.split_costs` and the pruning slopes."""
    p, dev = problem, problem.device
    dense = split_costs(p.model, k, dev, p.edge, p.link, p.channel, p.tokens, bits, f_hz=dev.f_max_hz)
    dev_layers, edge_layers = p.pruned_layers(k)
    saves = 1.0 if p.pruning_saves else 0.0
    dev_flops, dev_params = _prunable(p.model, dev_layers, p.tokens)
    edge_flops, edge_params = _prunable(p.model, edge_layers, p.tokens)
    per_cycle = dev.flops_per_cycle * dev.utilisation
    interior = 0 < k < p.model.num_layers
    return SplitPlan(
        k=k, bits=bits, prunes=bool(len(dev_layers) or len(edge_layers)),
        cycles=dense.device_flops / per_cycle, cycles_per_rho=saves * dev_flops / per_cycle,
        edge_s=dense.edge_compute_s, edge_s_per_rho=saves * edge_flops / p.edge.effective_flops,
        downlink_s=dense.downlink_s, tx_bits=dense.payload_bits * expected_transmissions(p.channel.loss_rate),
        device_bytes=dense.device_memory_bytes, device_bytes_per_rho=saves * dev_params * dev.bytes_per_param,
        edge_bytes=dense.edge_memory_bytes, edge_bytes_per_rho=saves * edge_params * p.edge.bytes_per_param,
        penalty=p.bits_penalty[bits] if interior else 0.0)


def build_plans(problem: CoOptProblem, splits: Iterable[int] | None = None) -> list[SplitPlan]:
    """One plan per allowed (k, bits); k = 0 and k = L get one plan (no hidden state crosses the link)."""
    L = problem.model.num_layers
    ks = range(problem.min_device_layers, L + 1) if splits is None else splits
    plans = []
    for k in ks:
        if k < problem.min_device_layers:
            continue
        widths = problem.bits_choices if 0 < k < L else problem.bits_choices[:1]
        plans.extend(build_plan(problem, k, bits) for bits in widths)
    return plans


@dataclass(frozen=True)
class DesignCost:
    """Latency, energy and memory of one fully specified design."""

    device_compute_s: float
    """UE compute time at the design's clock."""
    uplink_s: float
    """Uplink time at the design's power (ARQ included)."""
    edge_compute_s: float
    """Edge compute time."""
    downlink_s: float
    """Downlink time."""
    compute_energy_j: float
    """kappa · cycles · f²."""
    tx_energy_j: float
    """p · t_tx."""
    device_memory_bytes: float
    """UE memory of the (pruned) sub-model."""
    edge_memory_bytes: float
    """Edge memory of the (pruned) sub-model."""

    @property
    def latency_s(self) -> float:
        """End-to-end latency."""
        return self.device_compute_s + self.uplink_s + self.edge_compute_s + self.downlink_s

    @property
    def energy_j(self) -> float:
        """UE energy."""
        return self.compute_energy_j + self.tx_energy_j


def design_cost(problem: CoOptProblem, plan: SplitPlan, rho: float, tx_power_w: float, f_hz: float) -> DesignCost:
    """Cost of ``plan`` at ratio ``rho``, power ``tx_power_w`` and clock ``f_hz`` (no feasibility test)."""
    cycles = plan.cycles_at(rho)
    rate = problem.link.bandwidth_hz * math.log2(1.0 + problem.gain_per_w * tx_power_w)
    uplink_s = plan.tx_bits / rate if plan.tx_bits else 0.0
    return DesignCost(device_compute_s=cycles / f_hz, uplink_s=uplink_s, edge_compute_s=plan.edge_s_at(rho),
                      downlink_s=plan.downlink_s, compute_energy_j=problem.device.kappa * cycles * f_hz**2,
                      tx_energy_j=tx_power_w * uplink_s,
                      device_memory_bytes=plan.device_bytes - plan.device_bytes_per_rho * rho,
                      edge_memory_bytes=plan.edge_bytes - plan.edge_bytes_per_rho * rho)
