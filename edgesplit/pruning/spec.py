"""What to prune and what came out: the shared vocabulary of every pruning method (core; no Ray).

    config = PruneConfig(method="wanda", ratio=0.5, k=10, side="device")           # layers 0..9, 50 % of weights
    result = prune(loaded, config, calibration_ids)                                  # a new model; the input is kept
    result.model, result.layers                                                      # LoadedModel, per-layer records

Prunable weights are the linear projections inside decoder layers (attention q/k/v/o, MLP gate/up/down or the
family's equivalents); embeddings, norms, biases and the LM head are never pruned. ``side`` picks the layers: the
UE's (``device``: ``0..k-1``), the edge's (``server``: ``k..L-1``) or all of them (``both``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNSTRUCTURED_METHODS = ("magnitude", "wanda", "sparsegpt")
"""Methods that zero individual weights (shapes unchanged; compute saved only with a sparse kernel)."""
STRUCTURED_METHODS = ("structured",)
"""Methods that remove whole attention heads / MLP channels and slice the weights (real compute savings)."""
METHODS = UNSTRUCTURED_METHODS + STRUCTURED_METHODS
SIDES = ("device", "server", "both")
PATTERNS = (None, "2:4", "4:8")
"""Unstructured (None) or semi-structured N:M: at most N non-zeros in every group of M consecutive inputs."""


@dataclass(frozen=True)
class PruneConfig:
    """One pruning of one model for one split."""

    method: str
    """One of :data:`METHODS`."""
    ratio: float
    """Fraction of the selected layers' prunable weights removed, in [0, 0.95]; with an N:M pattern it must be
    1 - N/M (0.5 for 2:4 and 4:8)."""
    k: int
    """Split point the sides refer to (``0..L``)."""
    side: str = "device"
    """``device`` (layers ``< k``), ``server`` (layers ``>= k``) or ``both``."""
    pattern: str | None = None
    """``None`` (unstructured), ``"2:4"`` or ``"4:8"`` (semi-structured; unstructured methods only)."""
    seed: int = 0
    """Seed of anything random (calibration window order, tie breaks)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not isinstance(self.ratio, int | float) or not 0.0 <= float(self.ratio) <= 0.95:
            raise ValueError(f"ratio must be a number in [0, 0.95], got {self.ratio!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k must be a non-negative integer, got {self.k!r}")
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {self.side!r}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of none, 2:4, 4:8, got {self.pattern!r}")
        if self.pattern is not None:
            if self.method not in UNSTRUCTURED_METHODS:
                raise ValueError(f"an N:M pattern applies to {', '.join(UNSTRUCTURED_METHODS)}, not {self.method}")
            n, m = (int(v) for v in self.pattern.split(":"))
            if abs(float(self.ratio) - (1 - n / m)) > 1e-9:
                raise ValueError(f"pattern {self.pattern} prunes exactly {1 - n / m:g} of the weights; got ratio "
                                 f"{self.ratio}")

    def layers(self, num_layers: int) -> range:
        """Indices of the decoder layers this pruning touches."""
        if self.k > num_layers:
            raise ValueError(f"k={self.k} is beyond the model's {num_layers} layers")
        return {"device": range(0, self.k), "server": range(self.k, num_layers),
                "both": range(0, num_layers)}[self.side]

    @property
    def label(self) -> str:
        """Short name for tables and plots, e.g. ``wanda 2:4 device k=10``."""
        how = self.pattern or f"{self.ratio:g}"
        return f"{self.method} {how} {self.side} k={self.k}"


@dataclass
class LayerRecord:
    """What pruning did to one weight matrix."""

    layer: int
    """Decoder layer index."""
    module: str
    """Module path inside the layer, e.g. ``self_attn.q_proj``."""
    numel: int
    """Weights of the dense matrix."""
    removed: int
    """Weights zeroed (unstructured) or sliced away (structured)."""
    param_dist_sq: float
    """Squared Frobenius norm of the weight change ``||W - W_pruned||_F^2`` (removed weights count as zeros)."""
    weight_sq: float
    """Squared Frobenius norm of the dense weights ``||W||_F^2`` (relative distortion = ratio of the two)."""


@dataclass
class PruneResult:
    """A pruned copy of a model and the per-matrix record of what changed."""

    model: object
    """The pruned :class:`~edgesplit.models.LoadedModel` (a new object; the dense model is not modified)."""
    config: PruneConfig
    """What was asked for."""
    layers: list[LayerRecord] = field(default_factory=list)
    """One record per pruned matrix."""
    calibration_s: float = 0.0
    """Wall time of the calibration pass (0 for magnitude)."""
    prune_s: float = 0.0
    """Wall time of the pruning itself."""

    @property
    def param_dist_sq(self) -> float:
        """Total squared Frobenius norm of the weight change."""
        return float(sum(r.param_dist_sq for r in self.layers))

    @property
    def param_dist_rel(self) -> float:
        """Total weight change relative to the dense weights of the pruned matrices."""
        total = sum(r.weight_sq for r in self.layers)
        return float(self.param_dist_sq / total) if total else 0.0

    @property
    def achieved_ratio(self) -> float:
        """Weights removed / weights of the pruned matrices."""
        numel = sum(r.numel for r in self.layers)
        return float(sum(r.removed for r in self.layers) / numel) if numel else 0.0
