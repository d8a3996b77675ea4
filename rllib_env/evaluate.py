"""Evaluate split policies on held-out channel traces with real evaluations (or a measured table).

from rllib_env.evaluate import evaluate_policies, heldout_seeds
steps, summary = evaluate_policies({"ppo": (policy, {})}, env_config, source, heldout_seeds(8))

Every policy runs on the same traces: a trace is a reset seed of :class:`~rllib_env.split_env.SplitEnv`, whose
channel and device states never depend on the actions, so policies with different action spaces (the reference
paper's relative moves) still see identical blocks. Held-out seeds start at :data:`HELDOUT_SEED` (RLlib's training
resets use small seeds). The greedy oracle reward of each block is computed alongside (every split of the block's
setting, from the same source), so each policy's reward is reported as a share of the oracle's.

Per policy (:func:`summarize`): mean reward per block, ``pct_oracle`` = 100 · mean / oracle mean (when the
oracle's mean is positive), ``gap_closed_pct`` = 100 · (mean − random) / (oracle − random) when a ``random``
policy is evaluated, regret, mean log-perplexity ratio, latency, UE energy, share of feasible choices, mean split,
split switches per block. :func:`write_evaluation` saves ``steps.parquet``, ``summary.parquet`` / ``.csv`` and
``splits.png`` (SNR and each policy's split over the first trace) + ``rewards.png`` (:mod:`rllib_env.reward_plot`:
the axis is zoomed on the oracle, the learned policies and the best fixed split; off-scale bars carry their value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rllib_env.reward_plot import reward_figure
from rllib_env.sources import RewardSource
from rllib_env.split_env import SplitEnv, SplitEnvConfig, best_option

HELDOUT_SEED = 1_000_000
"""First seed of the held-out traces."""
PolicyFn = Callable[[SplitEnv, np.ndarray], Any]


def heldout_seeds(count: int, start: int = HELDOUT_SEED) -> list[int]:
    """``count`` held-out trace seeds."""
    if count < 1:
        raise ValueError(f"need at least one held-out trace, got {count}")
    return list(range(start, start + count))


def oracle_choice(env: SplitEnv) -> tuple[float, int]:
    """The greedy oracle's (reward, k) for the current block: the best feasible split under the env's source."""
    candidates = env.candidate_rewards()
    best = best_option(candidates)
    return float(candidates["reward"][best]), int(candidates["k"][best])


def rollout(policy: PolicyFn, env: SplitEnv, seeds: Sequence[int], with_oracle: bool = True) -> pd.DataFrame:
    """One row per block of every trace: the state, the choice, its reward and costs (and the oracle's reward).

    With switching costs the per-block oracle depends on the previous split, so a per-block figure beside another
    policy's choices means nothing: ``oracle_reward`` is left NaN and :func:`summarize` takes the references from
    the ``greedy-oracle`` and ``hindsight`` policies' own rollouts on the same traces.
    """
    with_oracle = with_oracle and not env.config.switching
    rows = []
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed))
        for _ in range(env.config.episode_steps):
            oracle = oracle_choice(env) if with_oracle else (np.nan, -1)
            obs, _, terminated, truncated, info = env.step(policy(env, obs))
            rows.append({"trace": int(seed), **{k: info[k] for k in (
                "t", "snr_db", "reward_snr_db", "loss_rate", "p", "f_hz", "load", "k", "bits", "reward", "feasible",
                "latency_s", "ue_energy_j", "log_ppl_ratio", "base_reward", "switch_penalty")},
                         "oracle_reward": oracle[0], "oracle_k": oracle[1]})
            if terminated or truncated:
                break
    return pd.DataFrame(rows)


def evaluate_policies(policies: dict[str, tuple[PolicyFn, dict[str, Any]]], env_config: dict[str, Any],
                      source: RewardSource, seeds: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Roll every policy out on the same traces with ``source``; returns (steps, summary).

    ``policies`` maps a name to (policy function, env-config overrides for that policy — e.g. relative actions).
    """
    frames, oracle = [], None
    for name, (policy, overrides) in policies.items():
        config = SplitEnvConfig.from_dict({**env_config, **overrides})
        # the per-block oracle does not depend on the policy (the blocks are exogenous): computed once, then joined
        steps = rollout(policy, SplitEnv(config, source=source), seeds, with_oracle=oracle is None)
        if oracle is None:
            oracle = steps[["trace", "t", "oracle_reward", "oracle_k"]]
        else:
            steps = steps.drop(columns=["oracle_reward", "oracle_k"]).merge(oracle, on=["trace", "t"], how="left")
        frames.append(steps.assign(policy=name))
    steps = pd.concat(frames, ignore_index=True)
    return steps, summarize(steps)


def summarize(steps: pd.DataFrame) -> pd.DataFrame:
    """Per-policy metrics (see the module docstring), best mean reward first.

    Without per-block oracle rewards (switching costs) ``oracle_reward`` is the ``greedy-oracle`` policy's mean
    reward on the same traces; with a ``hindsight`` policy evaluated too, ``pct_hindsight`` = 100 · mean / its mean.
    """
    means = steps.groupby("policy")["reward"].mean()
    per_block = steps["oracle_reward"].notna().all()
    rows = []
    for name, group in steps.groupby("policy", sort=False):
        switches = group.groupby("trace")["k"].apply(lambda k: float((k.diff().fillna(0) != 0).mean())).mean()
        oracle = float(group["oracle_reward"].mean()) if per_block else float(means.get("greedy-oracle", np.nan))
        mean = float(group["reward"].mean())
        rows.append({"policy": name, "mean_reward": mean, "oracle_reward": oracle, "regret": oracle - mean,
                     "pct_oracle": 100.0 * mean / oracle if oracle > 0 else np.nan,
                     "log_ppl_ratio": float(group["log_ppl_ratio"].mean()),
                     "latency_s": float(group["latency_s"].mean()), "ue_energy_j": float(group["ue_energy_j"].mean()),
                     "feasible_pct": 100.0 * float(group["feasible"].mean()), "mean_k": float(group["k"].mean()),
                     "switch_rate": switches, "blocks": len(group),
                     "switch_penalty": float(group["switch_penalty"].mean())})
        if "hindsight" in means:
            rows[-1]["hindsight_reward"] = float(means["hindsight"])
            rows[-1]["pct_hindsight"] = 100.0 * mean / means["hindsight"] if means["hindsight"] > 0 else np.nan
    summary = pd.DataFrame(rows)
    if "random" in set(summary["policy"]):
        random = float(summary.loc[summary["policy"] == "random", "mean_reward"].iloc[0])
        gap = summary["oracle_reward"] - random
        summary["gap_closed_pct"] = np.where(gap > 0, 100.0 * (summary["mean_reward"] - random) / gap, np.nan)
    return summary.sort_values("mean_reward", ascending=False).reset_index(drop=True)


def write_evaluation(steps: pd.DataFrame, summary: pd.DataFrame, out: str | Path,
                     show: Sequence[str] | None = None) -> Path:
    """Save the evaluation under ``out`` (see the module docstring); ``show`` picks the policies plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps.to_parquet(out / "steps.parquet", index=False)
    summary.to_parquet(out / "summary.parquet", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    first = steps[steps["trace"] == steps["trace"].min()]
    names = list(show) if show else list(summary["policy"])[:5]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    one = first[first["policy"] == names[0]]
    top.plot(one["t"], one["snr_db"], label="SNR (dB)")
    top.step(one["t"], one["reward_snr_db"], where="mid", label="reward SNR (grid)", alpha=0.7)
    top.set_ylabel("SNR dB")
    top.legend(fontsize=8)
    for name in names:
        part = first[first["policy"] == name]
        bottom.step(part["t"], part["k"], where="mid", label=name, alpha=0.8)
    bottom.step(one["t"], one["oracle_k"], where="mid", label="oracle", color="k", ls=":")
    bottom.set_xlabel("block")
    bottom.set_ylabel("split k")
    bottom.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "splits.png", dpi=120)
    plt.close(fig)
    fig = reward_figure(summary)
    fig.savefig(out / "rewards.png", dpi=120)
    plt.close(fig)
    return out


def heldout_reward(policy: PolicyFn, env_config: dict[str, Any], source: RewardSource, seeds: Sequence[int]) -> float:
    """Mean reward per block of one policy on held-out traces (no oracle computed; for learning curves)."""
    env = SplitEnv(SplitEnvConfig.from_dict(env_config), source=source)
    return float(rollout(policy, env, seeds, with_oracle=False)["reward"].mean())


__all__ = ["HELDOUT_SEED", "PolicyFn", "evaluate_policies", "heldout_reward", "heldout_seeds",
           "oracle_choice", "rollout", "summarize", "write_evaluation"]
