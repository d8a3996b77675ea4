"""Train a split policy with RLlib (new API stack): PPO or DQN on :class:`~rllib_env.split_env.SplitEnv`.

from rllib_env.train import train_policy
outcome = train_policy(reward="surrogate", iterations=20, out="runs/policy", surrogate="runs/surrogate_ckpt")
outcome.checkpoint, outcome.curve       # algorithm checkpoint (RLModule inside), learning curve frame

``reward`` picks the source: ``surrogate`` (a checkpoint; model-based), ``real`` (the counted real evaluator;
model-free) or ``table`` (a measured grid). The algorithm config is built in code, then ``rllib_env/configs/
<algo>.yaml`` (or ``config_file``) and ``overrides`` are applied: each top-level key is an ``AlgorithmConfig``
method and its mapping the keyword arguments; the ``env_config`` key overrides the environment's config.
The run's size (:class:`~rllib_env.scale.TrainScale`: env runners, sub-environments per runner, learners, GPUs per
learner, ``auto`` resolved against ``ray.cluster_resources()``) is applied after the YAML, and what the cluster
cannot place is refused before the algorithm is built (:func:`~rllib_env.scale.check_placement`). Ray is started
locally, or joined with ``ray.init(address="auto")`` when ``RAY_ADDRESS`` is set. Sources registered in this
process (counted real evaluators) reach only in-process env runners: keep ``num_env_runners=0`` for them, or name
a source every runner can build (a surrogate checkpoint, a table, a ``real`` spec: each runner then counts its own
evaluations, with its own cache, and the curve sums the runners' counts — the LLM work actually done; the
model-based loop's surrogate is pushed to the runners, see :mod:`rllib_env.mbrl`).

Outputs under ``out``: ``checkpoint/`` (the algorithm; the RLModule in ``checkpoint/learner_group/learner/
rl_module/default_policy``), ``curve.parquet`` + ``curve.png`` (per iteration: steps, mean episode return, real
evaluations spent, optional held-out reward) and ``env_config.json``.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rllib_env.policy import Policy
from rllib_env.registry import register_source, source_from_spec
from rllib_env.scale import TrainScale, check_placement
from rllib_env.sources import RewardSource
from rllib_env.split_env import SplitEnv, SplitEnvConfig

CONFIG_DIR = Path(__file__).parent / "configs"
ALGORITHMS = ("ppo", "dqn")
REWARDS = ("surrogate", "real", "table")


def ensure_ray(num_cpus: int | None = None) -> None:
    """Join the cluster named by ``RAY_ADDRESS``, or start a small local Ray (no dashboard) if none runs."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto")
    else:
        ray.init(num_cpus=num_cpus or min(os.cpu_count() or 2, 4), include_dashboard=False,
                 object_store_memory=256 * 1024**2, log_to_driver=False)


def read_overrides(algo: str, config_file: str | Path | None = None) -> dict[str, Any]:
    """The YAML override of ``algo`` (``config_file`` or ``rllib_env/configs/<algo>.yaml``)."""
    path = Path(config_file) if config_file else CONFIG_DIR / f"{algo}.yaml"
    if not path.is_file():
        raise ValueError(f"algorithm config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of AlgorithmConfig methods to keyword arguments")
    return data


def merge(base: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` updated section by section with ``extra`` (a copy)."""
    out = copy.deepcopy(base)
    for section, values in (extra or {}).items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


def build_config(env_config: dict[str, Any], algo: str = "ppo", sections: dict[str, Any] | None = None, *,
                 scale: TrainScale | None = None, seed: int = 0) -> Any:
    """The RLlib ``AlgorithmConfig`` (see the module docstring); ``sections`` as read by :func:`read_overrides`.

    Builds the config object only (nothing starts). ``scale`` (default: everything in this process, on CPU) is
    applied after the sections; its ``num_gpus_per_learner`` must be a number here (:class:`PolicyTrainer`
    resolves ``auto`` against the cluster).
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; accepted: {', '.join(ALGORITHMS)}")
    scale = scale or TrainScale(num_gpus_per_learner=0)
    if scale.num_gpus_per_learner == "auto":
        raise ValueError("build_config needs a number of GPUs per learner; resolve 'auto' with "
                         "TrainScale.gpus_per_learner (PolicyTrainer does)")
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig as Config
    else:
        from ray.rllib.algorithms.dqn import DQNConfig as Config
    config = Config().environment(SplitEnv, env_config=env_config).debugging(seed=seed, log_level="ERROR")
    for section, kwargs in (sections or {}).items():
        if section == "env_config":
            continue
        method = getattr(config, section, None)
        if not callable(method) or not isinstance(kwargs, dict):
            raise ValueError(f"config section {section!r} is not an AlgorithmConfig method taking keyword arguments")
        try:
            method(**kwargs)
        except TypeError as err:
            raise ValueError(f"config section {section!r}: {err}") from None
    return scale.apply(config, float(scale.num_gpus_per_learner))


def placed_config(env_config: dict[str, Any], algo: str = "ppo", sections: dict[str, Any] | None = None,
                  scale: TrainScale | None = None, seed: int = 0) -> Any:
    """:func:`build_config` at ``scale`` with ``auto`` GPUs resolved against the connected Ray cluster, and its
    placement checked (:func:`~rllib_env.scale.check_placement`); Ray must be up (:func:`ensure_ray`)."""
    import ray
    import torch

    scale = scale or TrainScale()
    cluster, local_cuda = ray.cluster_resources(), torch.cuda.is_available()
    gpus = scale.gpus_per_learner(cluster.get("GPU", 0.0), local_cuda)
    config = build_config(env_config, algo, sections, seed=seed, scale=replace(scale, num_gpus_per_learner=gpus))
    check_placement(config, cluster, local_cuda, joined=bool(os.environ.get("RAY_ADDRESS")))
    return config


@dataclass
class TrainOutcome:
    """What a training run produced."""

    checkpoint: Path | None
    """Algorithm checkpoint directory (None if nothing was saved)."""
    curve: pd.DataFrame
    """One row per iteration."""
    policy: Policy
    """The trained policy, in memory."""
    env_config: dict[str, Any]
    """The environment config trained on (JSON-able)."""


def _runner_counts(runner: Any) -> tuple[float, float]:
    """(queries, real evaluations) of the distinct reward sources behind one env runner's SplitEnvs (runs inside the
    runner; the sub-environments of a runner share one source per spec)."""
    envs = getattr(runner.env.unwrapped, "envs", None) or [runner.env]
    sources = {id(source): source for source in (getattr(env.unwrapped, "source", None) for env in envs)}
    if not sources or any(getattr(s, "stats", None) is None for s in sources.values()):
        return float("nan"), float("nan")
    return (float(sum(s.stats.queries for s in sources.values())),
            float(sum(s.stats.llm_evaluations for s in sources.values())))


def _find(result: dict, key: str) -> float:
    """A metric from RLlib's nested result dict (NaN when absent)."""
    if key in result and not isinstance(result[key], dict):
        return float(result[key])
    for value in result.values():
        if isinstance(value, dict):
            found = _find(value, key)
            if found == found:
                return found
    return float("nan")


class PolicyTrainer:
    """An RLlib algorithm on :class:`SplitEnv` that can be trained in several stretches (the model-based loop)."""

    def __init__(self, env_config: dict[str, Any], algo: str = "ppo", config_file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, *, scale: TrainScale | None = None, seed: int = 0) -> None:
        sections = merge(read_overrides(algo, config_file), overrides)
        merged = {**sections.get("env_config", {}), **env_config}
        self.env_config = SplitEnvConfig.from_dict(merged).to_dict()
        self.scale = scale or TrainScale()
        self.source = source_from_spec(self.env_config["source"], self.env_config["model"]) \
            if self.scale.num_env_runners == 0 else None
        ensure_ray()
        self.algo = placed_config(self.env_config, algo, sections, self.scale, seed).build_algo()
        self.curve: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def train(self, iterations: int, evaluate: Callable[[Policy], float] | None = None, progress: bool = False,
              tag: str = "") -> pd.DataFrame:
        """Run ``iterations`` more iterations; ``evaluate(policy)`` (optional) adds a held-out reward per row."""
        for _ in range(iterations):
            result = self.algo.train()
            queries, evaluations = self.source_counts()
            row = {"iteration": len(self.curve) + 1, "tag": tag,
                   "env_steps": _find(result, "num_env_steps_sampled_lifetime"),
                   "episode_return_mean": _find(result, "episode_return_mean"),
                   "time_s": time.perf_counter() - self.started,
                   "source_queries": queries, "real_evaluations": evaluations}
            if evaluate is not None:
                row["heldout_reward"] = evaluate(self.policy())
            self.curve.append(row)
            if progress:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
        return pd.DataFrame(self.curve)

    def source_counts(self) -> tuple[float, float]:
        """(reward queries, real LLM evaluations) of the reward sources so far: this process's source, or the sum
        over the remote env runners' own sources (NaN where a source does not count)."""
        if self.source is not None:
            return float(self.source.stats.queries), float(self.source.stats.llm_evaluations)
        counts = self.algo.env_runner_group.foreach_env_runner(_runner_counts, local_env_runner=False)
        if not counts:
            return float("nan"), float("nan")
        return tuple(float(sum(c[i] for c in counts)) for i in range(2))

    def policy(self) -> Policy:
        """The current policy (the local env runner's module, greedy)."""
        return Policy(self.algo.get_module())

    def save(self, out: str | Path) -> Path:
        """Checkpoint, learning curve (parquet + PNG) and env config under ``out``; returns the checkpoint."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = Path(self.algo.save_to_path(str((out / "checkpoint").resolve())))
        write_curve(pd.DataFrame(self.curve), out)
        (out / "env_config.json").write_text(json.dumps(self.env_config, indent=2, default=str))
        return checkpoint

    def stop(self) -> None:
        """Release the algorithm's resources."""
        self.algo.stop()


def write_curve(curve: pd.DataFrame, out: Path, x: str = "env_steps") -> None:
    """``curve.parquet`` and ``curve.png`` (episode return, and held-out reward when present, against ``x``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve.to_parquet(out / "curve.parquet", index=False)
    columns = [c for c in ("episode_return_mean", "heldout_reward") if c in curve.columns]
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.5), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        ax.plot(curve[x], curve[column], marker="o", ms=3)
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(column.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)


def reward_spec(reward: str, surrogate: str | Path | None = None, table: str | Path | None = None,
                real: dict[str, Any] | None = None) -> dict[str, Any]:
    """The source spec of ``--reward`` (ValueError naming what is missing)."""
    if reward not in REWARDS:
        raise ValueError(f"unknown reward source {reward!r}; accepted: {', '.join(REWARDS)}")
    if reward == "surrogate":
        if surrogate is None:
            raise ValueError("reward='surrogate' needs a surrogate checkpoint directory")
        return {"kind": "surrogate", "checkpoint": str(Path(surrogate).resolve())}
    if reward == "table":
        if table is None:
            raise ValueError("reward='table' needs a measured table (cells.parquet or a directory of them)")
        return {"kind": "table", "path": str(Path(table).resolve())}
    return {"kind": "real", **(real or {})}


def train_policy(reward: str = "surrogate", iterations: int = 20, out: str | Path | None = "runs/policy", *,
                 surrogate: str | Path | None = None, table: str | Path | None = None,
                 real: dict[str, Any] | None = None, source: RewardSource | None = None,
                 env_config: dict[str, Any] | None = None, algo: str = "ppo", config_file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, num_env_runners: int = 0, num_learners: int = 0,
                 seed: int = 0, progress: bool = True,
                 evaluate: Callable[[Policy], float] | None = None, num_envs_per_env_runner: int | None = None,
                 num_gpus_per_learner: float | str = "auto") -> TrainOutcome:
    """Train a policy (see the module docstring). ``source`` (an object) replaces the spec from ``reward``."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    scale = TrainScale(num_env_runners, num_envs_per_env_runner, num_learners, num_gpus_per_learner)
    spec = register_source(source) if source is not None else reward_spec(reward, surrogate, table, real)
    trainer = PolicyTrainer({**(env_config or {}), "source": spec}, algo, config_file, overrides, scale=scale,
                            seed=seed)
    try:
        curve = trainer.train(iterations, evaluate, progress, tag=reward)
        checkpoint = trainer.save(out) if out is not None else None
        return TrainOutcome(checkpoint=checkpoint, curve=curve, policy=trainer.policy(),
                            env_config=trainer.env_config)
    finally:
        trainer.stop()


__all__ = ["ALGORITHMS", "CONFIG_DIR", "REWARDS", "PolicyTrainer", "TrainOutcome", "build_config", "ensure_ray",
           "merge", "placed_config", "read_overrides", "reward_spec", "train_policy", "write_curve"]
