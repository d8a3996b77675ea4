"""Baselines for the split policy, all run on the same traces with the same reward (:mod:`rllib_env.evaluate`).

- :class:`FixedSplit` — every feasible split ``k``, held whatever the channel does;
- :class:`RandomSplit` — a seeded uniform choice among the feasible splits;
- :class:`GreedyOracle` — per block, the best split under the evaluation source (an upper bound: it needs the
  quality of every split of every block);
- :class:`CostOnlyRule` — Neurosurgeon-style: the split with the best analytic part (latency, UE energy,
  offload share) for the block's channel and device state, quality ignored;
- :func:`train_paper_scheme` — the reference paper's scheme: its surrogate (an MLP on (channel parameter, k),
  :class:`~surrogate.baselines.PaperSurrogate`) fitted on the same real evaluations, PPO with relative moves
  ±1..±max_move observing only (channel parameter, previous split);
- :func:`train_model_free` — PPO trained directly on the counted real evaluator.

:func:`rule_policies` gives the non-learning ones as ``{name: (policy, env overrides)}`` for
:func:`~rllib_env.evaluate.evaluate_policies`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rllib_env.policy import Policy
from rllib_env.registry import describe
from rllib_env.sources import RewardSource, SurrogateRewardSource
from rllib_env.split_env import SplitEnv, best_option
from rllib_env.train import PolicyTrainer, merge

PAPER_OVERRIDES = {"action": "relative", "observation": "paper", "max_move": 4}
"""Environment of the reference paper's agent: relative moves, (channel parameter, previous split) observed."""
PAPER_GAMMA = 0.9
"""Discount of the relative-move agent (Stable-Baselines3's PPO, which the paper used, defaults to 0.99)."""


class FixedSplit:
    """Always split at ``k`` (and the widest bit option, if the agent chooses bits)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, env: SplitEnv, obs: np.ndarray) -> Any:
        return env.action_for(self.k)


class RandomSplit:
    """A seeded uniform choice among the feasible splits of the current block (seeded per trace reset)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, env: SplitEnv, obs: np.ndarray) -> Any:
        options = env.analytic_rewards()
        choices = np.flatnonzero(options["feasible"])
        pick = int(self.rng.choice(choices))
        return env.action_for(int(options["k"][pick]), int(options["bits"][pick]))


class GreedyOracle:
    """The best feasible (k, bits) of every block under the env's source (see the module docstring).

    Given another ``source`` (e.g. a surrogate) it is the greedy policy of that model instead: with a surrogate,
    the best any policy trained on it can do, which separates surrogate error from RL error.
    """

    def __init__(self, source: RewardSource | None = None) -> None:
        self.source = source

    def __call__(self, env: SplitEnv, obs: np.ndarray) -> Any:
        candidates = env.candidate_rewards(self.source)
        best = best_option(candidates)
        return env.action_for(int(candidates["k"][best]), int(candidates["bits"][best]))


class CostOnlyRule:
    """Neurosurgeon-style: maximise the analytic part of the reward, ignoring quality (never queries the source)."""

    def __call__(self, env: SplitEnv, obs: np.ndarray) -> Any:
        options = env.analytic_rewards()
        best = best_option(options, "analytic")
        return env.action_for(int(options["k"][best]), int(options["bits"][best]))


def rule_policies(env: SplitEnv, seed: int = 0) -> dict[str, tuple[Callable, dict]]:
    """Oracle, random, cost-only and every feasible fixed split for ``env``'s model and reward; with switching
    costs also the hindsight optimum (:class:`~rllib_env.hindsight.HindsightOracle`)."""
    policies: dict[str, tuple[Callable, dict]] = {"greedy-oracle": (GreedyOracle(), {}),
                                                   "random": (RandomSplit(seed), {}),
                                                   "neurosurgeon": (CostOnlyRule(), {})}
    if env.config.switching:
        from rllib_env.hindsight import HindsightOracle

        policies["hindsight"] = (HindsightOracle(), {})
    for k in range(env.low_k, env.high_k + 1):
        policies[f"fixed-k{k}"] = (FixedSplit(k), {})
    return policies


def best_fixed(summary: pd.DataFrame) -> pd.Series:
    """The row of the best fixed split in an evaluation summary."""
    fixed = summary[summary["policy"].str.startswith("fixed-k")]
    return fixed.sort_values("mean_reward", ascending=False).iloc[0]


def train_paper_scheme(labelled: pd.DataFrame, env_config: dict[str, Any], iterations: int, *, seed: int = 0,
                       overrides: dict[str, Any] | None = None, out: str | Path | None = None,
                       progress: bool = False) -> tuple[Policy, dict[str, Any], pd.DataFrame]:
    """The reference paper's scheme trained on ``labelled`` real cells; returns (policy, env overrides, curve)."""
    from rllib_env.registry import register_source, unregister_source
    from surrogate.baselines import PaperSurrogate

    surrogate = PaperSurrogate(seed=seed).fit(labelled)
    spec = register_source(SurrogateRewardSource(surrogate, describe(env_config["model"])))
    # a relative move persists into later blocks, so this agent (unlike the absolute one) must discount
    sections = merge({"training": {"gamma": PAPER_GAMMA}}, overrides)
    trainer = PolicyTrainer({**env_config, **PAPER_OVERRIDES, "source": spec}, overrides=sections, seed=seed)
    try:
        curve = trainer.train(iterations, progress=progress, tag="paper")
        if out is not None:
            trainer.save(out)
        return trainer.policy(), dict(PAPER_OVERRIDES), curve
    finally:
        trainer.stop()
        unregister_source(spec)


def train_model_free(real: RewardSource, env_config: dict[str, Any], iterations: int, *, seed: int = 0,
                     overrides: dict[str, Any] | None = None, evaluate: Callable[[Policy], float] | None = None,
                     out: str | Path | None = None, progress: bool = False) -> tuple[Policy, pd.DataFrame]:
    """PPO trained directly on the counted real source; the curve records real evaluations per iteration."""
    from rllib_env.registry import register_source, unregister_source

    spec = register_source(real)
    trainer = PolicyTrainer({**env_config, "source": spec}, overrides=overrides, seed=seed)
    try:
        curve = trainer.train(iterations, evaluate, progress=progress, tag="model-free")
        if out is not None:
            trainer.save(out)
        return trainer.policy(), curve
    finally:
        trainer.stop()
        unregister_source(spec)


__all__ = ["PAPER_OVERRIDES", "CostOnlyRule", "FixedSplit", "GreedyOracle", "RandomSplit", "best_fixed",
           "rule_policies", "train_model_free", "train_paper_scheme"]
