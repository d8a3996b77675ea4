"""Unequal error protection of massive activations: catastrophic cells with and without UEP at matched bits.

    .venv/bin/python benchmarks/uep_benefit.py           # full: 512 tokens, 7 splits x 5 seeds (2-5 s a cell, 1 thread)
    .venv/bin/python benchmarks/uep_benefit.py --quick   # CI-sized: 256 tokens, 3 splits x 2 seeds (102 cells, 2 min)
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
``tokens_only`` = those positions alone, no channels. With the erasure-repair rule (per-channel medians calibrated
on the same text as the outliers, :func:`edgesplit.quality.outliers.repair_values`; elements the link flags lost are
set to them instead of 0, no bits): ``uep_repair`` = ``uep_tokens`` + repair (digital flags no lost element: there
it is ``uep_tokens``, same draws) and the control ``repair_only`` = unprotected + repair (dropout and coded only);
``uep_robust`` = ``uep_repair`` + the massive-row rule (rows whose max |x| exceeds ``--massive-tau`` x the packet's
median row max sent whole too). ``--methods`` runs a subset.

    .venv/bin/python benchmarks/uep_benefit.py --families coded,dropout --methods unprotected,uep_repair \
        --seeds 10 --seed-offset 100 --out runs/uep_confirm_s100          # the confirmation run of the repair rule
    .venv/bin/python benchmarks/uep_diagnose.py -- --seeds 10 --families coded,dropout   # what the residual cells lost

A cell is catastrophic when its perplexity exceeds 2x the clean perplexity. Printed per family and method: cells,
catastrophic count and rate (95 % Clopper-Pearson), the worst seed, mean / median / worst perplexity, mean and max
extra bits and airtime over the unprotected scheme, the cut over unprotected with its one-sided 95 % lower bound (the
smaller of a Clopper-Pearson ratio bound and a seed bootstrap: :mod:`benchmarks.uep_benefit_plots`); then per
protecting method the per-seed counts and the worst seed. Writes ``cells.parquet`` (every 50 cells so far to
``cells.partial.parquet``), ``summary.csv``, ``config.json`` (arguments, seeds, specs, versions), ``outliers.json``
and ``uep_perplexity.png`` / ``uep_catastrophic.png`` (log scales) under ``--out``; ``--replot`` redraws and
reprints them from ``cells.parquet`` (several runs' cells: ``--replot --merge DIR,DIR@coded+dropout``).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from uep_benefit_plots import cut_report, plot, summarise, verdict  # noqa: E402

from edgesplit.channel import IMPAIRMENTS, ChannelState, make_impairment  # noqa: E402
from edgesplit.link import ImpairedLink  # noqa: E402
from edgesplit.models import load_model  # noqa: E402
from edgesplit.profile import prepare_windows  # noqa: E402
from edgesplit.profile.store import package_versions  # noqa: E402
from edgesplit.quality import load_corpus, tokenize_corpus  # noqa: E402
from edgesplit.quality.outliers import OutlierRule, detect_outliers, repair_values  # noqa: E402
from edgesplit.quality.windows import scored_slice  # noqa: E402
from edgesplit.split import EdgeTail  # noqa: E402

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
CODED_MAIN = {"bits": 8, "channel": "rayleigh", "max_transmissions": 1, "target_bler": 0.1}
PROTECTING = ("uep", "uep_tokens", "uep_repair", "uep_robust", "repair_only")
"""Methods whose cut over unprotected is reported against the target."""
REPAIRING = ("dropout", "coded")
"""Families whose links flag lost elements (the repair rule acts there; digital flags none)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    p.add_argument("--massive-tau", type=float, default=10.0, help="uep_robust: massive-row threshold")
    p.add_argument("--methods", default=None, help="comma list of methods to run (default: all that apply)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replot", action="store_true", help="reprint and replot the cells.parquet under --out")
    p.add_argument("--merge", default="", help="with --replot: comma list of run folders (DIR or DIR@fam+fam) "
                   "whose cells are pooled")
    p.add_argument("--out", type=Path, default=Path("runs/uep_benefit"))
    args = p.parse_args(argv)
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


def methods(args: argparse.Namespace, family: str, table: dict, rand: dict, fill=None) -> tuple[dict, ChannelState]:
    """{method: impairment} of one family (those ``--methods`` lists), and its channel state."""
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
    def protect(channels, tokens: int = 0, protected=prot, n: int = copies, **extra):
        return make_impairment("protected", main=main, protected=protected, channels=channels, copies=n, tokens=tokens,
                               **extra)

    out = {"unprotected": make_impairment(**main), "uep": protect(table)}
    if args.protect_tokens:
        out["uep_tokens"] = protect(table, args.protect_tokens)
    if fill is not None and args.protect_tokens:  # digital flags no lost element: there it is uep_tokens
        out["uep_repair"] = protect(table, args.protect_tokens, fill=fill)
    if fill is not None and family in REPAIRING:  # (and repair_only would be unprotected)
        out["repair_only"] = protect({k: () for k in table}, fill=fill)
    if fill is not None:
        out["uep_robust"] = protect(table, args.protect_tokens, fill=fill, massive_tau=args.massive_tau)
    if args.controls:
        out["uep_random"] = protect(rand)
        if args.protect_tokens:
            out["tokens_only"] = protect({k: () for k in table}, args.protect_tokens)
        if family == "digital":
            out["split_only"] = protect(table, protected=main, n=1)
    if args.methods:
        out = {name: imp for name, imp in out.items() if name in args.methods.split(",")}
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
             "protected_channels", "protected_tokens", "massive_rows", "lost_fraction", "repaired_fraction")}
    return {"perplexity": math.exp(nll / count), "kl_nats": kl / count, "top1_agreement": agree / count, **mean}


def calibrate(args: argparse.Namespace, model, corpus) -> tuple[torch.Tensor, dict[int, tuple[int, ...]], object]:
    """(evaluated token ids, outlier table by split, repair values) from the text after the evaluated tokens."""
    ids = tokenize_corpus(corpus, model.tokenizer, args.tokens + args.calib_tokens)
    rule = OutlierRule(tau=args.tau, max_channels=args.max_channels)
    outliers = detect_outliers(model, ids[args.tokens:], rule, context=args.context, corpus=corpus.name)
    outliers.save(args.out / "outliers.json")
    table = outliers.channels_by_split()
    print("outlier channels:", {k: table[k] for k in args.splits})
    fill = repair_values(model, ids[args.tokens:], context=args.context, corpus=corpus.name)
    return ids[:args.tokens], table, fill


def run_cells(args: argparse.Namespace, model, prepared, families: list[str], table: dict, rand: dict,
              clean_ppl: float, fill=None) -> pd.DataFrame:
    """Every (family, split, seed, method) cell, methods innermost (they share the seed's draws); the cells so far
    are saved to ``cells.partial.parquet`` every 50 cells."""
    plan = []
    for family in families:
        imps, state = methods(args, family, table, rand, fill)
        plan += [(family, k, seed, name, imp, state) for k in args.splits
                 for seed in range(args.seed_offset, args.seed_offset + args.seeds) for name, imp in imps.items()]
    rows = []
    for family, k, seed, name, imp, state in tqdm(plan, desc="cells"):
        t0 = time.perf_counter()
        result = evaluate_cell(model, prepared, k, imp, state, (family, k, seed))
        rows.append({"family": family, "method": name, "k": k, "seed": seed, **result,
                     "clean_perplexity": clean_ppl, "catastrophic": result["perplexity"] > 2 * clean_ppl,
                     "wall_s": time.perf_counter() - t0})
        if len(rows) % 50 == 0:
            pd.DataFrame(rows).to_parquet(args.out / "cells.partial.parquet", index=False)
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
        present = set(cells[cells.family == family].method)
        for method in [m for m in PROTECTING if m in present and "unprotected" in present]:
            print(cut_report(cells, family, method))
            print("   " + verdict(summary, family, method))
    print(f"wrote {out}: cells.parquet, summary.csv, config.json, outliers.json, {', '.join(p.name for p in paths)}")


def merged_cells(entry: str) -> pd.DataFrame:
    """The cells of one ``--merge`` entry: ``DIR`` (every family) or ``DIR@fam+fam`` (those families of it)."""
    folder, _, families = entry.partition("@")
    cells = pd.read_parquet(Path(folder) / "cells.parquet")
    return cells[cells.family.isin(families.split("+"))] if families else cells


def main() -> None:
    args = parse_args()
    if args.replot:
        cells = pd.concat([merged_cells(entry) for entry in args.merge.split(",") if entry] or
                          [pd.read_parquet(args.out / "cells.parquet")], ignore_index=True)
        cells = cells[cells.family.isin(args.families.split(","))].reset_index(drop=True)  # --families filters
        if cells.duplicated(["family", "method", "k", "seed"]).any():
            raise SystemExit("--merge: the runs overlap (a family, method, split and seed twice)")
        args.out.mkdir(parents=True, exist_ok=True)
        report(cells, args.out)
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    corpus = load_corpus(str(WIKITEXT)) if WIKITEXT.is_file() else load_corpus("default")
    print(f"corpus: {corpus.name}; model {model.name} (L={model.num_layers}, hidden {model.hidden_size})")
    eval_ids, table, fill = calibrate(args, model, corpus)
    prepared = prepare_windows(model, eval_ids, args.context)
    clean_ppl = math.exp(prepared.clean_nll_sum / prepared.scored_tokens)
    families = [f for f in args.families.split(",") if f]
    skipped = coded_available() if "coded" in families else None
    if skipped:
        print(f"coded family skipped: {skipped}")
        families.remove("coded")
    rand = random_table(table, model.hidden_size)
    cells = run_cells(args, model, prepared, families, table, rand, clean_ppl, fill)
    cells.to_parquet(args.out / "cells.parquet", index=False)
    config = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "seeds": list(range(args.seed_offset, args.seed_offset + args.seeds)), "corpus": corpus.name,
              "clean_perplexity": clean_ppl, "scored_tokens": prepared.scored_tokens, "coded_skipped": skipped,
              "specs": {f: {m: repr(i) for m, i in methods(args, f, table, rand, fill)[0].items()} for f in families},
              "repair_values": repr(fill),
              "elapsed_s": time.perf_counter() - start, "versions": package_versions()}
    (args.out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    report(cells, args.out)
    print(f"{prepared.scored_tokens} scored tokens; {len(cells)} cells in {config['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
