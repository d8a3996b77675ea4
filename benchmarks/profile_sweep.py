"""Profiler speed-up: the cached-tail sweep against a naive full forward per cell, same grid, same run.

    .venv/bin/python benchmarks/profile_sweep.py            # 512 tokens, context 256, every split, 2 SNRs x 2 seeds
    .venv/bin/python benchmarks/profile_sweep.py --quick    # 256 tokens, context 128, 7 splits (a few minutes)

Both paths evaluate every cell (split k x AWGN SNR x seed) of the built-in model on the same tokens with the same
noise draws:

- **cached tail** (:mod:`edgesplit.profile.engine`): one clean forward per window keeping every layer boundary,
  then per noisy cell only the tail from k, the noisy copies of a window for all cells of one k stacked along the
  batch; lossless cells (k = 0, k = L) cost nothing;
- **naive**: :func:`edgesplit.quality.evaluate_split` per cell with the profiler's own per-window link
  (:class:`edgesplit.profile.WindowSeededLink`): head, link, clean tail and noisy tail for every cell.

The two paths run interleaved split by split (each k: naive cells, then cached cells; the clean pass counts
for the cached path), so a shared machine's changing load hits both alike. It prints both wall times, the ratio
(target >= 1.8x) and the largest difference between the two tables (0 with the default ``--naive-batch-size 1``:
the numbers are bit-identical). Text: WikiText-2 test from
``../shared/data/wikitext-2-raw/wiki.test.raw`` when present (it says so when it falls back to the default corpus).
Timings on a shared machine are only meaningful as the ratio measured side by side in one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from edgesplit.models import load_model
from edgesplit.profile import WindowSeededLink, enumerate_cells, evaluate_cells, prepare_windows
from edgesplit.quality import evaluate_split, load_corpus, make_windows, tokenize_corpus
from edgesplit.scenario import ChannelSetting

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
FIELDS = ("perplexity", "clean_perplexity", "kl_nats", "top1_agreement")


def _corpus():
    if WIKITEXT.is_file():
        print(f"corpus: {WIKITEXT}")
        return load_corpus(str(WIKITEXT))
    print(f"corpus: {WIKITEXT} not found, using the default corpus (Python docs) instead")
    return load_corpus("default")


def _naive(model, ids, cells, windows, context, batch_size):
    results = {}
    for cell in cells:
        link = None if cell.lossless(model.num_layers) else WindowSeededLink(cell, windows)
        results[cell.key] = evaluate_split(model, ids, cell.k, link, context=context, batch_size=batch_size)
    return results


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def compare(model, ids, cells, context, batch_size, naive_batch_size):
    """Both paths, interleaved split by split so that a machine's changing load hits them alike."""
    windows = make_windows(int(ids.numel()), context)
    prepared, cached_s = _timed(prepare_windows, model, ids, context, None, batch_size)
    naive, cached, naive_s = {}, {}, 0.0
    for k in sorted({cell.k for cell in cells}):
        group = [cell for cell in cells if cell.k == k]
        results, seconds = _timed(_naive, model, ids, group, windows, context, naive_batch_size)
        naive.update(results)
        naive_s += seconds
        groups, seconds = _timed(lambda g: list(evaluate_cells(model, prepared, g, batch_size)), group)
        cached.update({r.cell.key: r.quality for done in groups for r in done})
        cached_s += seconds
    return naive, naive_s, cached, cached_s


def _max_relative_difference(a, b) -> float:
    worst = 0.0
    for key, qa in a.items():
        for name in FIELDS:
            x, y = getattr(qa, name), getattr(b[key], name)
            worst = max(worst, abs(x - y) / max(abs(y), 1e-12))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid (CI / smoke test)")
    parser.add_argument("--batch-size", type=int, default=4, help="cached path: rows per tail call")
    parser.add_argument("--naive-batch-size", type=int, default=1, help="naive path: windows per forward")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 is steadiest on a busy machine; default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens, context = (256, 128) if args.quick else (512, 256)
    model = load_model("smollm2-135m")
    L = model.num_layers
    splits = (0, 5, 10, 15, 20, 25, L) if args.quick else tuple(range(L + 1))
    settings = [ChannelSetting("awgn", snr_db=s) for s in (5.0, 20.0)]
    cells = enumerate_cells(splits, settings, (0, 1))
    ids = tokenize_corpus(_corpus(), model.tokenizer, tokens)
    noisy = sum(not c.lossless(L) for c in cells)
    print(f"grid: {len(splits)} splits x {len(settings)} SNRs x 2 seeds = {len(cells)} cells ({noisy} noisy), "
          f"{tokens} tokens, context {context}, torch threads {torch.get_num_threads()}")
    evaluate_split(model, ids, L // 2, None, context=context)  # warm-up: first calls pay one-off set-up costs
    naive, naive_s, cached, cached_s = compare(model, ids, cells, context, args.batch_size, args.naive_batch_size)
    print(f"naive full forward per cell : {naive_s:8.1f} s   (evaluate_split, batch {args.naive_batch_size})")
    print(f"cached-tail sweep           : {cached_s:8.1f} s   (clean pass + tails, batch {args.batch_size})")
    print(f"speed-up                    : {naive_s / cached_s:8.2f}x (target >= 1.8x)")
    exact = all(cached[key] == naive[key] for key in naive)
    print(f"same numbers                : {'bit-identical' if exact else 'no'}; largest relative difference "
          f"{_max_relative_difference(cached, naive):.2e} over {', '.join(FIELDS)}")


if __name__ == "__main__":
    main()
