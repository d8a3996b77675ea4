"""The receiver's erasure repair and the sender's massive-row rule of unequal protection (:mod:`edgesplit.channel.uep`).

Repair: an element the link flags lost in every copy (:attr:`~edgesplit.channel.impairment.ImpairmentResult.lost`:
a dropout mask, an erased fragment, a transport block whose CRC failed) becomes its channel's calibrated value
(:class:`RepairValues`, computed by the edge from the model, :func:`edgesplit.quality.outliers.repair_values`)
instead of 0. Massive rows: positions whose peak |x| exceeds ``tau`` × the packet's median row peak, which the
sender sends whole (their positions travel in the version-4 frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def split_key(key: Any) -> int:
    if isinstance(key, str) and key.isdigit():  # JSON object keys are strings
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int) or key < 0:
        raise ValueError(f"per-split channel tables are keyed by split k (an int >= 0), got {key!r}")
    return key


@dataclass(frozen=True, eq=False)
class RepairValues:
    """Calibrated per-channel values the receiver puts in place of lost elements (:func:`repair`), per split.

    The edge holds the model, so it computes these itself (:func:`edgesplit.quality.outliers.repair_values`): they
    cost no bits."""

    body: dict[int, torch.Tensor]
    """Per split k: ``[hidden]`` per-channel median of the calibration states at positions >= 1."""
    sink: dict[int, torch.Tensor]
    """Per split k: ``[hidden]`` per-channel median of the state at position 0 (the attention sink)."""
    source: str = "unnamed"
    """What they were calibrated on (a corpus name and token count), for the records."""

    def __post_init__(self) -> None:
        if not isinstance(self.body, dict) or not isinstance(self.sink, dict) or self.body.keys() != self.sink.keys():
            raise ValueError("body and sink must be dicts {k: [hidden] tensor} over the same splits")
        widths = set()
        for name, table in (("body", self.body), ("sink", self.sink)):
            for k, v in table.items():
                split_key(k)
                if not isinstance(v, torch.Tensor) or v.ndim != 1 or not v.is_floating_point() or \
                        not bool(torch.isfinite(v).all()):
                    raise ValueError(f"{name}[{k}] must be a finite 1-D float tensor [hidden]")
                widths.add(v.numel())
        if len(widths) > 1:
            raise ValueError(f"every split's values must have one width, got {sorted(widths)}")

    def for_split(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(body, sink) of split ``k``; ValueError if it was not calibrated."""
        if k not in self.body:
            raise ValueError(f"no repair values for split {k}; calibrated: {sorted(self.body)}")
        return self.body[k], self.sink[k]

    def __repr__(self) -> str:
        width = next((v.numel() for v in self.body.values()), 0)
        return f"RepairValues(splits={sorted(self.body)}, hidden={width}, source={self.source!r})"


def massive_rows(x: torch.Tensor, tau: float, limit: int) -> list[int]:
    """Rows (axis -2) of ``x`` whose max |x| (over the last dim and every leading dim) exceeds ``tau`` × the median
    row max: at most ``limit``, largest first (the sender's rule; the positions travel in the frame)."""
    if x.dim() < 2:
        raise ValueError(f"massive rows need a [..., T, hidden] tensor, got shape {list(x.shape)}")
    peak = x.detach().abs().float().amax(-1).reshape(-1, x.shape[-2]).amax(0)
    reference = float(peak.median())
    if not reference > 0:  # an all-zero packet (or NaNs) has no massive row
        return []
    order = torch.argsort(peak, descending=True, stable=True)[:limit]
    return [int(r) for r in order if float(peak[r]) > tau * reference]


def repair(out: torch.Tensor, lost: torch.Tensor, body: torch.Tensor, sink: torch.Tensor,
           rows: list[int]) -> torch.Tensor:
    """The erasure-repair rule: ``out`` with every ``lost`` element set to its channel's calibrated value, ``sink``
    in ``rows`` (those sent whole: the attention sink and massive rows), ``body`` elsewhere."""
    if lost.shape != out.shape:
        raise ValueError(f"lost mask {list(lost.shape)} does not match the tensor {list(out.shape)}")
    values = body.to(out).expand_as(out).clone()
    if rows and out.dim() >= 2:
        values[..., rows, :] = sink.to(out)
    return torch.where(lost, values, out)
