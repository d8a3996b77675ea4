"""Joint split / pruning ratio / transmit power / CPU frequency optimiser (Lyu et al., arXiv 2505.09214, measured).

    problem = CoOptProblem.from_presets(profile, latency_budget_s=0.2, energy_budget_j=0.05, snr_db=10.0)
    result = solve(problem, curves.objective("structured", "device"))
    result.design.k, result.design.rho, result.design.tx_power_w, result.design.f_hz, result.design.loss

Decision variables: split ``k`` (the UE runs layers ``[0, k)``), pruning ratio ``rho`` of the pruned side's
layers, UE transmit power ``p`` and CPU clock ``f``, and the wire width ``bits`` of the hidden state. The objective
(:class:`~edgesplit.pruning.curves.Objective`) is a predicted quality loss, nondecreasing in ``rho``. Constraints
(one prefill request of ``tokens`` tokens, the cost model of :mod:`edgesplit.cost`): end-to-end latency (UE compute
+ uplink at the Shannon rate of ``p`` + edge compute + downlink) ≤ ``latency_budget_s``; UE energy
(``kappa·cycles·f² + p·t_tx``) ≤ ``energy_budget_j``; ``p ≤ p_max_w``; ``f_min ≤ f ≤ f_max_hz``; UE (and edge)
memory.

Pruning and cost (:mod:`edgesplit.pruning.co_opt_problem`). Structured pruning removes whole heads / channels: the
projection and MLP FLOPs and weight bytes of the pruned layers shrink by the factor ``(1 - rho)`` (attention over
the context and the KV cache are kept, a conservative simplification). Unstructured pruning keeps the shapes, so it
saves **nothing** unless ``sparse_kernel=True`` is set, which assumes an ideal sparse kernel with the same
proportional savings (index storage ignored). Device-side pruning speeds up the UE; server-side the edge.

Why the solver is exact. For fixed ``(k, bits)`` every constraint is monotone in ``rho`` (a larger ratio never costs
more time, energy or memory), so the feasible ratios form an interval ``[rho*, rho_max]``; the objective is
nondecreasing in ``rho``, so ``rho*`` is optimal for that ``(k, bits)``. Memory and the shortest-time test are
linear in ``rho`` (closed form); the energy test is ``E*(rho) ≤ E`` where ``E*`` — the least energy over the
compute/transmit time split — is the one-dimensional convex problem of :mod:`edgesplit.pruning.co_opt_energy`;
``E*`` is continuous and nonincreasing in ``rho``, so ``rho*`` is the root of ``E*(rho) = E`` found by a bracketed
bisection (Brent). Enumerating every ``(k, bits)`` then gives the global optimum, up to the root tolerance.
With ``rho_step > 0`` ratios are restricted to a grid and ``rho*`` is rounded up to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from scipy.optimize import brentq

from edgesplit.pruning.co_opt_energy import EnergySplit, UeTask, least_energy
from edgesplit.pruning.co_opt_problem import (
    LOSSLESS_BITS,
    CoOptProblem,
    DesignCost,
    SplitPlan,
    build_plan,
    build_plans,
    design_cost,
)

if TYPE_CHECKING:
    from edgesplit.pruning.curves import Objective


@dataclass(frozen=True)
class CoOptDesign:
    """A chosen configuration and what it costs."""

    scheme: str
    """Which optimiser or baseline chose it."""
    k: int
    """Split point."""
    rho: float
    """Pruning ratio of the pruned side's layers."""
    bits: int
    """Wire width of the hidden state (irrelevant at k = 0 and k = L)."""
    tx_power_w: float
    """UE transmit power."""
    f_hz: float
    """UE clock."""
    loss: float
    """Objective value (for measured curves: predicted log(ppl / ppl_dense), wire penalty included)."""
    cost: DesignCost
    """Latency, energy and memory."""

    def to_dict(self) -> dict[str, float | int | str]:
        """Flat dict for tables, with latency and energy totals."""
        row = {key: value for key, value in asdict(self).items() if key != "cost"}
        return {**row, **asdict(self.cost), "latency_s": self.cost.latency_s, "energy_j": self.cost.energy_j}


@dataclass(frozen=True)
class CoOptResult:
    """What one solve found: the best design (None when infeasible) and every split's best."""

    scheme: str
    """Optimiser or baseline name."""
    objective: str
    """Name of the objective minimised."""
    design: CoOptDesign | None
    """The optimum, or None when no design meets every constraint."""
    candidates: tuple[CoOptDesign, ...]
    """The best feasible design of every (k, bits) that has one."""
    solve_s: float
    """Wall time of the solve."""

    @property
    def feasible(self) -> bool:
        """Whether a design was found."""
        return self.design is not None


def rho_cap(problem: CoOptProblem, plan: SplitPlan, objective: Objective) -> float:
    """Largest ratio allowed at the plan's split (0 when nothing is pruned), on the grid when there is one."""
    if not plan.prunes:
        return 0.0
    cap = min(problem.rho_max, objective.rho_limit(plan.k))
    return math.floor(cap / problem.rho_step + 1e-9) * problem.rho_step if problem.rho_step else cap


def _closed_form_floor(problem: CoOptProblem, plan: SplitPlan, task0: UeTask) -> float:
    """Least ratio meeting memory and the full-speed deadline (both affine in rho); inf when none does."""
    floors = [0.0]
    needs = ((plan.device_bytes - problem.device_memory_bytes, plan.device_bytes_per_rho),
             (plan.edge_bytes - problem.edge.memory_bytes, plan.edge_bytes_per_rho),
             (task0.min_time_s - task0.time_s, plan.cycles_per_rho / problem.f_max_hz + plan.edge_s_per_rho))
    for excess, per_rho in needs:
        if excess > 0:
            floors.append(excess / per_rho if per_rho > 0 else math.inf)
    return max(floors)


def _snap(problem: CoOptProblem, rho: float) -> float:
    """Round a ratio up to the grid (kept as is when continuous)."""
    step = problem.rho_step
    return math.ceil(rho / step - 1e-9) * step if step else rho


def _energy_ok(split: EnergySplit, problem: CoOptProblem) -> bool:
    return split.feasible and split.energy_j <= problem.energy_budget_j * (1.0 + 1e-12)


def least_ratio(problem: CoOptProblem, plan: SplitPlan, cap: float) -> tuple[float, EnergySplit] | None:
    """Least feasible ratio in [0, cap] for the plan, with its least-energy operating point (None: infeasible)."""
    floor = _closed_form_floor(problem, plan, plan.task(problem, 0.0))
    if floor > cap + 1e-12:
        return None
    floor = min(_snap(problem, floor), cap)
    split = least_energy(plan.task(problem, floor))
    if _energy_ok(split, problem):
        return floor, split
    if not _energy_ok(least_energy(plan.task(problem, cap)), problem):
        return None

    def excess(rho: float) -> float:  # finite even where float rounding misses the deadline at the floor
        return min(least_energy(plan.task(problem, rho)).energy_j, 1e300) - problem.energy_budget_j

    root = brentq(excess, floor, cap, xtol=1e-10, rtol=1e-12)
    for candidate in (_snap(problem, root), _snap(problem, root + 1e-9), cap):
        split = least_energy(plan.task(problem, min(candidate, cap)))
        if _energy_ok(split, problem):
            return min(candidate, cap), split
    return None  # unreachable: cap is feasible


def fixed_ratio(problem: CoOptProblem, plan: SplitPlan, rho: float) -> tuple[float, EnergySplit] | None:
    """The plan at exactly ``rho`` (0 where nothing is pruned) if it is feasible."""
    rho = rho if plan.prunes else 0.0
    if _closed_form_floor(problem, plan, plan.task(problem, 0.0)) > rho + 1e-12:
        return None
    split = least_energy(plan.task(problem, rho))
    return (rho, split) if _energy_ok(split, problem) else None


def make_design(problem: CoOptProblem, plan: SplitPlan, rho: float, split: EnergySplit, objective: Objective,
                scheme: str) -> CoOptDesign:
    """A design from a plan, a ratio and its operating point; the loss is the objective's plus the wire penalty."""
    cost = design_cost(problem, plan, rho, split.tx_power_w, split.f_hz)
    return CoOptDesign(scheme=scheme, k=plan.k, rho=rho, bits=plan.bits, tx_power_w=split.tx_power_w,
                       f_hz=split.f_hz, loss=float(objective.loss(plan.k, rho)) + plan.penalty, cost=cost)


def best_of(designs: Iterable[CoOptDesign]) -> CoOptDesign | None:
    """Least loss; designs within 1e-12 (absolute) of it are ties, which go to the least energy."""
    designs = list(designs)
    if not designs:
        return None
    least = min(design.loss for design in designs)
    return min((d for d in designs if d.loss <= least + 1e-12), key=lambda d: d.cost.energy_j)


def solve(problem: CoOptProblem, objective: Objective, *, splits: Iterable[int] | None = None,
          rho: float | None = None, scheme: str = "joint", plans: list[SplitPlan] | None = None) -> CoOptResult:
    """Minimise the objective over (k, rho, p, f, bits) exactly (see the module docstring).

    ``splits`` restricts k, ``rho`` fixes the ratio (baselines); ``plans`` reuses :func:`build_plans` output when
    only the budgets changed.
    """
    start = time.perf_counter()
    plans = build_plans(problem, splits) if plans is None else plans
    candidates = []
    for plan in plans:
        cap = rho_cap(problem, plan, objective)
        if rho is None:
            found = least_ratio(problem, plan, cap)
        else:
            found = None if plan.prunes and rho > cap + 1e-12 else fixed_ratio(problem, plan, rho)
        if found is not None:
            candidates.append(make_design(problem, plan, *found, objective, scheme))
    return CoOptResult(scheme=scheme, objective=objective.name, design=best_of(candidates),
                       candidates=tuple(candidates), solve_s=time.perf_counter() - start)


__all__ = ["LOSSLESS_BITS", "CoOptDesign", "CoOptProblem", "CoOptResult", "DesignCost", "SplitPlan", "best_of",
           "build_plan", "build_plans", "design_cost", "fixed_ratio", "least_ratio", "make_design", "rho_cap",
           "solve"]
