"""Active learning: which cells to evaluate with the real LLM, under a budget.

1. Initial design: a greedy maximin (farthest-point) set over the standardised features of the candidate grid — a
   space-filling design for a discrete set; the first point is drawn with the seed.
2. Rounds: fit the surrogate on the labelled cells, predict every candidate and score each unlabelled one by ``std /
   max(std) + best_weight · P(best)``, where ``std`` is the ensemble's epistemic spread of the target the reward uses,
   in that target's own units (the transformed space the networks learn in compresses large degradations, so its spread
   would steer the budget to near-lossless cells), and ``P(best)`` is the probability that the cell is the best feasible
   split of its channel state (Monte-Carlo over the surrogate's predictive draws; labelled cells enter with their
   measured value). A batch is taken greedily, each pick damping the scores of its neighbours in feature space (local
   penalisation), so one round does not spend its batch on a single uncertain corner.
3. Stop when the budget is spent; the surrogate is refitted on everything labelled and, if it can, its intervals
   are calibrated by cross-validation on those cells (``calibration_folds``; costs model fits, no evaluations).

Lossless cells (``k = 0``, ``k = L``, ideal float32 links) are never evaluated: their quality is known exactly
(:func:`surrogate.model.with_lossless`). They still compete for "best split" with their exact value.

``strategy="random"`` labels a seeded uniform sample of the same size instead (the comparison the issue asks for).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from edgesplit.reward import SplitReward
from surrogate.features import FeatureScaler, feature_matrix, lossless_mask, settings_of, state_keys
from surrogate.model import Prediction, quality_args
from surrogate.sensitivity import SensitivityProfile

if TYPE_CHECKING:  # the evaluator pulls in the model-loading stack; active learning only calls it
    from surrogate.evaluator import Oracle

STRATEGIES = ("active", "random")
REWARD_TARGET = {"ppl_gain": "log_ppl_ratio", "log_ppl": "log_ppl_ratio", "kl": "kl_nats", "top1": "top1_agreement"}
"""The target each reward quality metric is computed from."""


class Surrogate(Protocol):
    """What active learning needs of a surrogate."""

    def fit(self, frame: pd.DataFrame) -> Any: ...

    def predict(self, frame: pd.DataFrame) -> Prediction: ...


@dataclass(frozen=True)
class ActiveConfig:
    """Budget and knobs of one active-learning run."""

    budget: int
    """Total cells evaluated for real (initial design included)."""
    initial: int = 16
    """Size of the space-filling initial design."""
    batch: int = 4
    """Cells labelled per round."""
    best_weight: float = 0.5
    """Weight of P(best split) against the normalised uncertainty."""
    samples: int = 256
    """Monte-Carlo draws for P(best)."""
    strategy: str = "active"
    """active or random."""
    seed: int = 0
    """Seed of the initial design, the draws and the random strategy."""
    calibration_folds: int = 5
    """Folds of the final interval calibration (0: none; skipped when fewer lossy cells were labelled)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; accepted: {', '.join(STRATEGIES)}")
        if self.budget < 2:
            raise ValueError(f"budget must be >= 2 cells, got {self.budget}")
        if not 2 <= self.initial <= self.budget:
            raise ValueError(f"initial must be in 2..budget ({self.budget}), got {self.initial}")
        if self.calibration_folds < 0 or self.calibration_folds == 1:
            raise ValueError(f"calibration_folds must be 0 (off) or >= 2, got {self.calibration_folds}")
        if self.batch < 1 or self.samples < 1:
            raise ValueError(f"batch and samples must be >= 1, got {self.batch} and {self.samples}")
        if not (math.isfinite(self.best_weight) and self.best_weight >= 0):
            raise ValueError(f"best_weight must be >= 0, got {self.best_weight}")


@dataclass
class ActiveResult:
    """What a run selected and the surrogate it ended with."""

    selected: list[int]
    """Candidate row positions labelled, in the order they were chosen."""
    labelled: pd.DataFrame
    """The real evaluations of those cells."""
    surrogate: Any
    """The surrogate fitted on every labelled cell."""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """Per round: labelled count and whatever ``on_round`` returned."""


def space_filling(x: np.ndarray, count: int, seed: int, start: list[int] | None = None) -> list[int]:
    """Greedy maximin: ``count`` new rows of ``x`` each farthest from every row already chosen (``start`` included)."""
    if count > len(x) - len(start or []):
        raise ValueError(f"cannot pick {count} new rows out of {len(x) - len(start or [])}")
    chosen = list(start or [])
    if not chosen:
        chosen.append(int(np.random.default_rng(seed).integers(len(x))))
        count -= 1
    distance = np.min(np.linalg.norm(x[:, None, :] - x[None, chosen, :], axis=-1), axis=1)
    picks = chosen[len(start or []):]
    for _ in range(count):
        best = int(np.argmax(distance))
        picks.append(best)
        distance = np.minimum(distance, np.linalg.norm(x - x[best], axis=1))
    return picks


def probability_best(draws: np.ndarray, states: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Per cell, the fraction of reward draws ``[samples, cells]`` in which it is its state's best feasible cell."""
    masked = np.where(feasible[None, :], draws, -np.inf)
    hits = np.zeros(draws.shape[1])
    for state in np.unique(states):
        members = np.flatnonzero((states == state) & feasible)
        if members.size:
            winners = members[np.argmax(masked[:, members], axis=1)]
            hits += np.bincount(winners, minlength=draws.shape[1])
    return hits / draws.shape[0]


class ActiveLearner:
    """Runs :class:`ActiveConfig` over a candidate grid (cell rows without quality columns)."""

    def __init__(self, candidates: pd.DataFrame, oracle: Oracle, make_surrogate: Callable[[], Surrogate],
                 reward: SplitReward, config: ActiveConfig,
                 sensitivity: dict[str, SensitivityProfile] | None = None) -> None:
        self.candidates = candidates.reset_index(drop=True)
        self.lossy = np.flatnonzero(~lossless_mask(self.candidates))
        if config.budget > len(self.lossy):
            raise ValueError(f"budget {config.budget} exceeds the {len(self.lossy)} lossy candidate cells")
        self.oracle, self.make_surrogate, self.reward, self.config = oracle, make_surrogate, reward, config
        raw = feature_matrix(self.candidates, sensitivity)  # the design's space: what the surrogate will see
        self.x = FeatureScaler.fit(raw).transform(raw)
        self.states = state_keys(self.candidates)
        self.analytic, self.feasible = reward.cost_terms(self.candidates["k"].to_numpy(), settings_of(self.candidates))
        self.rng = np.random.default_rng([config.seed, 0xAC71])
        nearest = np.linalg.norm(self.x[:, None] - self.x[None], axis=-1) + np.diag(np.full(len(self.x), np.inf))
        self.length = float(np.median(nearest.min(axis=1)))

    def run(self, on_round: Callable[[Any, list[int]], dict[str, Any]] | None = None) -> ActiveResult:
        """Select, evaluate and fit until the budget is spent; ``on_round(surrogate, selected)`` may log metrics."""
        c = self.config
        if c.strategy == "random":
            selected = [int(i) for i in self.rng.permutation(self.lossy)[:c.budget]]
            return self._finish(selected, [], on_round)
        selected, rounds = [int(self.lossy[i]) for i in space_filling(self.x[self.lossy], c.initial, c.seed)], []
        while len(selected) < c.budget:
            labelled = self._label(selected)
            surrogate = self.make_surrogate().fit(labelled)
            if on_round is not None:
                rounds.append({"labelled": len(selected), **on_round(surrogate, selected)})
            selected += self.next_batch(surrogate.predict(self.candidates), selected, labelled)
        return self._finish(selected, rounds, on_round)

    def _label(self, selected: list[int]) -> pd.DataFrame:
        return self.oracle.evaluate_frame(self.candidates.iloc[selected])

    def _finish(self, selected: list[int], rounds: list, on_round: Callable | None) -> ActiveResult:
        labelled = self._label(selected)
        surrogate = self.make_surrogate().fit(labelled)
        folds = self.config.calibration_folds
        if folds and hasattr(surrogate, "calibrate") and int((~lossless_mask(labelled)).sum()) >= 2 * folds:
            surrogate.calibrate(labelled, folds)
        if on_round is not None:
            rounds.append({"labelled": len(selected), **on_round(surrogate, selected)})
        return ActiveResult(selected=selected, labelled=labelled, surrogate=surrogate, rounds=rounds)

    def scores(self, prediction: Prediction, selected: list[int], labelled: pd.DataFrame) -> np.ndarray:
        """Acquisition score of every candidate (−inf for labelled ones)."""
        target = REWARD_TARGET[self.reward.config.quality_metric]
        spread = prediction.std[:, prediction.targets.index(target)]
        draws = prediction.sample(self.config.samples, self.rng)
        measured = labelled[list(prediction.targets)].to_numpy(dtype=float)
        draws[:, selected] = measured[None]
        quality = self.reward.config.quality_gain(**quality_args(draws, prediction.targets))
        rewards = self.reward.config.quality_weight * quality + self.analytic[None]
        p_best = probability_best(rewards, self.states, self.feasible)
        open_ = np.zeros(len(spread), dtype=bool)
        open_[self.lossy] = True
        open_[selected] = False
        top = spread[open_].max() if open_.any() else 1.0
        score = spread / (top if top > 0 else 1.0) + self.config.best_weight * p_best
        return np.where(open_, score, -np.inf)

    def next_batch(self, prediction: Prediction, selected: list[int], labelled: pd.DataFrame) -> list[int]:
        """The next cells to label (greedy with local penalisation)."""
        score = self.scores(prediction, selected, labelled)
        picks: list[int] = []
        for _ in range(min(self.config.batch, self.config.budget - len(selected))):
            best = int(np.argmax(score))
            picks.append(best)
            distance = np.linalg.norm(self.x - self.x[best], axis=1)
            score = np.where(score > -np.inf, score * (1 - np.exp(-0.5 * (distance / self.length) ** 2)), score)
            score[best] = -np.inf
        return picks


__all__ = ["REWARD_TARGET", "STRATEGIES", "ActiveConfig", "ActiveLearner", "ActiveResult", "Surrogate",
           "probability_best", "quality_args", "space_filling"]
