"""Calibrate the coded NR uplink: abstracted vs bit-true statistics, the CB > 2000 clamp, throughput vs Shannon.

    .venv/bin/python benchmarks/coded_link_check.py [--quick] [--out runs/coded_link_check] [--seed 0]
    .venv/bin/python benchmarks/coded_link_check.py --from-run runs/coded_link_check   # re-print a finished run
    .venv/bin/python benchmarks/coded_link_check.py --parts d --out runs/coded_link_check_tdl   # TDL part alone

(a) For several MCSs (table 1: QPSK..64QAM, table 2: 256QAM) on a 2-PRB allocation (code blocks 200..2000 bits)
    and SNRs in each waterfall (where the abstraction predicts a first-transmission TB error rate of 0.7 / 0.3 /
    0.05), plus one chase-combining point (2 transmissions) and one Rayleigh point per MCS, the ``coded``
    impairment runs bit-true (Sionna's LDPC chain) and abstracted (many seeds); the bit-true TB error rate gets
    a 99 % Clopper-Pearson interval. Compared: this package's abstraction, the same without the effective-rate
    correction, Sionna's default PHYAbstraction on the same (PDSCH = 5.1.3.1) tables, and Sionna's shipped PUSCH
    tables (simulated with the transform-precoding MCS tables). Prints how many points fall inside the CI.
(b) Code blocks above the tables' 2000 bits (3864 and 8216): bit-true vs the clamped abstraction.
(c) Saturated NR goodput (TBS-based, HARQ, cost model) vs Shannon ``B log2(1 + SNR)`` on the 20 MHz carrier,
    0..30 dB; and the latency of one 128-token SmolLM2 prefill payload vs the Shannon time.
(d) Channel ``tdl`` (TR 38.901 TDL-C 300 ns, 3 km/h, 3.5 GHz; plus TDL-A 1000 ns at one MCS): per MCS, mean SNRs
    where the abstraction predicts a first-transmission TB error rate of 0.7 / 0.3 / 0.05 and one 2-transmission
    point, bit-true (Sionna's LDPC chain over the per-RE channel, ``BitTrueLink.send``) on a 2-PRB allocation with a
    99 % Clopper-Pearson CI, vs: the abstraction link adaptation and the cost model use (Sionna's EESM -> this
    package's tables, averaged over the fixed seeded realisation set), the same without the rate correction, and,
    on the bit-true run's own channel realisations (first-transmission points): this package's EESM prediction,
    Sionna's default PHYAbstraction at the same EESM SNR, and no ESM at all (AWGN table at each TB's mean SNR).

``--parts`` picks parts: ``abc`` (the original check), ``d`` (TDL alone), ``abcd`` (default). Writes
points.parquet, throughput.parquet and coded_link_check.png (a-c), tdl_points.parquet and coded_link_check_tdl.png
(d) and config.json to ``--out``. The full run takes ~10 min on 2 busy cores for a-c (bit-true LDPC decoding) and
~5 min for d; ``--quick`` ~1 min.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesplit.channel import ChannelState  # noqa: E402
from edgesplit.channel.nr import (  # noqa: E402
    CarrierConfig,
    CodedImpairment,
    NrLinkConfig,
    TdlConfig,
    failure_probabilities,
    load_sionna,
    nr_throughput_bps,
    nr_uplink_cost,
    preserve_global_rng,
    transport_block,
)
from edgesplit.channel.nr.bit_true import bit_true_link  # noqa: E402
from edgesplit.channel.nr.bler import bler_tables, tb_error_rate  # noqa: E402
from edgesplit.channel.nr.tdl import effective_snr, transmission_error_rate  # noqa: E402
from edgesplit.outdir import check_writable_dir  # noqa: E402

HIDDEN, BITS = 64, 8
"""Activation rows of the test payload: 64 elements at 8 bits plus a 32-bit scale = 544 bits per row."""
SMOLLM2_PREFILL_BITS = 128 * (576 * 8 + 32)
"""One 128-token prefill of SmolLM2-135M's hidden states at 8 bits (hidden 576) with per-token scales."""


def snr_for(info, target: float, max_tx: int = 1, channel: str = "awgn", carrier: CarrierConfig | None = None,
            tdl: TdlConfig | None = None) -> float:
    """SNR (dB, 0.1 dB grid) where the abstraction's failure probability after max_tx transmissions is target."""
    def gap(s: float) -> float:
        return failure_probabilities(info, s, max_tx, channel, carrier=carrier, tdl=tdl)[-1] - target
    return round(optimize.brentq(gap, -15.0, 45.0, xtol=1e-3), 1)


class SionnaVariants:
    """First-transmission TB error rates of Sionna's own PHYAbstraction (default interpolation, no rate correction)."""

    def __init__(self) -> None:
        with preserve_global_rng():
            self.phy_abs = load_sionna().sys.PHYAbstraction(device="cpu")

    def tbler(self, info, snr_db: float, category: int) -> float:
        with preserve_global_rng():
            bler = float(self.phy_abs.get_bler(info.mcs, info.mcs_table, category, info.code_block_bits,
                                               torch.tensor(10.0 ** (snr_db / 10.0))))
        return math.nan if not math.isfinite(bler) else 1.0 - (1.0 - bler) ** info.num_code_blocks

    def tbler_many(self, info, snr_lin: np.ndarray, category: int) -> np.ndarray:
        """TB error rates at many linear effective SNRs (NaN where Sionna has no table)."""
        with preserve_global_rng():
            bler = self.phy_abs.get_bler(info.mcs, info.mcs_table, category, info.code_block_bits,
                                         torch.as_tensor(snr_lin, dtype=torch.float32)).double().numpy()
        bler = np.where(np.isfinite(bler), bler, np.nan)
        return 1.0 - (1.0 - bler) ** info.num_code_blocks


def payload(n_tb: int, tbs_bits: int, seed: int) -> torch.Tensor:
    """Activations whose serialised stream fills ``n_tb`` TBs (the last one partly)."""
    rows = max(1, math.ceil(n_tb * tbs_bits / (HIDDEN * BITS + 32)))
    return torch.randn(rows, HIDDEN, generator=torch.Generator().manual_seed(seed))


def run_point(row: dict, n_tb: int, abstract_seeds: int, seed: int, variants: SionnaVariants | None) -> dict:
    """Bit-true and abstracted impairment runs at one (allocation, MCS, SNR, HARQ, channel) point."""
    carrier = CarrierConfig(num_prbs=row["prbs"])
    info = transport_block(carrier, row["mcs_table"], row["mcs"])
    common = {"bits": BITS, "channel": row["channel"], "carrier": carrier, "mcs_table": row["mcs_table"],
              "mcs": row["mcs"], "max_transmissions": row["max_tx"]}
    x = payload(n_tb, info.tbs_bits, seed)
    state = ChannelState(mean_snr_db=row["snr_db"])
    t0 = time.perf_counter()
    bit_true = CodedImpairment(path="bit_true", **common).apply(x, state, seed).stats
    t_bit = time.perf_counter() - t0
    llr = math.nan
    if row["max_tx"] > 1:  # the soft-buffer receiver on the same payload and seed
        llr_stats = CodedImpairment(path="bit_true", combining="llr", **common).apply(x, state, seed).stats
        llr = llr_stats["failed_tbs"] / llr_stats["num_tbs"]
    t0 = time.perf_counter()
    abstract = [CodedImpairment(**common).apply(x, state, seed + 1 + k).stats for k in range(abstract_seeds)]
    t_abs = (time.perf_counter() - t0) / abstract_seeds
    n = int(bit_true["num_tbs"])
    failed = int(bit_true["failed_tbs"])
    ci = stats.binomtest(failed, n).proportion_ci(0.99, method="exact")
    q = failure_probabilities(info, row["snr_db"], row["max_tx"], row["channel"])
    q_raw = failure_probabilities(info, row["snr_db"], row["max_tx"], row["channel"], rate_correction=False)
    out = {**row, "tbs_bits": info.tbs_bits, "code_block_bits": info.code_block_bits,
           "code_blocks": info.num_code_blocks, "effective_code_rate": info.effective_code_rate, "num_tbs": n,
           "bit_true_failed": failed, "bit_true_rate": failed / n, "ci_low": ci.low, "ci_high": ci.high,
           "bit_true_llr_rate": llr,
           "abstracted": q[-1], "abstracted_no_rate_corr": q_raw[-1],
           "abstracted_sim_rate": float(np.mean([s["failed_tbs"] / s["num_tbs"] for s in abstract])),
           "bit_true_tx_per_tb": bit_true["transmissions"] / n, "abstracted_tx_per_tb": float(q[:-1].sum()),
           "bit_true_delivered": bit_true["delivered_payload_bits"] / bit_true["payload_bits"],
           "abstracted_delivered": float(np.mean([s["delivered_payload_bits"] / s["payload_bits"] for s in abstract])),
           "bit_true_erased_elements": bit_true["erased_fraction"],
           "abstracted_erased_elements": float(np.mean([s["erased_fraction"] for s in abstract])),
           "bit_true_s": t_bit, "abstracted_s": t_abs, "residual_code_errors": bit_true["residual_code_errors"]}
    first_tx = row["max_tx"] == 1 and row["channel"] == "awgn"
    out["sionna_default"] = variants.tbler(info, row["snr_db"], 1) if variants and first_tx else math.nan
    out["sionna_pusch_tables"] = variants.tbler(info, row["snr_db"], 0) if variants and first_tx else math.nan
    for key in ("abstracted", "abstracted_no_rate_corr", "sionna_default", "sionna_pusch_tables"):
        out[f"{key}_in_ci"] = bool(ci.low <= out[key] <= ci.high) if math.isfinite(out[key]) else None
    return out


def snr_offset_db(row: pd.Series) -> float:
    """SNR (dB) the abstraction needs to predict the bit-true rate, minus the point's SNR (+ = pessimistic)."""
    rate = row["bit_true_rate"]
    if not 0.0 < rate < 1.0:
        return math.nan
    carrier = CarrierConfig(num_prbs=int(row["prbs"]))
    info = transport_block(carrier, int(row["mcs_table"]), int(row["mcs"]))
    tdl = _row_tdl(row) if row["channel"] == "tdl" else None

    def gap(s: float) -> float:
        return failure_probabilities(info, s, int(row["max_tx"]), row["channel"], carrier=carrier, tdl=tdl)[-1] - rate
    lo, hi = row["snr_db"] - 6.0, row["snr_db"] + 6.0
    return optimize.brentq(gap, lo, hi, xtol=1e-3) - row["snr_db"] if gap(lo) * gap(hi) < 0 else math.nan


def plan(quick: bool) -> tuple[list[dict], list[dict]]:
    """(a) and (b) points: MCS x waterfall SNRs (+ HARQ and Rayleigh points) and the large code blocks."""
    mcs_list = [(1, 4), (1, 15)] if quick else [(1, 4), (1, 9), (1, 15), (1, 20), (1, 26), (2, 20), (2, 24)]
    targets = (0.3,) if quick else (0.7, 0.3, 0.05)
    small = []
    for table, mcs in mcs_list:
        info = transport_block(CarrierConfig(num_prbs=2), table, mcs)
        base = {"part": "a", "prbs": 2, "mcs_table": table, "mcs": mcs}
        small += [{**base, "snr_db": snr_for(info, t), "max_tx": 1, "channel": "awgn"} for t in targets]
        small.append({**base, "snr_db": snr_for(info, 0.3, 2), "max_tx": 2, "channel": "awgn"})
        if not quick:
            small.append({**base, "snr_db": snr_for(info, 0.3, 1, "rayleigh"), "max_tx": 1, "channel": "rayleigh"})
    large = []
    for prbs, mcs in [(13, 13)] if quick else [(13, 13), (16, 20)]:
        info = transport_block(CarrierConfig(num_prbs=prbs), 1, mcs)
        base = {"part": "b", "prbs": prbs, "mcs_table": 1, "mcs": mcs, "max_tx": 1, "channel": "awgn"}
        large += [{**base, "snr_db": snr_for(info, t)} for t in ((0.5,) if quick else (0.9, 0.5, 0.1))]
    return small, large


def _row_tdl(row) -> TdlConfig:
    return TdlConfig(profile=str(row["profile"]), delay_spread_s=float(row["delay_spread_ns"]) / 1e9)


def plan_tdl(quick: bool) -> list[dict]:
    """(d) points: MCS x first-transmission waterfall SNRs + one 2-transmission point, TDL-C 300 ns (+ TDL-A 1 µs)."""
    mcs_list = [(1, 9)] if quick else [(1, 4), (1, 9), (1, 15), (1, 20), (2, 24)]
    targets = (0.3,) if quick else (0.7, 0.3, 0.05)
    configs = [(cfg, mcs_list) for cfg in [TdlConfig()]]
    if not quick:
        configs.append((TdlConfig(profile="A", delay_spread_s=1000e-9), [(1, 15)]))
    carrier, rows = CarrierConfig(num_prbs=2), []
    for tdl, mcss in configs:
        for table, mcs in mcss:
            info = transport_block(carrier, table, mcs)
            base = {"part": "d", "prbs": 2, "mcs_table": table, "mcs": mcs, "channel": "tdl", "profile": tdl.profile,
                    "delay_spread_ns": round(tdl.delay_spread_s * 1e9, 3)}
            rows += [{**base, "snr_db": snr_for(info, t, 1, "tdl", carrier, tdl), "max_tx": 1} for t in targets]
            rows.append({**base, "snr_db": snr_for(info, 0.3, 2, "tdl", carrier, tdl), "max_tx": 2})
    return rows


def run_tdl_point(row: dict, n_tb: int, seed: int, variants: SionnaVariants) -> dict:
    """Bit-true TDL run at one point and the predictions it is compared with (see the module docstring, (d))."""
    carrier, tdl = CarrierConfig(num_prbs=row["prbs"]), _row_tdl(row)
    info = transport_block(carrier, row["mcs_table"], row["mcs"])
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n_tb, info.tbs_bits), generator=gen)
    log: list = []
    t0 = time.perf_counter()
    decoded, outcome, _ = bit_true_link(info).send(bits, row["snr_db"], row["max_tx"], "tdl", gen, carrier=carrier,
                                                   tdl=tdl, channel_log=log)
    t_bit = time.perf_counter() - t0
    failed = int(outcome.erased.sum())
    ci = stats.binomtest(failed, n_tb).proportion_ci(0.99, method="exact")
    q = failure_probabilities(info, row["snr_db"], row["max_tx"], "tdl", carrier=carrier, tdl=tdl)
    q_raw = failure_probabilities(info, row["snr_db"], row["max_tx"], "tdl", rate_correction=False, carrier=carrier,
                                  tdl=tdl)
    ok = torch.as_tensor(outcome.delivered)
    out = {**row, "tbs_bits": info.tbs_bits, "code_block_bits": info.code_block_bits,
           "code_blocks": info.num_code_blocks, "effective_code_rate": info.effective_code_rate, "num_tbs": n_tb,
           "bit_true_failed": failed,
           "bit_true_rate": failed / n_tb, "ci_low": ci.low, "ci_high": ci.high, "abstracted": q[-1],
           "abstracted_no_rate_corr": q_raw[-1], "bit_true_tx_per_tb": outcome.total_transmissions / n_tb,
           "abstracted_tx_per_tb": float(q[:-1].sum()), "bit_true_s": t_bit,
           "residual_code_errors": int((decoded[ok].long() != bits[ok].long()).sum())}
    cond = {"cond_abstracted": math.nan, "cond_sionna_default": math.nan, "cond_no_esm": math.nan}
    if row["max_tx"] == 1:  # predictions on the realisations the bit-true TBs actually saw
        re_snr = 10.0 ** (row["snr_db"] / 10.0) * log[0][2]
        eff = effective_snr(re_snr, info.mcs_table, info.mcs)
        cond = {"cond_abstracted": float(np.mean(transmission_error_rate(info, re_snr))),
                "cond_sionna_default": float(np.mean(variants.tbler_many(info, eff, 1))),
                "cond_no_esm": float(np.mean(tb_error_rate(info, 10.0 * np.log10(re_snr.mean(axis=1)))))}
    out |= cond
    for key in ("abstracted", "abstracted_no_rate_corr", *cond):
        out[f"{key}_in_ci"] = bool(ci.low <= out[key] <= ci.high) if math.isfinite(out[key]) else None
    return out


def report_tdl(points: pd.DataFrame) -> None:
    cols = ["profile", "delay_spread_ns", "mcs_table", "mcs", "code_block_bits", "snr_db", "max_tx", "num_tbs",
            "bit_true_rate", "ci_low", "ci_high", "abstracted", "abstracted_no_rate_corr", "cond_abstracted",
            "cond_sionna_default", "cond_no_esm"]
    keys = ("abstracted", "abstracted_no_rate_corr", "cond_abstracted", "cond_sionna_default", "cond_no_esm")
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        print("\n(d) TDL, 2 PRB: TB error rate after the last transmission (cond_* on the bit-true run's channels):")
        print(points[cols].round(3).to_string(index=False))
        print("\npoints inside the bit-true 99 % CI (part d):")
        for key in keys:
            flags = points[f"{key}_in_ci"].dropna()
            print(f"  {key:26s} {int(flags.sum())}/{len(flags)}")
        offsets = points.apply(snr_offset_db, axis=1)
        print("\nSNR offset the abstraction (fixed-set EESM average) needs to match bit-true (dB, + = pessimistic):")
        for (profile, ds), grp in offsets.groupby([points["profile"], points["delay_spread_ns"]]):
            print(f"  TDL-{profile} {ds:g} ns: median |.| {grp.abs().median():.2f}, max |.| {grp.abs().max():.2f}, "
                  f"per point {grp.round(2).tolist()}")
        print(f"transmissions per TB, bit-true vs expected (mean |diff|): "
              f"{(points['bit_true_tx_per_tb'] - points['abstracted_tx_per_tb']).abs().mean():.4f}; residual code "
              f"errors in delivered TBs: {int(points['residual_code_errors'].sum())}; bit-true time "
              f"{points['bit_true_s'].sum():.0f} s")


def plot_tdl(points: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = 3e-3
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.plot([lo, 1], [lo, 1], color="0.6", lw=1)
    rate = points["bit_true_rate"].clip(lower=lo)
    xerr = np.abs(np.vstack([rate - points["ci_low"].clip(lower=lo), points["ci_high"].clip(lower=lo) - rate]))
    models = (("abstracted", "o", "EESM, fixed-set average"), ("cond_abstracted", "s", "EESM on the same channels"),
              ("cond_sionna_default", "+", "Sionna default, same channels"),
              ("cond_no_esm", "x", "no ESM (mean SNR), same channels"))
    for key, marker, label in models:
        ax.errorbar(rate, points[key].clip(lower=lo), xerr=xerr if key == "abstracted" else None, fmt=marker,
                    label=label, capsize=2, ms=5, alpha=0.8)
    ax.set(xscale="log", yscale="log", xlim=(lo, 1.2), ylim=(lo, 1.2), xlabel="bit-true TB error rate (99 % CI)",
           ylabel="predicted TB error rate", title="(d) TDL, 2 PRB: prediction vs bit-true")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def throughput_table(snrs: np.ndarray) -> pd.DataFrame:
    """(c): saturated goodput of the 20 MHz carrier per SNR and policy, Shannon, and one prefill's latency."""
    links = {"table1_awgn": NrLinkConfig(), "table2_awgn": NrLinkConfig(mcs_table=2),
             "table1_rayleigh": NrLinkConfig(channel="rayleigh"),
             "table1_awgn_no_harq": NrLinkConfig(max_transmissions=1)}
    rows = []
    for snr in snrs:
        shannon = 20e6 * math.log2(1.0 + 10.0 ** (snr / 10.0))
        for name, link in links.items():
            cost = nr_uplink_cost(SMOLLM2_PREFILL_BITS, float(snr), link)
            rows.append({"snr_db": float(snr), "policy": name, "mcs": cost.mcs, "goodput_bps": nr_throughput_bps(
                float(snr), link), "shannon_bps": shannon, "prefill_latency_s": cost.latency_s,
                "prefill_shannon_s": cost.shannon_time_s, "first_tb_error_rate": cost.first_tb_error_rate})
    table = pd.DataFrame(rows)
    table["ratio"] = table["goodput_bps"] / table["shannon_bps"]
    return table


def _calibration_panel(ax, a: pd.DataFrame) -> None:
    """(a) as a calibration plot: predicted vs bit-true TB error rate (with its 99 % CI), log-log."""
    lo = 3e-3
    ax.plot([lo, 1], [lo, 1], color="0.6", lw=1)
    models = (("abstracted", "o", "this package"), ("abstracted_no_rate_corr", "x", "no rate correction"),
              ("sionna_default", "+", "Sionna default PHYAbstraction"))
    for key, marker, label in models:
        for kind, grp in a.groupby(np.where(a["channel"] == "rayleigh", "rayleigh",
                                            np.where(a["max_tx"] > 1, "awgn N=2", "awgn"))):
            if grp[key].isna().all():
                continue
            rate = grp["bit_true_rate"].clip(lower=lo)
            xerr = np.abs(np.vstack([rate - grp["ci_low"].clip(lower=lo), grp["ci_high"].clip(lower=lo) - rate]))
            color = {"awgn": "C0", "awgn N=2": "C1", "rayleigh": "C2"}[kind]
            ax.errorbar(rate, grp[key].clip(lower=lo), xerr=xerr if key == "abstracted" else None, fmt=marker,
                        color=color if key == "abstracted" else "0.4" if key == "sionna_default" else color,
                        label=f"{label}, {kind}", capsize=2, ms=5, alpha=0.9 if key == "abstracted" else 0.6)
    ax.set(xscale="log", yscale="log", xlim=(lo, 1.2), ylim=(lo, 1.2), xlabel="bit-true TB error rate (99 % CI)",
           ylabel="predicted TB error rate", title="(a) CBS 200..2104, 2 PRB: prediction vs bit-true")
    ax.legend(fontsize=7)


def plot(points: pd.DataFrame, thr: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    _calibration_panel(axes[0], points[points["part"] == "a"])
    ax = axes[1]
    for (prbs, table, mcs), grp in points[points["part"] == "b"].groupby(["prbs", "mcs_table", "mcs"]):
        grp = grp.sort_values("snr_db")
        info = transport_block(CarrierConfig(num_prbs=int(prbs)), int(table), int(mcs))
        snr = np.linspace(grp["snr_db"].min() - 1.0, grp["snr_db"].max() + 1.0, 120)
        curve = [failure_probabilities(info, v, 1)[-1] for v in snr]
        line = ax.plot(snr, np.clip(curve, 1e-3, None), "-", label=f"T{table} MCS{mcs} CBS{info.code_block_bits}")[0]
        rate = grp["bit_true_rate"].clip(lower=1e-3)
        err = np.abs(np.vstack([rate - grp["ci_low"].clip(lower=1e-3), grp["ci_high"].clip(lower=1e-3) - rate]))
        ax.errorbar(grp["snr_db"], rate, yerr=err, fmt="o", color=line.get_color(), capsize=3)
    ax.set(yscale="log", ylim=(1e-3, 1.5), xlabel="SNR (dB)", ylabel="TB error rate",
           title="(b) CBS > 2000: bit-true 99 % CI (dots) vs tables clamped at CBS 2000 (lines)")
    ax.legend(fontsize=8)
    for (name, grp), style in zip(thr.groupby("policy"), ("-", ":", "--", "-."), strict=False):
        axes[2].plot(grp["snr_db"], grp["ratio"], style, label=name)
    axes[2].set(title="(c) 20 MHz NR goodput / Shannon B log2(1+SNR)", xlabel="SNR (dB)", ylabel="ratio", ylim=(0, 1))
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(points: pd.DataFrame, thr: pd.DataFrame) -> None:
    cols = ["mcs_table", "mcs", "code_block_bits", "snr_db", "max_tx", "channel", "num_tbs", "bit_true_rate",
            "ci_low", "ci_high", "abstracted", "abstracted_no_rate_corr", "sionna_default", "sionna_pusch_tables"]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for part, title in (("a", "(a) TB error rate after the last transmission"), ("b", "(b) code blocks > 2000")):
            print(f"\n{title}:")
            print(points[points["part"] == part][cols].round(3).to_string(index=False))
        a = points[points["part"] == "a"]
        print("\npoints inside the bit-true 99 % CI (part a):")
        for key in ("abstracted", "abstracted_no_rate_corr", "sionna_default", "sionna_pusch_tables"):
            flags = a[f"{key}_in_ci"].dropna()
            print(f"  {key:26s} {int(flags.sum())}/{len(flags)}")
        offsets = points.apply(snr_offset_db, axis=1)
        print("\nSNR offset the abstraction needs to match bit-true (dB, + = abstraction pessimistic):")
        for (part, channel), grp in offsets.groupby([points["part"], points["channel"]]):
            print(f"  part {part} {channel:8s} median |.| {grp.abs().median():.2f}, max |.| {grp.abs().max():.2f}, "
                  f"per point {grp.round(2).tolist()}")
        print("\ndelivered payload fraction / erased elements, bit-true vs abstracted (mean |diff|): "
              f"{(a['bit_true_delivered'] - a['abstracted_delivered']).abs().mean():.4f} / "
              f"{(a['bit_true_erased_elements'] - a['abstracted_erased_elements']).abs().mean():.4f}")
        print(f"transmissions per TB, bit-true vs expected (mean |diff|): "
              f"{(a['bit_true_tx_per_tb'] - a['abstracted_tx_per_tb']).abs().mean():.4f}; residual code errors in "
              f"delivered TBs: {int(points['residual_code_errors'].sum())}")
        speed = points["bit_true_s"].sum() / points["abstracted_s"].sum()
        print(f"time per packet, bit-true / abstracted (same payloads, side by side): {speed:.0f}x")
        harq = a[a["max_tx"] > 1]
        print("\nchase combining, 2 transmissions: TB loss, bit-true MRC / bit-true LLR sum / abstracted (SNR sum)")
        print(harq[["mcs_table", "mcs", "snr_db", "bit_true_rate", "bit_true_llr_rate", "abstracted"]].round(3)
              .to_string(index=False))
        print("\n(c) 20 MHz carrier, saturated goodput (Mbit/s) and ratio to Shannon:")
        wide = thr.pivot_table(index="snr_db", columns="policy", values="ratio")
        wide.insert(0, "shannon_mbps", thr.groupby("snr_db")["shannon_bps"].first() / 1e6)
        wide.insert(1, "table1_awgn_mbps", thr[thr["policy"] == "table1_awgn"].set_index("snr_db")["goodput_bps"] / 1e6)
        print(wide.round(3).to_string())
        pre = thr[thr["policy"] == "table1_awgn"].set_index("snr_db")
        print(f"\none 128-token SmolLM2 prefill ({SMOLLM2_PREFILL_BITS} bits), table1_awgn latency / Shannon time:")
        print((pre["prefill_latency_s"] / pre["prefill_shannon_s"]).round(2).to_string())


PARTS = ("abcd", "abc", "d")
"""Accepted --parts: everything, the original check (a-c), the TDL part alone."""


def run_abc(args: argparse.Namespace, variants: SionnaVariants) -> dict:
    """Parts (a)-(c): simulate, report, save; returns their config entries."""
    n_small, n_large, seeds = (100, 40, 5) if args.quick else (400, 150, 20)
    small, large = plan(args.quick)
    rows = []
    todo = [(r, n_small) for r in small] + [(r, n_large) for r in large]
    t0 = time.perf_counter()
    for i, (row, n_tb) in enumerate(tqdm(todo, desc="bit-true points")):
        rows.append(run_point(row, n_tb, seeds, args.seed + 1000 * i, variants))
    points = pd.DataFrame(rows)
    thr = throughput_table(np.arange(0.0, 30.5, 5.0 if args.quick else 1.0))
    report(points, thr)
    args.out.mkdir(parents=True, exist_ok=True)
    points.to_parquet(args.out / "points.parquet", index=False)
    thr.to_parquet(args.out / "throughput.parquet", index=False)
    plot(points, thr, args.out / "coded_link_check.png")
    return {"tbs_per_point": [n_small, n_large], "abstract_seeds": seeds, "elapsed_s": time.perf_counter() - t0}


def run_d(args: argparse.Namespace, variants: SionnaVariants) -> dict:
    """Part (d), TDL: simulate, report, save; returns its config entries."""
    n_tb = 60 if args.quick else 500
    t0 = time.perf_counter()
    todo = plan_tdl(args.quick)
    rows = [run_tdl_point(row, n_tb, args.seed + 500_000 + 1000 * i, variants)
            for i, row in enumerate(tqdm(todo, desc="bit-true TDL points"))]
    points = pd.DataFrame(rows)
    report_tdl(points)
    args.out.mkdir(parents=True, exist_ok=True)
    points.to_parquet(args.out / "tdl_points.parquet", index=False)
    plot_tdl(points, args.out / "coded_link_check_tdl.png")
    return {"tdl_tbs_per_point": n_tb, "tdl_elapsed_s": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (~1 min)")
    parser.add_argument("--out", type=Path, default=Path("runs/coded_link_check"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="abcd", choices=PARTS, help="abc: the original check, d: TDL alone")
    parser.add_argument("--from-run", type=Path, default=None,
                        help="re-print the report and redraw the plot of a finished run (no simulation)")
    args = parser.parse_args()
    if args.from_run is not None:
        if (args.from_run / "points.parquet").exists():
            points = pd.read_parquet(args.from_run / "points.parquet")
            thr = pd.read_parquet(args.from_run / "throughput.parquet")
            report(points, thr)
            plot(points, thr, args.from_run / "coded_link_check.png")
        if (args.from_run / "tdl_points.parquet").exists():
            tdl_points = pd.read_parquet(args.from_run / "tdl_points.parquet")
            report_tdl(tdl_points)
            plot_tdl(tdl_points, args.from_run / "coded_link_check_tdl.png")
        return
    check_writable_dir(args.out, "--out")
    torch.set_num_threads(1)
    bler_tables()
    variants = SionnaVariants()
    t0 = time.perf_counter()
    config = {"quick": args.quick, "seed": args.seed, "parts": args.parts, "payload": {"hidden": HIDDEN, "bits": BITS}}
    if "a" in args.parts:
        config |= run_abc(args, variants)
    if "d" in args.parts:
        config |= run_d(args, variants)
    config |= {"total_elapsed_s": time.perf_counter() - t0, "torch": torch.__version__,
               "sionna": __import__("sionna").__version__}
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"\nsaved {args.out} ({config['total_elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
