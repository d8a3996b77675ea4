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
Sensitivity feature (:mod:`surrogate.sensitivity`): the model's first-order Fisher sums at every split, measured
from the real model on the truth's corpus and tokens (and saved as ``sensitivity.json`` beside the truth). It is
LLM compute, so it is charged: its FLOPs in real cell evaluations of the grid (forward + backward against the mean
tail of a cell), rounded up, come out of the budget of every strategy that uses the feature (the wall-clock ratio,
timed side by side, is printed as a check).

Rows: the deep ensemble with active learning, with random selection of the same number of cells, the same with the
monotonicity penalty, without the sensitivity feature (the full budget, base features only), a Gaussian process on
the actively chosen cells, and the reference paper's surrogate (MLP 2→128→128→1 on (channel parameter, k)) on random
cells (the full budget) and on the actively chosen ones. The ensembles' intervals are calibrated by 5-fold
cross-validation on their labelled cells. Figures are mean ± std over ``--seeds`` seeds (each seed changes the design,
the draws and the networks' initialisation), with the worst seed's R².
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

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
from surrogate.sensitivity import PROFILE_FILE, SensitivityProfile, equivalent_cells

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


def sensitivity_profile(truth: Path, table: pd.DataFrame) -> tuple[SensitivityProfile, int]:
    """The model's profile (measured on the truth's corpus, saved beside it for ``fit-surrogate --sensitivity auto``)
    and the cells it is charged: its FLOPs in real cell evaluations of this grid, rounded up (the wall-clock ratio,
    timed side by side with two lossy cells, is printed as a check)."""
    import json

    from edgesplit.models import load_model
    from edgesplit.quality import load_corpus, tokenize_corpus
    from surrogate.evaluator import RealEvaluator

    directory = truth if truth.is_dir() else truth.parent
    config_file = directory / "config.json"
    settings = json.loads(config_file.read_text())["config"] if config_file.is_file() else {}
    corpus_spec = settings.get("corpus", "default")
    corpus = load_corpus(corpus_spec if corpus_spec == "default" or Path(corpus_spec).is_file() else "default")
    model = load_model(str(table["model"].iloc[0]))
    tokens, context = int(settings.get("tokens", 1024)), int(settings.get("context", 256))
    evaluator = RealEvaluator(model, tokenize_corpus(corpus, model.tokenizer, tokens), context=context,
                              corpus_name=corpus.name)
    profile = evaluator.sensitivity()  # deterministic for its seed; measured each run to time it
    profile.save(directory / PROFILE_FILE)
    lossy = table[~lossless_mask(table)]
    sample = lossy.drop_duplicates("k").head(2)
    evaluator.evaluate_frame(sample)
    per_cell = (evaluator.stats.wall_s - evaluator.stats.clean_pass_s - evaluator.stats.sensitivity_s) / len(sample)
    flops = equivalent_cells(model_profile(profile.model), profile.tokens, tokens, context, lossy["k"].to_numpy())
    print(f"sensitivity profile: {profile.tokens} tokens x {profile.samples} draw(s) in {profile.wall_s:.1f} s; "
          f"= {flops:.2f} real cells by FLOPs (charged {math.ceil(flops)}), {profile.wall_s / per_cell:.2f} by wall "
          f"time side by side ({per_cell:.1f} s per cell)")
    return profile, math.ceil(flops)


def _row(name: str, report: dict, cells: int) -> dict:
    target, regret = report["log_ppl_ratio"], report["regret"]
    return {"surrogate": name, "real cells": cells, "R2": target["r2"], "Spearman": target["spearman"],
            "cov90": target.get("coverage90", math.nan), "regret %range": regret["pct_of_range"],
            "regret %state": regret["pct_per_state"], "optimal": regret["optimal_fraction"]}


def run_seed(table: pd.DataFrame, reward: SplitReward, config: EnsembleConfig, budget: int, seed: int,
             sensitivity: dict[str, SensitivityProfile] | None, charge: int) -> list[dict]:
    """Every strategy of the comparison for one seed (``charge`` cells come off the budget of the strategies that
    use ``sensitivity``)."""
    candidates = table.drop(columns=list(TARGETS))
    ensemble = replace(config, seed=seed)
    monotone = replace(ensemble, monotone_weight=max(ensemble.monotone_weight, 0.1))

    def learn(strategy: str, make, profiles) -> tuple:
        oracle = TableOracle(table)
        cells = budget - (charge if profiles else 0)
        learner = ActiveLearner(candidates, oracle, make, reward, ActiveConfig(
            budget=cells, initial=max(4, cells // 3), batch=4, strategy=strategy, seed=seed), sensitivity=profiles)
        result = learner.run()
        held = ~lossless_mask(table)
        held[result.selected] = False
        return result, held, oracle.stats.evaluations

    rows, s = [], sensitivity
    active, held_active, spent = learn("active", lambda: QualitySurrogate(ensemble, sensitivity=s), s)
    rows.append(_row("ensemble + active learning", surrogate_report(active.surrogate, table, reward, held_active),
                     spent))
    rand, held_rand, spent_rand = learn("random", lambda: QualitySurrogate(ensemble, sensitivity=s), s)
    rows.append(_row("ensemble + random cells", surrogate_report(rand.surrogate, table, reward, held_rand), spent_rand))
    mono, held_mono, spent_mono = learn("active", lambda: QualitySurrogate(monotone, sensitivity=s), s)
    rows.append(_row("ensemble + monotone + active", surrogate_report(mono.surrogate, table, reward, held_mono),
                     spent_mono))
    if s:
        base, held_base, spent_base = learn("active", lambda: QualitySurrogate(ensemble), None)
        rows.append(_row("ensemble + active, no sensitivity", surrogate_report(base.surrogate, table, reward,
                                                                                held_base), spent_base))
    gp = GPSurrogate(seed=seed, sensitivity=s).fit(active.labelled)
    rows.append(_row("GP on the active cells", surrogate_report(gp, table, reward, held_active), spent))
    # the paper's MLP does not use the profile, so it gets the whole budget (the same seeded permutation)
    paper, held_paper, spent_paper = learn("random", lambda: PaperSurrogate(seed=seed), None)
    rows.append(_row("paper MLP on random cells", surrogate_report(paper.surrogate, table, reward, held_paper),
                     spent_paper))
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
    out.insert(2, "R2 worst seed", [f"{v:.3f}" for v in frame.groupby("surrogate", sort=False)["R2"].min().loc[order]])
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
    parser.add_argument("--no-sensitivity", action="store_true", help="base features only (no Fisher profile)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    truths = args.truth or [Path("runs/surrogate_truth_quick" if args.quick else "runs/surrogate_truth_awgn")]
    if len(truths) == 1 and not truths[0].exists():
        build_truth(truths[0], args.quick)
    table = select(pd.concat([load_cells(t) for t in truths], ignore_index=True), args.splits, args.snr_db)
    reward = SplitReward(reward_preset(args.reward), model_profile(str(table["model"].iloc[0])))
    config = read_config(args.config)
    lossless = int(lossless_mask(table).sum())
    sensitivity, charge = None, 0
    if not args.no_sensitivity:
        profile, charge = sensitivity_profile(truths[0], table)
        sensitivity = {profile.model: profile}
    print(f"grid: {len(table)} cells of {table['model'].iloc[0]} ({lossless} lossless, known exactly), "
          f"{table['setting'].nunique()} channel states; reward {args.reward}; ensemble {config.to_dict()}")
    for fraction in parse_float_grid(args.fraction, "--fraction", lambda v: 0 < v < 1, "shares in (0, 1)"):
        budget = math.floor(fraction * len(table))
        start, rows = time.perf_counter(), []
        for seed in tqdm(range(args.seeds), desc=f"fraction {fraction:g}", unit="seed"):
            rows += run_seed(table, reward, config, budget, seed, sensitivity, charge)
        print(f"\nbudget {budget} real cells ({100 * budget / len(table):.1f}% of the grid; {charge} of them charged "
              f"for the sensitivity profile where used), {args.seeds} seeds, {time.perf_counter() - start:.0f} s")
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
