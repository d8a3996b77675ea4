"""The quality surrogate: cells → predicted (log PPL ratio, KL, top-1) with uncertainty.

:class:`QualitySurrogate` joins the feature map (:mod:`surrogate.features`), a target codec and a
:class:`~surrogate.ensemble.DeepEnsemble`. Targets are learned in a transformed, standardised space
(:class:`TargetCodec`): ``asinh(y / 0.05)`` for the log-perplexity ratio and the KL — both span 0 to ~15 with the
decision-relevant differences near 0, which a linear scale would drown — and the identity for top-1 agreement.

Lossless cells (``k = 0``, ``k = L``, an ideal float32 link) are not learned: their quality is the clean model's by
construction, so they are predicted exactly (log ratio 0, KL 0, top-1 1, zero uncertainty) and left out of
training.

Uncertainty. The ensemble's spread is the epistemic part; an observation-noise variance per target (the training
residual variance, floored) is added for predictive intervals and the NLL. Intervals are computed in the
transformed space and mapped back (the transforms are monotone), so they are asymmetric in original units.
Networks fitted on a few dozen cells agree with each other and fit their data closely, so both parts are too small:
:meth:`QualitySurrogate.calibrate` scales the predictive std per target so that the K-fold cross-validated
residuals of the labelled cells fall in the central interval as often as the level says (split-conformal style).

Sensitivity profiles (:mod:`surrogate.sensitivity`), given at construction, add the first-order KL feature; they
travel with the surrogate (checkpoints included), so callers pass plain cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from surrogate.dataset import TARGETS
from surrogate.ensemble import DeepEnsemble, EnsembleConfig
from surrogate.features import SENSITIVITY_FEATURE, FeatureScaler, feature_matrix, feature_names, lossless_mask
from surrogate.sensitivity import SensitivityProfile

TRANSFORMS = {"log_ppl_ratio": ("asinh", 0.05), "kl_nats": ("asinh", 0.05), "top1_agreement": ("identity", 1.0)}
"""Per target: (transform, scale) applied before standardisation."""
MONOTONE = {"snr_db": [-1.0, -1.0, 1.0], "p": [1.0, 1.0, -1.0], "loss_rate": [1.0, 1.0, -1.0],
            SENSITIVITY_FEATURE: [1.0, 1.0, -1.0]}
"""Direction of each target (log PPL ratio, KL, top-1) as a feature grows: quality never improves as SNR drops,
dropout, loss or the first-order KL grows."""
CALIBRATION_BOUNDS = (0.5, 20.0)
"""Range of the interval scale :meth:`QualitySurrogate.calibrate` may set."""
CLIP_MARGIN = 0.25
"""How far (standardised units) beyond the training targets a prediction may go."""
NOISE_FLOOR = 0.02
"""Smallest observation-noise std in standardised target space."""


@dataclass
class TargetCodec:
    """Maps targets to the standardised transformed space the network learns, and back."""

    names: tuple[str, ...]
    """Target columns."""
    mean: np.ndarray
    """Mean of each transformed target on the training data."""
    scale: np.ndarray
    """Std of each transformed target on the training data (1 where constant)."""
    low: np.ndarray | None = None
    """Lowest standardised training value per target; decoding clips at ``low − CLIP_MARGIN``."""
    high: np.ndarray | None = None
    """Highest standardised training value per target; decoding clips at ``high + CLIP_MARGIN``."""

    @staticmethod
    def _forward(y: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        out = np.array(y, dtype=float, copy=True)
        for t, name in enumerate(names):
            kind, s = TRANSFORMS[name]
            if kind == "asinh":
                out[..., t] = np.arcsinh(out[..., t] / s)
        return out

    @classmethod
    def fit(cls, y: np.ndarray, names: tuple[str, ...] = TARGETS) -> TargetCodec:
        """From training targets ``[n, T]``."""
        z = cls._forward(y, names)
        mean, std = z.mean(axis=0), z.std(axis=0)
        scale = np.where(std > 1e-8, std, 1.0)
        standard = (z - mean) / scale
        return cls(names=tuple(names), mean=mean, scale=scale, low=standard.min(axis=0), high=standard.max(axis=0))

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Original units → standardised transformed space."""
        return (self._forward(y, self.names) - self.mean) / self.scale

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Standardised transformed space → original units (any leading axes), clipped near the training range."""
        z = np.asarray(z, dtype=float)
        if self.low is not None and self.high is not None:
            # asinh targets decode through sinh: an unclipped extrapolation would explode exponentially
            z = np.clip(z, self.low - CLIP_MARGIN, self.high + CLIP_MARGIN)
        out = z * self.scale + self.mean
        for t, name in enumerate(self.names):
            kind, s = TRANSFORMS[name]
            if kind == "asinh":
                out[..., t] = np.sinh(out[..., t]) * s
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        bounds = {} if self.low is None else {"low": self.low.tolist(), "high": self.high.tolist()}
        return {"names": list(self.names), "mean": self.mean.tolist(), "scale": self.scale.tolist(), **bounds}

    @classmethod
    def from_dict(cls, data: dict) -> TargetCodec:
        """Inverse of :meth:`to_dict`."""
        bounds = {key: np.asarray(data[key], dtype=float) for key in ("low", "high") if key in data}
        return cls(tuple(data["names"]), np.asarray(data["mean"], dtype=float), np.asarray(data["scale"], dtype=float),
                   **bounds)


@dataclass
class Prediction:
    """Predictions for a batch of cells."""

    codec: TargetCodec
    """How to map the standardised space back to original units."""
    z_members: np.ndarray
    """``[members, n, T]`` member predictions, standardised transformed space."""
    z_noise: np.ndarray
    """``[T]`` or ``[n, T]`` observation-noise std, standardised transformed space."""
    interval_scale: np.ndarray | float = 1.0
    """``[T]`` factor on the predictive std (from :meth:`QualitySurrogate.calibrate`; 1 = uncalibrated)."""

    @property
    def targets(self) -> tuple[str, ...]:
        """Target names, in column order."""
        return self.codec.names

    @property
    def z_mean(self) -> np.ndarray:
        """``[n, T]`` ensemble mean (standardised transformed space)."""
        return self.z_members.mean(axis=0)

    @property
    def z_epistemic(self) -> np.ndarray:
        """``[n, T]`` spread of the members (standardised transformed space)."""
        return self.z_members.std(axis=0)

    @property
    def z_total(self) -> np.ndarray:
        """``[n, T]`` predictive std: epistemic and observation noise together, times the calibrated scale."""
        return np.sqrt(self.z_epistemic**2 + self.z_noise**2) * self.interval_scale

    @property
    def mean(self) -> np.ndarray:
        """``[n, T]`` point prediction in original units."""
        return self.codec.decode(self.z_mean)

    @property
    def members(self) -> np.ndarray:
        """``[members, n, T]`` member predictions in original units."""
        return self.codec.decode(self.z_members)

    @property
    def std(self) -> np.ndarray:
        """``[n, T]`` epistemic std in original units (spread of the members)."""
        return self.members.std(axis=0)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central predictive interval (low, high), each ``[n, T]`` in original units."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        half = norm.ppf(0.5 + level / 2) * self.z_total
        return self.codec.decode(self.z_mean - half), self.codec.decode(self.z_mean + half)

    def nll(self, y: np.ndarray) -> float:
        """Mean Gaussian NLL of targets ``[n, T]`` in the standardised transformed space."""
        z, var = self.codec.encode(y), np.maximum(self.z_total**2, 1e-6)  # exact (lossless) cells have var 0
        return float(np.mean(0.5 * (np.log(2 * np.pi * var) + (z - self.z_mean) ** 2 / var)))

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``[count, n, T]`` draws in original units (a random member plus noise, per draw and cell)."""
        members, n = self.z_members.shape[0], self.z_members.shape[1]
        pick = rng.integers(members, size=(count, n))
        noise = rng.standard_normal((count, n, self.z_members.shape[2])) * self.z_noise
        z = self.z_members[pick, np.arange(n)[None, :]] + noise
        return self.codec.decode(z)

    def column(self, name: str) -> np.ndarray:
        """Point prediction of one target."""
        return self.mean[:, self.targets.index(name)]


class QualitySurrogate:
    """Deep-ensemble surrogate of the LLM quality of cells (see the module docstring)."""

    kind = "ensemble"

    def __init__(self, config: EnsembleConfig | None = None, monotone: bool | None = None,
                 scaler: FeatureScaler | None = None,
                 sensitivity: dict[str, SensitivityProfile] | None = None, device: str = "cpu") -> None:
        self.config = config or EnsembleConfig()
        self.device = device  # of the ensemble's training and predictions (outputs are numpy either way)
        self.use_monotone = self.config.monotone_weight > 0 if monotone is None else monotone
        self.scaler = scaler
        self.sensitivity = dict(sensitivity) if sensitivity else None
        self.codec: TargetCodec | None = None
        self.ensemble: DeepEnsemble | None = None
        self.z_noise: np.ndarray | None = None
        self.interval_scale = np.ones(len(TARGETS))
        self.trained_on = 0

    @property
    def features(self) -> tuple[str, ...]:
        """The feature layout this surrogate reads."""
        return feature_names(self.sensitivity is not None)

    def features_of(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw features of the cells of ``frame`` in this surrogate's layout."""
        return feature_matrix(frame, self.sensitivity)

    def _monotone_columns(self) -> dict[int, list[float]]:
        names = self.features
        return {names.index(n): signs for n, signs in MONOTONE.items() if n in names} if self.use_monotone else {}

    def new_ensemble(self) -> DeepEnsemble:
        """An untrained ensemble of this surrogate's shape."""
        return DeepEnsemble(self.config, len(self.features), len(TARGETS), self._monotone_columns(), self.device)

    def clone(self) -> QualitySurrogate:
        """An untrained surrogate of the same configuration (config, monotonicity, sensitivity; fresh scaling)."""
        return QualitySurrogate(self.config, self.use_monotone, sensitivity=self.sensitivity, device=self.device)

    def calibrate(self, frame: pd.DataFrame, folds: int = 5, level: float = 0.9) -> np.ndarray:
        """Set :attr:`interval_scale` from ``folds``-fold cross-validation on ``frame`` (the labelled cells) so that
        the central ``level`` interval covers that share of held-out residuals; returns the scale per target.

        Each fold trains a fresh surrogate of the same configuration on the other folds (``folds`` extra fits).
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        rows = lossy_rows(frame).reset_index(drop=True)
        if folds < 2 or len(rows) < folds:
            raise ValueError(f"calibration needs 2 <= folds <= labelled lossy cells ({len(rows)}), got {folds}")
        order = np.random.default_rng([self.config.seed, 0xCA1]).permutation(len(rows))
        ratios = []
        for fold in np.array_split(order, folds):
            train = rows.drop(index=fold)
            model = self.clone().fit(train)
            prediction = model.predict(rows.iloc[fold])
            z = prediction.codec.encode(rows.iloc[fold][list(TARGETS)].to_numpy(dtype=float))
            ratios.append(np.abs(z - prediction.z_mean) / np.maximum(prediction.z_total, 1e-9))
        quantile = np.quantile(np.concatenate(ratios), level, axis=0)
        self.interval_scale = np.clip(quantile / norm.ppf(0.5 + level / 2), *CALIBRATION_BOUNDS)
        return self.interval_scale

    def fit(self, frame: pd.DataFrame, steps: int | None = None) -> QualitySurrogate:
        """Train from scratch on the cells of ``frame`` (which must hold the target columns)."""
        self.prepare(frame)
        return self.train_more(frame, steps)

    def prepare(self, frame: pd.DataFrame) -> None:
        """Fit scaling (unless given) and codec on ``frame`` and build a fresh ensemble (no training)."""
        frame = lossy_rows(frame)
        self.scaler = self.scaler or FeatureScaler.fit(self.features_of(frame))
        self.codec = TargetCodec.fit(frame[list(TARGETS)].to_numpy(dtype=float))
        self.ensemble = self.new_ensemble()

    def train_more(self, frame: pd.DataFrame, steps: int | None = None) -> QualitySurrogate:
        """Continue training on ``frame`` for ``steps`` steps (default: the config's epochs); refits the noise."""
        if self.ensemble is None:
            raise ValueError("call fit() or prepare() first")
        frame = lossy_rows(frame)
        x = self.scaler.transform(self.features_of(frame))
        z = self.codec.encode(frame[list(TARGETS)].to_numpy(dtype=float))
        self.ensemble.train(x, z, steps)
        residual = self.ensemble.predict_members(x).mean(axis=0) - z
        self.z_noise = np.maximum(np.sqrt((residual**2).mean(axis=0)), NOISE_FLOOR)
        self.trained_on = len(frame)
        return self

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """Predictions for the cells of ``frame`` (quality columns, if any, are ignored)."""
        if self.ensemble is None or self.z_noise is None:
            raise ValueError("the surrogate is not trained; call fit() first or load a checkpoint")
        x = self.scaler.transform(self.features_of(frame))
        raw = Prediction(codec=self.codec, z_members=self.ensemble.predict_members(x), z_noise=self.z_noise,
                         interval_scale=self.interval_scale)
        return with_lossless(raw, frame)


def quality_args(values: np.ndarray, targets: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments for :meth:`SplitReward.rewards` from ``[..., T]`` target values (defaults where absent)."""
    defaults = {"log_ppl_ratio": 0.0, "kl_nats": 0.0, "top1_agreement": 1.0}
    return {name: values[..., targets.index(name)] if name in targets else default
            for name, default in defaults.items()}


EXACT = {"log_ppl_ratio": 0.0, "kl_nats": 0.0, "top1_agreement": 1.0}
"""Quality of a lossless cell."""


def with_lossless(prediction: Prediction, frame: pd.DataFrame) -> Prediction:
    """``prediction`` with the lossless cells of ``frame`` set to the exact clean quality and zero uncertainty."""
    exact = lossless_mask(frame)
    if not exact.any():
        return prediction
    values = np.array([[EXACT[name] for name in prediction.targets]])
    members = prediction.z_members.copy()
    members[:, exact] = prediction.codec.encode(values)[0]
    noise = np.broadcast_to(prediction.z_noise, members.shape[1:]).copy()
    noise[exact] = 0.0
    return Prediction(codec=prediction.codec, z_members=members, z_noise=noise,
                      interval_scale=prediction.interval_scale)


def lossy_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells a surrogate learns from (lossless ones carry no information); ValueError when none is left."""
    rows = frame[~lossless_mask(frame)]
    if rows.empty:
        raise ValueError("no lossy cell to learn from: every cell is lossless (k = 0, k = L or an ideal link)")
    return rows


__all__ = ["CALIBRATION_BOUNDS", "CLIP_MARGIN", "EXACT", "MONOTONE", "NOISE_FLOOR", "TRANSFORMS", "Prediction",
           "QualitySurrogate", "TargetCodec", "lossy_rows", "quality_args", "with_lossless"]
