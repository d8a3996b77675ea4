"""PNG plots of a pruning sweep (matplotlib ``Figure`` with the Agg canvas; pyplot is never touched).

- ``ppl_vs_ratio.png``: perplexity against the pruning ratio, one panel per k (at most four, spread over the
  grid), one line per method and side (solid: device, dashed: server, dotted: both), N:M cells as markers, the dense
  perplexity as a black line;
- ``output_vs_param.png``: output distortion (logits MSE, KL, hidden-state MSE at the split for device-side cells)
  against parameter distortion ``||ΔW||²``, log-log, one colour per method, with the line ``y = c·x`` of the smallest
  constant that holds over every cell (:func:`edgesplit.pruning.bounds.fit_bound_constant`) and its slack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from edgesplit.profile.plots import write_plots as write_profile_plots
from edgesplit.pruning.bounds import fit_bound_constant

STYLES = {"device": "-", "server": "--", "both": ":"}
MARKERS = {"2:4": "s", "4:8": "D"}


def _colors(names) -> dict:
    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _title(cells: pd.DataFrame) -> str:
    row = cells.iloc[0]
    return f"{row['model']} · {row['corpus']} · {int(row['scored_tokens'])} scored tokens"


def _panel_ks(cells: pd.DataFrame, most: int = 4) -> list[int]:
    ks = sorted(cells["k"].unique())
    if len(ks) <= most:
        return [int(k) for k in ks]
    return [int(ks[round(i)]) for i in np.linspace(0, len(ks) - 1, most)]


def ppl_vs_ratio(cells: pd.DataFrame, path: Path) -> None:
    """Perplexity (log) against ratio per method and side, one panel per k."""
    ks = _panel_ks(cells)
    colors = _colors(sorted(cells["method"].unique()))
    fig = Figure(figsize=(4.2 * len(ks), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(ks), sharey=True))
    for ax, k in zip(axes, ks, strict=True):
        at_k = cells[cells["k"] == k]
        for (method, side), group in at_k.groupby(["method", "side"]):
            plain = group[group["pattern"].isna()].groupby("ratio")["ppl"].mean()
            ax.plot(plain.index, plain.values, STYLES[side], marker="o", ms=3, color=colors[method],
                    label=f"{method} ({side})")
            for pattern, patterned in group[group["pattern"].notna()].groupby("pattern"):
                ax.scatter(patterned["ratio"], patterned["ppl"], marker=MARKERS.get(pattern, "x"), s=30,
                           color=colors[method], edgecolors="black", linewidths=0.5, zorder=3,
                           label=f"{method} {pattern} ({side})")
        ax.axhline(float(cells["ppl_dense"].median()), color="black", lw=1, label="dense")
        ax.set_yscale("log")
        ax.set_title(f"k = {k}", fontsize=9)
        ax.set_xlabel("pruning ratio")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("perplexity")
    axes[-1].legend(fontsize=6, ncol=1, loc="upper left")
    fig.suptitle(f"perplexity vs pruning ratio (squares: 2:4, diamonds: 4:8)\n{_title(cells)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


OUTPUTS = (("logits_mse", "logits MSE", None), ("kl", "KL(dense ‖ pruned), nats/token", None),
           ("hidden_mse", "hidden-state MSE entering layer k", "device"))


def output_vs_param(cells: pd.DataFrame, path: Path) -> None:
    """Output distortion against ``||ΔW||²`` (log-log) with the fitted ``y = c·x`` line."""
    colors = _colors(sorted(cells["method"].unique()))
    fig = Figure(figsize=(14, 4.5))
    axes = fig.subplots(1, len(OUTPUTS))
    for ax, (column, label, side) in zip(axes, OUTPUTS, strict=True):
        rows = cells if side is None else cells[cells["side"] == side]
        rows = rows[(rows["param_dist_sq"] > 0) & (rows[column] > 0)]
        if rows.empty:
            ax.set_visible(False)
            continue
        for method, group in rows.groupby("method"):
            ax.scatter(group["param_dist_sq"], group[column], s=12, alpha=0.75, color=colors[method], label=method)
        fit = fit_bound_constant(rows, column, "param_dist_sq")
        xs = np.geomspace(rows["param_dist_sq"].min(), rows["param_dist_sq"].max(), 50)
        ax.plot(xs, fit.c * xs, color="black", lw=1,
                label=f"c = {fit.c:.3g} (slack median {fit.slack_decades_median:.1f}, max "
                      f"{fit.slack_decades_max:.1f} decades)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameter distortion ||ΔW||²")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    fig.suptitle(f"output ≤ c · parameter distortion? (log-log; line: smallest c over all cells)\n{_title(cells)}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


PLOTS = {"ppl_vs_ratio.png": ppl_vs_ratio, "output_vs_param.png": output_vs_param}
"""File name → plotting function."""


def write_plots(cells: pd.DataFrame, out: Path) -> list[Path]:
    """Write every plot of :data:`PLOTS` into ``out``; returns the paths."""
    return write_profile_plots(cells, out, PLOTS)


__all__ = ["PLOTS", "output_vs_param", "ppl_vs_ratio", "write_plots"]
