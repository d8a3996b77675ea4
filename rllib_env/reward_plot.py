"""``rewards.png``: mean reward per block of every evaluated policy, on a scale where the ones that matter differ.

from rllib_env.reward_plot import reward_figure
reward_figure(summary).savefig("rewards.png")   # summary: rllib_env.evaluate.summarize(steps)

The paper reward punishes an infeasible or collapsed split with values thousands of times the good ones (a fixed
split through a broken layer averages about −7,000 per block while the oracle earns about 0.5), so a plain axis
flattens the oracle, the learned policies and the best fixed split into one line at zero. The axis is therefore
zoomed on those (and on 0, so bars keep their origin); every other policy is still drawn, and a bar that runs off
the scale is hatched and labelled with its value.
"""

from __future__ import annotations

import pandas as pd

RULES = ("greedy-oracle", "random", "neurosurgeon")
"""The rule baselines of :func:`rllib_env.baselines.rule_policies` besides the fixed splits (``fixed-k<k>``)."""
COLORS = {"oracle": "black", "learned": "tab:orange", "fixed": "tab:green", "baseline": "tab:gray"}
MARGIN = 0.15
"""Share of the zoomed range added above and below it."""
LABEL_BAND = 0.35
"""Share of the zoomed range added below it for the values of bars that run off the bottom."""


def _role(name: str, best_fixed: str | None) -> str:
    if name == "greedy-oracle":
        return "oracle"
    if name == best_fixed:
        return "fixed"
    return "baseline" if name in RULES or name.startswith("fixed-k") else "learned"


def roles(summary: pd.DataFrame) -> pd.Series:
    """Each policy's role: oracle, learned (anything that is not a rule), fixed (the best fixed split), baseline."""
    fixed = summary[summary["policy"].str.startswith("fixed-k")]
    best = None if fixed.empty else fixed.loc[fixed["mean_reward"].idxmax(), "policy"]
    return summary["policy"].map(lambda name: _role(name, best))


def reward_limits(summary: pd.DataFrame) -> tuple[float, float]:
    """(low, high) of the reward axis: the oracle, the learned policies, the best fixed split and 0, plus a margin.

    When some bar runs off the bottom the margin there is widened into a band that holds the printed values.
    """
    key = summary.loc[roles(summary) != "baseline", "mean_reward"].tolist() + [0.0]
    key.append(float(summary["oracle_reward"].iloc[0]))
    low, high = min(key), max(key)
    span = (high - low) or 1.0
    below = MARGIN + (LABEL_BAND if (summary["mean_reward"] < low - MARGIN * span).any() else 0.0)
    return low - below * span, high + MARGIN * span


def _print_off_scale(ax, bar, value: float, low: float, high: float) -> None:
    bar.set_hatch("//")
    bar.set_alpha(0.45)
    below = value < low
    ax.annotate(f"{value:.4g}", (bar.get_x() + bar.get_width() / 2, low if below else high),
                xytext=(0, 3 if below else -3), textcoords="offset points", ha="center",
                va="bottom" if below else "top", rotation=90, fontsize=6.5,
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _print_key(ax, bar, value: float, color: str) -> None:
    ax.annotate(f"{value:.3g}", (bar.get_x() + bar.get_width() / 2, max(value, 0.0)), xytext=(0, 2),
                textcoords="offset points", ha="center", va="bottom", fontsize=7, color=color)


def reward_figure(summary: pd.DataFrame):
    """The bar chart of ``summary`` (from :func:`rllib_env.evaluate.summarize`); the caller saves and closes it."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    low, high = reward_limits(summary)
    role = roles(summary)
    colors = [COLORS[r] for r in role]
    fig, ax = plt.subplots(figsize=(9, 4))
    # the edge keeps a bar of height 0 (a best fixed split that never pays) visible as a line
    bars = ax.bar(summary["policy"], summary["mean_reward"], color=colors, edgecolor=colors, linewidth=1.5)
    for bar, value, kind in zip(bars, summary["mean_reward"], role, strict=True):
        if not low <= value <= high:
            _print_off_scale(ax, bar, value, low, high)
        elif kind != "baseline":
            _print_key(ax, bar, value, COLORS[kind])
    ax.set_ylim(low, high)
    ax.axhline(summary["oracle_reward"].iloc[0], color=COLORS["oracle"], ls=":", lw=1)
    ax.axhline(0.0, color="k", lw=0.5)
    handles = [Patch(color=COLORS[r], label=label) for r, label in (
        ("oracle", "greedy oracle"), ("learned", "learned policy"), ("fixed", "best fixed split"),
        ("baseline", "other baselines")) if (role == r).any()]
    handles.append(Patch(facecolor="white", edgecolor="k", hatch="//", label="off this scale (value printed)"))
    ax.legend(handles=handles, fontsize=7, ncol=len(handles), loc="lower left", bbox_to_anchor=(0, 1.01, 1, 0.1),
              mode="expand", frameon=False)
    ax.set_ylabel("mean reward per block")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    return fig


__all__ = ["COLORS", "LABEL_BAND", "MARGIN", "RULES", "reward_figure", "reward_limits", "roles"]
