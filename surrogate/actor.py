"""Serve a trained surrogate to many callers (RL env runners, controllers): a named Ray actor, or in-process.

handle = start_surrogate_actor("runs/surrogate_ckpt", name="edgesplit-surrogate", detached=True)
out = ray.get(handle.predict.remote(cells))      # cells: a DataFrame, a list of row dicts or a dict of columns
out["log_ppl_ratio"], out["log_ppl_ratio_std"], out["log_ppl_ratio_low"], out["log_ppl_ratio_high"]
handle = get_surrogate_actor("edgesplit-surrogate")  # from any driver of the same cluster (same namespace)

:class:`SurrogateActor` is a plain class (tests and single-process users call it directly); ``ray.remote`` is
applied in :func:`start_surrogate_actor`. It serves whole batches per call (one forward of every ensemble member),
so callers should batch their queries. ``predict_rewards`` adds the analytic cost part of a reward
(:class:`~edgesplit.reward.SplitReward`) to the predicted quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgesplit.cost import ModelProfile
from edgesplit.reward import RewardConfig, SplitReward
from surrogate.checkpoint import load_surrogate, read_meta
from surrogate.dataset import model_profile
from surrogate.features import settings_of
from surrogate.model import QualitySurrogate, quality_args

DEFAULT_NAME = "edgesplit-surrogate"
DEFAULT_NAMESPACE = "edgesplit"


def as_frame(cells: pd.DataFrame | list[dict] | dict[str, Any]) -> pd.DataFrame:
    """Cells in any accepted form as a DataFrame."""
    if isinstance(cells, pd.DataFrame):
        return cells
    if isinstance(cells, list | dict):
        frame = pd.DataFrame(cells)
        if frame.empty:
            raise ValueError("no cells to predict")
        return frame
    raise ValueError(f"cells must be a DataFrame, a list of row dicts or a dict of columns, got {type(cells).__name__}")


class SurrogateActor:
    """Batched predictions of one surrogate (a checkpoint directory or an in-memory model)."""

    def __init__(self, checkpoint: str | Path | None = None, surrogate: QualitySurrogate | None = None,
                 reward: RewardConfig | dict | None = None, profiles: dict[str, ModelProfile] | None = None) -> None:
        if (checkpoint is None) == (surrogate is None):
            raise ValueError("give exactly one of checkpoint (a directory) or surrogate (a trained model)")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.surrogate = load_surrogate(Path(checkpoint)) if checkpoint is not None else surrogate
        self.meta = read_meta(Path(checkpoint)) if checkpoint is not None else {}
        self.reward_config = RewardConfig.from_dict(reward) if isinstance(reward, dict) else reward
        self.profiles = dict(profiles or {})
        self._rewards: dict[str, SplitReward] = {}
        self.calls = 0
        self.cells_served = 0

    def predict(self, cells: pd.DataFrame | list[dict] | dict[str, Any], level: float = 0.9) -> dict[str, np.ndarray]:
        """Per target: mean, epistemic std and the ``level`` predictive interval (``<target>_low/_high``)."""
        frame = as_frame(cells)
        prediction = self.surrogate.predict(frame)
        low, high = prediction.interval(level)
        mean, std = prediction.mean, prediction.std
        out: dict[str, np.ndarray] = {}
        for t, name in enumerate(prediction.targets):
            out.update({name: mean[:, t], f"{name}_std": std[:, t], f"{name}_low": low[:, t],
                        f"{name}_high": high[:, t]})
        self.calls += 1
        self.cells_served += len(frame)
        return out

    def _reward(self, model: str) -> SplitReward:
        if self.reward_config is None:
            raise ValueError("this actor has no reward config; start it with reward=RewardConfig(...)")
        if model not in self._rewards:
            profile = self.profiles.get(model) or model_profile(model)
            self._rewards[model] = SplitReward(self.reward_config, profile)
        return self._rewards[model]

    def predict_rewards(self, cells: pd.DataFrame | list[dict] | dict[str, Any]) -> dict[str, np.ndarray]:
        """Predicted reward, feasibility mask and quality of each cell (cells must name their ``model``)."""
        frame = as_frame(cells).reset_index(drop=True)
        if "model" not in frame.columns:
            raise ValueError("cells need a 'model' column to price their cost part")
        quality = self.predict(frame)
        mean = np.stack([quality[name] for name in self.surrogate.codec.names], axis=1)
        reward, feasible = np.empty(len(frame)), np.empty(len(frame), dtype=bool)
        for model, rows in frame.groupby("model").groups.items():
            index = np.asarray(list(rows))
            sub = frame.loc[index]
            r, f = self._reward(str(model)).rewards(sub["k"].to_numpy(), settings_of(sub),
                                                     **quality_args(mean[index], self.surrogate.codec.names))
            reward[index], feasible[index] = r, f
        return {"reward": reward, "feasible": feasible, **quality}

    def info(self) -> dict[str, Any]:
        """What is served: checkpoint, training size, config, counters."""
        return {"checkpoint": self.checkpoint, "trained_on": self.surrogate.trained_on,
                "config": self.surrogate.config.to_dict(), "targets": list(self.surrogate.codec.names),
                "reward": None if self.reward_config is None else self.reward_config.to_dict(),
                "calls": self.calls, "cells_served": self.cells_served}


def start_surrogate_actor(checkpoint: str | Path, name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE,
                          detached: bool = False, reward: RewardConfig | None = None, num_cpus: float = 0.0) -> Any:
    """Start (or find, if one of that name runs) the named actor serving ``checkpoint``; returns its handle.

    ``detached=True`` keeps it alive after this driver exits (stop it with ``ray.kill(handle)``).
    """
    import ray

    read_meta(Path(checkpoint))  # fail here, not inside the actor
    options = {"name": name, "namespace": namespace, "get_if_exists": True, "num_cpus": num_cpus}
    if detached:
        options["lifetime"] = "detached"
    remote = ray.remote(SurrogateActor).options(**options)
    return remote.remote(str(Path(checkpoint).resolve()), reward=None if reward is None else reward.to_dict())


def get_surrogate_actor(name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE) -> Any:
    """The handle of a running named surrogate actor; ValueError when none runs."""
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise ValueError(f"no surrogate actor named {name!r} in namespace {namespace!r}; start one with "
                         f"start_surrogate_actor(checkpoint)") from None


__all__ = ["DEFAULT_NAME", "DEFAULT_NAMESPACE", "SurrogateActor", "as_frame", "get_surrogate_actor",
           "start_surrogate_actor"]
