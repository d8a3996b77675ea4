"""Packet erasures over fragments of the (flattened, row-major) payload.

The payload is cut into fragments of ``fragment_elements`` elements (the last may be shorter); each
fragment is lost with the state's ``loss_rate`` independently. Modes:

* ``"zero"``: a lost fragment's elements arrive as zeros (no retransmission, no delay);
* ``"arq"``: lost fragments are retransmitted until received: each fragment's number of
  transmissions is drawn Geometric(1 - loss_rate) (support 1, 2, ...), so data arrive intact and the
  stats report the retransmissions and ``extra_latency_factor`` = airtime with ARQ / airtime without
  (expectation 1 / (1 - loss_rate)). With ``max_transmissions`` set, a fragment still lost after that
  many tries is zeroed (truncated ARQ);
* ``"none"``: no erasures.
"""

from __future__ import annotations

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

ERASURE_MODES = ("none", "zero", "arq")
"""What happens to lost fragments."""


def check_erasure_fields(mode: str, fragment_elements: int, max_transmissions: int | None, loss: float | None) -> None:
    """Shared validation of erasure settings (used by the erasure and digital impairments)."""
    if mode not in ERASURE_MODES:
        raise ValueError(f"erasure mode must be one of {list(ERASURE_MODES)}, got {mode!r}")
    if not (isinstance(fragment_elements, int) and fragment_elements >= 1):
        raise ValueError(f"fragment_elements must be a positive int, got {fragment_elements!r}")
    if max_transmissions is not None and not (isinstance(max_transmissions, int) and max_transmissions >= 1):
        raise ValueError(f"max_transmissions must be None or an int >= 1, got {max_transmissions!r}")
    if loss is not None and not 0.0 <= loss < 1.0:
        raise ValueError(f"loss_rate must be None (use the state's) or in [0, 1), got {loss!r}")


def _transmissions(n_fragments: int, loss: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    if loss <= 0.0:
        return torch.ones(n_fragments, dtype=torch.float64, device=device)
    counts = torch.empty(n_fragments, dtype=torch.float64, device=generator.device)
    return counts.geometric_(1.0 - loss, generator=generator).to(device)


def erase_fragments(
    flat: torch.Tensor,
    loss: float,
    fragment_elements: int,
    mode: str,
    generator: torch.Generator,
    max_transmissions: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Apply fragment erasures to a flat tensor; returns (received flat tensor, stats)."""
    lost, stats = fragment_losses(flat, loss, fragment_elements, mode, generator, max_transmissions)
    return flat.masked_fill(lost, 0), stats


def fragment_losses(
    flat: torch.Tensor,
    loss: float,
    fragment_elements: int,
    mode: str,
    generator: torch.Generator,
    max_transmissions: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The draws of :func:`erase_fragments`: (bool mask of the lost elements of ``flat``, stats)."""
    n = flat.numel()
    n_frag = -(-n // fragment_elements)
    sizes = torch.full((n_frag,), float(fragment_elements), dtype=torch.float64, device=flat.device)
    if n_frag:
        sizes[-1] = n - fragment_elements * (n_frag - 1)
    if mode == "none" or n_frag == 0:
        counts, lost = torch.ones_like(sizes), torch.zeros(n_frag, dtype=torch.bool, device=flat.device)
    elif mode == "zero":
        counts = torch.ones_like(sizes)
        lost = uniform_like((n_frag,), generator, flat.device) < loss
    else:
        counts = _transmissions(n_frag, loss, generator, flat.device)
        cap = max_transmissions if max_transmissions is not None else float("inf")
        lost = counts > cap
        counts = counts.clamp(max=cap)
    element_lost = lost.repeat_interleave(fragment_elements)[:n]
    stats = {
        "fragments": float(n_frag),
        "fragments_lost": float(lost.sum()),
        "erased_fraction": float(element_lost.float().mean()) if n else 0.0,
        "transmissions_mean": float(counts.mean()) if n_frag else 1.0,
        "retransmissions": float((counts - 1).sum()),
        "extra_latency_factor": float((counts * sizes).sum() / sizes.sum()) if n_frag else 1.0,
    }
    return element_lost, stats


@dataclass
class ErasureImpairment(Impairment):
    """Fragment erasures of the raw float payload (no quantisation, no bit errors)."""

    kind: ClassVar[str] = "erasure"
    mode: str = "zero"
    """'zero' (lost fragments arrive as zeros), 'arq' (retransmit until received) or 'none'."""
    fragment_elements: int = 1024
    """Elements per fragment (the erasure unit, e.g. one MAC PDU)."""
    max_transmissions: int | None = None
    """ARQ only: give up (and zero the fragment) after this many transmissions; None retries forever."""
    loss_rate: float | None = None
    """Override of the fragment loss probability; None uses the state's loss_rate."""

    def __post_init__(self) -> None:
        check_erasure_fields(self.mode, self.fragment_elements, self.max_transmissions, self.loss_rate)

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        xf = check_activations(x)
        loss = state.loss_rate if self.loss_rate is None else self.loss_rate
        lost, stats = fragment_losses(
            xf.reshape(-1), loss, self.fragment_elements, self.mode, as_generator(generator), self.max_transmissions
        )
        lost = lost.reshape(xf.shape)
        out = xf.masked_fill(lost, 0)
        stats["mse"] = mse(out, xf)
        return ImpairmentResult(x=out.to(x.dtype), stats=stats, lost=lost)
