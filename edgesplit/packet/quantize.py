"""Per-token absmax quantisation: symmetric signed integers with one float32 scale per token vector.

A *row* (token vector) is every slice ``x[..., :]`` along the last dimension; for hidden states of shape
``[batch, tokens, hidden]`` that is one scale per token. With ``qmax = 2**(bits - 1) - 1`` the scale of a row is
its quantisation step ``absmax(row) / qmax``; an element maps to ``round(x / scale)`` clamped to the symmetric
range ``[-qmax, qmax]`` (``-2**(bits - 1)`` is never produced: int8 uses [-127, 127], int4 [-7, 7]) and
dequantises to ``q * scale``. Every element's reconstruction error is therefore at most ``scale / 2`` plus float32
rounding, and no dequantised value exceeds its row's absmax. A row of zeros gets scale 0 and dequantises to
zeros, never NaN.

Arithmetic is float32 whatever the input float dtype. Quantised values are int8 for every supported bit width
(2..8); the caller chooses the wire packing (:func:`pack_int4` puts two 4-bit values in a byte). Everything is
vectorised torch; the channel's ``digital`` impairment reuses these helpers.
"""

from __future__ import annotations

import torch

MIN_BITS = 2
"""Smallest supported width: 2 bits gives the ternary alphabet {-1, 0, 1}."""
MAX_BITS = 8
"""Largest supported width: quantised values are stored as int8."""


def qmax_for_bits(bits: int) -> int:
    """Largest quantised magnitude for ``bits``-bit symmetric quantisation (127 for 8 bits, 7 for 4)."""
    if type(bits) is not int or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return (1 << (bits - 1)) - 1


def quantize_absmax(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise ``x`` per row of its last dim; returns ``(q, scales)``.

    ``q`` is int8 with ``x``'s shape and values in ``[-qmax, qmax]``; ``scales`` is float32 with shape
    ``x.shape[:-1]`` (the step size of each row). Raises ValueError for a non-float or 0-d tensor, for NaN/inf
    values (an absmax scale cannot represent them) or for ``bits`` outside 2..8.
    """
    qmax = qmax_for_bits(bits)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0:
        raise ValueError("quantize_absmax needs a floating-point tensor with at least one dimension")
    xf = x.detach().to(torch.float32)
    if xf.shape[-1] == 0:
        return torch.zeros(xf.shape, dtype=torch.int8), torch.zeros(xf.shape[:-1], dtype=torch.float32)
    # Two reductions beat abs() + amax() and an isfinite() pass; NaN and inf propagate into absmax.
    absmax = torch.maximum(xf.amax(dim=-1), -xf.amin(dim=-1))
    if not bool(torch.isfinite(absmax).all()):
        raise ValueError("quantize_absmax got NaN or inf values; absmax quantisation needs finite input")
    scales = absmax / qmax
    # If absmax / qmax rounded up, qmax * scale would exceed absmax (and overflow to inf near the float32 max);
    # one ulp down keeps every dequantised value within the row's range.
    scales = torch.where(scales * qmax > absmax, torch.nextafter(scales, torch.zeros_like(scales)), scales)
    # Zero rows (or rows so tiny that the step underflows) divide by 1 so they quantise to 0, never 0/0 = NaN.
    safe = torch.where(scales > 0, scales, torch.ones_like(scales)).unsqueeze(-1)
    q = (xf / safe).round_().clamp_(-qmax, qmax).to(torch.int8)
    return q, scales


def dequantize_absmax(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_absmax`: float32 ``q * scale`` per row (``scales.shape == q.shape[:-1]``)."""
    if not isinstance(q, torch.Tensor) or q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise ValueError("dequantize_absmax needs an integer tensor q")
    if q.dim() == 0 or tuple(scales.shape) != tuple(q.shape[:-1]):
        raise ValueError(f"scales must have shape q.shape[:-1]; got q {tuple(q.shape)}, scales {tuple(scales.shape)}")
    scales = scales.to(torch.float32)
    if not bool(torch.isfinite(scales).all()) or bool((scales < 0).any()):
        raise ValueError("scales must be finite and non-negative")
    return q.to(torch.float32) * scales.unsqueeze(-1)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack int8 values in [-8, 7] two per byte (flattened, row-major) into a 1-D uint8 tensor.

    Element ``2i`` goes in the low nibble of byte ``i`` and ``2i + 1`` in the high nibble, as two's complement;
    an odd count leaves the final high nibble 0. Length is ``ceil(q.numel() / 2)``.
    """
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        raise ValueError(f"pack_int4 needs an int8 tensor, got {getattr(q, 'dtype', type(q))}")
    flat = q.reshape(-1)
    if flat.numel() and (int(flat.min()) < -8 or int(flat.max()) > 7):
        raise ValueError("pack_int4 values must lie in [-8, 7]")
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    nibbles = flat.view(torch.uint8) & 0x0F
    return nibbles[0::2] | (nibbles[1::2] << 4)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: the first ``numel`` signed 4-bit values of ``packed`` as a 1-D int8 tensor."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError("unpack_int4 needs a 1-D uint8 tensor")
    if type(numel) is not int or numel < 0 or packed.numel() != (numel + 1) // 2:
        raise ValueError(f"{packed.numel()} packed bytes cannot hold exactly {numel!r} int4 values")
    signed = packed.view(torch.int8)
    # Arithmetic right shifts on int8 sign-extend each nibble.
    low = (packed << 4).view(torch.int8) >> 4
    high = signed >> 4
    return torch.stack([low, high], dim=-1).reshape(-1)[:numel]
