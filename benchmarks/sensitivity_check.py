"""How well the first-order sensitivity profile predicts measured quality, before any learning.

Run:  .venv/bin/python benchmarks/sensitivity_check.py [--truth runs/surrogate_truth_awgn ...] [--tokens 512]

Measures the built-in model's profile (:mod:`surrogate.sensitivity`) on the truth grid's corpus and prints, over the
grid's lossy AWGN cells: the offset and spread (in decades) of log10(measured KL) − log10(linearised KL) at SNR ≥
``--high-snr`` dB, where the first-order expansion should hold, and the Spearman rank correlation of the linearised
KL with the measured log(PPL/PPL0) and KL over every SNR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from edgesplit.models import load_model  # noqa: E402
from edgesplit.quality import load_corpus, tokenize_corpus  # noqa: E402
from surrogate.dataset import load_cells  # noqa: E402
from surrogate.features import linearised_kl_of, lossless_mask  # noqa: E402
from surrogate.sensitivity import measure_sensitivity  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truth", type=Path, nargs="+", default=[Path("runs/surrogate_truth_awgn")])
    parser.add_argument("--tokens", type=int, default=512, help="tokens of the profile")
    parser.add_argument("--samples", type=int, default=1, help="label draws per window")
    parser.add_argument("--high-snr", type=float, default=20.0, help="where the first-order fit is scored (dB)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = pd.concat([load_cells(t) for t in args.truth], ignore_index=True)
    table = table[(table["channel"] == "awgn") & ~lossless_mask(table)].reset_index(drop=True)
    if table.empty:
        raise SystemExit("error: the truth holds no lossy AWGN cell")
    config_file = args.truth[0] / "config.json"
    settings = json.loads(config_file.read_text())["config"] if config_file.is_file() else {}
    corpus = load_corpus(settings.get("corpus", "default"))
    model = load_model(str(table["model"].iloc[0]))
    ids = tokenize_corpus(corpus, model.tokenizer, args.tokens)
    profile = measure_sensitivity(model, ids, context=int(settings.get("context", 256)), tokens=args.tokens,
                                  samples=args.samples)
    linear = linearised_kl_of(table, {profile.model: profile})
    high = table["snr_db"].to_numpy() >= args.high_snr
    gap = np.log10(table["kl_nats"].to_numpy()[high]) - np.log10(linear[high])
    print(f"{profile.model} on {corpus.name}: profile of {profile.tokens} tokens x {profile.samples} draw(s) in "
          f"{profile.wall_s:.1f} s; {len(table)} lossy AWGN cells")
    print(f"SNR >= {args.high_snr:g} dB ({int(high.sum())} cells): log10(measured KL / linearised KL) mean "
          f"{gap.mean():+.3f}, std {gap.std():.3f} decades")
    ratio_rank, kl_rank = (spearmanr(linear, table[c]).statistic for c in ("log_ppl_ratio", "kl_nats"))
    print(f"all SNRs: Spearman(linearised KL, log PPL ratio) {ratio_rank:.3f}, Spearman(linearised KL, measured KL) "
          f"{kl_rank:.3f}")


if __name__ == "__main__":
    main()
