"""Surrogates to compare the deep ensemble with: a Gaussian process, and the reference paper's MLP.

Both follow :class:`~surrogate.model.QualitySurrogate`'s ``fit(frame)`` / ``predict(frame) → Prediction``
interface, so every metric and the active-learning loop accept them.

- :class:`GPSurrogate`: scikit-learn ``GaussianProcessRegressor`` per target (constant × Matérn-5/2 with one length
  scale per feature, plus a white-noise kernel), on the same features and transformed targets as the ensemble
  (lossless cells exact, as there). Its posterior is exposed as a two-member "ensemble" ``mean ± std``, which has
  exactly the posterior mean and std.
  It cannot be checkpointed (scikit-learn models only serialise through pickle, which edgesplit never uses).
- :class:`PaperSurrogate`: the reference paper's surrogate — one MLP 2→128→128→1 (ReLU, Adam 1e-3, MSE) on two
  inputs only: the channel parameter (its ``p``; for the SNR-driven kinds, the SNR in dB — the most generous
  reading of the paper's single channel input) and the split ``k``. It predicts the log-perplexity ratio (our target,
  standardised), and has no uncertainty: its epistemic std is 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from surrogate.dataset import TARGETS
from surrogate.ensemble import single_thread
from surrogate.features import FeatureScaler, feature_matrix, validate_cells
from surrogate.model import NOISE_FLOOR, Prediction, TargetCodec, lossy_rows, with_lossless
from surrogate.sensitivity import SensitivityProfile


class GPSurrogate:
    """Gaussian-process baseline (see the module docstring)."""

    kind = "gp"

    def __init__(self, seed: int = 0, restarts: int = 2, scaler: FeatureScaler | None = None,
                 sensitivity: dict[str, SensitivityProfile] | None = None) -> None:
        self.seed, self.restarts, self.scaler = seed, restarts, scaler
        self.sensitivity = dict(sensitivity) if sensitivity else None
        self.models: list = []
        self.codec: TargetCodec | None = None
        self.columns: np.ndarray | None = None

    def fit(self, frame: pd.DataFrame) -> GPSurrogate:
        """Fit one GP per target on the cells of ``frame``."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        frame = lossy_rows(frame)
        raw = feature_matrix(frame, self.sensitivity)
        self.scaler = self.scaler or FeatureScaler.fit(raw)
        x = self.scaler.transform(raw)
        self.columns = np.flatnonzero(x.std(axis=0) > 1e-8)  # constant columns carry nothing for a GP
        x = x[:, self.columns]
        self.codec = TargetCodec.fit(frame[list(TARGETS)].to_numpy(dtype=float))
        z = self.codec.encode(frame[list(TARGETS)].to_numpy(dtype=float))
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.ones(x.shape[1]), (1e-2, 1e3), nu=2.5) + \
            WhiteKernel(1e-3, (1e-6, 1.0))
        self.models = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for t in range(len(TARGETS)):
                gp = GaussianProcessRegressor(kernel, n_restarts_optimizer=self.restarts, random_state=self.seed)
                self.models.append(gp.fit(x, z[:, t]))
        return self

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """Posterior mean ± std as a two-member ensemble; the fitted white noise is the observation noise."""
        if not self.models:
            raise ValueError("the GP surrogate is not fitted")
        x = self.scaler.transform(feature_matrix(frame, self.sensitivity))[:, self.columns]
        means, stds = zip(*(gp.predict(x, return_std=True) for gp in self.models), strict=True)
        mean, std = np.stack(means, axis=1), np.stack(stds, axis=1)
        noise = np.array([max(np.sqrt(gp.kernel_.k2.noise_level), NOISE_FLOOR) for gp in self.models])
        epistemic = np.sqrt(np.maximum(std**2 - noise**2, 0.0))  # return_std includes the white noise
        members = np.stack([mean - epistemic, mean + epistemic])
        return with_lossless(Prediction(codec=self.codec, z_members=members, z_noise=noise), frame)


def paper_inputs(frame: pd.DataFrame) -> np.ndarray:
    """The reference paper's two inputs: (channel parameter, k) — p for dropout, SNR dB otherwise."""
    cells = validate_cells(frame)
    channel = np.where(cells["channel"] == "dropout", cells["p"].to_numpy(dtype=float),
                       cells["snr_db"].to_numpy(dtype=float))
    return np.stack([channel, cells["k"].to_numpy(dtype=float)], axis=1)


class PaperSurrogate:
    """The reference paper's MLP 2→128→128→1 on (channel parameter, k) (see the module docstring)."""

    kind = "paper"

    def __init__(self, seed: int = 0, epochs: int = 2000, lr: float = 1e-3) -> None:
        self.seed, self.epochs, self.lr = seed, epochs, lr
        self.net: torch.nn.Module | None = None

    def fit(self, frame: pd.DataFrame) -> PaperSurrogate:
        """Train on the cells of ``frame`` (full batch, MSE on the standardised log-perplexity ratio)."""
        x = paper_inputs(frame)
        self.x_mean, self.x_scale = x.mean(axis=0), np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        y = frame["log_ppl_ratio"].to_numpy(dtype=float)
        self.y_mean, self.y_scale = y.mean(), y.std() if y.std() > 0 else 1.0
        torch.manual_seed(self.seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                       torch.nn.ReLU(), torch.nn.Linear(128, 1))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        xs = torch.as_tensor((x - self.x_mean) / self.x_scale, dtype=torch.float32)
        ys = torch.as_tensor((y - self.y_mean) / self.y_scale, dtype=torch.float32)[:, None]
        with single_thread():
            for _ in range(self.epochs):
                optimizer.zero_grad(set_to_none=True)
                loss = (self.net(xs) - ys).pow(2).mean()
                loss.backward()
                optimizer.step()
        return self

    @torch.no_grad()
    def predict(self, frame: pd.DataFrame) -> Prediction:
        """Point predictions of the log-perplexity ratio (one member, noise at the floor)."""
        if self.net is None:
            raise ValueError("the paper surrogate is not fitted")
        xs = torch.as_tensor((paper_inputs(frame) - self.x_mean) / self.x_scale, dtype=torch.float32)
        with single_thread():
            z = self.net(xs).double().numpy()
        return Prediction(codec=_IdentityCodec(self.y_mean, self.y_scale), z_members=z[None],
                          z_noise=np.array([NOISE_FLOOR]))


class _IdentityCodec(TargetCodec):
    """Standardisation only (the paper's network learns the raw target)."""

    def __init__(self, mean: float, scale: float) -> None:
        super().__init__(("log_ppl_ratio",), np.array([mean]), np.array([scale]))

    def encode(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=float) - self.mean) / self.scale

    def decode(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=float) * self.scale + self.mean


__all__ = ["GPSurrogate", "PaperSurrogate", "paper_inputs"]
