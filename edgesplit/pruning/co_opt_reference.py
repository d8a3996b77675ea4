"""Reference solvers that check :func:`edgesplit.pruning.co_opt.solve`: brute force on a grid, and scipy's SLSQP.

Both price designs with :func:`~edgesplit.pruning.co_opt.design_cost`'s formulas (the same cost model, which the
tests tie to :func:`edgesplit.cost.split_costs`) but use none of the solver's structure (no time-split convexity,
no root finding):

- :func:`brute_force` evaluates every (k, bits) × ratio grid × clock grid × power grid (power on a log grid from
  ``p_max·1e-5``) and keeps the least loss among the feasible points (ties: least energy). It is slightly
  conservative: a design feasible only between grid points is missed.
- :func:`scipy_reference` scans a ratio grid upwards for every (k, bits) and asks SLSQP, from two starts, for the
  least energy over (f, log p) subject to the deadline; the first ratio whose energy fits the budget is that split's
  answer. (It relies only on the loss being nondecreasing in the ratio, as every objective here is.)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from edgesplit.pruning.co_opt import (
    CoOptDesign,
    CoOptProblem,
    CoOptResult,
    SplitPlan,
    best_of,
    build_plans,
    design_cost,
    rho_cap,
)
from edgesplit.pruning.curves import Objective

_P_FLOOR = 1e-5
"""Lowest grid power, as a fraction of p_max."""


@dataclass(frozen=True)
class GridSpec:
    """Resolution of the brute-force grid."""

    rho_step: float = 0.005
    """Spacing of the ratio grid."""
    f_points: int = 200
    """Clock values, evenly spaced in [f_min, f_max]."""
    p_points: int = 200
    """Power values, log-spaced in [p_max·1e-5, p_max]."""

    def __post_init__(self) -> None:
        if not 0 < self.rho_step <= 0.5 or self.f_points < 2 or self.p_points < 2:
            raise ValueError(f"need 0 < rho_step <= 0.5 and at least 2 clock and power points, got {self}")


def _ratio_grid(cap: float, step: float) -> np.ndarray:
    return np.arange(0.0, cap + 1e-9, step) if cap > 0 else np.zeros(1)


def _plan_grid(problem: CoOptProblem, plan: SplitPlan, rhos: np.ndarray, grid: GridSpec):
    """(feasible mask, energy) over rho × f × p for one plan."""
    f = np.linspace(problem.device.f_min_hz, problem.f_max_hz, grid.f_points)
    p = problem.p_max_w * np.geomspace(_P_FLOOR, 1.0, grid.p_points)
    rate = problem.link.bandwidth_hz * np.log2(1.0 + problem.gain_per_w * p)
    t_tx = plan.tx_bits / rate
    cycles = (plan.cycles - plan.cycles_per_rho * rhos)[:, None, None]
    latency = cycles / f[None, :, None] + t_tx[None, None, :] + (plan.edge_s - plan.edge_s_per_rho * rhos
                                                                   + plan.downlink_s)[:, None, None]
    energy = problem.device.kappa * cycles * (f**2)[None, :, None] + (p * t_tx)[None, None, :]
    memory_ok = ((plan.device_bytes - plan.device_bytes_per_rho * rhos <= problem.device_memory_bytes)
                 & (plan.edge_bytes - plan.edge_bytes_per_rho * rhos <= problem.edge.memory_bytes))
    ok = (latency <= problem.latency_budget_s) & (energy <= problem.energy_budget_j) & memory_ok[:, None, None]
    return ok, np.where(ok, energy, np.inf), f, p


def _grid_design(problem, plan, objective, rhos, grid, scheme) -> CoOptDesign | None:
    ok, energy, f, p = _plan_grid(problem, plan, rhos, grid)
    rows = np.flatnonzero(ok.any(axis=(1, 2)))
    if rows.size == 0:
        return None
    losses = np.asarray(objective.loss(plan.k, rhos[rows])) + plan.penalty
    best = rows[int(np.argmin(losses))]  # losses are nondecreasing: the least feasible ratio
    fi, pi = np.unravel_index(int(np.argmin(energy[best])), energy[best].shape)
    rho = float(rhos[best])
    cost = design_cost(problem, plan, rho, float(p[pi]), float(f[fi]))
    return CoOptDesign(scheme=scheme, k=plan.k, rho=rho, bits=plan.bits, tx_power_w=float(p[pi]),
                       f_hz=float(f[fi]), loss=float(objective.loss(plan.k, rho)) + plan.penalty, cost=cost)


def brute_force(problem: CoOptProblem, objective: Objective, grid: GridSpec | None = None,
                scheme: str = "brute-force") -> CoOptResult:
    """Exhaustive search over every (k, bits) and the rho × f × p grid."""
    grid = grid or GridSpec()
    start = time.perf_counter()
    found = []
    for plan in build_plans(problem):
        design = _grid_design(problem, plan, objective, _ratio_grid(rho_cap(problem, plan, objective),
                                                                    grid.rho_step), grid, scheme)
        if design is not None:
            found.append(design)
    return CoOptResult(scheme=scheme, objective=objective.name, design=best_of(found), candidates=tuple(found),
                       solve_s=time.perf_counter() - start)


def _decode(problem: CoOptProblem, x: np.ndarray) -> tuple[float, float]:
    """(f_hz, p_w) from SLSQP's unit-box variables (clock linear, power logarithmic)."""
    f_min, f_max = problem.device.f_min_hz, problem.f_max_hz
    u, v = np.clip(x, 0.0, 1.0)
    return f_min + u * (f_max - f_min), problem.p_max_w * _P_FLOOR ** (1.0 - v)


def _slsqp_energy(problem: CoOptProblem, plan: SplitPlan, rho: float) -> tuple[float, float, float]:
    """Least energy over (f, p) subject to the deadline, by SLSQP from two starts: (energy, f, p); inf if none."""

    def cost(x):
        f_hz, p_w = _decode(problem, x)
        return design_cost(problem, plan, rho, p_w, f_hz)

    def energy(x):
        return cost(x).energy_j / problem.energy_budget_j

    def slack(x):
        return 1.0 - cost(x).latency_s / problem.latency_budget_s

    best = (math.inf, math.nan, math.nan)
    for x0 in ((1.0, 1.0), (0.5, 0.8)):
        out = minimize(energy, np.array(x0), method="SLSQP", bounds=[(0.0, 1.0)] * 2,
                       constraints=[{"type": "ineq", "fun": slack}], options={"ftol": 1e-12, "maxiter": 200})
        if slack(out.x) >= -1e-9 and out.fun * problem.energy_budget_j < best[0]:
            best = (float(out.fun * problem.energy_budget_j), *_decode(problem, out.x))
    return best


def _memory_ok(problem: CoOptProblem, plan: SplitPlan, rho: float) -> bool:
    return (plan.device_bytes - plan.device_bytes_per_rho * rho <= problem.device_memory_bytes
            and plan.edge_bytes - plan.edge_bytes_per_rho * rho <= problem.edge.memory_bytes)


def _scipy_design(problem, plan, objective, rhos, scheme) -> CoOptDesign | None:
    for rho in rhos.tolist():
        if not _memory_ok(problem, plan, rho):
            continue
        energy, f_hz, p_w = _slsqp_energy(problem, plan, rho)
        if energy <= problem.energy_budget_j * (1 + 1e-9):
            cost = design_cost(problem, plan, rho, p_w, f_hz)
            return CoOptDesign(scheme=scheme, k=plan.k, rho=rho, bits=plan.bits, tx_power_w=p_w, f_hz=f_hz,
                               loss=float(objective.loss(plan.k, rho)) + plan.penalty, cost=cost)
    return None


def scipy_reference(problem: CoOptProblem, objective: Objective, rho_step: float = 0.05,
                    scheme: str = "scipy-slsqp") -> CoOptResult:
    """SLSQP over (f, p) for every (k, bits) and every grid ratio (ascending, first feasible kept)."""
    start = time.perf_counter()
    found = []
    for plan in build_plans(problem):
        design = _scipy_design(problem, plan, objective, _ratio_grid(rho_cap(problem, plan, objective), rho_step),
                               scheme)
        if design is not None:
            found.append(design)
    return CoOptResult(scheme=scheme, objective=objective.name, design=best_of(found), candidates=tuple(found),
                       solve_s=time.perf_counter() - start)
