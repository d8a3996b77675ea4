"""Search the surrogate's hyper-parameters with Ray Tune (OptunaSearch + ASHA early stopping).

edgesplit tune-surrogate --space tune_configs/surrogate_mlp.yaml --samples 16 --data runs/surrogate_truth \\
    --out runs/surrogate_tune                      # → runs/surrogate_tune/best_config.json, trials.csv
edgesplit fit-surrogate --data runs/surrogate_truth --config runs/surrogate_tune/best_config.json \\
    --out runs/surrogate_ckpt

Search-space YAML: one key per :class:`~surrogate.ensemble.EnsembleConfig` field (:data:`TUNABLE`); each value is a
constant or a mapping ``{type: choice, values: [...]}``, ``{type: uniform|loguniform, low: a, high: b}`` or
``{type: randint, low: a, high: b}`` (both ends inclusive). :func:`load_space` validates a file completely
(unknown names, bad types, values the trainable would reject) before Ray starts.

Each trial trains the ensemble on a seeded ``train_fraction`` of the cells (small by default: the surrogate has to
work from few real evaluations) and reports, ``reports`` times during training, the validation NLL (standardised
target space), the validation R² of the log-perplexity ratio and the decision regret over the whole table
(per-state %, see :mod:`surrogate.metrics`). ASHA stops poor trials at those milestones; the objective is
``val_nll`` or ``regret``. The best config (with the search's seed) is written to ``best_config.json``.

Resources: each trial reserves ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (``tune.with_resources``;
fractions share a device); a trial with a GPU trains its ensemble there, one without on CPU. On a Ray started here
a GPU request the cluster cannot meet is an error (its trials would wait forever); a joined cluster
(``RAY_ADDRESS``) may be autoscaling, so there it is a warning.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from edgesplit.reward import SplitReward
from surrogate.dataset import TARGETS, load_cells, split_rows
from surrogate.ensemble import EnsembleConfig
from surrogate.evaluation import surrogate_report
from surrogate.metrics import r2_score
from surrogate.model import QualitySurrogate

TUNABLE = tuple(f.name for f in fields(EnsembleConfig) if f.name != "seed")
"""Parameters a search space may name (the trainable's hyper-parameters)."""
SPACE_TYPES = ("choice", "uniform", "loguniform", "randint")
METRICS = {"val_nll": "val_nll", "regret": "regret_pct"}
"""Objective name → the reported metric minimised."""
BEST_FILE = "best_config.json"


def _check_entry(name: str, spec: Any) -> list[Any]:
    """The values of one entry worth validating (choices, or both ends of a range)."""
    if not isinstance(spec, dict):
        return [spec]
    kind = spec.get("type")
    if kind not in SPACE_TYPES:
        raise ValueError(f"{name}: unknown type {kind!r}; accepted: {', '.join(SPACE_TYPES)}")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values or set(spec) != {"type", "values"}:
            raise ValueError(f"{name}: a choice needs exactly a non-empty list 'values'")
        return values
    if set(spec) != {"type", "low", "high"}:
        raise ValueError(f"{name}: a {kind} needs exactly 'low' and 'high'")
    low, high = spec["low"], spec["high"]
    if not (isinstance(low, int | float) and isinstance(high, int | float) and low < high):
        raise ValueError(f"{name}: {kind} needs numbers low < high, got {low!r} and {high!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{name}: loguniform needs low > 0, got {low!r}")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise ValueError(f"{name}: randint needs integer bounds, got {low!r} and {high!r}")
    return [low, high]


def check_space(space: dict[str, Any]) -> dict[str, Any]:
    """``space`` unchanged if every entry is valid for the trainable; ValueError naming the first problem."""
    if not isinstance(space, dict) or not space:
        raise ValueError("a search space must be a non-empty mapping of parameter names")
    unknown = sorted(set(space) - set(TUNABLE))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} in the search space; accepted: {', '.join(TUNABLE)}")
    for name, spec in space.items():
        for value in _check_entry(name, spec):
            try:
                EnsembleConfig.from_dict({name: value})
            except (ValueError, TypeError) as err:
                raise ValueError(f"{name}: value {value!r} is rejected by the trainable: {err}") from None
    return space


def load_space(path: str | Path) -> dict[str, Any]:
    """Read and validate a search-space YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"search space {path} does not exist")
    try:
        space = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"search space {path} is not valid YAML: {err}") from None
    try:
        return check_space(space)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def to_tune(space: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune domains for a validated space."""
    from ray import tune

    def domain(spec: Any) -> Any:
        if not isinstance(spec, dict):
            return spec
        if spec["type"] == "choice":
            return tune.choice(spec["values"])
        if spec["type"] == "randint":
            return tune.randint(spec["low"], spec["high"] + 1)  # tune's upper bound is exclusive
        return getattr(tune, spec["type"])(float(spec["low"]), float(spec["high"]))

    return {name: domain(spec) for name, spec in space.items()}


def surrogate_trainable(config: dict[str, Any], table: pd.DataFrame, reward: SplitReward, train_fraction: float,
                        reports: int, seed: int, device: str = "cpu") -> None:
    """One Tune trial: train in ``reports`` stages, reporting validation NLL, R² and regret after each."""
    import torch
    from ray import tune

    from edgesplit.models.device import resolve_device

    torch.set_num_threads(1)
    torch_device = resolve_device(device)  # in a trial: follows the GPUs Ray reserved for it
    ensemble = EnsembleConfig.from_dict({**{k: v for k, v in config.items() if k in TUNABLE}, "seed": seed})
    train_rows, val_rows = split_rows(len(table), train_fraction, seed)
    train, val = table.iloc[train_rows], table.iloc[val_rows]
    held = np.zeros(len(table), dtype=bool)
    held[val_rows] = True
    surrogate = QualitySurrogate(ensemble, device=str(torch_device))
    surrogate.prepare(train)
    done = 0
    for stage in range(1, reports + 1):
        target_steps = math.ceil(ensemble.epochs * stage / reports)
        surrogate.train_more(train, target_steps - done)
        done = target_steps
        prediction = surrogate.predict(val)
        nll = prediction.nll(val[list(TARGETS)].to_numpy(dtype=float))
        report = surrogate_report(surrogate, table, reward, held)
        tune.report({"val_nll": nll if math.isfinite(nll) else 1e9,
                     "val_r2": r2_score(val["log_ppl_ratio"].to_numpy(), prediction.column("log_ppl_ratio")),
                     "regret_pct": report["regret"]["pct_per_state"], "steps": done})


@dataclass
class TuneOutcome:
    """What a search found."""

    best: EnsembleConfig
    """The best hyper-parameters (seed set to the search's seed)."""
    metric: str
    """The minimised metric."""
    value: float
    """Its best value."""
    trials: pd.DataFrame
    """One row per trial: its config and last reported metrics."""
    path: Path
    """The saved ``best_config.json``."""


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
        ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, include_dashboard=False,
                 log_to_driver=False)


def tune_surrogate(space_path: str | Path, samples: int, data: str | Path | pd.DataFrame, out: str | Path,
                   seed: int = 0, *, objective: str = "val_nll", reward: str | SplitReward = "paper",
                   train_fraction: float = 0.3, reports: int = 4, max_concurrent: int = 2,
                   cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0) -> TuneOutcome:
    """Run the search (see the module docstring) and save the best config as ``out/best_config.json``."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from surrogate.fit import reward_for

    if objective not in METRICS:
        raise ValueError(f"unknown objective {objective!r}; accepted: {', '.join(METRICS)}")
    if samples < 1 or reports < 1 or max_concurrent < 1:
        raise ValueError("samples, reports and max_concurrent must be >= 1")
    resources = trial_resources(cpus_per_trial, gpus_per_trial)
    space = load_space(space_path)
    table = data if isinstance(data, pd.DataFrame) else load_cells(Path(data))
    bound = reward if isinstance(reward, SplitReward) else reward_for(table, reward)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    metric = METRICS[objective]
    _ensure_ray()
    check_trial_gpus(gpus_per_trial)
    trainable = tune.with_resources(tune.with_parameters(
        surrogate_trainable, table=table, reward=bound, train_fraction=train_fraction, reports=reports, seed=seed,
        device="cuda" if gpus_per_trial > 0 else "cpu"), resources)
    search = ConcurrencyLimiter(OptunaSearch(metric=metric, mode="min", seed=seed), max_concurrent=max_concurrent)
    scheduler = ASHAScheduler(metric=metric, mode="min", max_t=reports, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(trainable, param_space=to_tune(space),
                       tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=samples),
                       run_config=tune.RunConfig(name="surrogate", storage_path=str(out / "tune"), verbose=0))
    results = tuner.fit()
    return _save(results, space, space_path, metric, seed, out, samples)


def trial_resources(cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0) -> dict[str, float]:
    """The resources one trial reserves (``tune.with_resources``); ValueError for impossible values."""
    if not (math.isfinite(cpus_per_trial) and cpus_per_trial > 0):
        raise ValueError(f"cpus_per_trial must be > 0, got {cpus_per_trial!r}")
    if not (math.isfinite(gpus_per_trial) and gpus_per_trial >= 0):
        raise ValueError(f"gpus_per_trial must be >= 0, got {gpus_per_trial!r}")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise ValueError(f"gpus_per_trial above 1 must be a whole number of GPUs, got {gpus_per_trial!r}")
    return {"cpu": float(cpus_per_trial), "gpu": float(gpus_per_trial)}


def check_trial_gpus(gpus_per_trial: float) -> None:
    """Refuse (Ray started here) or warn about (a joined, maybe autoscaling cluster) a GPU request the connected
    cluster cannot place now."""
    import ray

    have = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus_per_trial <= have:
        return
    message = f"gpus_per_trial={gpus_per_trial:g} but the Ray cluster reports {have:g} GPU(s)"
    if not os.environ.get("RAY_ADDRESS"):
        raise ValueError(f"{message}: trials would wait forever; use --gpus-per-trial 0 (CPU trials)")
    print(f"warning: {message}; trials wait until an autoscaler adds GPU nodes", flush=True)


def _save(results: Any, space: dict[str, Any], space_path: str | Path, metric: str, seed: int, out: Path,
          samples: int) -> TuneOutcome:
    best = results.get_best_result(metric=metric, mode="min", scope="last")
    config = EnsembleConfig.from_dict({**{k: v for k, v in best.config.items() if k in TUNABLE}, "seed": seed})
    frame = results.get_dataframe()
    keep = [c for c in frame.columns if c.startswith("config/") or c in ("val_nll", "val_r2", "regret_pct", "steps",
                                                                         "training_iteration")]
    trials = frame[keep].rename(columns=lambda c: c.removeprefix("config/"))
    trials.to_csv(out / "trials.csv", index=False)
    value = float(best.metrics[metric])
    path = out / BEST_FILE
    path.write_text(json.dumps({"config": config.to_dict(), "metric": metric, "value": value,
                                "space": str(space_path), "search_space": space, "samples": samples,
                                "trials": len(trials)}, indent=2, sort_keys=True))
    return TuneOutcome(best=replace(config), metric=metric, value=value, trials=trials, path=path)


__all__ = ["BEST_FILE", "METRICS", "SPACE_TYPES", "TUNABLE", "TuneOutcome", "check_space", "check_trial_gpus",
           "load_space", "surrogate_trainable", "to_tune", "trial_resources", "tune_surrogate"]
