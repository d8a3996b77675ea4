"""The Wanda paper's anchor, in kind, on the built-in model: perplexity at 50 % sparsity, every layer pruned.

Run:  .venv/bin/python benchmarks/pruning_anchor.py [--model smollm2-135m] [--eval-tokens 4096] [--context 512]
                                                    [--calib-windows 32] [--calib-length 256] [--patterns none 2:4]
                                                    [--threads 1] [--out runs/bench/pruning_anchor] [--quick]

Sun et al. (2023, "A Simple and Effective Pruning Approach for LLMs") report for LLaMA-7B at 50 % unstructured
sparsity on WikiText-2: dense 5.68, magnitude 17.29, Wanda 7.26, SparseGPT 7.22 (128 C4 windows of 2,048 tokens).
This script prunes every decoder layer (side ``both``) of the built-in model by magnitude, Wanda and SparseGPT,
unstructured at 0.5 and 2:4 (``--patterns``), and prints the perplexity of each next to the dense model's, so the
ordering can be compared: magnitude far worse, Wanda and SparseGPT close to each other.

Evaluation: the first ``--eval-tokens`` tokens of WikiText-2 raw test (``../shared/data``; the built-in
``default`` corpus when that file is absent, said in the output), non-overlapping ``--context`` windows, through
:func:`edgesplit.quality.evaluate_split` at ``k = L``. Calibration: ``--calib-windows`` seeded windows of
``--calib-length`` tokens from the rest of the same file, after a gap of one context (never the evaluated tokens).
Each pruned model is also split at ``k = L/2`` and its head→tail logits compared with its own unsplit forward
(column ``split_err``). Writes ``results.parquet`` and ``config.json`` under ``--out``. ``--quick``: 1,024
evaluation tokens, 8 calibration windows of 128 tokens, unstructured only (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from edgesplit.models import load_model  # noqa: E402
from edgesplit.pruning.calibration import calibration_windows  # noqa: E402
from edgesplit.pruning.prune import prune  # noqa: E402
from edgesplit.pruning.spec import PruneConfig  # noqa: E402
from edgesplit.quality import evaluate_split, load_corpus, tokenize_corpus  # noqa: E402
from edgesplit.split import DeviceHead, EdgeTail  # noqa: E402

WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
METHODS = ("magnitude", "wanda", "sparsegpt")
PAPER = {"dense": 5.68, "magnitude": 17.29, "wanda": 7.26, "sparsegpt": 7.22}
"""Wanda paper, LLaMA-7B, WikiText-2, 50 % unstructured."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--corpus", default=None, help="text file (default: WikiText-2 test from ../shared/data)")
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--calib-windows", type=int, default=32)
    parser.add_argument("--calib-length", type=int, default=256)
    parser.add_argument("--patterns", nargs="+", default=["none", "2:4"], choices=["none", "2:4", "4:8"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "pruning_anchor")
    parser.add_argument("--quick", action="store_true", help="1,024 eval tokens, 8 x 128 calibration, unstructured")
    args = parser.parse_args()
    if args.quick:
        args.eval_tokens, args.calib_windows, args.calib_length, args.patterns = 1024, 8, 128, ["none"]
    return args


def corpus_tokens(args: argparse.Namespace, tokenizer) -> tuple[str, torch.Tensor]:
    """(corpus name, its token ids); WikiText-2 when present, else the built-in default corpus (said so)."""
    spec = args.corpus or (str(WIKITEXT) if WIKITEXT.is_file() else "default")
    if args.corpus is None and spec == "default":
        print(f"note: {WIKITEXT} is absent; using the built-in default corpus instead of WikiText-2")
    corpus = load_corpus(spec)
    return corpus.name, tokenize_corpus(corpus, tokenizer)


def split_error(model, probe: torch.Tensor) -> float:
    """Max-abs logit difference between head→tail at k = L/2 and the model's own unsplit forward."""
    k = model.num_layers // 2
    with torch.inference_mode():
        reference = model.model(input_ids=probe).logits
        return (EdgeTail(model, k)(DeviceHead(model, k)(probe)) - reference).abs().max().item()


def measure(name: str, pattern: str, model, eval_ids: torch.Tensor, context: int, result=None) -> dict:
    """One table row: perplexity of ``model`` plus what the pruning reported."""
    started = time.perf_counter()
    quality = evaluate_split(model, eval_ids, model.num_layers, context=context)
    row = {"method": name, "pattern": pattern, "perplexity": quality.perplexity, "scored_tokens": quality.scored_tokens,
           "eval_s": time.perf_counter() - started, "sparsity": 0.0, "param_dist_rel": 0.0, "calibration_s": 0.0,
           "prune_s": 0.0, "split_err": split_error(model, eval_ids[None, :64])}
    if result is not None:
        row.update(sparsity=result.achieved_ratio, param_dist_rel=result.param_dist_rel,
                   calibration_s=result.calibration_s, prune_s=result.prune_s)
    return row


def print_table(rows: list[dict]) -> None:
    dense = rows[0]["perplexity"]
    print(f"{'method':10s} {'pattern':8s} {'PPL':>9s} {'x dense':>8s} {'paper':>6s} {'sparsity':>8s} "
          f"{'dW/W':>7s} {'calib s':>8s} {'prune s':>8s} {'split err':>9s}")
    for r in rows:
        paper = PAPER.get(r["method"]) if r["pattern"] in ("dense", "none") else None
        print(f"{r['method']:10s} {r['pattern']:8s} {r['perplexity']:9.2f} {r['perplexity'] / dense:8.2f} "
              f"{paper if paper else '':>6} {r['sparsity']:8.3f} {r['param_dist_rel']:7.3f} "
              f"{r['calibration_s']:8.1f} {r['prune_s']:8.1f} {r['split_err']:9.1e}")


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    corpus, ids = corpus_tokens(args, loaded.tokenizer)
    eval_ids, rest = ids[:args.eval_tokens], ids[args.eval_tokens + args.context:]
    calib = calibration_windows(rest, args.calib_windows, args.calib_length, seed=args.seed)
    print(f"{args.model} ({loaded.num_layers} layers) on {corpus}: {eval_ids.numel()} eval tokens in "
          f"{args.context}-token windows; calibration {tuple(calib.shape)} from tokens >= "
          f"{args.eval_tokens + args.context}; every layer pruned (side both)", flush=True)
    rows = [measure("dense", "dense", loaded, eval_ids, args.context)]
    for pattern in args.patterns:
        for method in args.methods:
            config = PruneConfig(method, 0.5, k=loaded.num_layers, side="both",
                                 pattern=None if pattern == "none" else pattern, seed=args.seed)
            result = prune(loaded, config, calib)
            rows.append(measure(method, pattern, result.model, eval_ids, args.context, result))
            print(f"  {config.label}: PPL {rows[-1]['perplexity']:.2f}", flush=True)
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).assign(model=args.model, corpus=corpus).to_parquet(args.out / "results.parquet", index=False)
    config = {**vars(args), "out": str(args.out), "corpus_name": corpus, "calibration_shape": list(calib.shape),
              "torch": torch.__version__, "paper_llama7b_wikitext2_50pct": PAPER}
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {args.out / 'results.parquet'} and config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
