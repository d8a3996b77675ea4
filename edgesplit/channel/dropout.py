"""Element dropout of the hidden state: the reference paper's channel model (arXiv 2406.02616).

Each element is zeroed independently with probability ``p``. The paper's code zeroes with a plain
mask, ``hidden * ~(rand < p)``, without the 1/(1-p) rescaling of ``torch.nn.functional.dropout``;
that is the default here (``rescale=False``), so results are comparable with the paper's p grid
(0.02..0.30). ``rescale=True`` gives training-style inverted dropout (expectation preserved).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from edgesplit.channel.impairment import (
    Impairment,
    ImpairmentResult,
    as_generator,
    check_activations,
    mse,
    uniform_like,
)
from edgesplit.channel.state import ChannelState


@dataclass
class DropoutImpairment(Impairment):
    """Zero each element with probability ``p`` (independent of the channel state)."""

    kind: ClassVar[str] = "dropout"
    p: float = 0.1
    """Drop probability per element, in [0, 1)."""
    rescale: bool = False
    """Scale kept elements by 1/(1-p) (inverted dropout); False matches the reference paper."""

    def __post_init__(self) -> None:
        if not (isinstance(self.p, int | float) and math.isfinite(self.p) and 0.0 <= self.p < 1.0):
            raise ValueError(f"dropout p must be in [0, 1), got {self.p!r}")

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        xf = check_activations(x)
        drop = uniform_like(tuple(xf.shape), as_generator(generator), xf.device) < self.p
        out = xf.masked_fill(drop, 0.0)
        if self.rescale:
            out = out / (1.0 - self.p)
        erased = float(drop.float().mean()) if drop.numel() else 0.0
        return ImpairmentResult(x=out.to(x.dtype), stats={"erased_fraction": erased, "mse": mse(out, xf)}, lost=drop)
