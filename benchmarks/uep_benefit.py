"""Unequal error protection of massive activations: catastrophic cells with and without UEP at matched bits.

    .venv/bin/python benchmarks/uep_benefit.py           # full: 512 tokens, 7 splits x 5 seeds (~20 min, 2 cores)
    .venv/bin/python benchmarks/uep_benefit.py --quick   # CI-sized: 256 tokens, 3 splits x 2 seeds (~2 min)
    .venv/bin/python benchmarks/uep_benefit.py --seeds 10 --seed-offset 100 --out runs/uep_benefit_s100

SmolLM2-135M on WikiText-2 test (``../shared/data/wikitext-2-raw/wiki.test.raw`` when present, else the default
corpus). A calibration pass on the text right after the evaluated tokens (disjoint from them) finds the outlier
channels per split (:func:`edgesplit.quality.outliers.detect_outliers`, tau 10, at most 8); every cell (family x split
x seed x method) then sends each window's hidden state through an :class:`~edgesplit.link.ImpairedLink` and runs the
tail (clean pass once: :func:`edgesplit.profile.prepare_windows`). Families and methods:

- ``dropout`` p = 0.2 (the reference paper's channel): unprotected; ``uep`` = outlier channels sent 3 times (lost with
  probability p³); ``uep_random`` = as many random non-outlier channels, same protection (the same bits);
- ``digital`` 8-bit QPSK at 10 dB: unprotected; ``uep`` = outlier channels as 12-bit codes over BPSK; ``split_only``
  = outlier channels apart but through the same 8-bit QPSK (ablation: what the smaller absmax step of the main stream
  alone buys); ``uep_random``;
- ``coded`` (only when kind "coded" is registered and Sionna imports): the NR link, Rayleigh fading per transport
  block, no HARQ, link adaptation at 10 % BLER, 10 dB; ``uep`` = outlier channels sent twice (in different transport
  blocks); ``--coded-protected '{"target_bler": 0.01}'`` tries a lower MCS instead.

Every family also has ``uep_tokens`` = ``uep`` plus the first ``--protect-tokens`` positions of each window (the
attention sink; default 1, 0 drops the method) sent whole through the same protected path, and the control
``tokens_only`` = those positions alone, no channels.

A cell is catastrophic when its perplexity exceeds 2x the clean perplexity. Printed per family and method: cells,
catastrophic count and rate (95 % Clopper-Pearson), mean / median / worst perplexity, extra bits and airtime over the
unprotected scheme; then the cut in catastrophic rate with the worst seed. Writes ``cells.parquet``, ``summary.csv``,
``config.json`` (arguments, seeds, specs, versions), ``outliers.json`` and ``uep_perplexity.png`` /
``uep_catastrophic.png`` (log scales) under ``--out``; ``--replot`` redraws and reprints them from ``cells.parquet``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.stats import beta  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from edgesplit.channel import IMPAIRMENTS, ChannelState, make_impairment  # noqa: E402
from edgesplit.link import ImpairedLink  # noqa: E402
from edgesplit.models import load_model  # noqa: E402
from edgesplit.profile import prepare_windows  # noqa: E402
from edgesplit.profile.store import package_versions  # noqa: E402
from edgesplit.quality import load_corpus, tokenize_corpus  # noqa: E402
from edgesplit.quality.outliers import OutlierRule, detect_outliers  # noqa: E402
from edgesplit.quality.windows import scored_slice  # noqa: E402
from edgesplit.split import EdgeTail  # noqa: E402

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
CODED_MAIN = {"bits": 8, "channel": "rayleigh", "max_transmissions": 1, "target_bler": 0.1}
COLORS = {"unprotected": "C3", "uep": "C0", "uep_random": "C7", "split_only": "C2", "uep_tokens": "C4",
          "tokens_only": "C8"}
PROTECTING = ("uep", "uep_tokens")
"""Methods whose cut over unprotected is reported against the target."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized run")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tokens", type=int, default=None, help="evaluated tokens (512; quick 256)")
    p.add_argument("--context", type=int, default=None, help="window length (256; quick 128)")
    p.add_argument("--calib-tokens", type=int, default=512, help="calibration tokens (after the evaluated ones)")
    p.add_argument("--splits", default=None, help="comma list (4,8,...,28; quick 6,12,20)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (5; quick 2)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed")
    p.add_argument("--families", default="dropout,digital,coded")
    p.add_argument("--no-controls", action="store_true", help="skip uep_random and split_only (quick skips them)")
    p.add_argument("--tau", type=float, default=10.0)
    p.add_argument("--max-channels", type=int, default=8)
    p.add_argument("--dropout-p", type=float, default=0.2)
    p.add_argument("--dropout-copies", type=int, default=3)
    p.add_argument("--snr-db", type=float, default=10.0, help="digital and coded SNR (Es/N0, dB)")
    p.add_argument("--digital-protected", default='{"bits": 12, "modulation": "bpsk"}')
    p.add_argument("--coded-main", default=json.dumps(CODED_MAIN))
    p.add_argument("--coded-protected", default="{}", help="overrides of --coded-main for the protected part")
    p.add_argument("--coded-copies", type=int, default=2)
    p.add_argument("--protect-tokens", type=int, default=1, help="leading positions uep_tokens sends whole (0: off)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replot", action="store_true", help="reprint and replot the cells.parquet under --out")
    p.add_argument("--out", type=Path, default=Path("runs/uep_benefit"))
    args = p.parse_args()
    quick = args.quick
    args.tokens = args.tokens or (256 if quick else 512)
    args.context = args.context or (128 if quick else 256)
    args.splits = tuple(int(k) for k in (args.splits or ("6,12,20" if quick else "4,8,12,16,20,24,28")).split(","))
    args.seeds = args.seeds or (2 if quick else 5)
    args.controls = not (quick or args.no_controls)
    return args


def coded_available() -> str | None:
    """Why the coded family cannot run here, or None."""
    if "coded" not in IMPAIRMENTS:
        return "kind 'coded' is not registered"
    try:
        make_impairment("coded", **CODED_MAIN).apply(torch.randn(1, 2, 8), ChannelState(mean_snr_db=10.0), 0)
    except Exception as err:  # noqa: BLE001 - any failure (e.g. Sionna missing) means: skip the family, say why
        return f"coded link unavailable: {err}"
    return None


def random_table(table: dict[int, tuple[int, ...]], hidden: int) -> dict[int, tuple[int, ...]]:
    """As many channels per split as the outlier table, drawn among the non-outlier channels (fixed draw)."""
    rng = np.random.default_rng(12345)
    flagged = {c for channels in table.values() for c in channels}
    pool = np.array([c for c in range(hidden) if c not in flagged])
    return {k: tuple(int(c) for c in rng.choice(pool, len(v), replace=False)) for k, v in table.items()}


def methods(args: argparse.Namespace, family: str, table: dict, rand: dict) -> tuple[dict, ChannelState]:
    """{method: impairment} of one family, and its channel state."""
    if family == "dropout":
        main = {"kind": "dropout", "p": args.dropout_p}
        prot, copies, state = main, args.dropout_copies, ChannelState(mean_snr_db=30.0)
    elif family == "digital":
        main = {"kind": "digital", "bits": 8, "modulation": "qpsk"}
        prot, copies = {"kind": "digital", **json.loads(args.digital_protected)}, 1
        state = ChannelState(mean_snr_db=args.snr_db)
    else:
        main = {"kind": "coded", **json.loads(args.coded_main)}
        prot, copies = {**main, **json.loads(args.coded_protected)}, args.coded_copies
        state = ChannelState(mean_snr_db=args.snr_db)
    def protect(channels, tokens: int = 0, protected=prot, n: int = copies):
        return make_impairment("protected", main=main, protected=protected, channels=channels, copies=n, tokens=tokens)

    out = {"unprotected": make_impairment(**main), "uep": protect(table)}
    if args.protect_tokens:
        out["uep_tokens"] = protect(table, args.protect_tokens)
    if args.controls:
        out["uep_random"] = protect(rand)
        if args.protect_tokens:
            out["tokens_only"] = protect({k: () for k in table}, args.protect_tokens)
        if family == "digital":
            out["split_only"] = protect(table, protected=main, n=1)
    return out, state


def window_seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, ("uep-benefit", *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@torch.inference_mode()
def evaluate_cell(model, prepared, k: int, impairment, state: ChannelState, seed_parts: tuple) -> dict:
    """Perplexity, KL, top-1 and the link's mean stats of one cell (all windows in one tail call)."""
    received, stats = [], []
    for clean in prepared.windows:
        link = ImpairedLink(impairment, state, seed=window_seed(*seed_parts, clean.window.begin), split_k=k,
                            session_id="uep")
        received.append(link(clean.hidden[k][None]))
        stats.extend(link.log.stats)
    lengths = {r.shape[1] for r in received}
    batches = [torch.cat(received)] if len(lengths) == 1 else received
    logits = torch.cat([EdgeTail(model, k)(b) for b in batches])
    nll = kl = agree = count = 0.0
    for row, clean in enumerate(prepared.windows):
        logp = F.log_softmax(logits[row, scored_slice(clean.window)].float(), dim=-1)
        nll -= float(logp.gather(-1, clean.targets[:, None]).sum())
        kl += float(F.kl_div(logp, clean.clean_logp, log_target=True, reduction="sum"))
        agree += float((logp.argmax(-1) == clean.clean_argmax).sum())
        count += clean.targets.numel()
    mean = {key: float(np.mean([s.get(key, math.nan) for s in stats])) for key in
            ("extra_bits_ratio", "extra_airtime_ratio", "main_absmax_ratio", "protected_erased_fraction",
             "protected_channels", "protected_tokens")}
    return {"perplexity": math.exp(nll / count), "kl_nats": kl / count, "top1_agreement": agree / count, **mean}


def clopper_pearson(x: int, n: int) -> tuple[float, float]:
    lo = 0.0 if x == 0 else float(beta.ppf(0.025, x, n - x + 1))
    hi = 1.0 if x == n else float(beta.ppf(0.975, x + 1, n - x))
    return lo, hi


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (family, method), g in cells.groupby(["family", "method"], sort=False):
        x, n = int(g.catastrophic.sum()), len(g)
        lo, hi = clopper_pearson(x, n)
        per_seed = g.groupby("seed").catastrophic.mean()
        rows.append({"family": family, "method": method, "cells": n, "catastrophic": x, "rate": x / n,
                     "rate_lo": lo, "rate_hi": hi, "worst_seed_rate": float(per_seed.max()),
                     "mean_ppl": float(g.perplexity.mean()), "median_ppl": float(g.perplexity.median()),
                     "max_ppl": float(g.perplexity.max()),
                     "max_extra_bits": float(g.extra_bits_ratio.max()) if g.extra_bits_ratio.notna().any() else 0.0,
                     "max_extra_airtime": float(g.extra_airtime_ratio.max())
                     if g.extra_airtime_ratio.notna().any() else 0.0})
    return pd.DataFrame(rows)


def cut_report(cells: pd.DataFrame, family: str, method: str = "uep") -> str:
    """Catastrophic-rate cut of ``method`` over unprotected, pooled and per seed, with its worst seed."""
    f = cells[cells.family == family]
    base, uep = f[f.method == "unprotected"], f[f.method == method]
    xb, xu, n = int(base.catastrophic.sum()), int(uep.catastrophic.sum()), len(base)
    pooled = f"{xb}/{n} -> {xu}/{n}: " + (f"{xb / xu:.1f}x" if xu else
                                         (f"no UEP event (>= {xb / 3:.1f}x at 95 %, rule of three)" if xb else "n/a"))
    per_seed = []
    for seed in sorted(base.seed.unique()):
        b, u = int(base[base.seed == seed].catastrophic.sum()), int(uep[uep.seed == seed].catastrophic.sum())
        per_seed.append((u, -b, seed, b))
    u, _, seed, b = max(per_seed)  # the seed where UEP fails most (ties: the one with the fewest baseline events)
    seeds = ", ".join(f"s{s}: {b}->{u}" for u, _, s, b in sorted(per_seed, key=lambda t: t[2]))
    worst = f"{method}'s worst seed s{seed}: {b}->{u} of {len(base[base.seed == seed])}"
    return f"{family} {method}: catastrophic {pooled} | per seed {seeds} | {worst}"


def verdict(summary: pd.DataFrame, family: str, method: str = "uep") -> str:
    """Whether ``method`` met the target (>= 10x fewer catastrophic cells at <= 5 % extra bits and airtime)."""
    row = summary[(summary.family == family) & (summary.method == method)].iloc[0]
    xb = int(summary[(summary.family == family) & (summary.method == "unprotected")].iloc[0].catastrophic)
    xu = int(row.catastrophic)
    budget = max(row.max_extra_bits, row.max_extra_airtime) <= 0.05
    if xu:
        point = f"point estimate {xb / xu:.1f}x ({'met' if xb >= 10 * xu else 'NOT met'})"
    else:
        point = f"point estimate unbounded ({xb} -> 0 events)"
    shown = "shown" if xu == 0 and xb >= 30 else "NOT shown"
    return (f"target >= 10x at <= 5 %: budget {'met' if budget else 'NOT met'} (bits +{100 * row.max_extra_bits:.2f} "
            f"%, airtime +{100 * row.max_extra_airtime:.2f} %); {point}; >= 10x {shown} at 95 % "
            "(rule of three: needs >= 30 baseline events and none with UEP)")


def plot(cells: pd.DataFrame, summary: pd.DataFrame, clean_ppl: float, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(cells.family))
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4), squeeze=False, sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        for method, g in cells[cells.family == family].groupby("method", sort=False):
            by_k, color = g.groupby("k").perplexity, COLORS.get(method)
            ax.plot(by_k.median().index, by_k.median(), marker="o", label=method, color=color)
            ax.fill_between(by_k.min().index, by_k.min(), by_k.max(), alpha=0.15, color=color)
        ax.axhline(clean_ppl, color="k", lw=0.8, label="clean")
        ax.axhline(2 * clean_ppl, color="k", ls="--", lw=0.8, label="2x clean (catastrophic)")
        ax.set(yscale="log", xlabel="split k", title=family)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("perplexity (median, min-max over seeds)")
    fig.tight_layout()
    paths = [out / "uep_perplexity.png"]
    fig.savefig(paths[0], dpi=120)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(summary)), 4))
    labels = [f"{r.family}\n{r.method}" for r in summary.itertuples()]
    floor = 0.25 / summary.cells.max()
    for i, r in enumerate(summary.itertuples()):
        color = COLORS.get(r.method, "C1")
        if r.catastrophic:  # the rate with its 95 % Clopper-Pearson interval
            ax.bar(i, r.rate, color=color)
            ax.errorbar(i, r.rate, yerr=[[r.rate - max(r.rate_lo, floor)], [r.rate_hi - r.rate]], color="k",
                        capsize=3)
            ax.annotate(f"{r.catastrophic}/{r.cells}", (i, r.rate), ha="center", va="bottom", fontsize=8)
        else:  # no event: only the 95 % upper bound is known
            ax.plot(i, r.rate_hi, marker="v", color=color, markersize=9)
            ax.annotate(f"0/{r.cells}\n(< {r.rate_hi:.2g})", (i, r.rate_hi), ha="center", va="top", fontsize=8,
                        xytext=(0, -8), textcoords="offset points")
    ax.set(yscale="log", ylabel="catastrophic cell rate (PPL > 2x clean), 95 % CI", ylim=(floor, 1.5))
    ax.set_xticks(range(len(summary)), labels, fontsize=7)
    fig.tight_layout()
    paths.append(out / "uep_catastrophic.png")
    fig.savefig(paths[1], dpi=120)
    return paths


def calibrate(args: argparse.Namespace, model, corpus) -> tuple[torch.Tensor, dict[int, tuple[int, ...]]]:
    """(evaluated token ids, outlier table by split) from the text after the evaluated tokens."""
    ids = tokenize_corpus(corpus, model.tokenizer, args.tokens + args.calib_tokens)
    rule = OutlierRule(tau=args.tau, max_channels=args.max_channels)
    outliers = detect_outliers(model, ids[args.tokens:], rule, context=args.context, corpus=corpus.name)
    outliers.save(args.out / "outliers.json")
    table = outliers.channels_by_split()
    print("outlier channels:", {k: table[k] for k in args.splits})
    return ids[:args.tokens], table


def run_cells(args: argparse.Namespace, model, prepared, families: list[str], table: dict, rand: dict,
              clean_ppl: float) -> pd.DataFrame:
    """Every (family, split, seed, method) cell, methods innermost (they share the seed's draws)."""
    plan = []
    for family in families:
        imps, state = methods(args, family, table, rand)
        plan += [(family, k, seed, name, imp, state) for k in args.splits
                 for seed in range(args.seed_offset, args.seed_offset + args.seeds) for name, imp in imps.items()]
    rows = []
    for family, k, seed, name, imp, state in tqdm(plan, desc="cells"):
        t0 = time.perf_counter()
        result = evaluate_cell(model, prepared, k, imp, state, (family, k, seed))
        rows.append({"family": family, "method": name, "k": k, "seed": seed, **result,
                     "clean_perplexity": clean_ppl, "catastrophic": result["perplexity"] > 2 * clean_ppl,
                     "wall_s": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def report(cells: pd.DataFrame, out: Path) -> None:
    """Summary table, per-family cuts and plots of a finished (or reloaded) run."""
    summary = summarise(cells)
    summary.to_csv(out / "summary.csv", index=False)
    clean_ppl = float(cells.clean_perplexity.iloc[0])
    paths = plot(cells, summary, clean_ppl, out)
    pd.set_option("display.width", 200)
    print(f"\nclean perplexity {clean_ppl:.2f}; catastrophic: > {2 * clean_ppl:.2f}; splits "
          f"{sorted(cells.k.unique().tolist())}; seeds {sorted(cells.seed.unique().tolist())}")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for family in dict.fromkeys(cells.family):
        for method in [m for m in PROTECTING if m in set(cells[cells.family == family].method)]:
            print(cut_report(cells, family, method))
            print("   " + verdict(summary, family, method))
    print(f"wrote {out}: cells.parquet, summary.csv, config.json, outliers.json, {', '.join(p.name for p in paths)}")


def main() -> None:
    args = parse_args()
    if args.replot:
        report(pd.read_parquet(args.out / "cells.parquet"), args.out)
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    corpus = load_corpus(str(WIKITEXT)) if WIKITEXT.is_file() else load_corpus("default")
    print(f"corpus: {corpus.name}; model {model.name} (L={model.num_layers}, hidden {model.hidden_size})")
    eval_ids, table = calibrate(args, model, corpus)
    prepared = prepare_windows(model, eval_ids, args.context)
    clean_ppl = math.exp(prepared.clean_nll_sum / prepared.scored_tokens)
    families = [f for f in args.families.split(",") if f]
    skipped = coded_available() if "coded" in families else None
    if skipped:
        print(f"coded family skipped: {skipped}")
        families.remove("coded")
    rand = random_table(table, model.hidden_size)
    cells = run_cells(args, model, prepared, families, table, rand, clean_ppl)
    cells.to_parquet(args.out / "cells.parquet", index=False)
    config = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "seeds": list(range(args.seed_offset, args.seed_offset + args.seeds)), "corpus": corpus.name,
              "clean_perplexity": clean_ppl, "scored_tokens": prepared.scored_tokens, "coded_skipped": skipped,
              "specs": {f: {m: repr(i) for m, i in methods(args, f, table, rand)[0].items()} for f in families},
              "elapsed_s": time.perf_counter() - start, "versions": package_versions()}
    (args.out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    report(cells, args.out)
    print(f"{prepared.scored_tokens} scored tokens; {len(cells)} cells in {config['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
