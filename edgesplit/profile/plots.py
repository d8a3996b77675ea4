"""PNG plots of a profile table (matplotlib ``Figure`` objects with the Agg canvas; pyplot is never touched).

- ``heatmap_perplexity.png``: mean perplexity over split × channel setting (log colour scale);
- ``quality_vs_split.png``: perplexity and top-1 agreement against k, one line per setting, band = seed min..max;
- ``cost_per_split.png``: stacked prefill latency (device / uplink / edge / downlink) and UE energy (compute /
  transmit) per split at a reference setting, with every setting's total latency as lines;
- ``tradeoff.png``: prefill latency against perplexity per setting, one point per split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from edgesplit.profile.summary import setting_order

LATENCY_PARTS = (("prefill_device_s", "device compute"), ("prefill_uplink_s", "uplink"),
                 ("prefill_edge_s", "edge compute"), ("prefill_downlink_s", "downlink"))
ENERGY_PARTS = (("prefill_ue_compute_energy_j", "UE compute"), ("prefill_ue_tx_energy_j", "UE transmit"))


def _short(label: str, kind: str) -> str:
    return label.removeprefix(f"{kind} ").removeprefix("p=")


def _axis_name(kind: str) -> str:
    return {"awgn": "SNR (dB)", "dropout": "dropout p", "digital": "bits · modulation · SNR",
            "coded": "bits · SNR (NR, coded)"}.get(kind, "setting")


def _colors(n: int) -> list:
    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


def _title(cells: pd.DataFrame) -> str:
    row = cells.iloc[0]
    seeds = cells["seed"].nunique()
    return f"{row['model']} · {row['corpus']} · {row['scored_tokens']} scored tokens · {seeds} seed(s)"


def heatmap(cells: pd.DataFrame, path: Path) -> None:
    """Mean perplexity over split (x) × setting (y)."""
    order, kind = setting_order(cells), cells["channel"].iloc[0]
    grid = cells.pivot_table(index="setting", columns="k", values="perplexity", aggfunc="mean").reindex(order)
    fig = Figure(figsize=(max(6.0, 0.28 * grid.shape[1] + 3), max(3.0, 0.35 * len(order) + 1.8)))
    ax = fig.add_subplot()
    values = grid.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.0001))
    image = ax.imshow(values, aspect="auto", cmap="magma_r", norm=norm, origin="lower")
    ax.set_xticks(range(grid.shape[1]), [str(k) for k in grid.columns], fontsize=7)
    ax.set_yticks(range(len(order)), [_short(label, kind) for label in order], fontsize=7)
    ax.set_xlabel("split k (layers on the UE)")
    ax.set_ylabel(_axis_name(kind))
    if values.size <= 120:  # small grids: print the numbers too
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.3g}", ha="center", va="center", fontsize=6,
                    color="white" if norm(value) > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="perplexity (mean over seeds)")
    ax.set_title(f"perplexity over split × channel\n{_title(cells)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _curve(ax, stats: pd.DataFrame, column: str, color, label: str) -> None:
    ax.plot(stats.index, stats[(column, "mean")], marker="o", ms=3, color=color, label=label)
    ax.fill_between(stats.index, stats[(column, "min")], stats[(column, "max")], color=color, alpha=0.2)


def quality_curves(cells: pd.DataFrame, path: Path) -> None:
    """Perplexity (log) and top-1 agreement against k, one line per setting with the seed spread."""
    order, kind = setting_order(cells), cells["channel"].iloc[0]
    fig = Figure(figsize=(11, 4.5))
    ax_ppl, ax_top = fig.subplots(1, 2)
    for label, color in zip(order, _colors(len(order)), strict=True):
        stats = cells[cells["setting"] == label].groupby("k")[["perplexity", "top1_agreement"]].agg(
            ["mean", "min", "max"])
        _curve(ax_ppl, stats, "perplexity", color, _short(label, kind))
        _curve(ax_top, stats, "top1_agreement", color, _short(label, kind))
    ax_ppl.axhline(cells["clean_perplexity"].iloc[0], color="black", ls="--", lw=1, label="clean")
    ax_ppl.set_yscale("log")
    ax_ppl.set_ylabel("perplexity")
    ax_top.set_ylabel("top-1 agreement with the clean model")
    for ax in (ax_ppl, ax_top):
        ax.set_xlabel("split k (layers on the UE)")
        ax.grid(alpha=0.3)
    ax_ppl.legend(fontsize=7, title=_axis_name(kind), title_fontsize=7, ncol=2)
    fig.suptitle(f"quality vs split (band: min..max over seeds)\n{_title(cells)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _stacked(ax, frame: pd.DataFrame, parts: tuple[tuple[str, str], ...]) -> None:
    bottom = np.zeros(len(frame))
    for column, label in parts:
        ax.bar(frame.index, frame[column], bottom=bottom, label=label, width=0.8)
        bottom += frame[column].to_numpy()


def cost_bars(cells: pd.DataFrame, path: Path) -> None:
    """Stacked latency and energy per split at the middle setting; total latency of every setting as lines."""
    order, kind = setting_order(cells), cells["channel"].iloc[0]
    reference = order[len(order) // 2]
    columns = [c for c, _ in LATENCY_PARTS + ENERGY_PARTS]
    ref = cells[cells["setting"] == reference].groupby("k")[columns].mean()
    fig = Figure(figsize=(11, 4.5))
    ax_lat, ax_en = fig.subplots(1, 2)
    _stacked(ax_lat, ref * 1e3, LATENCY_PARTS)
    for label, color in zip(order, _colors(len(order)), strict=True):
        total = cells[cells["setting"] == label].groupby("k")["prefill_latency_s"].mean() * 1e3
        ax_lat.plot(total.index, total, color=color, lw=1, alpha=0.8, label=f"total, {_short(label, kind)}")
    _stacked(ax_en, ref * 1e3, ENERGY_PARTS)
    ax_lat.set_ylabel("prefill latency (ms)")
    ax_en.set_ylabel("UE energy (mJ)")
    for ax in (ax_lat, ax_en):
        ax.set_xlabel("split k (layers on the UE)")
        ax.legend(fontsize=7, ncol=2)
    tokens = int(cells["prefill_tokens"].iloc[0])
    fig.suptitle(f"cost of one {tokens}-token prefill per split (bars: {reference}, mean over seeds)\n"
                 f"{_title(cells)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def tradeoff(cells: pd.DataFrame, path: Path) -> None:
    """Latency against perplexity, one line per setting through its splits (k annotated at the ends)."""
    order, kind = setting_order(cells), cells["channel"].iloc[0]
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    for label, color in zip(order, _colors(len(order)), strict=True):
        stats = cells[cells["setting"] == label].groupby("k")[["prefill_latency_s", "perplexity"]].mean()
        ax.plot(stats["prefill_latency_s"] * 1e3, stats["perplexity"], marker="o", ms=3, color=color,
                label=_short(label, kind))
        for k in (stats.index[0], stats.index[-1]):
            ax.annotate(f"k={k}", (stats.loc[k, "prefill_latency_s"] * 1e3, stats.loc[k, "perplexity"]),
                        fontsize=6, color=color)
    ax.set_yscale("log")
    ax.set_xlabel("prefill latency (ms)")
    ax.set_ylabel("perplexity (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title=_axis_name(kind), title_fontsize=7, ncol=2)
    ax.set_title(f"latency / quality trade-off per split\n{_title(cells)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


PLOTS = {"heatmap_perplexity.png": heatmap, "quality_vs_split.png": quality_curves, "cost_per_split.png": cost_bars,
         "tradeoff.png": tradeoff}
"""File name → plotting function."""


def write_plots(cells: pd.DataFrame, out: Path, plots: dict | None = None) -> list[Path]:
    """Write every plot of ``plots`` (file name → function; default :data:`PLOTS`) into ``out``; returns the paths."""
    if cells.empty:
        raise ValueError("no cells to plot")
    paths = []
    for name, draw in (PLOTS if plots is None else plots).items():
        draw(cells, Path(out) / name)
        paths.append(Path(out) / name)
    return paths
