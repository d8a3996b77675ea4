"""Structured pruning of the device-side layers: measured compute time, FLOPs and memory, dense vs pruned, one run.

Run:  .venv/bin/python benchmarks/structured_speedup.py [--model smollm2-135m] [--k 10] [--ratios 0.3 0.5]
                                                         [--prefill-tokens 128] [--decode-steps 16] [--repeats 11]
                                                         [--ppl-tokens 2048] [--out runs/bench/structured_speedup]
      .venv/bin/python benchmarks/structured_speedup.py --quick      # CI-sized: k=4, 64 tokens, 3 repeats

Prunes layers ``0..k-1`` of the model with ``prune_structured`` (activation-aware: calibrated on WikiText-2 from
``../shared/data`` when present, else on the Python docs corpus) at each ratio, then times the UE's work with one
torch thread: ``DeviceHead(model, k)`` (embedding, masks, rotary, layers ``0..k-1``) on a stateless prefill of
``--prefill-tokens`` tokens and on ``--decode-steps`` single-token steps after such a prefill (ms per token), and once
more under ``torch.profiler`` to split decode into the weight matrix products and everything else
(``decode_matmul_ms``, ``decode_other_ms``); the ``layers_*`` rows time ``run_layers(0, k)`` alone (embedding, masks
and rotary built before the clock starts). Dense and pruned variants run side by side, interleaved in rotating order
within each repeat after a warm-up, so a shared, noisy machine slows them alike; the table shows medians and the
pruned/dense ratios. FLOPs, device-side parameter bytes and KV bytes per token come from the module shapes
(``pruned_profile``). With ``--ppl-tokens`` the unsplit perplexity of each variant on held-out text shows what the
pruning costs in quality (no fine-tuning).
Writes ``samples.parquet`` (every timing), ``summary.parquet`` and ``config.json`` under ``--out``.
Exit status 1 when ratio 0.3 cuts the prefill time of ``DeviceHead`` by less than 25 % (the issue's bar).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from edgesplit.models import load_model
from edgesplit.outdir import check_writable_dir
from edgesplit.pruning.spec import PruneConfig
from edgesplit.pruning.structured import prune_structured, pruned_profile
from edgesplit.quality import evaluate_split, load_corpus, tokenize_corpus
from edgesplit.split import DeviceHead

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
BAR_RATIO, BAR_CUT = 0.3, 0.25


def corpus_ids(loaded, tokens: int) -> tuple[torch.Tensor, str]:
    """``tokens`` ids of WikiText-2 (test) when present, else of the Python docs; (ids, corpus name)."""
    corpus = load_corpus(str(WIKITEXT) if WIKITEXT.is_file() else "default")
    if WIKITEXT.is_file():
        corpus = type(corpus)(name=corpus.name, text=corpus.text.replace("\r\n", "\n"))
    return tokenize_corpus(corpus, loaded.tokenizer, max_tokens=tokens), corpus.name


def time_prefill(head: DeviceHead, ids: torch.Tensor) -> float:
    """Seconds of one stateless ``DeviceHead`` call (embedding, masks, rotary and layers 0..k-1)."""
    start = time.perf_counter()
    head(ids)
    return time.perf_counter() - start


def time_decode(head: DeviceHead, ids: torch.Tensor, steps: int) -> float:
    """Seconds per decoded token (``DeviceHead`` with a session) over ``steps`` steps after an untimed prefill."""
    session = head.new_session()
    head(ids, session=session)
    token = ids[:, -1:]
    start = time.perf_counter()
    for _ in range(steps):
        head(token, session=session)
    return (time.perf_counter() - start) / steps


@torch.inference_mode()
def _layers_only(head: DeviceHead, ids: torch.Tensor, past: int, cache) -> float:
    """Seconds of ``run_layers(0, k)`` alone: embedding, masks and rotary are built before the clock starts."""
    adapter = head.adapter
    positions = torch.arange(past, past + ids.shape[1]).unsqueeze(0)
    hidden = adapter.embed_tokens(ids, positions)
    inputs = adapter.prepare(hidden, None, positions, cache, 0, head.k)
    start = time.perf_counter()
    adapter.run_layers(hidden, 0, head.k, inputs, cache)
    return time.perf_counter() - start


def time_layers_prefill(head: DeviceHead, ids: torch.Tensor) -> float:
    return _layers_only(head, ids, 0, None)


def time_layers_decode(head: DeviceHead, ids: torch.Tensor, steps: int) -> float:
    cache = head.adapter.new_cache()
    _layers_only(head, ids, 0, cache)
    token = ids[:, -1:]
    return sum(_layers_only(head, token, ids.shape[1] + s, cache) for s in range(steps)) / steps


PHASES = {"prefill": lambda h, ids, steps: time_prefill(h, ids),
          "decode_per_token": time_decode,
          "layers_prefill": lambda h, ids, steps: time_layers_prefill(h, ids),
          "layers_decode_per_token": time_layers_decode}
"""What is timed: the UE's whole ``DeviceHead`` call, and the decoder layers alone (``layers_*``)."""


def measure(heads: dict[str, DeviceHead], ids: torch.Tensor, steps: int, repeats: int) -> list[dict]:
    """Interleaved timings: every repeat runs every variant once per phase, the order rotating each repeat."""
    names, rows = list(heads), []
    for name in names:  # warm-up: allocator, kernels, caches
        for phase in PHASES.values():
            phase(heads[name], ids, 2)
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for phase, run in PHASES.items():
            for name in order:
                rows.append({"variant": name, "repeat": rep, "phase": phase, "seconds": run(heads[name], ids, steps)})
    return rows


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")
"""The operators that read the (pruned) weight matrices."""


def decode_breakdown(head: DeviceHead, ids: torch.Tensor, steps: int) -> dict[str, float]:
    """Per decoded token (ms): wall time, and the matrix products' own time under ``torch.profiler``.

    Separates what structured pruning can shrink (the weight matrix products) from what it cannot (every other
    operator and the Python between them, the same number of calls whatever the widths). The profiler's own
    overhead inflates the wall time, so only the matmul column is compared with the plain timings.
    """
    from torch.profiler import ProfilerActivity, profile

    session = head.new_session()
    head(ids, session=session)
    token = ids[:, -1:]
    head(token, session=session)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            head(token, session=session)
        wall = time.perf_counter() - start
    matmul = sum(event.self_cpu_time_total for event in prof.key_averages() if event.key in MATMUL_OPS) / 1e3
    return {"profiled_decode_ms": wall * 1e3 / steps, "decode_matmul_ms": matmul / steps}


def static_costs(loaded, k: int, tokens: int, steps: int) -> dict[str, float]:
    """FLOPs, parameter bytes and KV bytes of layers 0..k-1, from the module shapes."""
    profile = pruned_profile(loaded)
    decode = sum(profile.decode_flops(0, k, tokens + s) for s in range(1, steps + 1)) / steps
    return {"prefill_gflops": profile.prefill_flops(0, k, tokens) / 1e9, "decode_mflops_per_token": decode / 1e6,
            "layer_params_mb_fp32": profile.layer_params(0, k) * 4 / 1e6,
            "kv_kb_per_token_fp32": profile.kv_cache_bytes(0, k, 1, 4) / 1e3}


def summarise(samples: pd.DataFrame, static: dict[str, dict], quality: dict[str, float],
              ratios: dict[str, float]) -> pd.DataFrame:
    med = samples.groupby(["variant", "phase"])["seconds"].median().unstack()
    rows = []
    for name in static:
        row = {"variant": name, "achieved_ratio": ratios[name]}
        row |= {f"{phase}_ms": 1e3 * med.loc[name, phase] for phase in PHASES}
        row |= {f"{phase}_time_ratio": med.loc[name, phase] / med.loc["dense", phase] for phase in PHASES}
        row |= static[name]
        row["prefill_flops_ratio"] = static[name]["prefill_gflops"] / static["dense"]["prefill_gflops"]
        row["params_ratio"] = static[name]["layer_params_mb_fp32"] / static["dense"]["layer_params_mb_fp32"]
        row["decode_matmul_ratio"] = static[name]["decode_matmul_ms"] / static["dense"]["decode_matmul_ms"]
        row["decode_other_ms"] = row["decode_per_token_ms"] - static[name]["decode_matmul_ms"]
        if quality:
            row["perplexity"] = quality[name]
        rows.append(row)
    return pd.DataFrame(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=10, help="device-side layers 0..k-1 are pruned and timed")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--prefill-tokens", type=int, default=128)
    parser.add_argument("--decode-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--calibration-tokens", type=int, default=8192, help="in windows of --prefill-tokens")
    parser.add_argument("--ppl-tokens", type=int, default=2048, help="held-out tokens for perplexity (0: skip)")
    parser.add_argument("--out", default="runs/bench/structured_speedup")
    parser.add_argument("--quick", action="store_true", help="k=4, 64 tokens, 4 decode steps, 3 repeats, no ppl")
    args = parser.parse_args(argv)
    if args.quick:
        args.k, args.prefill_tokens, args.decode_steps, args.repeats = 4, 64, 4, 3
        args.calibration_tokens, args.ppl_tokens = 256, 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_writable_dir(args.out, "--out")
    torch.set_num_threads(1)
    loaded = load_model(args.model)
    window = args.prefill_tokens
    ids, corpus = corpus_ids(loaded, args.calibration_tokens + window + args.ppl_tokens)
    calibration = ids[: args.calibration_tokens // window * window].reshape(-1, window)
    timing_ids = ids[args.calibration_tokens: args.calibration_tokens + window].unsqueeze(0)
    held_out = ids[args.calibration_tokens + window:]
    variants, ratios, prune_s, calibration_s = {"dense": loaded}, {"dense": 0.0}, {}, {}
    for ratio in args.ratios:
        result = prune_structured(loaded, PruneConfig("structured", ratio=ratio, k=args.k, side="device"), calibration)
        name = f"structured {ratio:g}"
        variants[name], ratios[name], prune_s[name] = result.model, result.achieved_ratio, result.prune_s
        calibration_s[name] = result.calibration_s
    heads = {name: DeviceHead(model, args.k) for name, model in variants.items()}
    samples = pd.DataFrame(measure(heads, timing_ids, args.decode_steps, args.repeats))
    static = {name: static_costs(model, args.k, window, args.decode_steps) for name, model in variants.items()}
    for name, head in heads.items():  # medians over the repeats, each variant profiled on its own
        runs = [decode_breakdown(head, timing_ids, args.decode_steps) for _ in range(max(3, args.repeats // 3))]
        static[name] |= {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    quality = {}
    if args.ppl_tokens:
        quality = {name: evaluate_split(model, held_out, model.num_layers, context=256).perplexity
                   for name, model in variants.items()}
    summary = summarise(samples, static, quality, ratios)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples.to_parquet(out / "samples.parquet")
    summary.to_parquet(out / "summary.parquet")
    config = {**vars(args), "corpus": corpus, "torch_threads": 1, "torch": torch.__version__, "prune_s": prune_s,
              "calibration_s": calibration_s, "num_layers": loaded.num_layers,
              "calibration_windows": int(calibration.shape[0])}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    print(f"{args.model}: device side = embedding + layers 0..{args.k - 1} of {loaded.num_layers}; prefill "
          f"{window} tokens, decode {args.decode_steps} steps after it; {args.repeats} interleaved repeats, "
          f"1 thread; calibration {calibration.shape[0]}x{window} tokens of {corpus}")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(summary.set_index("variant").T.to_string())
    spread = samples.groupby(["variant", "phase"])["seconds"].agg(lambda s: statistics.pstdev(s) / s.median())
    print(f"relative spread (pstdev/median), worst: {spread.max():.2f}; wrote {out}/samples.parquet, "
          f"summary.parquet, config.json")
    bar = summary[summary["variant"] == f"structured {BAR_RATIO:g}"]
    if not bar.empty:
        cut = 1 - float(bar["prefill_time_ratio"].iloc[0])
        cuts = {phase: 1 - float(bar[f"{phase}_time_ratio"].iloc[0]) for phase in PHASES}
        print(f"bar: ratio {BAR_RATIO} cuts the device-side prefill time by {cut:.1%} (needs >= {BAR_CUT:.0%}); "
              + ", ".join(f"{phase} by {value:.1%}" for phase, value in cuts.items() if phase != "prefill"))
        dense = summary[summary["variant"] == "dense"]
        print(f"decode per token: matrix products {float(dense['decode_matmul_ms'].iloc[0]):.2f} -> "
              f"{float(bar['decode_matmul_ms'].iloc[0]):.2f} ms ({float(bar['decode_matmul_ratio'].iloc[0]) - 1:+.1%},"
              f" torch.profiler), everything else {float(dense['decode_other_ms'].iloc[0]):.2f} -> "
              f"{float(bar['decode_other_ms'].iloc[0]):.2f} ms (wall minus matmul: per-operator work pruning does "
              "not remove)")
        return 0 if cut >= BAR_CUT else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
