"""``rewards.png``: a collapsed fixed split (about −7,000 per block) must not flatten the bars that matter."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from rllib_env import evaluate
from rllib_env.reward_plot import reward_figure, reward_limits, roles

plt.switch_backend("Agg")

# the smoke demo's numbers on the built-in model (paper reward, 4 held-out traces)
DEMO = {"greedy-oracle": 0.518, "mbrl": 0.387, "fixed-k30": 0.0, "fixed-k24": -10.3, "neurosurgeon": -24.8,
        "random": -519.5, "fixed-k16": -2058.5, "fixed-k12": -7383.5}


def _summary(rewards: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame({"policy": list(rewards), "mean_reward": list(rewards.values())})
    frame["oracle_reward"] = rewards["greedy-oracle"]
    return frame.sort_values("mean_reward", ascending=False).reset_index(drop=True)


def _bars(fig) -> dict[str, float]:
    ax = fig.axes[0]
    names = [label.get_text() for label in ax.get_xticklabels()]
    return dict(zip(names, (patch.get_height() for patch in ax.patches), strict=True))


def test_roles_pick_the_oracle_learned_policies_and_the_best_fixed_split():
    summary = _summary(DEMO)
    assert dict(zip(summary["policy"], roles(summary), strict=True)) == {
        "greedy-oracle": "oracle", "mbrl": "learned", "fixed-k30": "fixed", "fixed-k24": "baseline",
        "neurosurgeon": "baseline", "random": "baseline", "fixed-k16": "baseline", "fixed-k12": "baseline"}


def test_the_axis_excludes_the_collapsed_cells_but_the_plot_records_them():
    fig = reward_figure(_summary(DEMO))
    try:
        low, high = fig.axes[0].get_ylim()
        assert -1.0 < low < 0.0 and 0.518 < high < 1.0  # zoomed on oracle, mbrl and the best fixed split (0)
        assert (0.518 - 0.387) / (high - low) > 0.1  # oracle and learned policy a tenth of the axis apart
        bars = _bars(fig)
        assert bars["fixed-k12"] == pytest.approx(-7383.5) and bars["random"] == pytest.approx(-519.5)
        printed = {text.get_text() for text in fig.axes[0].texts}
        assert {"-7384", "-2058", "-519.5", "-24.8", "-10.3"} <= printed  # every off-scale bar carries its value
        assert {"0.518", "0.387", "0"} <= printed
        hatched = {name for name, patch in zip(bars, fig.axes[0].patches, strict=True) if patch.get_hatch()}
        assert hatched == {"fixed-k24", "neurosurgeon", "random", "fixed-k16", "fixed-k12"}
    finally:
        plt.close(fig)


def test_without_outliers_every_bar_is_on_the_scale():
    summary = _summary({"greedy-oracle": -0.21, "policy": -0.25, "fixed-k3": -0.3, "random": -0.4})
    low, high = reward_limits(summary)
    assert low < -0.4 and high >= 0.0
    fig = reward_figure(summary)
    try:
        assert {text.get_text() for text in fig.axes[0].texts} == {"-0.21", "-0.25", "-0.3"}
    finally:
        plt.close(fig)


def test_write_evaluation_saves_the_zoomed_figure(tmp_path, monkeypatch):
    made = []

    def keep(summary):
        made.append(reward_figure(summary))
        return made[-1]

    monkeypatch.setattr(evaluate, "reward_figure", keep)
    summary = _summary(DEMO)
    steps = pd.DataFrame({"trace": 0, "t": [0, 1], "snr_db": 10.0, "reward_snr_db": 10.0, "k": [3, 4],
                          "oracle_k": [3, 3], "policy": "mbrl"})
    evaluate.write_evaluation(steps, summary, tmp_path, show=["mbrl"])
    assert (tmp_path / "rewards.png").stat().st_size > 0
    assert made[0].axes[0].get_ylim()[0] > -1.0
