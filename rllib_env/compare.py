"""Model-based RL against model-free PPO and the baselines, on the same held-out traces and the same reward.

from rllib_env.compare import CompareConfig, compare
result = compare(real_oracle, truth, env_config, CompareConfig.quick(), out="runs/mbrl_vs_modelfree")
print(result.table())

Both learners pay for quality through their own counted :class:`~rllib_env.sources.RealRewardSource` (they may share
the oracle underneath: counting is per wrapper, so neither sees the other's evaluations as free). The truth table
scores every policy (a measured grid: an exact oracle on the environment's SNR grid). The reference paper's scheme
is fitted on the same real evaluations the model-based loop spent. :meth:`CompareResult.bars` computes the issue's
figures; ``benchmarks/mbrl_vs_modelfree.py`` and :func:`rllib_env.smoke.smoke_demo` print them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_env.baselines import GreedyOracle, best_fixed, rule_policies, train_model_free, train_paper_scheme
from rllib_env.evaluate import evaluate_policies, heldout_reward, heldout_seeds, write_evaluation
from rllib_env.mbrl import MbrlConfig, budget_ratio, run_mbrl
from rllib_env.sources import RealRewardSource, SurrogateRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv


@dataclass(frozen=True)
class CompareConfig:
    """Sizes of one comparison."""

    mbrl: MbrlConfig = field(default_factory=MbrlConfig)
    """The model-based loop (its seed is replaced by :attr:`seed`)."""
    mf_iterations: int = 30
    """Model-free PPO iterations on the real evaluator."""
    paper_iterations: int = 20
    """PPO iterations of the reference paper's scheme (on its own surrogate)."""
    traces: int = 16
    """Held-out traces every policy is scored on."""
    curve_traces: int = 4
    """Held-out traces behind each point of the learning curves."""
    overrides: dict = field(default_factory=dict)
    """AlgorithmConfig sections for every PPO run (e.g. a smaller batch for smoke runs)."""
    seed: int = 0
    """Seed of every learner."""

    def __post_init__(self) -> None:
        if min(self.mf_iterations, self.paper_iterations, self.traces, self.curve_traces) < 1:
            raise ValueError("mf_iterations, paper_iterations, traces and curve_traces must each be >= 1")

    @classmethod
    def quick(cls, seed: int = 0) -> CompareConfig:
        """A few minutes on two cores: small budgets and batches (figures are indicative only)."""
        mbrl = MbrlConfig(budget=20, initial=6, per_round=4, iterations_first=6, iterations_per_round=2,
                          final_iterations=2, rollout_traces=2, seed=seed)
        return cls(mbrl=mbrl, mf_iterations=8, paper_iterations=6, traces=6, curve_traces=3, seed=seed,
                   overrides={"training": {"train_batch_size_per_learner": 1000, "minibatch_size": 200}})


@dataclass
class CompareResult:
    """Everything one comparison measured."""

    summary: pd.DataFrame
    """Per-policy metrics on the held-out traces (:func:`rllib_env.evaluate.summarize`)."""
    steps: pd.DataFrame
    """Per-block rows of every policy."""
    mbrl_rounds: pd.DataFrame
    """Model-based loop: real evaluations, queries and held-out reward per round."""
    mf_curve: pd.DataFrame
    """Model-free PPO: real evaluations, queries and held-out reward per iteration."""
    evaluations: pd.DataFrame
    """The model-based loop's real evaluations, one row each."""
    wall_s: dict[str, float]
    """Wall time of each phase."""
    curve_oracle: float = float("nan")
    """The greedy oracle's mean reward on the learning curves' traces (the curves' reference line)."""
    surrogate_greedy_curve: float = float("nan")
    """The surrogate-greedy policy's mean reward on the learning curves' traces (its point on the budget plot)."""

    def bars(self) -> dict[str, Any]:
        """The issue's figures (see the module docstring of ``benchmarks/mbrl_vs_modelfree.py``)."""
        s = self.summary.set_index("policy")
        mbrl, fixed = s.loc["mbrl"], best_fixed(self.summary)
        target = float(self.mbrl_rounds["heldout_reward"].iloc[-1])
        spent = int(self.mbrl_rounds["real_evaluations"].iloc[-1])
        ratio = budget_ratio(spent, self.mf_curve, target)
        greedy = {f"surrogate_greedy_{k}": v
                  for k, v in budget_ratio(spent, self.mf_curve, self.surrogate_greedy_curve).items()}
        return {"mbrl_pct_oracle": float(mbrl["pct_oracle"]), "mbrl_gap_closed_pct": float(mbrl["gap_closed_pct"]),
                "mbrl_reward": float(mbrl["mean_reward"]), "oracle_reward": float(mbrl["oracle_reward"]),
                "model_free_reward": float(s.loc["model-free", "mean_reward"]),
                "model_free_pct_oracle": float(s.loc["model-free", "pct_oracle"]),
                "best_fixed": str(fixed["policy"]), "best_fixed_reward": float(fixed["mean_reward"]),
                "neurosurgeon_reward": float(s.loc["neurosurgeon", "mean_reward"]),
                "paper_reward": float(s.loc["paper", "mean_reward"]),
                "beats_best_fixed": bool(mbrl["mean_reward"] > fixed["mean_reward"]),
                "beats_neurosurgeon": bool(mbrl["mean_reward"] > s.loc["neurosurgeon", "mean_reward"]),
                "target_heldout_reward": target, "curve_oracle_reward": self.curve_oracle, **ratio,
                "mbrl_queries": int(self.mbrl_rounds["queries"].iloc[-1]),
                "model_free_queries": int(self.mf_curve["source_queries"].iloc[-1]),
                "surrogate_greedy_reward": float(s.loc["surrogate-greedy", "mean_reward"]),
                "surrogate_greedy_pct_oracle": float(s.loc["surrogate-greedy", "pct_oracle"]),
                "surrogate_greedy_heldout_reward": self.surrogate_greedy_curve, **greedy}

    def table(self, rows: int = 10) -> str:
        """The comparison table: learners, rules and the best fixed splits."""
        keep = ["policy", "mean_reward", "pct_oracle", "gap_closed_pct", "log_ppl_ratio", "latency_s", "ue_energy_j",
                "mean_k", "switch_rate"]
        named = self.summary[~self.summary["policy"].str.startswith("fixed-k")]
        fixed = self.summary[self.summary["policy"].str.startswith("fixed-k")].head(3)
        frame = pd.concat([named, fixed]).sort_values("mean_reward", ascending=False).head(rows)
        return frame[[c for c in keep if c in frame.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def compare(real_oracle: Any, truth: TableRewardSource, env_config: dict[str, Any], config: CompareConfig,
            out: str | Path | None = None, progress: bool = True) -> CompareResult:
    """Run the model-based loop, model-free PPO, the paper's scheme and the rules; score all on held-out traces."""
    seeds, curve_seeds = heldout_seeds(config.traces), heldout_seeds(config.curve_traces)
    curve = lambda policy: heldout_reward(policy, env_config, truth, curve_seeds)  # noqa: E731
    out = Path(out) if out is not None else None
    wall: dict[str, float] = {}

    start = time.perf_counter()
    mbrl_real = RealRewardSource(real_oracle, truth.descriptor)
    mbrl = run_mbrl(mbrl_real, env_config, replace(config.mbrl, seed=config.seed), out / "mbrl" if out else None,
                    overrides=config.overrides, evaluate=curve, progress=progress)
    wall["mbrl_s"] = time.perf_counter() - start
    surrogate = SurrogateRewardSource(mbrl.surrogate, truth.descriptor, known=mbrl_real.measured())
    surrogate_greedy = GreedyOracle(surrogate)

    start = time.perf_counter()
    mf_real = RealRewardSource(real_oracle, truth.descriptor)
    model_free, mf_curve = train_model_free(mf_real, env_config, config.mf_iterations, seed=config.seed,
                                            overrides=config.overrides, evaluate=curve, progress=progress,
                                            out=out / "model_free" if out else None)
    wall["model_free_s"] = time.perf_counter() - start

    start = time.perf_counter()
    paper, paper_overrides, _ = train_paper_scheme(mbrl_real.labelled(), env_config, config.paper_iterations,
                                                   seed=config.seed, overrides=config.overrides, progress=progress)
    wall["paper_s"] = time.perf_counter() - start

    start = time.perf_counter()
    policies = {"mbrl": (mbrl.policy, {}), "surrogate-greedy": (surrogate_greedy, {}), "model-free": (model_free, {}),
                "paper": (paper, paper_overrides),
                **rule_policies(SplitEnv(env_config, source=truth), seed=config.seed)}
    steps, summary = evaluate_policies(policies, env_config, truth, seeds)
    wall["evaluate_s"] = time.perf_counter() - start
    result = CompareResult(summary=summary, steps=steps, mbrl_rounds=mbrl.rounds, mf_curve=mf_curve,
                           evaluations=mbrl.evaluations, wall_s=wall,
                           curve_oracle=heldout_reward(GreedyOracle(), env_config, truth, curve_seeds),
                           surrogate_greedy_curve=curve(surrogate_greedy))
    if out is not None:
        save_result(result, out, config)
    return result


def save_result(result: CompareResult, out: Path, config: CompareConfig) -> None:
    """Evaluation files, both learning curves, the bars as JSON and the reward-vs-real-evaluations plot."""
    write_evaluation(result.steps, result.summary, out,
                     show=["mbrl", "surrogate-greedy", "model-free", "paper", "neurosurgeon"])
    result.mbrl_rounds.to_parquet(out / "mbrl_rounds.parquet", index=False)
    result.mf_curve.to_parquet(out / "model_free_curve.parquet", index=False)
    info = {"bars": result.bars(), "wall_s": result.wall_s, "config": asdict(config)}
    (out / "bars.json").write_text(json.dumps(info, indent=2, default=str))
    plot_budget(result, out / "reward_vs_real_evaluations.png")


def plot_budget(result: CompareResult, path: Path) -> None:
    """Held-out reward against real LLM evaluations (and against all queries) for both learners."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oracle = result.curve_oracle
    mf, mb = result.mf_curve, result.mbrl_rounds
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (mb_x, mf_x, label) in zip(axes, [("real_evaluations", "real_evaluations", "real LLM evaluations"),
                                              ("queries", "source_queries", "reward queries (cache hits included)")],
                                       strict=True):
        ax.plot(mb[mb_x], mb["heldout_reward"], "o-", label="model-based (surrogate PPO)")
        ax.plot(mf[mf_x], mf["heldout_reward"], "s-", label="model-free PPO")
        if mb_x == "real_evaluations" and result.surrogate_greedy_curve == result.surrogate_greedy_curve:
            ax.plot([mb[mb_x].iloc[-1]], [result.surrogate_greedy_curve], "D", ms=8,
                    label="surrogate-greedy (same evaluations, no RL)")
        ax.axhline(oracle, color="k", ls=":", label="greedy oracle (same traces)")
        ax.axhline(0.95 * oracle, color="grey", ls="--", lw=0.8, label="95% of oracle")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out mean reward per block")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["CompareConfig", "CompareResult", "compare", "plot_budget", "save_result"]
