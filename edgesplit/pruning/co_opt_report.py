"""Why a co-inference problem is infeasible, and the least budget of each kind that would make it feasible.

    report = explain(problem, objective)        # None when a design exists
    print(report.message())

Every constraint is loosest at the largest allowed pruning ratio (feasibility is monotone in rho), so each split is
judged there. With the other budgets held as given:

- least latency budget: for each split, the least T with ``E*(T) ≤ E``, where ``E*(T)`` (the least energy over the
  compute/transmit time split, :mod:`~edgesplit.pruning.co_opt_energy`) falls as T grows; found by bisection. No T
  suffices when ``E`` is at or below the limit ``κ·W·f_min² + D·ln2/(B·g)`` that ``E*`` approaches.
- least energy budget: ``E*`` at the given deadline, minimised over splits that can meet it at full speed.
- least memory: the smallest sub-model, over splits that meet latency and energy.

A constraint is *binding* when relaxing it alone restores feasibility; when none is, the report says the budgets
bind jointly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from edgesplit.pruning.co_opt import CoOptProblem, SplitPlan, build_plans, rho_cap
from edgesplit.pruning.co_opt_energy import UeTask, least_energy
from edgesplit.pruning.curves import Objective

_LN2 = math.log(2.0)


@dataclass(frozen=True)
class InfeasibilityReport:
    """The binding constraint(s) of an infeasible problem and the least budgets that would be feasible."""

    latency_budget_s: float
    """Latency budget asked for."""
    energy_budget_j: float
    """Energy budget asked for."""
    device_memory_bytes: float
    """UE memory asked for."""
    binding: tuple[str, ...]
    """Constraints (``latency``, ``energy``, ``memory``) each of which, relaxed alone, restores feasibility."""
    least_latency_budget_s: float | None
    """Least latency budget that works with the given energy and memory (None: none does)."""
    least_energy_budget_j: float | None
    """Least energy budget that works with the given latency and memory (None: none does)."""
    least_memory_bytes: float | None
    """Least UE memory that works with the given latency and energy (None: none does)."""
    notes: tuple[str, ...] = ()
    """Hardware limits behind the numbers (p_max, f_max, privacy floor, ratio cap)."""

    def message(self) -> str:
        """One paragraph for the command line."""
        asked = (f"latency {self.latency_budget_s * 1e3:.4g} ms, energy {self.energy_budget_j * 1e3:.4g} mJ, "
                 f"UE memory {self.device_memory_bytes / 1e9:.4g} GB")
        binding = ", ".join(self.binding) if self.binding else "no single budget: they bind jointly"
        least = [_least("latency", self.least_latency_budget_s, 1e3, "ms"),
                 _least("energy", self.least_energy_budget_j, 1e3, "mJ"),
                 _least("UE memory", self.least_memory_bytes, 1e-9, "GB")]
        text = f"no design meets {asked}; binding: {binding}; least feasible budgets (others as given): "
        return text + "; ".join(least) + "".join(f"; {note}" for note in self.notes)


def _least(name: str, value: float | None, scale: float, unit: str) -> str:
    return f"{name}: none suffices" if value is None else f"{name} >= {value * scale:.4g} {unit}"


def _ratio(problem: CoOptProblem, plan: SplitPlan, objective: Objective, rho: float | None) -> float:
    return rho_cap(problem, plan, objective) if rho is None or not plan.prunes else rho


def _memory_ok(problem: CoOptProblem, plan: SplitPlan, rho: float) -> bool:
    return (plan.device_bytes - plan.device_bytes_per_rho * rho <= problem.device_memory_bytes
            and plan.edge_bytes - plan.edge_bytes_per_rho * rho <= problem.edge.memory_bytes)


def _energy_floor_j(task: UeTask) -> float:
    """What E*(T) approaches as T grows: slowest clock, and the power-limited minimum energy per bit."""
    return task.kappa * task.cycles * task.f_min_hz**2 + task.tx_bits * _LN2 / (task.bandwidth_hz * task.gain_per_w)


def _energy_ok_ignoring_memory(problem: CoOptProblem, plan: SplitPlan, rho: float) -> bool:
    edge_ok = plan.edge_bytes - plan.edge_bytes_per_rho * rho <= problem.edge.memory_bytes
    return edge_ok and least_energy(plan.task(problem, rho)).energy_j <= problem.energy_budget_j * (1 + 1e-12)


def _least_latency_s(problem: CoOptProblem, plan: SplitPlan, rho: float) -> float | None:
    """Least deadline at which the plan fits the energy budget at ratio rho (bisection on T)."""
    extra_s = plan.edge_s_at(rho) + plan.downlink_s
    task = plan.task(problem, rho)
    if problem.energy_budget_j <= _energy_floor_j(task):
        return None
    lo = task.min_time_s

    def fits(time_s: float) -> bool:
        return least_energy(replace(task, time_s=time_s)).energy_j <= problem.energy_budget_j

    if fits(lo):
        return lo + extra_s
    hi = max(2.0 * lo, 1e-6)
    while not fits(hi):
        lo, hi = hi, 2.0 * hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        if hi - lo <= 1e-12 * hi:
            break
    return hi + extra_s


def _best(values: Iterable[float | None]) -> float | None:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return min(finite) if finite else None


def _notes(problem: CoOptProblem, cap: float) -> tuple[str, ...]:
    notes = [f"at p_max {problem.p_max_w:g} W, f_max {problem.f_max_hz / 1e9:.4g} GHz, SNR "
             f"{problem.channel.snr_db:.4g} dB, ratio <= {cap:.4g} ({problem.method}/{problem.side}"
             f"{', pruning saves no compute' if not problem.pruning_saves else ''})"]
    if problem.min_device_layers:
        notes.append(f"privacy floor: k >= {problem.min_device_layers}")
    return tuple(notes)


def explain(problem: CoOptProblem, objective: Objective, *, splits: Iterable[int] | None = None,
            rho: float | None = None) -> InfeasibilityReport | None:
    """The report for an infeasible problem (None when some design is feasible); arguments as in ``solve``."""
    plans = build_plans(problem, splits)
    judged = [(plan, _ratio(problem, plan, objective, rho)) for plan in plans]
    energy = [least_energy(plan.task(problem, r)).energy_j if _memory_ok(problem, plan, r) else math.inf
              for plan, r in judged]
    if any(e <= problem.energy_budget_j * (1 + 1e-12) for e in energy):
        return None
    least_t = _best(_least_latency_s(problem, plan, r) for plan, r in judged if _memory_ok(problem, plan, r))
    least_e = _best(energy)
    least_m = _best(plan.device_bytes - plan.device_bytes_per_rho * r for plan, r in judged
                    if _energy_ok_ignoring_memory(problem, plan, r))
    binding = tuple(name for name, value in (("latency", least_t), ("energy", least_e), ("memory", least_m))
                    if value is not None)
    return InfeasibilityReport(latency_budget_s=problem.latency_budget_s, energy_budget_j=problem.energy_budget_j,
                               device_memory_bytes=problem.device_memory_bytes, binding=binding,
                               least_latency_budget_s=least_t, least_energy_budget_j=least_e,
                               least_memory_bytes=least_m,
                               notes=_notes(problem, max((r for _, r in judged), default=0.0)))
