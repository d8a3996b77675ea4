"""Payload bytes of an ActivationPacket: tensors to little-endian arrays and back, and content checks.

The byte layout per encoding is specified in :mod:`edgesplit.packet.activation_packet`. Everything here is
vectorised numpy/torch (no Python loop over elements) and raises plain ``ValueError`` for bad tensors; the
packet turns :func:`payload_problem` answers into ``PacketError``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from edgesplit.packet.quantize import dequantize_absmax, pack_int4, quantize_absmax, unpack_int4

QUANT_BITS = {"int8": 8, "int4": 4}
"""Bit width of each absmax-quantised encoding."""

_INT32_MAX = 2**31 - 1
_FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# A packed int4 byte is invalid when either nibble is 0b1000 (-8, outside the symmetric range [-7, 7]).
_INT4_BAD_BYTE = np.array([(b & 0x0F) == 0x08 or (b >> 4) == 0x08 for b in range(256)])
_NIBBLE_HIGH_BITS = np.uint64(0x8888_8888_8888_8888)
_NIBBLE_ONES = np.uint64(0x1111_1111_1111_1111)


def payload_len(encoding: str, shape: tuple[int, ...]) -> int:
    """Exact payload size in bytes of a tensor of ``shape`` under ``encoding``."""
    numel, rows = math.prod(shape), math.prod(shape[:-1])
    if encoding == "int8":
        return 4 * rows + numel
    if encoding == "int4":
        return 4 * rows + (numel + 1) // 2
    return numel * (2 if encoding in ("float16", "bfloat16") else 4)


def payload_problem(encoding: str, shape: tuple[int, ...], payload: bytes | memoryview) -> str | None:
    """Why ``payload`` (already :func:`payload_len` bytes) holds values no encoder produces, or None if valid.

    Checked: scales finite and >= 0, no -128 (int8) or -8 (int4) codes, a zero int4 padding nibble, ids >= 0.
    """
    if encoding == "token_ids":
        negative = len(payload) and int(np.frombuffer(payload, dtype="<i4").min()) < 0
        return "token ids must be non-negative" if negative else None
    if encoding not in QUANT_BITS:
        return None
    rows = math.prod(shape[:-1])
    scales = np.frombuffer(payload, dtype="<f4", count=rows)
    if not bool(np.isfinite(scales).all()) or bool((scales < 0).any()):
        return "quantisation scales must be finite and non-negative"
    codes = np.frombuffer(payload, dtype=np.uint8, offset=4 * rows)
    if codes.size == 0:
        return None
    if encoding == "int8":
        bad = int(codes.view(np.int8).min()) == -128  # outside the symmetric range [-127, 127]
    else:
        bad = _has_minus8_nibble(codes) or (math.prod(shape) % 2 == 1 and int(codes[-1]) >> 4 != 0)
    return f"{encoding} payload holds codes outside the symmetric range or non-zero padding" if bad else None


def _has_minus8_nibble(codes: np.ndarray) -> bool:
    """Whether any nibble is 0b1000 (-8), via SWAR on 64-bit words: ~10x faster than a per-byte lookup."""
    whole = codes.size // 8 * 8
    # XOR turns each -8 nibble into 0; (v - 0x11..) & ~v & 0x88.. is non-zero iff v has a zero nibble.
    v = codes[:whole].view("<u8") ^ _NIBBLE_HIGH_BITS
    w = v - _NIBBLE_ONES
    np.bitwise_and(w, ~v, out=w)
    np.bitwise_and(w, _NIBBLE_HIGH_BITS, out=w)
    return bool(w.any()) or bool(_INT4_BAD_BYTE[codes[whole:]].any())


def encode_payload_parts(x: torch.Tensor, encoding: str) -> list[np.ndarray]:
    """The payload as contiguous little-endian arrays, in wire order."""
    if encoding == "token_ids":
        return [_encode_token_ids(x)]
    if not x.is_floating_point():
        raise ValueError(f"encoding {encoding!r} needs a floating-point tensor, got {x.dtype}")
    if encoding in QUANT_BITS:
        q, scales = quantize_absmax(x, QUANT_BITS[encoding])
        codes = pack_int4(q) if encoding == "int4" else q
        return [_le_array(scales, "<f4"), codes.numpy()]
    wire = x.to(_FLOAT_DTYPES[encoding])
    if wire.dtype != x.dtype:
        _check_no_overflow(x, wire, encoding)
    return [_le_array(wire, "<f4") if encoding == "float32" else _le_array(wire.view(torch.int16), "<i2")]


def _encode_token_ids(x: torch.Tensor) -> np.ndarray:
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"token_ids need an integer tensor, got {x.dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > _INT32_MAX):
        raise ValueError(f"token ids must lie in [0, {_INT32_MAX}]")
    return _le_array(x.to(torch.int32), "<i4")


def _check_no_overflow(x: torch.Tensor, wire: torch.Tensor, encoding: str) -> None:
    # Fast path: finite extremes mean no inf at all (NaN propagates through amax/amin, so it takes the slow path).
    if wire.numel() == 0 or bool(torch.isfinite(wire.amax()) & torch.isfinite(wire.amin())):
        return
    if bool((torch.isinf(wire) & torch.isfinite(x)).any()):  # finite input turned inf: silent overflow
        raise ValueError(f"values exceed the {encoding} range; use float32 (or int8/int4 with scales)")


def _le_array(t: torch.Tensor, dtype: str) -> np.ndarray:
    return t.contiguous().numpy().astype(dtype, copy=False)


def decode_payload(payload: bytes | memoryview, encoding: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A fresh, writable tensor from a validated payload: float32, or int64 for ``token_ids``."""
    numel, rows = math.prod(shape), math.prod(shape[:-1])
    if encoding in QUANT_BITS:
        scales = torch.from_numpy(np.frombuffer(payload, dtype="<f4", count=rows).astype(np.float32))
        codes = np.frombuffer(payload, dtype=np.uint8, offset=4 * rows).copy()
        if encoding == "int4":
            q = unpack_int4(torch.from_numpy(codes), numel)
        else:
            q = torch.from_numpy(codes).view(torch.int8)
        return dequantize_absmax(q.reshape(shape), scales.reshape(shape[:-1]))
    if encoding == "float32":
        return torch.from_numpy(np.frombuffer(payload, dtype="<f4").astype(np.float32)).reshape(shape)
    if encoding == "token_ids":
        return torch.from_numpy(np.frombuffer(payload, dtype="<i4").astype(np.int64)).reshape(shape)
    bits = torch.from_numpy(np.frombuffer(payload, dtype="<i2").astype(np.int16))
    return bits.view(_FLOAT_DTYPES[encoding]).to(torch.float32).reshape(shape)
