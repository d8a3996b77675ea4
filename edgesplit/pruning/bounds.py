"""The paper's two claims made testable: rate-distortion lower bounds on parameter distortion, closed forms for
magnitude pruning of i.i.d. weights, distribution fits of real weights, and the constant of ``output <= c · param``.

Lyu et al. (arXiv 2505.09214) bound the output distortion of a pruned model by its parameter distortion, and the
parameter distortion from below by a rate-distortion function of the pruning ratio. The pieces, per weight
(variance ``σ²``; a Laplacian ``Laplace(0, b)`` has variance ``2b²`` and differential entropy ``h = log2(2eb)`` bits):

- **Gaussian RD function** ``D_G(R) = σ² 2^(-2R)``. It is the RD function of a Gaussian source and an *upper*
  bound on ``D(R)`` of any source of that variance, so it is a lower bound only for Gaussian weights.
- **Shannon lower bound** (any source, MSE): ``D(R) >= 2^(2h) / (2πe) · 2^(-2R)``. For the Laplacian,
  ``2^(2h)/(2πe) = (2eb)²/(2πe) = (2e/π) b²``, so ``D_L(R) >= (2e/π) b² 2^(-2R) ≈ 1.730 b² 2^(-2R)`` — the SLB is
  ``e/π ≈ 0.865`` of the Gaussian bound of equal variance (not ``e b²/π``: that misses the factor 2 of ``σ² = 2b²``).
  ``blahut_arimoto`` computes the true ``D(R)`` numerically to check that the SLB sits below it.
- **Rate–ratio mapping** (:func:`rate_from_ratio`). A pruned matrix is a description of ``W``: the positions of
  the kept weights (a Bernoulli(1-ρ) mask, ``H2(ρ)`` bits per weight when entropy-coded) and the kept values at
  ``B`` bits each. So pruning at ratio ρ is a code of rate ``R(ρ) = (1-ρ)·B + H2(ρ)`` bits per weight and, by the
  converse of the RD theorem, its distortion per weight is at least ``D(R(ρ))`` (``mapping="memory"``, the default;
  ``B = 16`` for fp16 storage). ``mapping="values"`` drops the mask term, ``R = (1-ρ)·B`` (the bits of the kept
  values only — the budget a "kept fraction of the parameters" argument counts); it gives a larger, still valid
  bound only if the positions were free, which they are not. Either way the bound is an equal-memory comparison:
  the best any compressor could do in the memory the pruned matrix occupies. :func:`effective_rate` inverts it:
  the rate at which an optimal code would match the measured distortion.
- **Magnitude pruning of i.i.d. weights** (zero the fraction ρ of smallest ``|w|``), distortion per weight:
  Laplacian ``b²·[2 - (1-ρ)(u² + 2u + 2)]`` with ``u = -ln(1-ρ)``; Gaussian ``σ²·[ρ - 2zφ(z)]`` with
  ``z = Φ⁻¹((1+ρ)/2)`` (both ``E[w² 1{|w| < t}]`` at the ρ-quantile ``t`` of ``|w|``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

SLB_LAPLACE = 2 * math.e / math.pi
"""``2^(2h)/(2πe)`` of ``Laplace(0, 1)``: the Shannon lower bound is ``SLB_LAPLACE · b² · 2^(-2R)``."""
MAPPINGS = ("memory", "values")


def _ratio(ratio) -> np.ndarray:
    r = np.asarray(ratio, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r >= 1):
        raise ValueError(f"pruning ratio must lie in [0, 1), got {ratio!r}")
    return r


def _positive(value, name: str) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


# ---- closed forms for magnitude pruning --------------------------------------------------------------------------
def magnitude_distortion_laplacian(ratio, b: float = 1.0):
    """Distortion per weight of magnitude pruning i.i.d. ``Laplace(0, b)`` weights at ``ratio``."""
    r, b = _ratio(ratio), _positive(b, "b")
    u = -np.log1p(-r)
    return b * b * (2.0 - (1.0 - r) * (u * u + 2 * u + 2))


def magnitude_distortion_gaussian(ratio, sigma: float = 1.0):
    """Distortion per weight of magnitude pruning i.i.d. ``N(0, σ²)`` weights at ``ratio``."""
    r, sigma = _ratio(ratio), _positive(sigma, "sigma")
    z = special.ndtri((1.0 + r) / 2.0)
    return sigma * sigma * (r - 2 * z * stats.norm.pdf(z))


def magnitude_curve(weight, ratios) -> np.ndarray:
    """Exact relative distortion ``||W - W_ρ||² / ||W||²`` of magnitude pruning one matrix at each ratio.

    Zeroes the ``round(ρ·n)`` (half up) smallest ``|w|`` of the whole matrix, as ``magnitude`` does.
    """
    w2 = np.sort(np.square(np.asarray(weight, dtype=np.float64).ravel()))
    cum = np.concatenate([[0.0], np.cumsum(w2)])
    counts = np.floor(_ratio(ratios) * w2.size + 0.5).astype(int)
    return cum[counts] / cum[-1]


# ---- rate-distortion bounds ----------------------------------------------------------------------------------------
def gaussian_rd(rate_bits, variance: float = 1.0):
    """``σ² 2^(-2R)``: the Gaussian source's RD function (MSE), per weight."""
    return _positive(variance, "variance") * np.exp2(-2.0 * np.asarray(rate_bits, dtype=float))


def shannon_lower_bound(rate_bits, entropy_bits: float):
    """``2^(2h)/(2πe) · 2^(-2R)``: a lower bound on ``D(R)`` (MSE) of any source of differential entropy ``h``."""
    return np.exp2(2.0 * entropy_bits - 2.0 * np.asarray(rate_bits, dtype=float)) / (2 * math.pi * math.e)


def laplacian_entropy_bits(b: float = 1.0) -> float:
    """Differential entropy of ``Laplace(0, b)``: ``log2(2eb)`` bits."""
    return math.log2(2 * math.e * _positive(b, "b"))


def laplacian_slb(rate_bits, b: float = 1.0):
    """Shannon lower bound of ``Laplace(0, b)``: ``(2e/π) b² 2^(-2R)``."""
    return SLB_LAPLACE * _positive(b, "b") ** 2 * np.exp2(-2.0 * np.asarray(rate_bits, dtype=float))


def binary_entropy_bits(p):
    """``H2(p)`` in bits (0 at p = 0 and 1)."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p <= 0) | (p >= 1), 0.0, h)


def rate_from_ratio(ratio, bits_per_weight: float = 16.0, mapping: str = "memory"):
    """Bits per weight of a matrix pruned at ``ratio`` whose kept weights take ``bits_per_weight`` bits each.

    ``memory``: ``(1-ρ)·B + H2(ρ)`` (values + entropy-coded mask); ``values``: ``(1-ρ)·B``.
    """
    r, bits = _ratio(ratio), _positive(bits_per_weight, "bits_per_weight")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")
    return (1 - r) * bits + (binary_entropy_bits(r) if mapping == "memory" else 0.0)


def effective_rate(distortion_rel, constant: float = 1.0):
    """Rate at which an optimal code reaches a relative distortion: ``½ log2(constant / D)`` (0 when D >= constant).

    ``constant`` is the bound's ``2^(2h)/(2πe) / σ²``: 1 for the Gaussian bound, ``e/π`` for the Laplacian SLB.
    """
    d = np.asarray(distortion_rel, dtype=float)
    with np.errstate(divide="ignore"):
        return np.maximum(0.5 * np.log2(constant / d), 0.0)


def blahut_arimoto(x: np.ndarray, p: np.ndarray, slope: float, iters: int = 500) -> tuple[float, float]:
    """``(R bits, D)`` of the RD curve (MSE) of the discrete source ``p`` on grid ``x`` at Lagrange ``slope > 0``.

    Reproduction points are the same grid; ``slope`` trades rate for distortion (larger: lower D, higher R).
    """
    x, p = np.asarray(x, dtype=float), np.asarray(p, dtype=float) / np.sum(p)
    dist = np.subtract.outer(x, x) ** 2
    kernel = np.exp(-_positive(slope, "slope") * (dist - dist.min(axis=1, keepdims=True)))
    q = np.full(x.size, 1.0 / x.size)
    for _ in range(iters):
        cond = kernel * q
        cond /= cond.sum(axis=1, keepdims=True)
        q = p @ cond
    cond = kernel * q
    cond /= cond.sum(axis=1, keepdims=True)
    joint = p[:, None] * cond
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.nansum(joint * np.log2(cond / q[None, :]))
    return float(rate), float(np.sum(joint * dist))


# ---- are LLM weights Laplacian? -------------------------------------------------------------------------------------
@dataclass
class DistributionFit:
    """Gaussian, Laplacian and generalised-Gaussian maximum-likelihood fits of one weight matrix."""

    numel: int
    """Weights in the matrix."""
    fitted: int
    """Weights the fit used (a seeded subsample for large matrices)."""
    mean: float
    """Sample mean (Gaussian location)."""
    std: float
    """Sample standard deviation (Gaussian MLE scale)."""
    laplace_loc: float
    """Sample median (Laplacian MLE location)."""
    laplace_b: float
    """Mean absolute deviation from the median (Laplacian MLE scale)."""
    gennorm_beta: float
    """Shape of the best generalised Gaussian ``exp(-|x/α|^β)``: 1 is Laplacian, 2 is Gaussian."""
    excess_kurtosis: float
    """Fourth standardised moment minus 3 (Gaussian 0, Laplacian 3)."""
    ll_gauss: float
    """Mean log-likelihood per weight under the Gaussian fit (nats)."""
    ll_laplace: float
    """Mean log-likelihood per weight under the Laplacian fit (nats)."""
    ll_gennorm: float
    """Mean log-likelihood per weight under the generalised-Gaussian fit (nats)."""
    ks_gauss: float
    """Kolmogorov–Smirnov distance of the sample to the Gaussian fit."""
    ks_laplace: float
    """Kolmogorov–Smirnov distance of the sample to the Laplacian fit."""

    @property
    def better(self) -> str:
        """``laplace`` or ``gaussian``: the fit with the higher likelihood."""
        return "laplace" if self.ll_laplace > self.ll_gauss else "gaussian"

    def to_dict(self) -> dict:
        """Plain dict (with :attr:`better`) for tables."""
        return {**asdict(self), "better": self.better}


def _gennorm_fit(x: np.ndarray, loc: float) -> tuple[float, float]:
    """(β, mean log-likelihood) of the generalised Gaussian MLE with location ``loc`` (profile likelihood in β)."""
    a = np.abs(x - loc)

    def nll(beta: float) -> float:
        alpha = (beta * np.mean(a ** beta)) ** (1 / beta)
        return -(math.log(beta) - math.log(2 * alpha) - special.gammaln(1 / beta) - 1 / beta)

    best = optimize.minimize_scalar(nll, bounds=(0.2, 6.0), method="bounded", options={"xatol": 1e-4})
    return float(best.x), float(-best.fun)


def fit_distribution(weight, max_samples: int = 200_000, seed: int = 0) -> DistributionFit:
    """Fit one matrix (or any array of weights); a seeded subsample of ``max_samples`` when it is larger."""
    w = np.asarray(weight, dtype=np.float64).ravel()
    if w.size < 8 or not np.all(np.isfinite(w)):
        raise ValueError(f"need at least 8 finite weights to fit, got {w.size}")
    x = np.random.default_rng(seed).choice(w, max_samples, replace=False) if w.size > max_samples else w
    mean, std = float(x.mean()), float(x.std())
    loc = float(np.median(x))
    b = float(np.mean(np.abs(x - loc)))
    if std <= 0 or b <= 0:
        raise ValueError("the weights are constant; nothing to fit")
    beta, ll_gen = _gennorm_fit(x, loc)
    return DistributionFit(
        numel=int(w.size), fitted=int(x.size), mean=mean, std=std, laplace_loc=loc, laplace_b=b, gennorm_beta=beta,
        excess_kurtosis=float(stats.kurtosis(x)), ll_gauss=float(np.mean(stats.norm.logpdf(x, mean, std))),
        ll_laplace=float(np.mean(stats.laplace.logpdf(x, loc, b))), ll_gennorm=ll_gen,
        ks_gauss=float(stats.kstest(x, "norm", args=(mean, std)).statistic),
        ks_laplace=float(stats.kstest(x, "laplace", args=(loc, b)).statistic))


def fit_model_weights(loaded, layers=None, max_samples: int = 200_000, seed: int = 0) -> pd.DataFrame:
    """One row per prunable projection of ``layers`` (default: all): :class:`DistributionFit` and its name."""
    from edgesplit.pruning.linear import prunable_linears

    rows = []
    for index in range(loaded.num_layers) if layers is None else layers:
        for lin in prunable_linears(loaded.adapter.layers[index]):
            fit = fit_distribution(lin.weight().numpy(), max_samples=max_samples, seed=seed + index)
            rows.append({"layer": index, "module": lin.name, **fit.to_dict()})
    return pd.DataFrame(rows)


# ---- output <= c · parameter distortion ----------------------------------------------------------------------------
@dataclass
class BoundFit:
    """The smallest ``c`` with ``output <= c · param`` over a table's rows, and how tight it is row by row."""

    output: str
    """Column of the output distortion (e.g. ``logits_mse``, ``kl``)."""
    param: str
    """Column of the parameter distortion (e.g. ``param_dist_sq``)."""
    c: float
    """``max(output / param)`` over rows with ``param > 0``."""
    rows: int
    """Rows the fit used."""
    violations: int
    """Rows with ``param == 0`` and ``output > 0`` (no finite c holds for them)."""
    slack_decades_median: float
    """Median over rows of ``log10(c · param / output)`` (0 where the bound is tight)."""
    slack_decades_max: float
    """Largest slack: how many orders of magnitude the bound overestimates the loosest row."""
    loglog_slope: float
    """Slope of a least-squares line through ``log output`` vs ``log param`` (1 if proportional)."""
    tightness: pd.Series
    """``output / (c · param)`` per used row (index of the input table), in (0, 1]."""

    def summary(self) -> dict:
        """Everything but the per-row series."""
        data = asdict(self)
        data.pop("tightness")
        return data


def fit_bound_constant(table: pd.DataFrame, output: str = "logits_mse", param: str = "param_dist_sq") -> BoundFit:
    """Fit ``c`` over ``table``; rows with a non-finite value or ``param <= 0`` are left out of the ratio."""
    for column in (output, param):
        if column not in table.columns:
            raise ValueError(f"column {column!r} is not in the table (has {', '.join(map(str, table.columns))})")
    finite = table[np.isfinite(table[output]) & np.isfinite(table[param])]
    used = finite[(finite[param] > 0) & (finite[output] > 0)]
    violations = int(((finite[param] <= 0) & (finite[output] > 0)).sum())
    if used.empty:
        raise ValueError(f"no row has both {param} > 0 and {output} > 0; nothing to fit")
    ratio = used[output] / used[param]
    c = float(ratio.max())
    slack = np.log10(c / ratio)
    slope = float(np.polyfit(np.log(used[param]), np.log(used[output]), 1)[0]) if len(used) > 1 else float("nan")
    return BoundFit(output=output, param=param, c=c, rows=len(used), violations=violations,
                    slack_decades_median=float(slack.median()), slack_decades_max=float(slack.max()),
                    loglog_slope=slope, tightness=ratio / c)


__all__ = ["MAPPINGS", "SLB_LAPLACE", "BoundFit", "DistributionFit", "binary_entropy_bits", "blahut_arimoto",
           "effective_rate", "fit_bound_constant", "fit_distribution", "fit_model_weights", "gaussian_rd",
           "laplacian_entropy_bits", "laplacian_slb", "magnitude_curve", "magnitude_distortion_gaussian",
           "magnitude_distortion_laplacian", "rate_from_ratio", "shannon_lower_bound"]
