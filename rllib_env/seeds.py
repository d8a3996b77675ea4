"""The model-based policy across seeds: every seed a different initial design, training and held-out trace set.

from rllib_env.seeds import SeedSweepConfig, sweep_seeds
frame = sweep_seeds(real_oracle, truth, env_config, SeedSweepConfig(seeds=range(10)), out="runs/mbrl_seeds")

Per seed ``s``: the model-based loop (:func:`rllib_env.mbrl.run_mbrl`, seed ``s``) spends its real evaluations
through its own counted :class:`~rllib_env.sources.RealRewardSource`; then, on ``traces`` held-out traces that start
at ``HELDOUT_SEED + 1000·s`` (a different trace set per seed), the truth table scores

- ``mbrl`` — the PPO policy trained on the surrogate;
- ``surrogate-greedy`` — per block the argmax of the final surrogate's predicted reward, measured cells at their
  measured values (:class:`~rllib_env.baselines.GreedyOracle` on the loop's surrogate source): the same real
  evaluations and no RL, so ``oracle − surrogate-greedy`` is the surrogate's share of the gap and
  ``surrogate-greedy − mbrl`` PPO's;
- the rules (:func:`~rllib_env.baselines.rule_policies`: greedy oracle, random, cost-only, fixed splits; with
  switching costs also the hindsight optimum);
- with switching costs, ``planner`` — the model-based planner (:class:`~rllib_env.planner.SwitchingPlanner`: the
  same surrogate, a channel forecaster counted on simulated traces, expected-value DP over the rest of the
  generation; the same real evaluations) and ``planner-truth`` — the same planner on the truth table, the bound of
  a causal planner with this forecaster (the hindsight optimum also knows the future channel);
- optionally ``model-free`` PPO on its own counted real evaluator (``model_free="all"`` or ``"first"`` seed only:
  it is the expensive part).

One row per (seed, policy) goes to ``seeds.parquet`` with the real evaluations each learner spent; ``config.json``
records the configuration; :func:`seed_table` gives mean and worst seed per policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_env.baselines import GreedyOracle, rule_policies, train_model_free
from rllib_env.evaluate import HELDOUT_SEED, evaluate_policies, heldout_seeds
from rllib_env.mbrl import MbrlConfig, run_mbrl
from rllib_env.planner import ChannelForecaster, ForecasterConfig, SwitchingPlanner
from rllib_env.sources import RealRewardSource, SurrogateRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv

MODEL_FREE = ("none", "first", "all")
TRACE_SEED_STRIDE = 1000
"""Held-out traces of seed ``s`` start at ``HELDOUT_SEED + TRACE_SEED_STRIDE · s``."""


@dataclass(frozen=True)
class SeedSweepConfig:
    """What one multi-seed run does."""

    seeds: Sequence[int] = tuple(range(10))
    """Seeds of the loop (design, surrogate, PPO) and of the held-out trace sets."""
    mbrl: MbrlConfig = field(default_factory=MbrlConfig)
    """The model-based loop (its seed is replaced per run)."""
    traces: int = 16
    """Held-out traces per seed."""
    model_free: str = "none"
    """none, first (the first seed only) or all."""
    mf_iterations: int = 30
    """Model-free PPO iterations."""
    overrides: dict = field(default_factory=dict)
    """AlgorithmConfig sections for every PPO run."""

    def __post_init__(self) -> None:
        if not list(self.seeds) or self.traces < 1 or self.mf_iterations < 1:
            raise ValueError("need at least one seed, traces >= 1 and mf_iterations >= 1")
        if self.model_free not in MODEL_FREE:
            raise ValueError(f"model_free must be one of {', '.join(MODEL_FREE)}, got {self.model_free!r}")


def trace_seeds(seed: int, count: int) -> list[int]:
    """The held-out trace seeds of run ``seed``."""
    return heldout_seeds(count, start=HELDOUT_SEED + TRACE_SEED_STRIDE * int(seed))


def run_seed(real_oracle: Any, truth: TableRewardSource, env_config: dict[str, Any], config: SeedSweepConfig,
             seed: int, with_model_free: bool, progress: bool = False) -> pd.DataFrame:
    """One seed: the loop, then every policy on that seed's held-out traces; one row per policy."""
    start = time.perf_counter()
    real = RealRewardSource(real_oracle, truth.descriptor)
    outcome = run_mbrl(real, env_config, replace(config.mbrl, seed=seed), None, overrides=config.overrides,
                       progress=progress)
    mbrl_s = time.perf_counter() - start
    surrogate = SurrogateRewardSource(outcome.surrogate, truth.descriptor, known=real.measured())
    policies = {"mbrl": (outcome.policy, {}), "surrogate-greedy": (GreedyOracle(surrogate), {}),
                **rule_policies(SplitEnv(env_config, source=truth), seed=seed)}
    spent = {"mbrl": real.stats.llm_evaluations, "surrogate-greedy": real.stats.llm_evaluations}
    if env_config.get("switching"):
        forecaster = ChannelForecaster.fit(env_config, ForecasterConfig(seed=seed))
        policies["planner"] = (SwitchingPlanner(surrogate, forecaster), {})
        policies["planner-truth"] = (SwitchingPlanner(truth, forecaster), {})
        spent["planner"] = real.stats.llm_evaluations
    if with_model_free:
        mf_real = RealRewardSource(real_oracle, truth.descriptor)
        policy, _ = train_model_free(mf_real, env_config, config.mf_iterations, seed=seed, overrides=config.overrides,
                                     progress=progress)
        policies["model-free"] = (policy, {})
        spent["model-free"] = mf_real.stats.llm_evaluations
    _, summary = evaluate_policies(policies, env_config, truth, trace_seeds(seed, config.traces))
    summary.insert(0, "seed", int(seed))
    summary["real_evaluations"] = summary["policy"].map(spent)
    summary["mbrl_s"] = mbrl_s
    summary["seed_wall_s"] = time.perf_counter() - start
    return summary


def sweep_seeds(real_oracle: Any, truth: TableRewardSource, env_config: dict[str, Any], config: SeedSweepConfig,
                out: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Every seed of ``config`` (see the module docstring); writes ``seeds.parquet`` + ``config.json`` under
    ``out`` after each seed, so an interrupted run keeps what it finished."""
    out = Path(out) if out is not None else None
    frames = []
    for i, seed in enumerate(config.seeds):
        with_mf = config.model_free == "all" or (config.model_free == "first" and i == 0)
        frames.append(run_seed(real_oracle, truth, env_config, config, int(seed), with_mf))
        frame = pd.concat(frames, ignore_index=True)
        if progress:
            row = frames[-1].set_index("policy")
            ref = "pct_hindsight" if "pct_hindsight" in row.columns else "pct_oracle"
            planner = f"planner {row.loc['planner', ref]:.1f}%, " if "planner" in row.index else ""
            print(f"seed {seed}: {planner}mbrl {row.loc['mbrl', ref]:.1f}%, surrogate-greedy "
                  f"{row.loc['surrogate-greedy', ref]:.1f}% of the {ref.removeprefix('pct_')} "
                  f"({int(row.loc['mbrl', 'real_evaluations'])} real evaluations, "
                  f"{row['seed_wall_s'].iloc[0]:.0f} s)", flush=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(out / "seeds.parquet", index=False)
            info = {**asdict(config), "env_config": env_config}
            info["mbrl"]["sensitivity"] = sorted(config.mbrl.sensitivity) if config.mbrl.sensitivity else None
            (out / "config.json").write_text(json.dumps(info, indent=2, default=str))
    return pd.concat(frames, ignore_index=True)


def seed_table(frame: pd.DataFrame, policies: Sequence[str] = ("mbrl", "planner", "surrogate-greedy", "model-free",
                                                              "planner-truth", "greedy-oracle", "hindsight",
                                                              "neurosurgeon", "random")) -> pd.DataFrame:
    """Mean and worst seed per policy: reward, % of the greedy oracle (and of the hindsight optimum), evaluations."""
    rows = []
    for name in policies:
        part = frame[frame["policy"] == name]
        if part.empty:
            continue
        row = {"policy": name, "seeds": len(part), "mean_reward": part["mean_reward"].mean(),
               "pct_oracle_mean": part["pct_oracle"].mean(), "pct_oracle_worst": part["pct_oracle"].min(),
               "worst_seed": int(part.loc[part["pct_oracle"].idxmin(), "seed"]) if part["pct_oracle"].notna().any()
               else -1, "real_evaluations_max": part["real_evaluations"].max()}
        if "pct_hindsight" in part.columns:
            row |= {"pct_hindsight_mean": part["pct_hindsight"].mean(),
                    "pct_hindsight_worst": part["pct_hindsight"].min()}
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["MODEL_FREE", "TRACE_SEED_STRIDE", "SeedSweepConfig", "run_seed", "seed_table", "sweep_seeds",
           "trace_seeds"]
