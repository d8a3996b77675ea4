"""Active learning: space-filling design, P(best), uncertainty-driven picks, budget accounting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgesplit.reward import SplitReward, reward_preset
from surrogate.active import ActiveConfig, ActiveLearner, probability_best, space_filling
from surrogate.ensemble import EnsembleConfig
from surrogate.evaluator import TableOracle
from surrogate.features import lossless_mask
from surrogate.model import QualitySurrogate
from surrogate.synthetic import synthetic_cells, synthetic_profile

SMALL = EnsembleConfig(hidden_size=32, depth=2, epochs=200, ensemble_size=6, lr=1e-2, seed=0)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_cells(seed=1)


@pytest.fixture(scope="module")
def reward() -> SplitReward:
    return SplitReward(reward_preset("paper"), synthetic_profile())


def _learner(table, reward, **config) -> ActiveLearner:
    candidates = table.drop(columns=["log_ppl_ratio", "kl_nats", "top1_agreement", "perplexity"])
    return ActiveLearner(candidates, TableOracle(table), lambda: QualitySurrogate(SMALL), reward,
                         ActiveConfig(**{"budget": 20, "initial": 8, "batch": 4, "seed": 0, **config}))


def test_space_filling_spreads_points():
    x = np.linspace(0, 10, 11)[:, None]
    picks = space_filling(x, 3, seed=0, start=[5])
    assert picks == [0, 10, 2]  # farthest from 5, then from {0, 5}, then the first of the ties at distance 2
    assert len(set(space_filling(x, 11, seed=3))) == 11


def test_probability_best_by_hand():
    # two states: cells 0-2 and 3-4; cell 2 is infeasible
    draws = np.array([[1.0, 2.0, 9.0, 0.0, 1.0],
                      [3.0, 2.0, 9.0, 2.0, 1.0]])
    p = probability_best(draws, np.array([0, 0, 0, 1, 1]), np.array([True, True, False, True, True]))
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0, 0.5, 0.5])


def test_active_learning_spends_exactly_the_budget_on_lossy_cells(table, reward):
    learner = _learner(table, reward)
    result = learner.run(on_round=lambda surrogate, selected: {"n": len(selected)})
    assert len(result.selected) == len(set(result.selected)) == 20
    assert not lossless_mask(learner.candidates.iloc[result.selected]).any()
    assert learner.oracle.stats.evaluations == 20
    assert [r["labelled"] for r in result.rounds] == [8, 12, 16, 20]
    assert result.surrogate.trained_on == 20


def test_active_learning_picks_uncertain_cells(table, reward):
    learner = _learner(table, reward, best_weight=0.0, batch=1, budget=60)
    # label only high-SNR AWGN and dropout cells: the low-SNR ones are where the ensemble is unsure
    known = [i for i in learner.lossy if not (table.loc[i, "channel"] == "awgn" and table.loc[i, "snr_db"] < 10)]
    labelled = learner.oracle.evaluate_frame(learner.candidates.iloc[known])
    surrogate = QualitySurrogate(SMALL).fit(labelled)
    prediction = surrogate.predict(learner.candidates)
    (pick,) = learner.next_batch(prediction, known, labelled)
    spread = prediction.std[:, 0].copy()  # the ensemble's spread in the target's own units
    spread[known] = -1
    spread[lossless_mask(learner.candidates)] = -1
    assert pick == int(np.argmax(spread))
    assert table.loc[pick, "channel"] == "awgn" and table.loc[pick, "snr_db"] < 10


def test_random_strategy_and_seeds(table, reward):
    a = _learner(table, reward, strategy="random").run()
    b = _learner(table, reward, strategy="random").run()
    assert a.selected == b.selected and len(a.selected) == 20
    c = _learner(table, reward, strategy="random", seed=1).run()
    assert c.selected != a.selected


@pytest.mark.parametrize(("config", "message"), [
    ({"strategy": "greedy"}, "unknown strategy"),
    ({"budget": 1}, "budget must be >= 2"),
    ({"initial": 30}, "initial must be in"),
    ({"budget": 1000, "initial": 8}, "exceeds"),
])
def test_bad_active_configs(table, reward, config, message):
    with pytest.raises(ValueError, match=message):
        _learner(table, reward, **config)
