"""Sweep the joint optimiser and its baselines over latency × energy budgets; tables, verdicts and plots.

    frame = budget_sweep(problem, objective, latency_budgets_s, energy_budgets_j, bound=bound)
    verdicts = versus_baselines(frame)          # per baseline: where the joint design is better / worse
    plot_sweep(frame, out_dir)                  # quality vs budget per scheme; chosen k / rho / p / f vs budget

One row per (latency budget, energy budget, scheme): the chosen design (NaN where infeasible) with its loss and
predicted perplexity under the measured objective. Split plans do not depend on the budgets, so they are built once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from edgesplit.pruning.co_opt import CoOptProblem, CoOptResult, build_plans
from edgesplit.pruning.co_opt_baselines import SCHEMES, compare
from edgesplit.pruning.curves import Objective

_TOLERANCE = 1e-9
"""Losses closer than this count as equal (the solver's root tolerance is far below)."""
_DESIGN_COLUMNS = ("k", "rho", "bits", "tx_power_w", "f_hz", "loss", "latency_s", "energy_j", "device_memory_bytes")


def _row(result: CoOptResult, latency_s: float, energy_j: float, ppl_dense: float) -> dict:
    row = {"scheme": result.scheme, "latency_budget_s": latency_s, "energy_budget_j": energy_j,
           "feasible": result.feasible, "solve_s": result.solve_s}
    design = result.design.to_dict() if result.design is not None else {}
    row.update({name: design.get(name, math.nan) for name in _DESIGN_COLUMNS})
    row["predicted_ppl"] = ppl_dense * math.exp(row["loss"]) if result.feasible else math.nan
    return row


def budget_sweep(problem: CoOptProblem, objective: Objective, latency_budgets_s: Sequence[float],
                 energy_budgets_j: Sequence[float], *, bound: Objective | None = None, fixed_ratio: float = 0.5,
                 fixed_split: int | None = None) -> pd.DataFrame:
    """Joint design and baselines at every budget pair (see the module docstring)."""
    plans = build_plans(problem)
    ppl_dense = float(getattr(objective, "ppl_dense", math.nan))
    rows = []
    for latency_s in latency_budgets_s:
        for energy_j in energy_budgets_j:
            budgeted = problem.with_budgets(latency_budget_s=float(latency_s), energy_budget_j=float(energy_j))
            results = compare(budgeted, objective, bound=bound, fixed_ratio=fixed_ratio, fixed_split=fixed_split,
                              plans=plans)
            rows.extend(_row(result, float(latency_s), float(energy_j), ppl_dense) for result in results.values())
    return pd.DataFrame(rows)


def versus_baselines(frame: pd.DataFrame) -> pd.DataFrame:
    """Per baseline: budget points where both are feasible, where the joint design is strictly better, strictly
    worse, and where only the joint design is feasible (the baseline is not)."""
    key = ["latency_budget_s", "energy_budget_j"]
    joint = frame[frame["scheme"] == "joint"].set_index(key)
    rows = []
    for scheme, group in frame[frame["scheme"] != "joint"].groupby("scheme", sort=False):
        other = group.set_index(key)
        both = joint["feasible"] & other["feasible"]
        diff = (joint["loss"] - other["loss"])[both]
        rows.append({"baseline": scheme, "points": len(other), "both_feasible": int(both.sum()),
                     "joint_better": int((diff < -_TOLERANCE).sum()), "joint_worse": int((diff > _TOLERANCE).sum()),
                     "max_joint_excess": float(diff.max()) if len(diff) else 0.0,
                     "only_joint_feasible": int((joint["feasible"] & ~other["feasible"]).sum()),
                     "only_baseline_feasible": int((~joint["feasible"] & other["feasible"]).sum())})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["beaten_somewhere"] = (out["joint_better"] + out["only_joint_feasible"]) > 0
        out["never_loses"] = (out["joint_worse"] == 0) & (out["only_baseline_feasible"] == 0)
    return out


def _picks(values: np.ndarray, count: int = 3) -> list[float]:
    """A few representative budgets (low, middle, high) for the slices."""
    index = np.unique(np.linspace(0, len(values) - 1, min(count, len(values))).round().astype(int))
    return [float(values[i]) for i in index]


def _quality_plot(frame: pd.DataFrame, x: str, across: str, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = _picks(np.sort(frame[across].unique()))
    fig, axes = plt.subplots(1, len(slices), figsize=(5 * len(slices), 4), squeeze=False, sharey=True)
    for ax, value in zip(axes[0], slices, strict=True):
        part = frame[np.isclose(frame[across], value)]
        for scheme in [s for s in SCHEMES if s in set(part["scheme"])]:
            rows = part[part["scheme"] == scheme].sort_values(x)
            ax.plot(rows[x] * 1e3, rows["predicted_ppl"], marker="o", ms=3, label=scheme,
                    lw=2.5 if scheme == "joint" else 1.2, zorder=3 if scheme == "joint" else 2)
        if not part["feasible"].any():
            ax.text(0.5, 0.5, "no feasible design", transform=ax.transAxes, ha="center", color="gray")
        unit = "ms" if across.startswith("latency") else "mJ"
        ax.set(xscale="log", yscale="log", title=f"{across.split('_')[0]} budget {value * 1e3:.3g} {unit}",
               xlabel=f"{x.split('_')[0]} budget ({'ms' if x.startswith('latency') else 'mJ'})")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("predicted perplexity (infeasible: missing)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{title}\n(a scheme hidden under 'joint' chose the same quality)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _choices_plot(frame: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    joint = frame[frame["scheme"] == "joint"]
    panels = (("k", "split k"), ("rho", "pruning ratio"), ("tx_power_w", "tx power (W)"), ("f_hz", "UE clock (GHz)"))
    fig, axes = plt.subplots(2, 4, figsize=(18, 7))
    for row, (x, across) in enumerate((("latency_budget_s", "energy_budget_j"),
                                       ("energy_budget_j", "latency_budget_s"))):
        for ax, (column, label) in zip(axes[row], panels, strict=True):
            for value in _picks(np.sort(joint[across].unique())):
                rows = joint[np.isclose(joint[across], value)].sort_values(x)
                scale = 1e-9 if column == "f_hz" else 1.0
                ax.plot(rows[x] * 1e3, rows[column] * scale, marker="o", ms=3,
                        label=f"{across.split('_')[0]} {value * 1e3:.3g}")
            ax.set(xscale="log", xlabel=f"{x.split('_')[0]} budget ({'ms' if x.startswith('latency') else 'mJ'})",
                   ylabel=label)
            ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=8)
    fig.suptitle("joint design: chosen k / rho / p / f vs budget")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweep(frame: pd.DataFrame, out_dir: Path, title: str = "") -> list[Path]:
    """quality_vs_latency.png, quality_vs_energy.png and joint_choices.png under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_quality_plot(frame, "latency_budget_s", "energy_budget_j", out_dir / "quality_vs_latency.png", title),
            _quality_plot(frame, "energy_budget_j", "latency_budget_s", out_dir / "quality_vs_energy.png", title),
            _choices_plot(frame, out_dir / "joint_choices.png")]
