"""The interface of impairments applied to activations crossing the link, and their composition.

An impairment is a dataclass config with ``apply(x, state, generator) -> ImpairmentResult``: ``x``
is a float tensor ``[..., hidden]`` (one *token* per row of the last dimension), ``state`` the
block's :class:`~edgesplit.channel.state.ChannelState` and ``generator`` a ``torch.Generator`` (or
an int seed). Random numbers are drawn on the generator's device and moved to ``x``'s device, so a
seed gives bit-identical results on CPU and GPU tensors alike. Output has ``x``'s shape and dtype;
arithmetic is float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from edgesplit.channel.state import ChannelState


@dataclass
class ImpairmentResult:
    """What came out of the link, and what happened on the way."""

    x: torch.Tensor
    """The impaired tensor (same shape and dtype as the input)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Measured figures (e.g. measured_snr_db, bit_errors, erased_fraction, extra_latency_factor)."""
    lost: torch.Tensor | None = None
    """Bool mask of ``x``'s shape: elements the receiver knows were lost (a dropout mask, an erased fragment, a
    transport block whose CRC failed) and received as 0. None: the impairment flags nothing (it never erases, or the
    receiver cannot tell)."""


def as_generator(generator: torch.Generator | int) -> torch.Generator:
    """A generator from an int seed (CPU), or the given generator unchanged."""
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise ValueError(f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}")


def uniform_like(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 drawn on the generator's device, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def normal_like(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """N(0, 1) float32 drawn on the generator's device, moved to ``device``."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def check_activations(x: torch.Tensor) -> torch.Tensor:
    """Validate an activation tensor and return it as float32."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0:
        raise ValueError("impairments need a floating-point tensor with at least one dimension [..., hidden]")
    return x.detach().to(torch.float32)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error between two tensors (0 for empty ones)."""
    return float(((a - b) ** 2).mean()) if a.numel() else 0.0


class Impairment(ABC):
    """Base of every impairment config."""

    kind: ClassVar[str]
    """Registry name used by :func:`edgesplit.channel.factory.make_impairment`."""

    @abstractmethod
    def apply(
        self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int
    ) -> ImpairmentResult:
        """Impair ``x`` as sent over a block in ``state``."""


@dataclass
class NoImpairment(Impairment):
    """The ideal link: returns the input unchanged (a baseline and the ``k = 0`` / ``k = L`` case)."""

    kind: ClassVar[str] = "none"

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        check_activations(x)
        return ImpairmentResult(x=x.clone(), stats={"mse": 0.0})


@dataclass
class Compose(Impairment):
    """Apply impairments in order with one generator; stats are prefixed ``kind.`` (``kind[i].`` if repeated)."""

    kind: ClassVar[str] = "compose"
    impairments: list[Impairment] = field(default_factory=list)
    """The chain, first applied first (e.g. quantise+bit errors, then erasures)."""

    def __post_init__(self) -> None:
        bad = [type(imp).__name__ for imp in self.impairments if not isinstance(imp, Impairment)]
        if bad:
            raise ValueError(f"Compose takes Impairment instances, got {bad}")

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        gen = as_generator(generator)
        counts = Counter(imp.kind for imp in self.impairments)
        out, stats = x, {}
        for i, imp in enumerate(self.impairments):
            result = imp.apply(out, state, gen)
            prefix = imp.kind if counts[imp.kind] == 1 else f"{imp.kind}[{i}]"
            stats.update({f"{prefix}.{key}": value for key, value in result.stats.items()})
            out = result.x
        stats["mse"] = mse(check_activations(out), check_activations(x))
        return ImpairmentResult(x=out if self.impairments else x.clone(), stats=stats)
