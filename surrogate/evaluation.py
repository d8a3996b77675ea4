"""Score a fitted surrogate against real cells: accuracy per target, calibration, and the decisions it leads to.

``surrogate_report(surrogate, table, reward, held_out)`` predicts every cell of ``table`` (a measured grid) and
returns, for the ``held_out`` rows, R², Spearman and the coverage of the 90% predictive interval of every target
the surrogate predicts, R² and Spearman of the reward's quality term, and the decision regret over every channel
state of the table — the split of each state chosen from the surrogate's predictions alone (labelled cells too),
scored with the true reward.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from edgesplit.reward import SplitReward
from surrogate.dataset import TARGETS
from surrogate.features import settings_of, state_keys
from surrogate.metrics import coverage, decision_regret, r2_score, spearman
from surrogate.model import quality_args


def true_rewards(table: pd.DataFrame, reward: SplitReward) -> tuple[np.ndarray, np.ndarray]:
    """(reward, feasible) of every measured cell of ``table``."""
    truth = table[list(TARGETS)].to_numpy(dtype=float)
    return reward.rewards(table["k"].to_numpy(), settings_of(table), **quality_args(truth, TARGETS))


def surrogate_report(surrogate: Any, table: pd.DataFrame, reward: SplitReward,
                     held_out: np.ndarray | None = None, level: float = 0.9) -> dict[str, Any]:
    """Metrics of ``surrogate`` on ``table`` (see the module docstring); ``held_out`` is a boolean row mask."""
    table = table.reset_index(drop=True)
    rows = np.ones(len(table), dtype=bool) if held_out is None else np.asarray(held_out, dtype=bool)
    prediction = surrogate.predict(table)
    low, high = prediction.interval(level)
    report: dict[str, Any] = {"cells": int(rows.sum())}
    for t, name in enumerate(prediction.targets):
        truth, mean = table[name].to_numpy(dtype=float)[rows], prediction.mean[rows, t]
        report[name] = {"r2": r2_score(truth, mean), "spearman": spearman(truth, mean),
                        f"coverage{round(level * 100)}": coverage(truth, low[rows, t], high[rows, t])}
    true_reward, feasible = true_rewards(table, reward)
    pred_reward, _ = reward.rewards(table["k"].to_numpy(), settings_of(table),
                                    **quality_args(prediction.mean, prediction.targets))
    quality = reward.config.quality_weight * reward.config.quality_gain(
        **quality_args(table[list(TARGETS)].to_numpy(dtype=float), TARGETS))
    pred_quality = reward.config.quality_weight * reward.config.quality_gain(
        **quality_args(prediction.mean, prediction.targets))
    report["quality_term"] = {"r2": r2_score(quality[rows], pred_quality[rows]),
                              "spearman": spearman(quality[rows], pred_quality[rows])}
    regret = decision_regret(state_keys(table), table["k"].to_numpy(), true_reward, pred_reward, feasible)
    report["regret"] = regret.to_dict()
    return report


def flat(report: dict[str, Any]) -> dict[str, float]:
    """One level of keys (``log_ppl_ratio.r2``) for tables and Tune."""
    out: dict[str, float] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            out.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            out[key] = value
    return out


__all__ = ["flat", "surrogate_report", "true_rewards"]
