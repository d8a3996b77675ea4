"""Statistics and plots of :mod:`benchmarks.uep_benefit` (catastrophic-cell rates, cuts, their 95 % bounds).

Bounds on a cut (the unprotected catastrophic rate over a method's), both one-sided 95 %:

- ``cp``: the ratio of the two-sided 95 % Clopper-Pearson bounds, unprotected lower over the method's upper. Each
  bound holds with 97.5 %, so both at once with >= 95 % (Bonferroni); conservative, and blind to seed clustering;
- ``boot``: the 5th percentile of the pooled ratio over a bootstrap of whole seeds (10 000 resamples with
  replacement, fixed generator): the cells of one seed share its draws, so seeds are the independent units. A
  resample with no event under the method counts as an infinite ratio.

The reported lower bound is the smaller of the two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import beta

COLORS = {"unprotected": "C3", "uep": "C0", "uep_random": "C7", "split_only": "C2", "uep_tokens": "C4",
          "tokens_only": "C8", "uep_repair": "C1", "uep_robust": "C9", "repair_only": "C5"}
BOOTSTRAP = 10_000
"""Seed-bootstrap resamples."""


def clopper_pearson(x: int, n: int) -> tuple[float, float]:
    """Two-sided 95 % Clopper-Pearson interval of ``x`` events in ``n`` cells."""
    if n <= 0 or not 0 <= x <= n:
        raise ValueError(f"need 0 <= x <= n and n > 0, got x={x}, n={n}")
    lo = 0.0 if x == 0 else float(beta.ppf(0.025, x, n - x + 1))
    hi = 1.0 if x == n else float(beta.ppf(0.975, x + 1, n - x))
    return lo, hi


def cut_bounds(base: pd.DataFrame, method: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Point cut and its one-sided 95 % lower bounds (``cp``, ``boot``; see the module docstring)."""
    xb, xu, nb, nu = int(base.catastrophic.sum()), int(method.catastrophic.sum()), len(base), len(method)
    point = (xb / nb) / (xu / nu) if xu else (np.inf if xb else np.nan)
    cp = clopper_pearson(xb, nb)[0] / clopper_pearson(xu, nu)[1]
    seeds = np.array(sorted(base.seed.unique()))
    b = base.groupby("seed").catastrophic.sum().reindex(seeds, fill_value=0).to_numpy(float)
    u = method.groupby("seed").catastrophic.sum().reindex(seeds, fill_value=0).to_numpy(float)
    draws = np.random.default_rng(seed).integers(0, len(seeds), (BOOTSTRAP, len(seeds)))
    sb, su = b[draws].sum(1), u[draws].sum(1)
    ratios = np.where(su > 0, sb / np.maximum(su, 1), np.inf)
    boot = float(np.quantile(ratios, 0.05, method="lower"))
    return {"cut": float(point), "cut_lo_cp": float(cp), "cut_lo_boot": boot, "cut_lo": float(min(cp, boot))}


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    """Per family and method: events, rate with its 95 % CI, worst seed, perplexities, extra bits and airtime, and
    (protecting methods) the cut over unprotected with its 95 % lower bound."""
    rows = []
    for (family, method), g in cells.groupby(["family", "method"], sort=False):
        x, n = int(g.catastrophic.sum()), len(g)
        lo, hi = clopper_pearson(x, n)
        per_seed = g.groupby("seed").catastrophic.sum()
        row = {"family": family, "method": method, "cells": n, "catastrophic": x, "rate": x / n, "rate_lo": lo,
               "rate_hi": hi, "worst_seed_events": int(per_seed.max()), "worst_seed": int(per_seed.idxmax()),
               "mean_ppl": float(g.perplexity.mean()), "median_ppl": float(g.perplexity.median()),
               "max_ppl": float(g.perplexity.max()),
               "mean_extra_bits": _mean(g.extra_bits_ratio), "max_extra_bits": _max(g.extra_bits_ratio),
               "mean_extra_airtime": _mean(g.extra_airtime_ratio), "max_extra_airtime": _max(g.extra_airtime_ratio)}
        base = cells[(cells.family == family) & (cells.method == "unprotected")]
        if method != "unprotected" and len(base):
            row |= cut_bounds(base, g)
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(s: pd.Series) -> float:
    return float(s.mean()) if s.notna().any() else 0.0


def _max(s: pd.Series) -> float:
    return float(s.max()) if s.notna().any() else 0.0


def cut_report(cells: pd.DataFrame, family: str, method: str) -> str:
    """Catastrophic cells of ``method`` vs unprotected, pooled and per seed, with the method's worst seed."""
    f = cells[cells.family == family]
    base, uep = f[f.method == "unprotected"], f[f.method == method]
    xb, xu = int(base.catastrophic.sum()), int(uep.catastrophic.sum())
    per_seed = []
    for seed in sorted(base.seed.unique()):
        b, u = int(base[base.seed == seed].catastrophic.sum()), int(uep[uep.seed == seed].catastrophic.sum())
        per_seed.append((u, -b, seed, b))
    u, _, seed, b = max(per_seed)  # the seed where the method fails most (ties: the fewest baseline events)
    seeds = ", ".join(f"s{s}: {b}->{u}" for u, _, s, b in sorted(per_seed, key=lambda t: t[2]))
    bounds = cut_bounds(base, uep)
    cut = f"{bounds['cut']:.1f}x" if xu else "no event"
    return (f"{family} {method}: catastrophic {xb}/{len(base)} -> {xu}/{len(uep)} ({cut}; 95 % lower bound "
            f"{bounds['cut_lo']:.1f}x: CP ratio {bounds['cut_lo_cp']:.1f}x, seed bootstrap "
            f"{bounds['cut_lo_boot']:.1f}x) | per seed {seeds} | worst seed s{seed}: {b}->{u} of "
            f"{len(uep[uep.seed == seed])}")


def verdict(summary: pd.DataFrame, family: str, method: str) -> str:
    """Whether ``method`` met the target (>= 10x fewer catastrophic cells at <= 5 % extra bits and airtime)."""
    row = summary[(summary.family == family) & (summary.method == method)].iloc[0]
    budget = max(row.max_extra_bits, row.max_extra_airtime) <= 0.05
    point = "met" if row.cut >= 10 else "NOT met"
    shown = "shown" if row.cut_lo >= 10 else "NOT shown"
    return (f"target >= 10x at <= 5 %: budget {'met' if budget else 'NOT met'} (bits +{100 * row.max_extra_bits:.2f} "
            f"%, airtime +{100 * row.max_extra_airtime:.2f} % at most; mean +{100 * row.mean_extra_bits:.2f} / "
            f"+{100 * row.mean_extra_airtime:.2f} %); point estimate {point}; >= 10x {shown} at 95 % "
            f"(lower bound {row.cut_lo:.1f}x)")


def plot(cells: pd.DataFrame, summary: pd.DataFrame, clean_ppl: float, out: Path) -> list[Path]:
    """``uep_perplexity.png`` (median and range per split, log) and ``uep_catastrophic.png`` (rates, 95 % CI, log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(cells.family))
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4), squeeze=False, sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        for method, g in cells[cells.family == family].groupby("method", sort=False):
            by_k, color = g.groupby("k").perplexity, COLORS.get(method)
            ax.plot(by_k.median().index, by_k.median(), marker="o", ms=3, label=method, color=color)
            ax.fill_between(by_k.min().index, by_k.min(), by_k.max(), alpha=0.15, color=color)
        ax.axhline(clean_ppl, color="k", lw=0.8, label="clean")
        ax.axhline(2 * clean_ppl, color="k", ls="--", lw=0.8, label="2x clean (catastrophic)")
        ax.set(yscale="log", xlabel="split k", title=family)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("perplexity (median, min-max over seeds)")
    fig.tight_layout()
    paths = [out / "uep_perplexity.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    paths.append(plot_rates(summary, out / "uep_catastrophic.png"))
    return paths


def plot_rates(summary: pd.DataFrame, path: Path) -> Path:
    """Catastrophic rate per family and method with its 95 % Clopper-Pearson interval (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(summary)), 4))
    labels = [f"{r.family}\n{r.method}" for r in summary.itertuples()]
    floor = 0.25 / summary.cells.max()
    for i, r in enumerate(summary.itertuples()):
        color = COLORS.get(r.method, "C1")
        if r.catastrophic:
            ax.bar(i, r.rate, color=color)
            ax.errorbar(i, r.rate, yerr=[[r.rate - max(r.rate_lo, floor)], [r.rate_hi - r.rate]], color="k",
                        capsize=3)
            ax.annotate(f"{r.catastrophic}/{r.cells}", (i, r.rate), ha="center", va="bottom", fontsize=7)
        else:  # no event: only the 95 % upper bound is known
            ax.plot(i, r.rate_hi, marker="v", color=color, markersize=9)
            ax.annotate(f"0/{r.cells}\n(< {r.rate_hi:.2g})", (i, r.rate_hi), ha="center", va="top", fontsize=7,
                        xytext=(0, -8), textcoords="offset points")
    ax.set(yscale="log", ylabel="catastrophic cell rate (PPL > 2x clean), 95 % CI", ylim=(floor, 1.5))
    ax.set_xticks(range(len(summary)), labels, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
