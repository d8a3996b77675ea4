"""Baselines for the joint optimiser, each a restriction of the same problem solved by the same exact solver.

    results = compare(problem, objective, bound=BoundObjective.from_profile(profile, "device"))
    {name: r.design.loss if r.feasible else None for name, r in results.items()}

- ``on-device``: k = L, pruned until it fits (least feasible ratio, best p / f).
- ``on-server``: k = 0 (the UE sends token ids; only server-side pruning, if that is the side, can help).
- ``fixed-ratio``: the ratio is fixed (default 0.5); k, p, f are optimised.
- ``fixed-split``: k is fixed (default L // 2, at least the privacy floor); rho, p, f are optimised.
- ``no-pruning``: rho = 0; k, p, f are optimised.
- ``bound``: the design that minimises the bound-based objective (Lyu et al.'s approach,
  :class:`~edgesplit.pruning.curves.BoundObjective`), then scored with the measured objective like every other.

Because every baseline searches a subset of the joint design space with the same exact solver, the joint design is
never worse than a feasible baseline (up to the solver's root tolerance); the benchmark checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgesplit.pruning.co_opt import CoOptProblem, CoOptResult, SplitPlan, build_plans, solve
from edgesplit.pruning.curves import Objective

SCHEMES = ("joint", "on-device", "on-server", "fixed-ratio", "fixed-split", "no-pruning", "bound")
"""Scheme names in table and plot order."""


def _only(plans: list[SplitPlan], k: int) -> list[SplitPlan]:
    return [plan for plan in plans if plan.k == k]


def default_fixed_split(problem: CoOptProblem) -> int:
    """The middle layer, raised to the privacy floor."""
    return max(problem.model.num_layers // 2, problem.min_device_layers)


def rescore(result: CoOptResult, objective: Objective, problem: CoOptProblem) -> CoOptResult:
    """The same designs with their loss recomputed under ``objective`` (for the bound-minimising design)."""
    def loss(design):
        interior = 0 < design.k < problem.model.num_layers
        return objective.loss(design.k, design.rho) + (problem.bits_penalty[design.bits] if interior else 0.0)

    candidates = tuple(replace(d, loss=float(loss(d))) for d in result.candidates)
    design = None if result.design is None else replace(result.design, loss=float(loss(result.design)))
    return replace(result, objective=objective.name, design=design, candidates=candidates)


@dataclass(frozen=True)
class _Capped:
    """An objective limited to the ratios another one covers (the bound design must stay where quality is known)."""

    inner: Objective
    """The objective minimised."""
    limit: Objective
    """The objective whose ratio range applies."""

    @property
    def name(self) -> str:
        """The inner objective's label."""
        return self.inner.name

    def loss(self, k: int, rho: float) -> float:
        """The inner loss."""
        return self.inner.loss(k, rho)

    def rho_limit(self, k: int) -> float:
        """The smaller of the two ranges."""
        return min(self.inner.rho_limit(k), self.limit.rho_limit(k))


def compare(problem: CoOptProblem, objective: Objective, *, bound: Objective | None = None,
            fixed_ratio: float = 0.5, fixed_split: int | None = None,
            plans: list[SplitPlan] | None = None) -> dict[str, CoOptResult]:
    """The joint design and every baseline on one problem (``bound`` omitted: no bound baseline)."""
    plans = build_plans(problem) if plans is None else plans
    L = problem.model.num_layers
    split = default_fixed_split(problem) if fixed_split is None else fixed_split
    results = {
        "joint": solve(problem, objective, plans=plans),
        "on-device": solve(problem, objective, plans=_only(plans, L), scheme="on-device"),
        "on-server": solve(problem, objective, plans=_only(plans, 0), scheme="on-server"),
        "fixed-ratio": solve(problem, objective, plans=plans, rho=fixed_ratio, scheme="fixed-ratio"),
        "fixed-split": solve(problem, objective, plans=_only(plans, split), scheme="fixed-split"),
        "no-pruning": solve(problem, objective, plans=plans, rho=0.0, scheme="no-pruning"),
    }
    if bound is not None:
        chosen = solve(problem, _Capped(bound, objective), plans=plans, scheme="bound")
        results["bound"] = rescore(chosen, objective, problem)
    return results
