"""The one-dimensional convex core of the joint optimiser: least UE energy over the compute/transmit time split.

For one split k, pruning ratio and wire width the UE must run ``W`` cycles and send ``D`` bits (ARQ repeats
included) within ``τ`` seconds (the latency budget minus edge compute and downlink). Running the cycles in ``t_c``
seconds means ``f = W / t_c`` and costs ``κ·cycles·f² = κ·W³/t_c²``; sending in ``t_x`` seconds at the Shannon rate
``D / t_x = B·log2(1 + g·p)`` (``g``: linear SNR per watt of transmit power) needs ``p = (2^{D/(B·t_x)} − 1)/g`` and
costs ``h(t_x) = p·t_x``. Both are convex and strictly decreasing in their own time, so the least energy spends the
whole budget, ``t_c + t_x = τ`` (``t_c`` stops at ``W / f_min`` when the clock cannot go lower; the rest goes to the
radio), and

    min  φ(t_c) = κ·W³/t_c² + h(τ − t_c)   over   t_c ∈ [W/f_max, min(W/f_min, τ − t_x_min)],

with ``t_x_min = D / (B·log2(1 + g·p_max))``, is a one-dimensional convex problem. ``φ'`` is increasing, so the
minimiser is the root of ``φ'`` in the interval, or the end it is clipped to; the root is found by Brent's method
(``scipy.optimize.brentq``, bracketed, so it always converges). The problem is infeasible exactly when
``W/f_max + t_x_min > τ``. Degenerate cases: ``W = 0`` (fully on-server: only the radio) and ``D = 0`` (fully
on-device: only the CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.optimize import brentq

_LN2 = math.log(2.0)
_MAX_EXPONENT = 700.0
"""Beyond this exponent 2^x overflows a float: the transmit energy is treated as infinite."""
_TIME_SLACK = 1e-12
"""Relative slack on the time budget, so a design that spends it exactly is not refused for float rounding."""


@dataclass(frozen=True)
class UeTask:
    """What the UE must do before the deadline, and what its CPU and radio allow."""

    cycles: float
    """CPU cycles to run: device FLOPs / (flops_per_cycle · utilisation); 0 when the UE computes nothing."""
    tx_bits: float
    """Expected on-air bits to send (headers and ARQ repeats included); 0 when nothing crosses the link."""
    time_s: float
    """Seconds left for UE compute plus uplink (budget minus edge compute and downlink)."""
    kappa: float
    """Effective switched capacitance, J/cycle³."""
    f_min_hz: float
    """Lowest CPU clock."""
    f_max_hz: float
    """Highest CPU clock the design may use."""
    bandwidth_hz: float
    """Uplink bandwidth B."""
    gain_per_w: float
    """Linear received SNR per watt of transmit power (instantaneous SNR at p_ref divided by p_ref)."""
    p_max_w: float
    """Highest transmit power the design may use."""

    def __post_init__(self) -> None:
        if self.cycles < 0 or self.tx_bits < 0 or not math.isfinite(self.cycles + self.tx_bits):
            raise ValueError(f"cycles and tx_bits must be finite and >= 0, got {self.cycles!r}, {self.tx_bits!r}")
        for name in ("kappa", "f_min_hz", "f_max_hz", "bandwidth_hz", "gain_per_w", "p_max_w"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"UeTask.{name} must be a finite number > 0, got {value!r}")
        if self.f_min_hz > self.f_max_hz:
            raise ValueError(f"f_min_hz ({self.f_min_hz}) must be <= f_max_hz ({self.f_max_hz})")

    @property
    def min_transmit_s(self) -> float:
        """Uplink time at full power."""
        if self.tx_bits == 0:
            return 0.0
        return self.tx_bits / (self.bandwidth_hz * math.log2(1.0 + self.gain_per_w * self.p_max_w))

    @property
    def min_time_s(self) -> float:
        """Shortest UE time: full clock and full power."""
        return self.cycles / self.f_max_hz + self.min_transmit_s


@dataclass(frozen=True)
class EnergySplit:
    """The least-energy operating point of one task (or why there is none)."""

    feasible: bool
    """False when even full clock and full power miss the deadline."""
    energy_j: float
    """Least UE energy (compute + transmit); ``inf`` when infeasible."""
    compute_s: float
    """UE compute time t_c at the optimum."""
    transmit_s: float
    """Uplink time t_x at the optimum."""
    f_hz: float
    """CPU clock W / t_c (f_max when the UE computes nothing)."""
    tx_power_w: float
    """Transmit power reaching rate D / t_x (p_max when nothing is sent)."""
    compute_energy_j: float
    """κ·W³/t_c²."""
    tx_energy_j: float
    """p·t_x."""


def tx_energy_j(task: UeTask, transmit_s: float) -> float:
    """``h(t_x) = t_x·(2^{D/(B t_x)} − 1)/g``: energy to send the task's bits in ``transmit_s`` seconds."""
    if task.tx_bits == 0:
        return 0.0
    y = task.tx_bits * _LN2 / (task.bandwidth_hz * transmit_s)
    return math.inf if y > _MAX_EXPONENT else transmit_s * math.expm1(y) / task.gain_per_w


def tx_power_w(task: UeTask, transmit_s: float) -> float:
    """Power whose Shannon rate sends the task's bits in exactly ``transmit_s`` seconds."""
    y = task.tx_bits * _LN2 / (task.bandwidth_hz * transmit_s)
    return math.inf if y > _MAX_EXPONENT else math.expm1(y) / task.gain_per_w


def _tx_energy_slope(task: UeTask, transmit_s: float) -> float:
    """``h'(t_x) = (2^x − 1 − x·ln2·2^x)/g`` with ``x = D/(B t_x)``; always < 0."""
    y = task.tx_bits * _LN2 / (task.bandwidth_hz * transmit_s)
    return (math.expm1(y) - y * math.exp(y)) / task.gain_per_w


def _best_compute_s(task: UeTask, lo: float, hi: float) -> float:
    """Minimiser of the convex φ on [lo, hi] (the root of the increasing φ', or the end it is clipped to)."""
    if task.tx_bits == 0 or hi - lo <= 1e-15 * hi:
        return hi  # only the CPU: its energy falls with every extra second
    a = 2.0 * task.kappa * task.cycles**3

    def slope(t_c: float) -> float:
        return -a / t_c**3 - _tx_energy_slope(task, task.time_s - t_c)

    if slope(hi) <= 0.0:
        return hi
    if slope(lo) >= 0.0:
        return lo
    return brentq(slope, lo, hi, xtol=1e-15, rtol=1e-12)


def _infeasible() -> EnergySplit:
    inf = math.inf
    return EnergySplit(False, inf, inf, inf, math.nan, math.nan, inf, inf)


def least_energy(task: UeTask) -> EnergySplit:
    """Solve the one-dimensional convex problem of the module docstring."""
    if task.min_time_s > task.time_s * (1.0 + _TIME_SLACK):
        return _infeasible()
    if task.cycles == 0:
        t_c, f_hz = 0.0, task.f_max_hz
    else:
        lo = task.cycles / task.f_max_hz
        hi = max(lo, min(task.cycles / task.f_min_hz, task.time_s - task.min_transmit_s))
        t_c = _best_compute_s(task, lo, hi)
        f_hz = min(task.f_max_hz, max(task.f_min_hz, task.cycles / t_c))
    t_x = task.time_s - t_c if task.tx_bits else 0.0
    p_w = min(task.p_max_w, tx_power_w(task, t_x)) if task.tx_bits else task.p_max_w
    e_compute = task.kappa * task.cycles * f_hz**2
    e_tx = p_w * t_x
    return EnergySplit(True, e_compute + e_tx, t_c, t_x, f_hz, p_w, e_compute, e_tx)


def min_energy_j(task: UeTask) -> float:
    """Least UE energy of the task (``inf`` when the deadline cannot be met)."""
    return least_energy(task).energy_j
