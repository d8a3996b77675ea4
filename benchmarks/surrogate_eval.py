"""How well the quality surrogate does from few real evaluations: active learning vs random vs the paper's surrogate.

Run:  .venv/bin/python benchmarks/surrogate_eval.py [--truth runs/surrogate_truth_awgn] [--fraction 0.15,0.3]
          [--seeds 3] [--reward paper] [--config best_config.json] [--splits 0:30:2] [--snr-db 0:30:5]
      .venv/bin/python benchmarks/surrogate_eval.py --quick      # small grid, a few minutes including the truth

Ground truth: every cell of a profile grid measured with the real LLM (the profiler engine, the same numbers
:class:`surrogate.evaluator.RealEvaluator` returns). It is read from ``--truth`` (one or more ``cells.parquet``
under it) and computed there first if missing: the default grid is the built-in SmolLM2-135M, AWGN at
0, 5, …, 30 dB × every split k = 0..30 (217 cells), 1,024 WikiText-2 test tokens in 256-token windows, one seed —
about 20 minutes on one busy CPU core. ``--quick`` uses 7 SNRs × 11 splits, 256 tokens.

Each strategy may evaluate ``fraction`` of the grid's cells for real (lossless cells — k = 0, k = L — are known
exactly and never evaluated); the surrogate trained on them is scored on every other lossy cell (R², Spearman and
90%-interval coverage of log(PPL/PPL0)) and by the decision regret over all channel states (see
:mod:`surrogate.metrics`: % of the global reward range — the issue's bar — and the stricter mean per-state %).
Rows: the deep ensemble with active learning, with random selection of the same number of cells, the same with the
monotonicity penalty, a Gaussian process on the actively chosen cells, and the reference paper's surrogate (MLP
2→128→128→1 on (channel parameter, k)) on random and on the actively chosen cells. Figures are mean ± std over
``--seeds`` seeds (each seed changes the design, the draws and the networks' initialisation).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from edgesplit.profile import parse_float_grid, parse_int_grid
from edgesplit.reward import SplitReward, reward_preset
from surrogate.active import ActiveConfig, ActiveLearner
from surrogate.baselines import GPSurrogate, PaperSurrogate
from surrogate.dataset import TARGETS, load_cells, model_profile
from surrogate.ensemble import EnsembleConfig
from surrogate.evaluation import surrogate_report
from surrogate.evaluator import TableOracle
from surrogate.features import lossless_mask
from surrogate.fit import read_config
from surrogate.model import QualitySurrogate

CORPUS = "../shared/data/wikitext-2-raw/wiki.test.raw"
FULL = {"snr_db": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0), "splits": None, "tokens": 1024}
QUICK = {"snr_db": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0), "splits": tuple(range(0, 31, 3)), "tokens": 256}


def build_truth(out: Path, quick: bool) -> None:
    """Measure every cell of the grid with the real model through the profiler (resumes if interrupted)."""
    from edgesplit.profile import ProfileConfig, load_inputs, run_profile

    grid = QUICK if quick else FULL
    corpus = CORPUS if Path(CORPUS).is_file() else "default"
    config = ProfileConfig(out=out, model="smollm2-135m", corpus=corpus, channel="awgn", snr_db=grid["snr_db"],
                           splits=grid["splits"], tokens=grid["tokens"], context=256, seeds=1, batch_size=7)
    start = time.perf_counter()
    outcome = run_profile(config, load_inputs(config), progress=True)
    print(f"truth: {outcome.computed} cells measured in {time.perf_counter() - start:.0f} s -> {out}")


def _row(name: str, report: dict, cells: int) -> dict:
    target, regret = report["log_ppl_ratio"], report["regret"]
    return {"surrogate": name, "real cells": cells, "R2": target["r2"], "Spearman": target["spearman"],
            "cov90": target.get("coverage90", math.nan), "regret %range": regret["pct_of_range"],
            "regret %state": regret["pct_per_state"], "optimal": regret["optimal_fraction"]}


def run_seed(table: pd.DataFrame, reward: SplitReward, config: EnsembleConfig, budget: int, seed: int) -> list[dict]:
    """Every strategy of the comparison for one seed."""
    candidates = table.drop(columns=list(TARGETS))
    ensemble = replace(config, seed=seed)
    monotone = replace(ensemble, monotone_weight=max(ensemble.monotone_weight, 0.1))
    initial = max(4, budget // 3)

    def learn(strategy: str, make) -> tuple:
        oracle = TableOracle(table)
        learner = ActiveLearner(candidates, oracle, make, reward, ActiveConfig(
            budget=budget, initial=initial, batch=4, strategy=strategy, seed=seed))
        result = learner.run()
        held = ~lossless_mask(table)
        held[result.selected] = False
        return result, held, oracle.stats.evaluations

    rows = []
    active, held_active, spent = learn("active", lambda: QualitySurrogate(ensemble))
    rows.append(_row("ensemble + active learning", surrogate_report(active.surrogate, table, reward, held_active),
                     spent))
    rand, held_rand, spent_rand = learn("random", lambda: QualitySurrogate(ensemble))
    rows.append(_row("ensemble + random cells", surrogate_report(rand.surrogate, table, reward, held_rand), spent_rand))
    mono, held_mono, spent_mono = learn("active", lambda: QualitySurrogate(monotone))
    rows.append(_row("ensemble + monotone + active", surrogate_report(mono.surrogate, table, reward, held_mono),
                     spent_mono))
    gp = GPSurrogate(seed=seed).fit(active.labelled)
    rows.append(_row("GP on the active cells", surrogate_report(gp, table, reward, held_active), spent))
    paper = PaperSurrogate(seed=seed).fit(rand.labelled)
    rows.append(_row("paper MLP on random cells", surrogate_report(paper, table, reward, held_rand), spent_rand))
    paper_active = PaperSurrogate(seed=seed).fit(active.labelled)
    rows.append(_row("paper MLP on the active cells", surrogate_report(paper_active, table, reward, held_active),
                     spent))
    return rows


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Mean ± std over seeds per surrogate, in the order the rows first appear."""
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame["surrogate"]))
    stats = frame.groupby("surrogate", sort=False).agg(["mean", "std"]).loc[order]
    out = pd.DataFrame(index=order)
    for column in frame.columns.drop("surrogate"):
        mean, std = stats[(column, "mean")], stats[(column, "std")].fillna(0.0)
        digits = 0 if column == "real cells" else 3
        out[column] = [f"{m:.{digits}f} ± {s:.{digits}f}" if s > 0 else f"{m:.{digits}f}" for m, s in zip(mean, std,
                                                                                                          strict=True)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truth", type=Path, nargs="+", default=None,
                        help="cells.parquet files or directories of them (several are joined)")
    parser.add_argument("--quick", action="store_true", help="small grid (computed in a few minutes)")
    parser.add_argument("--fraction", default="0.15", help="share(s) of the grid evaluated for real, e.g. 0.15,0.3")
    parser.add_argument("--splits", default=None, help="keep only these splits (e.g. 0:30:2)")
    parser.add_argument("--snr-db", default=None, help="keep only these SNRs (e.g. 0:30:5)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reward", default="paper", help="reward preset: paper or latency-energy")
    parser.add_argument("--config", type=Path, default=None, help="best_config.json from tune-surrogate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    truths = args.truth or [Path("runs/surrogate_truth_quick" if args.quick else "runs/surrogate_truth_awgn")]
    if len(truths) == 1 and not truths[0].exists():
        build_truth(truths[0], args.quick)
    table = select(pd.concat([load_cells(t) for t in truths], ignore_index=True), args.splits, args.snr_db)
    reward = SplitReward(reward_preset(args.reward), model_profile(str(table["model"].iloc[0])))
    config = read_config(args.config)
    lossless = int(lossless_mask(table).sum())
    print(f"grid: {len(table)} cells of {table['model'].iloc[0]} ({lossless} lossless, known exactly), "
          f"{table['setting'].nunique()} channel states; reward {args.reward}; ensemble {config.to_dict()}")
    for fraction in parse_float_grid(args.fraction, "--fraction", lambda v: 0 < v < 1, "shares in (0, 1)"):
        budget = math.floor(fraction * len(table))
        start, rows = time.perf_counter(), []
        for seed in range(args.seeds):
            rows += run_seed(table, reward, config, budget, seed)
        print(f"\nbudget {budget} real cells ({100 * budget / len(table):.1f}% of the grid), {args.seeds} seeds, "
              f"{time.perf_counter() - start:.0f} s")
        print(summarise(rows).to_string())
    print(f"(R2/Spearman/cov90 of log(PPL/PPL0) on the lossy cells not evaluated; regret over all "
          f"{table['setting'].nunique()} states, % of the global reward range and mean % of each state's range)")


def select(table: pd.DataFrame, splits: str | None, snr_db: str | None) -> pd.DataFrame:
    """The sub-grid named by ``--splits`` / ``--snr-db`` (None keeps everything)."""
    if splits is not None:
        table = table[table["k"].isin(parse_int_grid(splits, "--splits", low=0))]
    if snr_db is not None:
        table = table[table["snr_db"].isin(parse_float_grid(snr_db, "--snr-db"))]
    if table.empty:
        raise SystemExit("error: the selected grid is empty")
    return table.reset_index(drop=True)


if __name__ == "__main__":
    main()
