"""Fit the deep-ensemble surrogate on a quality table and save a checkpoint (``edgesplit fit-surrogate``).

from surrogate.fit import fit_surrogate
outcome = fit_surrogate("runs/surrogate_truth", "runs/surrogate_ckpt", config="runs/tune/best_config.json")
outcome.report["log_ppl_ratio"]["r2"], outcome.checkpoint

``config`` is an :class:`~surrogate.ensemble.EnsembleConfig`, a dict of its fields, the path of the JSON the Tune
driver saves (its ``config`` entry is used), or None for the defaults. With ``holdout`` > 0 a seeded share of the
cells is kept out of training and the report is computed on it; with 0 the model trains on everything and the
report describes the fit on the training cells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgesplit.reward import SplitReward, reward_preset
from surrogate.checkpoint import save_surrogate
from surrogate.dataset import load_cells, model_profile, split_rows
from surrogate.ensemble import EnsembleConfig
from surrogate.evaluation import surrogate_report
from surrogate.features import lossless_mask
from surrogate.model import QualitySurrogate
from surrogate.sensitivity import SensitivityProfile


@dataclass
class FitOutcome:
    """What a fit produced."""

    surrogate: QualitySurrogate
    """The trained surrogate."""
    checkpoint: Path | None
    """Where it was saved (None when ``out`` was None)."""
    report: dict[str, Any]
    """Metrics (on the held-out cells, or on the training cells without a hold-out)."""
    config: EnsembleConfig
    """The hyper-parameters used."""


def read_config(config: EnsembleConfig | dict | str | Path | None) -> EnsembleConfig:
    """An :class:`EnsembleConfig` from any accepted form (see the module docstring)."""
    if config is None:
        return EnsembleConfig()
    if isinstance(config, EnsembleConfig):
        return config
    if isinstance(config, str | Path):
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"surrogate config {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"surrogate config {path} is not valid JSON: {err}") from None
        config = data.get("config", data)
    return EnsembleConfig.from_dict(dict(config))


def reward_for(table: pd.DataFrame, preset: str) -> SplitReward:
    """The reward preset bound to the (single) model of ``table``."""
    models = table["model"].unique()
    if len(models) != 1:
        raise ValueError(f"reward metrics need a single-model table, got models {list(models)}")
    return SplitReward(reward_preset(preset), model_profile(str(models[0])))


def fit_surrogate(data: str | Path | pd.DataFrame, out: str | Path | None = None,
                  config: EnsembleConfig | dict | str | Path | None = None, *, seed: int | None = None,
                  holdout: float = 0.0, reward: str | SplitReward = "paper",
                  extra: dict[str, Any] | None = None, sensitivity: dict[str, SensitivityProfile] | None = None,
                  calibration_folds: int = 5, device: str = "cpu") -> FitOutcome:
    """Train on ``data`` (a table, a ``cells.parquet`` or a directory of them), report, and save to ``out``.

    ``sensitivity`` (profiles by model) adds the first-order KL feature; ``calibration_folds`` ≥ 2 calibrates the
    predictive intervals by cross-validation on the training cells (0: off; skipped when there are too few cells).
    ``device`` is the torch device of the ensemble (``cpu``, ``cuda``); the checkpoint is the same either way.
    """
    table = data if isinstance(data, pd.DataFrame) else load_cells(Path(data))
    ensemble = read_config(config)
    if seed is not None:
        ensemble = replace(ensemble, seed=seed)
    held = np.zeros(len(table), dtype=bool)
    if holdout > 0:
        train_rows, test_rows = split_rows(len(table), 1.0 - holdout, ensemble.seed)
        held[test_rows] = True
    train = table[~held]
    surrogate = QualitySurrogate(ensemble, sensitivity=sensitivity, device=device).fit(train)
    if calibration_folds >= 2 and int((~lossless_mask(train)).sum()) >= 2 * calibration_folds:
        surrogate.calibrate(train, calibration_folds)
    bound = reward if isinstance(reward, SplitReward) else reward_for(table, reward)
    report = surrogate_report(surrogate, table, bound, held if holdout > 0 else None)
    checkpoint = None
    if out is not None:
        info = {"data": None if isinstance(data, pd.DataFrame) else str(data), "cells": int((~held).sum()),
                "interval_scale": surrogate.interval_scale.tolist(),
                "reward": bound.config.to_dict(), "report": report, **(extra or {})}
        checkpoint = save_surrogate(surrogate, Path(out), extra=info)
    return FitOutcome(surrogate=surrogate, checkpoint=checkpoint, report=report, config=ensemble)


__all__ = ["FitOutcome", "fit_surrogate", "read_config", "reward_for"]
