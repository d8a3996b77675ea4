"""Quality objectives of the joint optimiser: measured distortion→quality curves, and a bound-based alternative.

    curves = QualityCurves.fit(table, num_layers=30)          # a pruning sweep: method, side, k, ratio, ppl, ...
    objective = curves.objective("structured", "device")
    objective.loss(k=10, rho=0.3)                             # predicted log(ppl / ppl_dense), >= 0
    objective.ppl(k=10, rho=0.3)

What is fitted. For every (method, side) the target is ``y = log(ppl / ppl_dense)`` of each unpatterned row (N:M
rows are left out: their ratio is fixed). Negative measured losses (a pruned model scoring slightly better than the
dense one: noise) are clipped to 0, and ``y(ratio 0) = 0`` by definition. At every **measured k** the mean ``y`` per
ratio is made nondecreasing in the ratio by weighted isotonic regression (pool-adjacent-violators) and interpolated
**geometrically** between two positive knots (``y = y_a·(y_b/y_a)^t``, linear in log y; linearly where a knot is 0),
so the curve is monotone in rho by construction and, where the loss grows faster than linearly (it does: roughly
exponentially in rho), it does not ride above the measurements on the chords. Left-out knots of a 14-ratio magnitude
sweep (SmolLM2, k = 8 and 15, ratios 0.15..0.55 predicted from knots 0.1 apart, same tokens): worst error of the
predicted ppl ratio 4.5 % geometric, 15.6 % linear (PCHIP 5.0 %); with knots 0.2 apart neither is good (0.7 from 0.6
and 0.8: −50 % / +235 %), so measure ratios 0.1 apart where designs are chosen. **Across k** the curves of the two
nearest measured splits are interpolated linearly; the split with nothing to prune is an exact anchor (``y ≡ 0``:
``k = 0`` for ``device``, ``k = L`` for ``server``). Beyond the last measured split (more layers pruned than ever
measured) the nearest measured curve is scaled by the ratio of pruned-layer counts — the straight line through the
anchor — and flagged by :meth:`CurveObjective.extrapolated`. ``both`` prunes every layer whatever k is, so its curve
pools all k.
A curve is defined up to the largest ratio measured at both bracketing splits (:meth:`CurveObjective.rho_limit`).

The bound-based alternative (:class:`BoundObjective`) ranks designs the way Lyu et al. (arXiv 2505.09214) do:
output distortion ≤ Λ · parameter distortion (upper bound, one Lipschitz-type constant Λ), and parameter distortion
≥ a rate-distortion bound of the pruning ratio (lower bound). ``form="rate-distortion"`` (default) is the Gaussian
RD function ``σ²·2^(-2R)`` at the rate of the pruned matrix, ``R(rho) = (1 - rho)·B + H2(rho)`` bits per weight
(kept values at ``B`` bits plus the entropy-coded mask; the derivation is in :mod:`edgesplit.pruning.bounds`);
``form="magnitude-gaussian"`` is the exact distortion of magnitude pruning i.i.d. Gaussian weights,
``rho − 2·t·φ(t)`` with ``t = Φ⁻¹((1 + rho)/2)``. Either way the objective is that per-weight bound times the weight
energy share of the pruned layers. Minimising "upper bound ∘ lower bound" guarantees nothing about the measured
quality (the RD bound stays near 0 until rho ≈ 0.7 at B = 16), which is why the optimiser's default objective is
the measured curve and the bound design is a baseline scored with the curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.special import ndtri

from edgesplit.pruning.spec import METHODS, SIDES

if TYPE_CHECKING:
    import pandas as pd

    from edgesplit.cost import ModelProfile

REQUIRED_COLUMNS = ("method", "pattern", "side", "k", "ratio", "ppl", "ppl_dense")
"""Columns a pruning-sweep table must have for :meth:`QualityCurves.fit`."""


class Objective(Protocol):
    """A quality loss to minimise, nondecreasing in the pruning ratio at every split."""

    name: str
    """Short label for tables and plots."""

    def loss(self, k: int, rho: float) -> float:
        """Loss of pruning at split k with ratio rho."""

    def rho_limit(self, k: int) -> float:
        """Largest ratio the objective covers at split k."""


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares nondecreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2]
    return np.array([mean for mean, _, count in blocks for _ in range(count)], dtype=float)


@dataclass(frozen=True)
class RatioCurve:
    """Monotone loss-vs-ratio curve at one measured split."""

    k: int
    """Split the rows were measured at (-1 for side ``both``, where k does not matter)."""
    ratios: tuple[float, ...]
    """Knots, increasing, starting at 0."""
    values: tuple[float, ...]
    """Fitted log(ppl / ppl_dense) at the knots, nondecreasing, starting at 0."""
    anchor: bool = False
    """True for the exact zero curve of a split with nothing to prune (covers every ratio)."""

    def __call__(self, rho: float | np.ndarray) -> float | np.ndarray:
        """Loss at ``rho``: geometric between two positive knots, linear where a knot is 0 (module docstring)."""
        if self.anchor:
            return np.zeros_like(rho, dtype=float) if isinstance(rho, np.ndarray) else 0.0
        knots, values = np.asarray(self.ratios), np.asarray(self.values)
        r = np.clip(np.asarray(rho, dtype=float), knots[0], knots[-1])
        if len(knots) == 1:
            out = np.full_like(r, values[0])
        else:
            hi = np.clip(np.searchsorted(knots, r, side="right"), 1, len(knots) - 1)
            a, b = values[hi - 1], values[hi]
            frac = (r - knots[hi - 1]) / (knots[hi] - knots[hi - 1])
            positive = (a > 0) & (b > 0)
            growth = np.divide(b, a, out=np.ones_like(frac), where=positive)
            out = np.where(positive, a * growth**frac, a + (b - a) * frac)
        return out if isinstance(rho, np.ndarray) else float(out)

    @property
    def rho_limit(self) -> float:
        """Largest measured ratio (inf for an anchor)."""
        return math.inf if self.anchor else self.ratios[-1]


def _fit_ratio_curve(k: int, rows: pd.DataFrame) -> RatioCurve:
    grouped = rows.groupby("ratio")["y"].agg(["mean", "count"]).sort_index()
    ratios = grouped.index.to_numpy(dtype=float)
    means = grouped["mean"].to_numpy(dtype=float, copy=True)
    counts = grouped["count"].to_numpy(dtype=float)
    if ratios[0] > 0:
        ratios, means, counts = np.r_[0.0, ratios], np.r_[0.0, means], np.r_[1.0, counts]
    means[0] = 0.0  # the dense model by definition
    fitted = np.maximum(isotonic(means, counts), 0.0)
    return RatioCurve(k=k, ratios=tuple(ratios.tolist()), values=tuple(fitted.tolist()))


@dataclass(frozen=True)
class CurveObjective:
    """Measured loss surface of one (method, side): isotonic in rho per measured k, linear across k."""

    method: str
    """Pruning method of the rows."""
    side: str
    """Pruned side of the rows."""
    num_layers: int
    """Depth L of the model."""
    curves: tuple[RatioCurve, ...]
    """One curve per measured k (and the anchor), ordered by k."""
    ppl_dense: float
    """Perplexity of the dense model on the sweep's text."""

    @property
    def name(self) -> str:
        """Label, e.g. ``measured structured/device``."""
        return f"measured {self.method}/{self.side}"

    def _pruned_layers(self, k: int) -> int:
        return k if self.side == "device" else self.num_layers - k

    def _bracket(self, k: int) -> tuple[RatioCurve, RatioCurve, float, float]:
        """(lower curve, upper curve, weight of the upper one, extrapolation scale)."""
        if self.side == "both":
            return self.curves[0], self.curves[0], 0.0, 1.0
        ks = [curve.k for curve in self.curves]
        if k <= ks[0] or k >= ks[-1]:
            end = self.curves[0] if k <= ks[0] else self.curves[-1]
            scale = self._pruned_layers(k) / self._pruned_layers(end.k) if not end.anchor else 1.0
            return end, end, 0.0, scale
        hi = next(i for i, value in enumerate(ks) if value >= k)
        lo_curve, hi_curve = self.curves[hi - 1], self.curves[hi]
        return lo_curve, hi_curve, (k - lo_curve.k) / (hi_curve.k - lo_curve.k), 1.0

    def loss(self, k: int, rho: float | np.ndarray) -> float | np.ndarray:
        """Predicted log(ppl / ppl_dense) at split k and ratio rho."""
        lo, hi, weight, scale = self._bracket(k)
        return scale * ((1.0 - weight) * lo(rho) + weight * hi(rho))

    def ppl(self, k: int, rho: float | np.ndarray) -> float | np.ndarray:
        """Predicted perplexity."""
        return self.ppl_dense * np.exp(self.loss(k, rho))

    def rho_limit(self, k: int) -> float:
        """Largest ratio measured at both bracketing splits."""
        lo, hi, _, _ = self._bracket(k)
        return min(lo.rho_limit, hi.rho_limit)

    def extrapolated(self, k: int) -> bool:
        """True when k prunes more layers than any measured split (the nearest curve is scaled)."""
        ks = [curve.k for curve in self.curves]
        return self.side != "both" and not ks[0] <= k <= ks[-1]

    @property
    def measured_splits(self) -> tuple[int, ...]:
        """Splits with measurements (anchors excluded)."""
        return tuple(curve.k for curve in self.curves if not curve.anchor)


def _check_table(table: pd.DataFrame) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(f"quality table lacks column(s) {', '.join(missing)}; needs {', '.join(REQUIRED_COLUMNS)}")


def _usable_rows(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["pattern"].isna() & np.isfinite(table["ppl"]) & (table["ppl"] > 0)].copy()
    rows["y"] = np.maximum(np.log(rows["ppl"] / rows["ppl_dense"]), 0.0)
    return rows


def _fit_objective(method: str, side: str, rows: pd.DataFrame, num_layers: int) -> CurveObjective:
    if side == "both":
        curves = (_fit_ratio_curve(-1, rows),)
    else:
        measured = [_fit_ratio_curve(int(k), group) for k, group in rows.groupby("k")
                    if (side == "device" and k > 0) or (side == "server" and k < num_layers)]
        if not measured:
            raise ValueError(f"{method}/{side}: no rows at a split that prunes anything")
        anchor = RatioCurve(k=0 if side == "device" else num_layers, ratios=(0.0,), values=(0.0,), anchor=True)
        curves = tuple(sorted([*measured, anchor], key=lambda curve: curve.k))
    return CurveObjective(method=method, side=side, num_layers=num_layers, curves=curves,
                          ppl_dense=float(rows["ppl_dense"].median()))


@dataclass(frozen=True)
class QualityCurves:
    """Measured objectives for every (method, side) of a pruning-sweep table."""

    objectives: dict[tuple[str, str], CurveObjective]
    """Fitted surface per (method, side)."""
    source: str
    """Where the table came from (file name, or how it was measured)."""

    @classmethod
    def fit(cls, table: pd.DataFrame, num_layers: int, source: str = "table") -> QualityCurves:
        """Fit every (method, side) present in ``table`` (see the module docstring)."""
        _check_table(table)
        rows = _usable_rows(table)
        if rows.empty:
            raise ValueError("quality table has no usable rows (unpatterned, finite positive ppl)")
        bad = sorted(set(rows["method"]) - set(METHODS)) + sorted(set(rows["side"]) - set(SIDES))
        if bad:
            raise ValueError(f"quality table has unknown method/side value(s) {bad}")
        objectives = {(str(m), str(s)): _fit_objective(str(m), str(s), group, num_layers)
                      for (m, s), group in rows.groupby(["method", "side"])}
        return cls(objectives=objectives, source=source)

    def objective(self, method: str, side: str) -> CurveObjective:
        """The fitted surface of (method, side); ValueError naming what the table has otherwise."""
        try:
            return self.objectives[(method, side)]
        except KeyError:
            have = ", ".join(f"{m}/{s}" for m, s in sorted(self.objectives)) or "nothing"
            raise ValueError(f"quality table ({self.source}) has no rows for {method}/{side}; it has {have}") from None


BOUND_FORMS = ("rate-distortion", "magnitude-gaussian")
"""Per-weight lower bounds :class:`BoundObjective` can use."""


def gaussian_prune_distortion(rho: float | np.ndarray) -> float | np.ndarray:
    """``rho − 2·t·φ(t)``, ``t = Φ⁻¹((1 + rho)/2)``: relative squared error of magnitude pruning a fraction rho of
    i.i.d. Gaussian weights (the energy of the smallest-magnitude fraction)."""
    r = np.clip(np.asarray(rho, dtype=float), 0.0, 1.0)
    t = ndtri((1.0 + r) / 2.0)
    density = np.exp(-0.5 * t**2) / math.sqrt(2.0 * math.pi)
    d = np.where(r >= 1.0, 1.0, r - 2.0 * np.nan_to_num(t * density))
    return d if isinstance(rho, np.ndarray) else float(d)


def rate_distortion_bound(rho: float | np.ndarray, bits_per_weight: float = 16.0) -> float | np.ndarray:
    """``2^(-2R)``, ``R = (1 - rho)·B + H2(rho)``: Gaussian RD lower bound on relative parameter distortion."""
    r = np.clip(np.asarray(rho, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h2 = np.nan_to_num(-(r * np.log2(r) + (1 - r) * np.log2(1 - r)))
    d = np.exp2(-2.0 * ((1.0 - r) * bits_per_weight + h2))
    return d if isinstance(rho, np.ndarray) else float(d)


@dataclass(frozen=True)
class BoundObjective:
    """Bound-based objective (module docstring): per-weight bound times the pruned layers' weight-energy share."""

    side: str
    """Pruned side: ``device``, ``server`` or ``both``."""
    layer_weight_sq: tuple[float, ...]
    """Squared Frobenius norm of each layer's prunable weights (parameter counts stand in: unit variance)."""
    form: str = "rate-distortion"
    """Per-weight lower bound, one of :data:`BOUND_FORMS`."""
    bits_per_weight: float = 16.0
    """Storage bits of a kept weight in the rate of the pruned matrix (rate-distortion form)."""
    rho_max: float = 0.95
    """Largest ratio covered."""

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {self.side!r}")
        if self.form not in BOUND_FORMS:
            raise ValueError(f"form must be one of {', '.join(BOUND_FORMS)}, got {self.form!r}")
        if not self.layer_weight_sq or min(self.layer_weight_sq) < 0 or not sum(self.layer_weight_sq) > 0:
            raise ValueError("layer_weight_sq needs one non-negative value per layer, not all zero")

    @property
    def name(self) -> str:
        """Label, e.g. ``bound rate-distortion``."""
        return f"bound {self.form}"

    @classmethod
    def from_profile(cls, model: ModelProfile, side: str, **options) -> BoundObjective:
        """Unit-variance weights: each layer's energy is its count of prunable parameters."""
        energies = tuple(float(layer.attn_proj_params + layer.mlp_params) for layer in model.layers)
        return cls(side=side, layer_weight_sq=energies, **options)

    def _pruned_share(self, k: int) -> float:
        L = len(self.layer_weight_sq)
        layers = {"device": range(0, k), "server": range(k, L), "both": range(0, L)}[self.side]
        return sum(self.layer_weight_sq[i] for i in layers) / sum(self.layer_weight_sq)

    def per_weight(self, rho: float | np.ndarray) -> float | np.ndarray:
        """The per-weight lower bound (relative to the weight variance)."""
        if self.form == "rate-distortion":
            return rate_distortion_bound(rho, self.bits_per_weight)
        return gaussian_prune_distortion(rho)

    def loss(self, k: int, rho: float | np.ndarray) -> float | np.ndarray:
        """Bound on output distortion, up to Λ: pruned weight-energy share × per-weight bound."""
        return self._pruned_share(k) * self.per_weight(rho)

    def rho_limit(self, k: int) -> float:
        """Every ratio up to rho_max."""
        return self.rho_max
