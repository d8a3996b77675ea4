"""PNG plots of ``benchmarks/coded_vs_uncoded.py`` (matplotlib ``Figure`` objects on the Agg canvas).

- ``best_split_vs_snr.png``: the best split per SNR, one panel per reward, one line per link variant;
- ``quality_vs_snr.png``: log(PPL/PPL0) (symlog: 8-bit quantisation's ±1e-2 and a collapsed link's ~10 on one axis)
  and KL (log) per SNR, one column per variant, one line per split;
- ``nr_vs_shannon.png``: NR goodput (MCS tables 1 and 2) against the Shannon rate, and the prefill message's NR uplink
  time over its Shannon time with the share of it HARQ adds;
- ``harq_decides.png``: the best offloading split's reward margin over local execution (``latency-orin``) when the
  coded link is priced by NR and by Shannon; below 0 the UE runs everything itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

STYLE = {"digital qpsk": ("tab:red", "o"), "digital 16qam": ("tab:orange", "s"), "coded": ("tab:blue", "^"),
         "coded, Shannon-priced": ("tab:cyan", "v"), "coded rayleigh": ("tab:purple", "D")}


def best_split_plot(best: pd.DataFrame, path: Path) -> None:
    rewards = list(dict.fromkeys(best["reward"]))
    fig = Figure(figsize=(4.2 * len(rewards), 3.8))
    axes = fig.subplots(1, len(rewards), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, rewards, strict=True):
        for offset, (variant, (color, marker)) in enumerate(STYLE.items()):
            part = best[(best["reward"] == name) & (best["variant"] == variant)].sort_values("snr_db")
            ax.plot(part["snr_db"] + 0.25 * (offset - 2.0), part["best_k"], marker=marker, color=color, lw=1,
                    ms=5, label=variant, drawstyle="steps-mid")
        ax.set_title(f"reward {name}", fontsize=9)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best split k (30: all on the UE)")
    axes[0].legend(fontsize=7)
    fig.suptitle("best split per SNR: uncoded digital vs coded 5G NR (8-bit activations)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def quality_plot(table: pd.DataFrame, path: Path) -> None:
    variants = [v for v in STYLE if v in set(table["variant"])]
    fig = Figure(figsize=(4.2 * len(variants), 6.6))
    axes = fig.subplots(2, len(variants), sharey="row", squeeze=False)
    ks = sorted(k for k in table["k"].unique() if 0 < k < table["num_layers"].max())
    cmap = colormaps["viridis"]
    for col, variant in enumerate(variants):
        part = table[table["variant"] == variant]
        for k, x in zip(ks, np.linspace(0.0, 0.9, len(ks)), strict=True):
            line = part[part["k"] == k].sort_values("snr_db")
            for row, column in enumerate(("log_ppl_ratio", "kl_nats")):
                axes[row, col].plot(line["snr_db"], line[column], marker="o", ms=3, color=cmap(x), label=f"k={k}")
        axes[0, col].set_yscale("symlog", linthresh=1e-3)
        axes[1, col].set_yscale("log")
        axes[0, col].set_title(variant, fontsize=9)
        for row in (0, 1):
            axes[row, col].set_xlabel("SNR (dB)")
            axes[row, col].grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("log(PPL / PPL0) (symlog; seeds pooled)")
    axes[1, 0].set_ylabel("KL(clean ‖ split) (nats / token)")
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("quality per SNR and split (8-bit activations)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def nr_plot(costs: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    ax_rate, ax_ratio = fig.subplots(1, 2)
    ax_rate.plot(costs["snr_db"], costs["shannon_bps"] / 1e6, color="black", label="Shannon, 20 MHz")
    ax_rate.plot(costs["snr_db"], costs["nr_goodput_bps"] / 1e6, color="tab:blue", drawstyle="steps-post",
                 label="NR table 1 (64QAM), HARQ 4")
    ax_rate.plot(costs["snr_db"], costs["nr_goodput_table2_bps"] / 1e6, color="tab:purple", drawstyle="steps-post",
                 label="NR table 2 (256QAM), HARQ 4")
    ax_rate.set_yscale("log")
    ax_rate.set_ylabel("saturated goodput (Mbit/s)")
    ax_ratio.plot(costs["snr_db"], costs["nr_over_shannon"], color="tab:blue", label="NR uplink time / Shannon time")
    twin = ax_ratio.twinx()
    twin.plot(costs["snr_db"], 100 * costs["harq_share"], color="tab:gray", ls="--", label="HARQ share of NR time")
    twin.set_ylabel("HARQ retransmissions + round trips (% of NR time)")
    ax_ratio.set_ylabel("NR / Shannon uplink time (prefill message)")
    ax_ratio.axhline(1.0, color="black", lw=0.8)
    for ax in (ax_rate, ax_ratio):
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3, which="both")
    ax_rate.legend(fontsize=7)
    ax_ratio.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    fig.suptitle(f"coded 5G NR uplink vs Shannon ({int(costs['message_bits'].iloc[0])}-bit prefill message)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def harq_plot(costs: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    ax.plot(costs["snr_db"], costs["orin_margin_nr"], color="tab:blue", label="coded, NR-priced (HARQ, MCS, DMRS)")
    ax.plot(costs["snr_db"], costs["orin_margin_shannon"], color="tab:cyan", ls="--",
            label="same quality, Shannon-priced")
    ax.axhline(0.0, color="black", lw=0.8)
    decided = (costs["orin_margin_nr"] < 0) & (costs["orin_margin_shannon"] >= 0)
    if decided.any():
        span = costs.loc[decided, "snr_db"]
        ax.axvspan(span.min(), span.max(), color="tab:blue", alpha=0.12, label="NR latency decides: run locally")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("best offloading reward − local reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("latency-orin reward: offload or run on the UE? (< 0: local)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_plots(table: pd.DataFrame, best: pd.DataFrame, costs: pd.DataFrame, out: Path) -> list[Path]:
    """All four PNGs under ``out``; returns their paths."""
    paths = {"best_split_vs_snr.png": (best_split_plot, best), "quality_vs_snr.png": (quality_plot, table),
             "nr_vs_shannon.png": (nr_plot, costs), "harq_decides.png": (harq_plot, costs)}
    for name, (draw, data) in paths.items():
        draw(data, Path(out) / name)
    return [Path(out) / name for name in paths]
