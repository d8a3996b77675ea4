"""What limits a causal policy under switching costs: the planner on the *truth* with richer channel forecasters,
against the hindsight optimum, per seed (no learning, no real evaluation).

    .venv/bin/python benchmarks/planner_limit.py [--seeds 0-9] [--truth runs/surrogate_truth_awgn3]

The setting of ``benchmarks/mbrl_vs_modelfree.py --switching`` (SmolLM2-135M, paper reward, the moving UE's SNR
snapped to the measured grid, 64 blocks of 16 tokens after a 256-token prompt, KV migration priced). Per seed, on
that seed's 16 held-out traces: the greedy oracle, the hindsight optimum (knows the trace's future), and the
:class:`~rllib_env.planner.SwitchingPlanner` on the truth table with forecasters of increasing richness — first
order on 0.5-dB bins counted on 512 or 4,096 simulated traces, second order (the previous block's bin too) on 1-dB
bins and 4,096 traces, and a hidden-state one that also knows the block's mean SNR (how much of the SNR is a fade:
more than a UE observes). If the richer forecasters do not move the planner, the gap to hindsight is the future the
hindsight oracle knows, not the forecaster. Prints % of hindsight per seed, mean and worst; writes
``planner_limit.parquet`` and ``config.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rllib_env.baselines import GreedyOracle  # noqa: E402
from rllib_env.evaluate import evaluate_policies  # noqa: E402
from rllib_env.hindsight import HindsightOracle  # noqa: E402
from rllib_env.planner import ChannelForecaster, ForecasterConfig, SwitchingPlanner  # noqa: E402
from rllib_env.registry import describe  # noqa: E402
from rllib_env.seeds import trace_seeds  # noqa: E402
from rllib_env.sources import TableRewardSource  # noqa: E402
from rllib_env.split_env import DEFAULT_PROCESS  # noqa: E402
from surrogate.dataset import load_cells, pool_seeds  # noqa: E402

FORECASTERS = {"order1-0.5dB-512": {"order": 1, "bin_db": 0.5, "traces": 512},
               "order1-0.5dB-4096": {"order": 1, "bin_db": 0.5, "traces": 4096},
               "order2-1dB-4096": {"order": 2, "bin_db": 1.0, "traces": 4096},
               "hidden-state-4096": {"hidden_state": True, "bin_db": 0.5, "mean_bin_db": 1.0, "traces": 4096}}
"""Forecasters compared (ForecasterConfig fields); ``hidden-state`` also knows the block's mean SNR, i.e. how much
of the current SNR is a fade — more than any UE observes."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=Path("runs/surrogate_truth_awgn3"))
    parser.add_argument("--seeds", default="0-9", help="a range like 0-9 or a list like 0,3")
    parser.add_argument("--traces", type=int, default=16)
    parser.add_argument("--forecasters", default=",".join(FORECASTERS),
                        help=f"comma-separated subset of {', '.join(FORECASTERS)}")
    parser.add_argument("--out", type=Path, default=Path("runs/planner_limit"))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.forecasters.split(",")]
    if unknown := sorted(set(chosen) - set(FORECASTERS)):
        raise SystemExit(f"--forecasters: unknown {', '.join(unknown)}; accepted: {', '.join(FORECASTERS)}")
    low, _, high = args.seeds.partition("-")
    seeds = list(range(int(low), int(high) + 1)) if high else [int(s) for s in args.seeds.split(",")]
    table = pool_seeds(load_cells(args.truth))
    model = str(table["model"].iloc[0])
    truth = TableRewardSource(table, describe(model))
    env_config = {"model": model, "reward": "paper", "snr_grid_db": list(truth.snr_grid_db), "process": "gauss_markov",
                  "process_params": DEFAULT_PROCESS, "episode_steps": 64, "switching": True}
    frames, start = [], time.perf_counter()
    for seed in seeds:
        policies = {"greedy-oracle": (GreedyOracle(), {}), "hindsight": (HindsightOracle(), {})}
        for name in chosen:
            forecaster = ChannelForecaster.fit(env_config, ForecasterConfig(**FORECASTERS[name], seed=seed))
            policies[f"planner-truth {name}"] = (SwitchingPlanner(truth, forecaster), {})
        _, summary = evaluate_policies(policies, env_config, truth, trace_seeds(seed, args.traces))
        frames.append(summary.assign(seed=seed))
        row = summary.set_index("policy")["pct_hindsight"]
        print(f"seed {seed}: " + ", ".join(f"{name} {value:.1f}%" for name, value in row.items()), flush=True)
    frame = pd.concat(frames, ignore_index=True)
    table_ = frame.groupby("policy")["pct_hindsight"].agg(["mean", "min"]).sort_values("mean", ascending=False)
    print(f"\n% of the hindsight optimum over {len(seeds)} seeds (mean, worst):")
    print(table_.round(1).to_string())
    print(f"wall time {time.perf_counter() - start:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out / "planner_limit.parquet", index=False)
    (args.out / "config.json").write_text(json.dumps({"truth": str(args.truth), "seeds": seeds, "traces": args.traces,
                                                      "env_config": env_config,
                                                      "forecasters": {n: FORECASTERS[n] for n in chosen}},
                                                     indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
