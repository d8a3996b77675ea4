"""How good the continuous-channel truth's interpolation rule is: leave-one-out on the measured SNR grid.

    .venv/bin/python benchmarks/fine_grid_check.py [--truth runs/surrogate_truth_awgn3]

Every interior measured SNR of every lossy split is predicted from its two neighbours (10 dB apart: twice the
spacing the fine grid of ``benchmarks/mbrl_vs_modelfree.py --continuous`` interpolates over, so a pessimistic
check) by the geometric rule of :mod:`surrogate.fine_grid` and by plain linear interpolation, on the seed-pooled
truth. Prints the mean and worst |error| of log(PPL/PPL0) per SNR for both rules and writes them to
``--out`` (leave_one_out.parquet, summary.csv, config.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surrogate.dataset import load_cells, pool_seeds  # noqa: E402
from surrogate.fine_grid import RULES, leave_one_out  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=Path("runs/surrogate_truth_awgn3"))
    parser.add_argument("--out", type=Path, default=Path("runs/fine_grid_check"))
    args = parser.parse_args()
    table = pool_seeds(load_cells(args.truth))
    layers = int(table["num_layers"].iloc[0])
    frames = []
    for rule in RULES:
        errors = leave_one_out(table, rule)
        frames.append(errors[(errors["k"] > 0) & (errors["k"] < layers)].assign(rule=rule))
    errors = pd.concat(frames, ignore_index=True)
    errors["abs_error"] = errors["error"].abs()
    summary = errors.pivot_table(index="snr_db", columns="rule", values="abs_error", aggfunc=["mean", "max"])
    print(f"leave-one-out |error| of log(PPL/PPL0), {errors['k'].nunique()} lossy splits, truth {args.truth}")
    print(summary.round(4).to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    errors.to_parquet(args.out / "leave_one_out.parquet", index=False)
    summary.to_csv(args.out / "summary.csv")
    (args.out / "config.json").write_text(json.dumps({"truth": str(args.truth), "rules": list(RULES)}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
