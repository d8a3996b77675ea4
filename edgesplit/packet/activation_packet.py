"""ActivationPacket: the versioned wire format for what crosses the UE→edge uplink (never pickle, never eval).

Frame layout, version 1 (all integers little-endian)::

    offset   size  field
    0        4     magic b"ESPK"
    4        1     format version, u8 (1)
    5        4     header_len H, u32: length of the JSON header in bytes
    9        4     crc32, u32: zlib.crc32 of bytes [0, 9) followed by bytes [13, end), i.e. of the whole
                   frame except the CRC field itself (magic, version, header_len, header and payload)
    13       H     header: a UTF-8 JSON object (below)
    13 + H   P     payload: raw little-endian tensor bytes (layout per encoding, below)

A frame is exactly ``13 + H + P`` bytes; missing or trailing bytes are errors.

The header is an object with exactly these keys (types checked strictly; JSON true/false are not ints):

- ``session_id``: str of at most 128 characters.
- ``split_k``: int >= 0, the split point: the payload is the output of decoder layer ``k - 1`` (the input of
  layer ``k``); ``k = 0`` is fully on-server and uses the ``token_ids`` encoding (which requires ``k = 0``).
- ``position_start``: int >= 0, absolute position of the first token. The token count is not stored; it
  follows from the shape (``shape[-2]`` for hidden states ``[..., tokens, hidden]``, ``shape[-1]`` for ids).
- ``shape``: list of 1 to 8 ints >= 0; the product of the dims, zeros counted as 1, is at most 2**62 (and at
  most ``PacketLimits.max_elements`` when decoding).
- ``encoding``: one of :data:`ENCODINGS` (the dtype on the wire).
- ``scales``: ``null``, or for int8/int4 ``{"scheme": "absmax_per_token", "dtype": "float32", "count": R}``
  with ``R = prod(shape[:-1])`` token vectors. The scale values themselves travel as float32 at the start of the
  payload: as JSON text they would cost several times the bytes and round-trip through decimal.

Payload per encoding (``n`` elements, ``R`` rows of the last dim; see :mod:`edgesplit.packet.quantize`)::

    float32    n x f32
    float16    n x IEEE binary16
    bfloat16   n x u16 bfloat16 bit patterns
    int8       R x f32 scales (finite, >= 0), then n x i8 in [-127, 127]
    int4       R x f32 scales, then ceil(n / 2) bytes: element 2i in the low nibble of byte i, 2i + 1 in the
               high nibble, two's complement in [-7, 7]; an unused final high nibble is 0
    token_ids  n x i32, values >= 0

Errors: anything wrong with a frame or a packet's fields (truncated, oversized, bad CRC, unknown version or
encoding, bad field types, inconsistent shape/length, NaN/inf or negative scales, out-of-range codes) raises
:class:`PacketError`, a ``ValueError``. Bad *tensor* input to :meth:`ActivationPacket.from_tensor` (wrong
dtype, NaN/inf for int8/int4, values that overflow the wire float type, token ids outside [0, 2**31)) raises
a plain ``ValueError``. Float encodings carry NaN/inf inputs through unchanged.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from edgesplit.packet.payload_codec import (
    QUANT_BITS,
    decode_payload,
    encode_payload_parts,
    payload_len,
    payload_problem,
)

MAGIC = b"ESPK"
"""First four bytes of every frame."""
FORMAT_VERSION = 1
"""The only frame version this module writes and reads."""
ENCODINGS = ("float32", "float16", "bfloat16", "int8", "int4", "token_ids")
"""Accepted values of ``encoding``."""
MAX_SESSION_ID_CHARS = 128
"""Longest accepted ``session_id``."""
MAX_RANK = 8
"""Most dimensions a packet's tensor may have."""
SCALE_SCHEME = "absmax_per_token"
"""The one quantisation scheme of version 1 (one float32 scale per row of the last dim)."""

_PRELUDE = struct.Struct("<4sBII")  # magic, version, header_len, crc32
_HEAD = struct.Struct("<4sBI")  # the prelude up to the CRC field
_CRC = struct.Struct("<I")
_CRC_FIELD = slice(9, 13)
_HEADER_KEYS = frozenset({"session_id", "split_k", "position_start", "shape", "encoding", "scales"})
_MAX_EXTENT = 2**62


class PacketError(ValueError):
    """A frame or packet is malformed: truncated, oversized, corrupted or internally inconsistent."""


@dataclass(frozen=True)
class PacketLimits:
    """Resource limits enforced by :meth:`ActivationPacket.decode` before any large buffer is allocated."""

    max_header_bytes: int = 16 * 1024
    """Longest accepted JSON header, in bytes."""
    max_elements: int = 1 << 27
    """Most tensor elements a frame may describe (bounds the float32 tensor ``to_tensor`` allocates)."""
    max_total_bytes: int = 1 << 30
    """Longest accepted frame, in bytes."""

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_elements", "max_total_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = PacketLimits()
"""Limits used when :meth:`ActivationPacket.decode` is given none."""


@dataclass(frozen=True, eq=False)
class ActivationPacket:
    """One tensor on the wire: header fields plus the encoded payload bytes (see the module docstring)."""

    session_id: str
    """Inference session this tensor belongs to (at most 128 characters)."""
    split_k: int
    """Split point k: the tensor is the input of decoder layer k (0: token ids)."""
    position_start: int
    """Absolute position of the first token in the sequence."""
    shape: tuple[int, ...]
    """Tensor shape (1..8 non-negative dims); hidden states are [batch, tokens, hidden]."""
    encoding: str
    """Wire encoding, one of ENCODINGS."""
    payload: bytes | memoryview = field(repr=False)
    """Encoded little-endian tensor bytes (scales first for int8/int4), kept as a read-only memoryview."""

    def __post_init__(self) -> None:
        shape = _check_fields(self.session_id, self.split_k, self.position_start, self.shape, self.encoding)
        object.__setattr__(self, "shape", shape)
        if not isinstance(self.payload, bytes | bytearray | memoryview):
            raise PacketError(f"payload must be bytes, got {type(self.payload).__name__}")
        object.__setattr__(self, "payload", _immutable_view(self.payload))
        expected = payload_len(self.encoding, self.shape)
        if len(self.payload) != expected:
            raise PacketError(
                f"{self.encoding} payload of shape {list(self.shape)} needs {expected} bytes, got {len(self.payload)}"
            )
        problem = payload_problem(self.encoding, self.shape, self.payload)
        if problem:
            raise PacketError(problem)

    @classmethod
    def from_tensor(
        cls,
        x: torch.Tensor,
        *,
        session_id: str,
        split_k: int,
        position_start: int = 0,
        encoding: str = "float32",
    ) -> ActivationPacket:
        """Encode (and for int8/int4 quantise) ``x``, any rank >= 1; see the module docstring for errors."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise ValueError("from_tensor needs a torch.Tensor with at least one dimension")
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; accepted: {', '.join(ENCODINGS)}")
        shape = _check_fields(session_id, split_k, position_start, tuple(x.shape), encoding)
        header = _header_json(session_id, split_k, position_start, shape, encoding)
        # The frame is assembled straight from the tensor buffers in one allocation; the packet's payload is a
        # view into it, so encode() costs nothing more.
        frame = _assemble_frame(header, encode_payload_parts(x.detach().cpu(), encoding))
        payload = memoryview(frame)[_PRELUDE.size + len(header) :]
        packet = cls(session_id, split_k, position_start, shape, encoding, payload)
        packet.__dict__["_frame"] = frame
        return packet

    def to_tensor(self) -> torch.Tensor:
        """Decode the payload: float32 for float and quantised encodings, int64 for ``token_ids``."""
        return decode_payload(self.payload, self.encoding, self.shape)

    def encode(self) -> bytes:
        """The full frame: prelude, JSON header, payload (built once, then returned as is)."""
        return self._frame

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, limits: PacketLimits = DEFAULT_LIMITS) -> ActivationPacket:
        """Parse and fully verify one frame; raises :class:`PacketError` for anything malformed.

        A ``bytes`` frame is not copied (the payload is a view into it); other buffers are copied once up front
        so that nobody can change them between verification and use.
        """
        if not isinstance(limits, PacketLimits):
            raise TypeError(f"limits must be a PacketLimits, got {type(limits).__name__}")
        size = memoryview(data).nbytes
        if size > limits.max_total_bytes:
            raise PacketError(f"frame is {size} bytes, over the limit of {limits.max_total_bytes}")
        view = _immutable_view(data)
        if size < _PRELUDE.size:
            raise PacketError(f"truncated frame: {size} bytes, the fixed prelude alone is {_PRELUDE.size}")
        magic, version, header_len, crc = _PRELUDE.unpack_from(view)
        if magic != MAGIC:
            raise PacketError(f"bad magic {magic!r}, expected {MAGIC!r}")
        if version != FORMAT_VERSION:
            hint = " (versions 2-4 carry a protected part: use edgesplit.packet.decode_frame)" \
                if version in (2, 3, 4) else ""
            raise PacketError(f"unknown format version {version}; this reader understands {FORMAT_VERSION}{hint}")
        if header_len > limits.max_header_bytes:
            raise PacketError(f"header is {header_len} bytes, over the limit of {limits.max_header_bytes}")
        body_start = _PRELUDE.size + header_len
        if body_start > size:
            raise PacketError(f"truncated frame: header needs {header_len} bytes, {size - _PRELUDE.size} left")
        fields = _parse_header(view[_PRELUDE.size : body_start])
        shape = tuple(fields["shape"])
        _check_limits(shape, limits)
        expected = payload_len(fields["encoding"], shape)
        if size - body_start != expected:
            kind = "truncated" if size - body_start < expected else "trailing bytes after"
            raise PacketError(f"{kind} payload: expected {expected} bytes, got {size - body_start}")
        if zlib.crc32(view[_CRC_FIELD.stop :], zlib.crc32(view[: _CRC_FIELD.start])) != crc:
            raise PacketError("CRC32 mismatch: the frame is corrupted")
        session_id, split_k, position_start = fields["session_id"], fields["split_k"], fields["position_start"]
        packet = cls(session_id, split_k, position_start, shape, fields["encoding"], view[body_start:])
        if len(view.obj) == size and view[_PRELUDE.size : body_start] == packet._header_json:
            packet.__dict__["_frame"] = view.obj  # canonical frame: re-encoding would rebuild the same bytes
        return packet

    @cached_property
    def _header_json(self) -> bytes:
        return _header_json(self.session_id, self.split_k, self.position_start, self.shape, self.encoding)

    @cached_property
    def _frame(self) -> bytes:
        return _assemble_frame(self._header_json, [self.payload])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActivationPacket):
            return NotImplemented
        # memoryview == memoryview compares element by element; comparing bytes copies is ~10x faster.
        return self._key() == other._key() and self.payload.tobytes() == other.payload.tobytes()

    def __hash__(self) -> int:
        return hash((self._key(), self.payload))

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray and copy.deepcopy pickle objects; route that through the wire frame and its verifying decoder.
        return (_decode_trusted_size, (self.encode(),))

    def _key(self) -> tuple[Any, ...]:
        return (self.session_id, self.split_k, self.position_start, self.shape, self.encoding, len(self.payload))

    @property
    def numel(self) -> int:
        """Number of tensor elements."""
        return math.prod(self.shape)

    @property
    def num_tokens(self) -> int:
        """Tokens covered: ``shape[-1]`` for token ids, ``shape[-2]`` for hidden states (1 for a 1-D vector)."""
        if self.encoding == "token_ids":
            return self.shape[-1]
        return self.shape[-2] if len(self.shape) >= 2 else 1

    @property
    def payload_bytes(self) -> int:
        """Payload size in bytes (tensor data plus quantisation scales)."""
        return len(self.payload)

    @property
    def header_bytes(self) -> int:
        """Everything in the frame except the payload: the 13-byte prelude plus the JSON header."""
        return _PRELUDE.size + len(self._header_json)

    @property
    def nbytes(self) -> int:
        """Total frame size in bytes, ``len(self.encode())``."""
        return self.header_bytes + self.payload_bytes

    @property
    def bits_per_element(self) -> float:
        """Effective payload bits per element, scales included, frame header excluded (0.0 for an empty tensor)."""
        return 8.0 * self.payload_bytes / self.numel if self.numel else 0.0


def _decode_trusted_size(frame: bytes) -> ActivationPacket:
    """Decode with limits sized to the frame itself (for unpickling packets this process or a peer built)."""
    size = max(len(frame), 1)
    return ActivationPacket.decode(frame, PacketLimits(size, _MAX_EXTENT, size))


def _immutable_view(data: bytes | bytearray | memoryview) -> memoryview:
    """A flat read-only byte view; copies unless the buffer is backed by (immutable) bytes."""
    view = memoryview(data)
    if not (isinstance(view.obj, bytes) and view.c_contiguous):
        view = memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _header_json(session_id: str, split_k: int, position_start: int, shape: tuple[int, ...], encoding: str) -> bytes:
    header = {
        "session_id": session_id,
        "split_k": split_k,
        "position_start": position_start,
        "shape": list(shape),
        "encoding": encoding,
        "scales": _scales_descriptor(encoding, shape),
    }
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")


def _assemble_frame(header: bytes, parts: list[Any]) -> bytes:
    """Prelude + header + payload parts (contiguous buffers) joined in one allocation, CRC over all but itself."""
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(header))
    crc = zlib.crc32(header, zlib.crc32(head))
    for part in parts:
        crc = zlib.crc32(part, crc)
    return b"".join((head, _CRC.pack(crc), header, *parts))


def _check_fields(session_id: Any, split_k: Any, position_start: Any, shape: Any, encoding: Any) -> tuple[int, ...]:
    """Validate header fields with strict types; returns the shape as a tuple."""
    if type(session_id) is not str or len(session_id) > MAX_SESSION_ID_CHARS:
        raise PacketError(f"session_id must be a str of at most {MAX_SESSION_ID_CHARS} characters")
    for name, value in (("split_k", split_k), ("position_start", position_start)):
        if type(value) is not int or value < 0:
            raise PacketError(f"{name} must be a non-negative int, got {value!r}")
    if type(encoding) is not str or encoding not in ENCODINGS:
        raise PacketError(f"unknown encoding {encoding!r}; accepted: {', '.join(ENCODINGS)}")
    if encoding == "token_ids" and split_k != 0:
        raise PacketError(f"token_ids are only sent at split_k=0, got split_k={split_k}")
    if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= MAX_RANK:
        raise PacketError(f"shape must be a list of 1 to {MAX_RANK} non-negative ints, got {shape!r}")
    if any(type(d) is not int or d < 0 for d in shape):
        raise PacketError(f"shape must contain only non-negative ints, got {shape!r}")
    if _extent(shape) > _MAX_EXTENT:
        raise PacketError(f"shape {list(shape)} is too large for int64 strides")
    return tuple(shape)


def _extent(shape: Sequence[int]) -> int:
    # Zero-size dims are counted as 1 so that an empty tensor cannot declare absurd (stride-overflowing) dims.
    return math.prod(max(d, 1) for d in shape)


def _check_limits(shape: tuple[int, ...], limits: PacketLimits) -> None:
    if _extent(shape) > limits.max_elements:
        raise PacketError(
            f"shape {list(shape)} spans {_extent(shape)} elements, over the limit of {limits.max_elements}"
        )


def _parse_header(raw: memoryview) -> dict[str, Any]:
    """Decode the JSON header into a validated dict (exact keys, strict types, consistent scales)."""
    try:
        obj = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PacketError(f"header is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.keys() != _HEADER_KEYS:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise PacketError(f"header must be an object with keys {sorted(_HEADER_KEYS)}, got {got}")
    _check_fields(obj["session_id"], obj["split_k"], obj["position_start"], obj["shape"], obj["encoding"])
    expected = _scales_descriptor(obj["encoding"], tuple(obj["shape"]))
    # Compare types too: JSON true == 1 in Python, and a count must not be a bool.
    if obj["scales"] != expected or _types(obj["scales"]) != _types(expected):
        raise PacketError(f"scales descriptor {obj['scales']!r} does not match {obj['encoding']}: expected {expected}")
    return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate keys in a JSON object")
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not allowed in the header")


def _types(obj: Any) -> Any:
    return {k: type(v) for k, v in obj.items()} if isinstance(obj, dict) else type(obj)


def _scales_descriptor(encoding: str, shape: tuple[int, ...]) -> dict[str, Any] | None:
    if encoding not in QUANT_BITS:
        return None
    return {"scheme": SCALE_SCHEME, "dtype": "float32", "count": math.prod(shape[:-1])}
