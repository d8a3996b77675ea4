"""How good a surrogate is on held-out real cells: R², Spearman, interval coverage, decision regret.

Decision regret: for every channel state, the split chosen with the surrogate (highest predicted reward among the
feasible splits) is compared with the best split under the true reward; the regret of the state is the true reward
lost. Rewards of several seeds of one (state, k) are averaged first. :class:`Regret` reports the mean regret, the
mean regret as a percentage of the true reward range over all feasible cells (the issue's bar), the mean of each
state's regret as a percentage of that state's own range (stricter: a state whose splits differ little counts as
much as one whose splits differ a lot), and the fraction of states where the choice was optimal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _pair(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, pred = np.asarray(truth, dtype=float).ravel(), np.asarray(pred, dtype=float).ravel()
    if truth.shape != pred.shape or truth.size < 2:
        raise ValueError(f"need matching arrays of at least 2 values, got {truth.shape} and {pred.shape}")
    return truth, pred


def r2_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot`` (−inf..1; NaN when the truth is constant)."""
    truth, pred = _pair(truth, pred)
    total = float(((truth - truth.mean()) ** 2).sum())
    return float("nan") if total == 0 else 1.0 - float(((truth - pred) ** 2).sum()) / total


def spearman(truth: np.ndarray, pred: np.ndarray) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    truth, pred = _pair(truth, pred)
    if np.ptp(truth) == 0 or np.ptp(pred) == 0:
        return float("nan")
    return float(spearmanr(truth, pred).statistic)


def coverage(truth: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Fraction of true values inside their predicted interval [low, high]."""
    truth = np.asarray(truth, dtype=float)
    return float(np.mean((truth >= np.asarray(low)) & (truth <= np.asarray(high))))


@dataclass(frozen=True)
class Regret:
    """Decision regret over the channel states of a table."""

    mean: float
    """Mean true reward lost per state."""
    pct_of_range: float
    """``mean`` as a percentage of the true reward range over every feasible (state, k)."""
    pct_per_state: float
    """Mean over states of the regret as a percentage of that state's own reward range (0 where the range is 0)."""
    optimal_fraction: float
    """Fraction of states where the chosen split is a best one."""
    states: int
    """Number of channel states."""
    reward_range: float
    """max − min of the true reward over feasible (state, k)."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict."""
        return asdict(self)


def decision_regret(states: np.ndarray, ks: np.ndarray, true_reward: np.ndarray, pred_reward: np.ndarray,
                    feasible: np.ndarray) -> Regret:
    """Regret of choosing ``argmax pred_reward`` per state instead of ``argmax true_reward`` (feasible only)."""
    table = pd.DataFrame({"state": states, "k": ks, "true": true_reward, "pred": pred_reward,
                          "feasible": np.asarray(feasible, dtype=bool)})
    table = table[table["feasible"]].groupby(["state", "k"], as_index=False)[["true", "pred"]].mean()
    if table.empty:
        raise ValueError("no feasible cell: regret is undefined")
    losses, shares, hits = [], [], []
    for _, group in table.groupby("state"):
        true, pred = group["true"].to_numpy(), group["pred"].to_numpy()
        best, chosen = true.max(), true[int(np.argmax(pred))]
        span = true.max() - true.min()
        losses.append(best - chosen)
        shares.append(0.0 if span == 0 else 100.0 * (best - chosen) / span)
        hits.append(chosen >= best)
    span = float(table["true"].max() - table["true"].min())
    mean = float(np.mean(losses))
    return Regret(mean=mean, pct_of_range=0.0 if span == 0 else 100.0 * mean / span,
                  pct_per_state=float(np.mean(shares)), optimal_fraction=float(np.mean(hits)), states=len(losses),
                  reward_range=span)


__all__ = ["Regret", "coverage", "decision_regret", "r2_score", "spearman"]
