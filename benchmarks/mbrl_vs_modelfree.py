"""Model-based RL (surrogate PPO) against model-free PPO on the real LLM, with the baselines, on the built-in model.

    .venv/bin/python benchmarks/mbrl_vs_modelfree.py --quick               # ~10 min on 2 busy cores, indicative
    .venv/bin/python benchmarks/mbrl_vs_modelfree.py --real llm --no-pool-seeds   # real SmolLM2 evaluations
    .venv/bin/python benchmarks/mbrl_vs_modelfree.py --real table --seeds 0-9 --model-free none   # the 10-seed bar
    .venv/bin/python benchmarks/mbrl_vs_modelfree.py --real table --seeds 0-9 --model-free none --switching

The default truth (``runs/surrogate_truth_awgn3``: every split × 0..30 dB, 3 noise seeds, 1,024 WikiText-2 tokens)
and its sensitivity profile are measured once with::

    edgesplit profile --channel awgn --snr-db 0:30:5 --corpus ../shared/data/wikitext-2-raw/wiki.test.raw \
        --tokens 1024 --context 256 --seeds 3 --out runs/surrogate_truth_awgn3          # ~30 min on 2 cores
    edgesplit sensitivity --model smollm2-135m --corpus ../shared/data/wikitext-2-raw/wiki.test.raw \
        --tokens 1024 --context 256 --out runs/surrogate_truth_awgn3/sensitivity.json   # ~20 s

The decision problem: SmolLM2-135M (30 layers) split over an AWGN uplink whose SNR follows a moving UE
(Gauss–Markov distance, shadowing and correlated Rayleigh fading), the reward computed at the nearest SNR of the
measured grid (``--truth``, a profiler ``cells.parquet`` of every split × 0..30 dB; the default is the one the
surrogate work measured). Both learners pay for quality with counted real evaluations: ``--real llm`` runs the LLM
(:class:`surrogate.evaluator.RealEvaluator`, the truth grid's corpus, tokens and context, so its numbers equal the
grid's), ``--real table`` replays the grid and counts the same way. Every policy is scored on the same held-out
traces with the truth grid.

Counting: "real evaluations" are distinct lossy cells (split × grid setting) whose quality needed the LLM — cache
misses; "queries" count every reward the learner asked for (model-free PPO asks once per environment step).

Printed figures (the issue's bars):
1. the model-based policy's mean reward as a share of the greedy oracle's (bar: ≥ 95%);
2. real evaluations the model-based loop spent ÷ real evaluations model-free PPO needed to reach the same held-out
   reward (bar: ≤ 10%, or model-free never reaches it — then the ratio to all its evaluations is an upper bound);
3. the model-based policy against the best fixed split and the Neurosurgeon-style cost-only rule (bar: beats both).
Outputs under ``--out``: summary.csv, steps.parquet, splits.png, rewards.png, reward_vs_real_evaluations.png,
mbrl_rounds.parquet, model_free_curve.parquet, bars.json, mbrl/ and model_free/ checkpoints.

Across seeds (``--seeds 0-9``; :mod:`rllib_env.seeds`): per seed a different initial design, training and held-out
trace set; the model-based policy, the **surrogate-greedy** policy (argmax of the loop's final surrogate, same real
evaluations, no RL), the greedy oracle and the rules, and model-free PPO on the first seed (``--model-free``). Prints
mean and worst seed; writes seeds.parquet, seed_table.csv and config.json. ``--switching`` prices changing k during
a generation (KV migration, :mod:`edgesplit.cost.switching`) and adds the hindsight optimum (dynamic programming over
the whole trace, :mod:`rllib_env.hindsight`). The truth's seeds (independent noise draws per cell) are pooled into
one expected-quality cell each (:func:`surrogate.dataset.pool_seeds`; ``--no-pool-seeds`` keeps the first draw only),
and the counted replay serves the same pooled cells.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rllib_env.compare import CompareConfig, compare  # noqa: E402
from rllib_env.registry import describe, real_oracle, replay_oracle  # noqa: E402
from rllib_env.sources import TableRewardSource  # noqa: E402
from rllib_env.split_env import DEFAULT_PROCESS  # noqa: E402
from surrogate.dataset import load_cells, pool_seeds  # noqa: E402


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small budgets and batches (minutes, indicative)")
    parser.add_argument("--real", choices=("llm", "table"), default=None,
                        help="real evaluations from the LLM or a counted replay of --truth (default: llm; table "
                             "with --quick)")
    parser.add_argument("--truth", type=Path, default=Path("runs/surrogate_truth_awgn3"),
                        help="measured grid (cells.parquet or a directory) scoring every policy")
    parser.add_argument("--reward", default="paper", help="reward preset: paper or latency-energy")
    parser.add_argument("--budget", type=int, default=None, help="model-based real-evaluation budget")
    parser.add_argument("--mf-iterations", type=int, default=None, help="model-free PPO iterations")
    parser.add_argument("--out", type=Path, default=Path("runs/mbrl_vs_modelfree"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None, help="multi-seed mode: e.g. 0-9 or 0,3,5 (see the module docstring)")
    parser.add_argument("--model-free", choices=("none", "first", "all"), default="first",
                        help="multi-seed mode: model-free PPO on no seed, the first seed or every seed")
    parser.add_argument("--switching", action="store_true", help="price changing k mid-generation (KV migration)")
    parser.add_argument("--sensitivity", type=Path, default=None,
                        help="a sensitivity profile JSON (edgesplit sensitivity) for the surrogate's KL feature and "
                             "the decisive initial design (default: sensitivity.json beside the truth, if there)")
    parser.add_argument("--design", choices=("auto", "space-filling", "decisive"), default="auto",
                        help="initial design of the model-based loop (auto: decisive with a sensitivity profile)")
    parser.add_argument("--reward-floor", type=float, default=-2.0,
                        help="learners' reward floor (a bounded learning signal; reported rewards are never floored)")
    parser.add_argument("--final-iterations", type=int, default=30,
                        help="PPO iterations on the final surrogate (surrogate queries cost no real evaluation)")
    parser.add_argument("--rollout-policy", choices=("auto", "ppo", "planner"), default="auto",
                        help="whose rollouts spend the loop's evaluations (auto: the planner with --switching, PPO "
                             "otherwise)")
    parser.add_argument("--continuous", type=float, default=None, metavar="STEP_DB",
                        help="continuous-channel mode: every block scored at its own SNR rounded to STEP_DB (e.g. "
                             "0.5), the truth refined to that step by surrogate.fine_grid's stated rule")
    parser.add_argument("--pool-seeds", action=argparse.BooleanOptionalAction, default=True,
                        help="pool the truth's noise seeds per cell (expected quality) or keep seed 0 only")
    return parser.parse_args()


def parse_seeds(text: str) -> list[int]:
    """``0-9`` or ``0,3,5``."""
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-"))
            return list(range(low, high + 1))
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: {text!r} is not a range like 0-9 or a list like 0,3,5") from None


def main() -> None:
    args = parse()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    table = load_cells(args.truth)
    table = pool_seeds(table) if args.pool_seeds else table[table["seed"] == table["seed"].min()]
    if args.continuous is not None:
        if args.real == "llm":
            raise SystemExit("--continuous scores interpolated cells: use --real table (the counted replay)")
        from surrogate.fine_grid import refine_snr

        measured_snrs = sorted(table["snr_db"].unique())
        table = refine_snr(table, args.continuous)
        print(f"continuous channel: the truth measured at {measured_snrs} dB, refined to {args.continuous:g}-dB "
              f"steps ({int(table['interpolated'].sum())} of {len(table)} cells interpolated)", flush=True)
    model = str(table["model"].iloc[0])
    config_file = args.truth / "config.json"
    settings = json.loads(config_file.read_text())["config"] if config_file.is_file() else {}
    truth = TableRewardSource(table, describe(model))
    real = args.real or ("table" if args.quick or args.continuous is not None else "llm")
    spec = {"table": str(args.truth)} if real == "table" else {
        "model": model, "corpus": settings.get("corpus", "wikitext2"), "tokens": settings.get("tokens", 1024),
        "context": settings.get("context", 256)}
    if real == "llm" and "pooled_seeds" in table.columns and (table["pooled_seeds"] > 1).any():
        raise SystemExit("--real llm evaluates one noise draw per cell, the truth pools several: use --real table "
                         "(the counted replay of the same pooled cells) or --no-pool-seeds")
    oracle = replay_oracle(table) if real == "table" else real_oracle(spec, model)
    config = CompareConfig.quick(args.seed) if args.quick else CompareConfig(seed=args.seed)
    if args.budget is not None:
        config = replace(config, mbrl=replace(config.mbrl, budget=args.budget))
    if args.mf_iterations is not None:
        config = replace(config, mf_iterations=args.mf_iterations)
    env_config = {"model": model, "reward": args.reward, "snr_grid_db": list(truth.snr_grid_db),
                  "process": "gauss_markov", "process_params": DEFAULT_PROCESS, "episode_steps": 64,
                  "switching": args.switching, "reward_floor": args.reward_floor}
    rollout = args.rollout_policy if args.rollout_policy != "auto" else ("planner" if args.switching else "ppo")
    config = replace(config, mbrl=replace(config.mbrl, final_iterations=args.final_iterations, rollout_policy=rollout))
    sensitivity = args.sensitivity or (args.truth / "sensitivity.json" if args.truth.is_dir() else None)
    if sensitivity is not None and sensitivity.is_file():
        from surrogate.sensitivity import SensitivityProfile

        profile = {model: SensitivityProfile.load(sensitivity)}
        design = "decisive" if args.design == "auto" else args.design
        config = replace(config, mbrl=replace(config.mbrl, sensitivity=profile, design=design))
    elif args.design == "decisive":
        raise SystemExit("--design decisive needs a sensitivity profile (--sensitivity, or sensitivity.json beside "
                         "the truth; edgesplit sensitivity writes one)")
    if args.seeds is not None:
        run_seeds(oracle, truth, env_config, config, args, real)
        return
    print(f"model {model}, reward {args.reward}, real evaluations from {real}, SNR grid {list(truth.snr_grid_db)} dB",
          flush=True)
    start = time.perf_counter()
    result = compare(oracle, truth, env_config, config, args.out)
    print("\n" + result.table())
    report(result.bars(), result.evaluations, table, real, time.perf_counter() - start,
           bar_pct=2.0 if args.continuous is not None else 10.0)
    print(f"\nsaved {args.out}")


def run_seeds(oracle, truth, env_config: dict, config: CompareConfig, args, real: str) -> None:
    """Multi-seed mode (module docstring): the per-seed lines, then mean and worst seed per policy."""
    from rllib_env.seeds import SeedSweepConfig, seed_table, sweep_seeds

    seeds = parse_seeds(args.seeds)
    sweep = SeedSweepConfig(seeds=seeds, mbrl=config.mbrl, traces=config.traces, model_free=args.model_free,
                            mf_iterations=config.mf_iterations, overrides=config.overrides)
    print(f"{len(seeds)} seeds {seeds}, budget {config.mbrl.budget} real evaluations, {config.traces} held-out traces "
          f"each, switching {'on' if args.switching else 'off'}, sensitivity feature "
          f"{'on' if config.mbrl.sensitivity else 'off'}, real evaluations from {real}", flush=True)
    start = time.perf_counter()
    frame = sweep_seeds(oracle, truth, env_config, sweep, args.out)
    wall = time.perf_counter() - start
    table = seed_table(frame)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "seed_table.csv", index=False)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    rows = table.set_index("policy")
    mb = rows.loc["mbrl"]
    print(f"\n1. model-based: mean {mb['pct_oracle_mean']:.1f}%, worst seed {int(mb['worst_seed'])} "
          f"{mb['pct_oracle_worst']:.1f}% of the greedy oracle, <= {mb['real_evaluations_max']:.0f} real evaluations "
          f"[bar: >= 95% on every seed, <= 25 evaluations]; surrogate-greedy mean "
          f"{rows.loc['surrogate-greedy', 'pct_oracle_mean']:.1f}%, worst "
          f"{rows.loc['surrogate-greedy', 'pct_oracle_worst']:.1f}%")
    if args.switching:
        beats = frame.pivot(index="seed", columns="policy", values="mean_reward")
        for name, label in (("planner", "model-based planner (surrogate + forecaster, DP)"),
                            ("mbrl", "model-based PPO"), ("planner-truth", "planner on the truth (causal bound)")):
            row, wins = rows.loc[name], int((beats[name] > beats["greedy-oracle"]).sum())
            worst = int(frame[frame["policy"] == name].set_index("seed")["pct_hindsight"].idxmin())
            print(f"2. switching, {label}: beats the greedy oracle on {wins} of {len(beats)} seeds; "
                  f"{row['pct_hindsight_mean']:.1f}% of the hindsight optimum on average, worst seed {worst} "
                  f"{row['pct_hindsight_worst']:.1f}% [bar: beats greedy, >= 90% of hindsight on every seed]")
        greedy = rows.loc["greedy-oracle"]
        print(f"   greedy oracle: {greedy['pct_hindsight_mean']:.1f}% of hindsight on average, worst "
              f"{greedy['pct_hindsight_worst']:.1f}%")
    print(f"total wall time {wall:.0f} s for {len(seeds)} seeds; saved {args.out}")


def report(bars: dict, evaluations, table, real: str, wall_s: float, bar_pct: float = 10.0) -> None:
    print(f"\n1. model-based reward {bars['mbrl_reward']:.4f} = {bars['mbrl_pct_oracle']:.1f}% of the greedy oracle's "
          f"{bars['oracle_reward']:.4f} (gap to random closed: {bars['mbrl_gap_closed_pct']:.1f}%)  [bar >= 95%]")
    needed = bars["model_free_needed"]
    if needed == needed:
        print(f"2. real evaluations: model-based {bars['mbrl_evaluations']:.0f}, model-free needed {needed:.0f} to "
              f"reach the model-based held-out reward {bars['target_heldout_reward']:.4f} (oracle on those traces "
              f"{bars['curve_oracle_reward']:.4f}) -> ratio {100 * bars['ratio']:.1f}%  [bar <= {bar_pct:g}%]")
    else:
        print(f"2. real evaluations: model-based {bars['mbrl_evaluations']:.0f}; model-free PPO never reached held-out "
              f"reward {bars['target_heldout_reward']:.4f} within its {bars['model_free_total']:.0f} evaluations "
              f"(ratio <= {100 * bars['ratio_upper_bound']:.1f}%)  [bar <= {bar_pct:g}%]")
    sg_needed = bars["surrogate_greedy_model_free_needed"]
    print(f"   surrogate-greedy (same {bars['mbrl_evaluations']:.0f} evaluations, no RL): "
          f"{bars['surrogate_greedy_reward']:.4f}"
          f" = {bars['surrogate_greedy_pct_oracle']:.1f}% of the oracle; model-free "
          + (f"needed {sg_needed:.0f} evaluations to reach its held-out reward "
             f"{bars['surrogate_greedy_heldout_reward']:.4f} -> ratio {100 * bars['surrogate_greedy_ratio']:.1f}%"
             if sg_needed == sg_needed else
             f"never reached its held-out reward {bars['surrogate_greedy_heldout_reward']:.4f} "
             f"(ratio <= {100 * bars['surrogate_greedy_ratio_upper_bound']:.1f}%)") + f"  [bar <= {bar_pct:g}%]")
    print(f"   reward queries: model-based {bars['mbrl_queries']} (real rollouts), "
          f"model-free {bars['model_free_queries']}; model-free final reward {bars['model_free_reward']:.4f} "
          f"({bars['model_free_pct_oracle']:.1f}% of oracle)")
    print(f"3. model-based {bars['mbrl_reward']:.4f} vs best fixed split {bars['best_fixed']} "
          f"{bars['best_fixed_reward']:.4f} ({'beats' if bars['beats_best_fixed'] else 'does NOT beat'}) and "
          f"Neurosurgeon-style {bars['neurosurgeon_reward']:.4f} "
          f"({'beats' if bars['beats_neurosurgeon'] else 'does NOT beat'}); paper's scheme {bars['paper_reward']:.4f}")
    if real == "llm" and len(evaluations):
        check_against_truth(evaluations, table)
    print(f"total wall time {wall_s:.0f} s")


def check_against_truth(evaluations, table) -> None:
    """The LLM's numbers for the cells it evaluated, against the measured grid's (same corpus and seeds)."""
    merged = evaluations.merge(table[["k", "snr_db", "log_ppl_ratio"]], on=["k", "snr_db"], suffixes=("", "_grid"))
    diff = (merged["log_ppl_ratio"] - merged["log_ppl_ratio_grid"]).abs().max()
    print(f"   real LLM evaluations vs the grid: {len(merged)} cells, max |Δ log PPL ratio| = {diff:.2e}; "
          f"mean LLM wall time per cell {evaluations['wall_s'].mean():.2f} s")


if __name__ == "__main__":
    main()
