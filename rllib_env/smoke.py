"""A smoke-budget model-based training + evaluation, printing the comparison table (``make demo`` calls this).

from rllib_env.smoke import smoke_demo
smoke_demo("runs/demo_mbrl")

Real evaluations are a counted replay of a measured grid: the built-in model's (``runs/surrogate_truth_awgn``, when
the profiler/surrogate runs left it there) or else the synthetic 8-layer grid of :mod:`surrogate.synthetic`, so the
demo never waits on the LLM. The loop spends at most 16 real evaluations (fewer when a round finds nothing worth
evaluating), trains PPO for a handful of small iterations, and
scores the policy against the greedy oracle, the best fixed split, the cost-only rule and random on 4 held-out
traces. Figures at this budget are a smoke test, not the benchmark (``benchmarks/mbrl_vs_modelfree.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from rllib_env.baselines import best_fixed, rule_policies
from rllib_env.evaluate import evaluate_policies, heldout_seeds, write_evaluation
from rllib_env.mbrl import MbrlConfig, run_mbrl
from rllib_env.registry import describe, replay_oracle
from rllib_env.sources import RealRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv

DEFAULT_TRUTH = Path("runs/surrogate_truth_awgn")
SMOKE_OVERRIDES = {"training": {"train_batch_size_per_learner": 512, "minibatch_size": 128, "num_epochs": 6,
                                "lr": 0.002}, "env_runners": {"num_envs_per_env_runner": 4}}


def _grid(truth: Path | None) -> pd.DataFrame:
    from surrogate.dataset import load_cells
    from surrogate.synthetic import synthetic_cells

    if truth is not None and Path(truth).exists():
        return load_cells(Path(truth))
    cells = synthetic_cells(seed=0)
    return cells[cells["channel"] == "awgn"].reset_index(drop=True)


def smoke_demo(out: str | Path = "runs/demo_mbrl", truth: str | Path | None = DEFAULT_TRUTH, budget: int = 16,
               seed: int = 0) -> pd.DataFrame:
    """Run the smoke comparison (see the module docstring); returns and prints its summary table."""
    start = time.perf_counter()
    table = _grid(truth)
    model = str(table["model"].iloc[0])
    truth_source = TableRewardSource(table, describe(model))
    env_config = {"model": model, "reward": "paper", "snr_grid_db": list(truth_source.snr_grid_db),
                  "episode_steps": 32}
    real = RealRewardSource(replay_oracle(table), truth_source.descriptor)
    config = MbrlConfig(budget=budget, initial=8, per_round=4, iterations_first=8, iterations_per_round=1,
                        final_iterations=2, rollout_traces=2, seed=seed,
                        surrogate_config={"ensemble_size": 4, "epochs": 600})
    print(f"model-based RL smoke run on {model} (L={truth_source.descriptor.num_layers}), "
          f"budget {budget} real evaluations (replayed from a measured grid)", flush=True)
    outcome = run_mbrl(real, env_config, config, Path(out) / "mbrl", overrides=SMOKE_OVERRIDES, progress=False)
    policies = {"mbrl": (outcome.policy, {}), **rule_policies(SplitEnv(env_config, source=truth_source), seed)}
    steps, summary = evaluate_policies(policies, env_config, truth_source, heldout_seeds(4))
    write_evaluation(steps, summary, out, show=["mbrl", "neurosurgeon"])
    fixed = best_fixed(summary)["policy"]
    shown = summary[summary["policy"].isin(["mbrl", "greedy-oracle", "neurosurgeon", "random", fixed])]
    print(shown[["policy", "mean_reward", "pct_oracle", "log_ppl_ratio", "latency_s", "ue_energy_j", "mean_k"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"{real.stats.llm_evaluations} real evaluations, {real.stats.queries} reward queries, "
          f"{len(outcome.curve)} PPO iterations, {time.perf_counter() - start:.0f} s; saved {out}")
    return summary


__all__ = ["DEFAULT_TRUTH", "SMOKE_OVERRIDES", "smoke_demo"]
