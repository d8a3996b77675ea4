"""ProtectedPacket: a hidden state split into protected channels and the rest, on the wire (format version 2).

Unequal error protection (:mod:`edgesplit.channel.uep`) sends a few outlier channels of the hidden state apart from
the rest. The frame says which channels travel apart and at which precision, so the edge can put every value back
in its place. Version 1 frames (:class:`~edgesplit.packet.ActivationPacket`) are unchanged and still written for
every packet without a protected part; :func:`decode_frame` reads both versions.

Frame layout, version 2 (all integers little-endian)::

    offset   size  field
    0        4     magic b"ESPK"
    4        1     format version, u8 (2)
    5        4     header_len H, u32
    9        4     crc32, u32: zlib.crc32 of the whole frame except this field (as in version 1)
    13       H     header: a UTF-8 JSON object (below)
    13 + H   4M    the M protected channel indices, u32 each, in the order their values are sent
    ...      Pp    protected part: the tensor x[..., channels] (shape ``shape[:-1] + [M]``) in its own encoding
    ...      Pm    main part: the other channels in increasing index order (shape ``shape[:-1] + [hidden - M]``)

The header has exactly the keys ``session_id``, ``split_k`` (>= 1: token ids are never split), ``position_start``
and ``shape`` (as in version 1; the full tensor, ``shape[-1]`` = hidden), ``main`` = ``{"encoding", "scales"}`` and
``protected`` = ``{"count": M, "encoding", "scales"}``. Each part's encoding is one of the float or quantised
encodings of version 1 (``token_ids`` is refused) and its ``scales`` descriptor is the one version 1 writes for that
encoding and part shape; each part's bytes are laid out, and checked, exactly as a version 1 payload. Indices must
be distinct and below ``shape[-1]``; ``1 <= M <= shape[-1]``. Anything else raises :class:`PacketError`.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from edgesplit.packet.activation_packet import (
    _CRC,
    _CRC_FIELD,
    _HEAD,
    _PRELUDE,
    DEFAULT_LIMITS,
    MAGIC,
    ActivationPacket,
    PacketError,
    PacketLimits,
    _check_fields,
    _check_limits,
    _immutable_view,
    _no_constants,
    _scales_descriptor,
    _types,
    _unique_keys,
)
from edgesplit.packet.payload_codec import payload_len

PROTECTED_FORMAT_VERSION = 2
"""Frame version of packets with a protected part."""
PART_ENCODINGS = ("float32", "float16", "bfloat16", "int8", "int4")
"""Encodings either part of a protected packet may use."""

_HEADER_KEYS = frozenset({"session_id", "split_k", "position_start", "shape", "main", "protected"})
_INDEX = np.dtype("<u4")


@dataclass(frozen=True, eq=False)
class ProtectedPacket:
    """A hidden state ``[..., hidden]`` as two version-1 payloads: the protected channels and the rest."""

    channels: tuple[int, ...]
    """Protected channel indices, in the order their values are sent (distinct, below ``hidden``)."""
    protected: ActivationPacket
    """The protected channels' values, shape ``shape[:-1] + [M]``."""
    main: ActivationPacket
    """Every other channel in increasing index order, shape ``shape[:-1] + [hidden - M]``."""

    def __post_init__(self) -> None:
        for name in ("protected", "main"):
            part = getattr(self, name)
            if not isinstance(part, ActivationPacket) or part.encoding not in PART_ENCODINGS:
                raise PacketError(f"the {name} part must be an ActivationPacket with an encoding in {PART_ENCODINGS}")
        p, m = self.protected, self.main
        if (p.session_id, p.split_k, p.position_start, p.shape[:-1]) != (m.session_id, m.split_k, m.position_start,
                                                                       m.shape[:-1]):
            raise PacketError("the protected and main parts must share session, split, position and leading dims")
        if p.split_k < 1:
            raise PacketError(f"protected packets carry hidden states (split_k >= 1), got split_k={p.split_k}")
        _check_channels(self.channels, p.shape[-1] + m.shape[-1])
        if len(self.channels) != p.shape[-1]:
            raise PacketError(f"{len(self.channels)} channel indices for a protected part of {p.shape[-1]} channels")

    @classmethod
    def from_tensor(cls, x: torch.Tensor, channels: tuple[int, ...] | list[int], *, session_id: str, split_k: int,
                    position_start: int = 0, encoding: str = "float32",
                    protected_encoding: str = "float32") -> ProtectedPacket:
        """Split ``x`` ``[..., hidden]`` into ``x[..., channels]`` and the rest and encode each part."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or not x.is_floating_point():
            raise ValueError("ProtectedPacket.from_tensor needs a floating-point tensor [..., hidden]")
        for name, enc in (("encoding", encoding), ("protected_encoding", protected_encoding)):
            if enc not in PART_ENCODINGS:
                raise ValueError(f"{name} must be one of {PART_ENCODINGS}, got {enc!r}")
        chosen = _check_channels(tuple(channels), int(x.shape[-1]))
        rest = rest_channels(chosen, int(x.shape[-1]))
        fields = {"session_id": session_id, "split_k": split_k, "position_start": position_start}
        protected = ActivationPacket.from_tensor(x[..., list(chosen)], encoding=protected_encoding, **fields)
        main = ActivationPacket.from_tensor(x[..., rest], encoding=encoding, **fields)
        return cls(chosen, protected, main)

    def to_tensor(self) -> torch.Tensor:
        """The reassembled float32 tensor ``[..., hidden]``: every value back at its channel."""
        out = torch.empty(self.shape, dtype=torch.float32)
        out[..., list(self.channels)] = self.protected.to_tensor()
        out[..., rest_channels(self.channels, self.hidden_size)] = self.main.to_tensor()
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the whole tensor."""
        return (*self.main.shape[:-1], self.hidden_size)

    @property
    def hidden_size(self) -> int:
        """Width of the last dimension (protected + main channels)."""
        return self.protected.shape[-1] + self.main.shape[-1]

    @property
    def payload_bytes(self) -> int:
        """Index list plus both parts' payloads (scales included)."""
        return _INDEX.itemsize * len(self.channels) + self.protected.payload_bytes + self.main.payload_bytes

    @property
    def nbytes(self) -> int:
        """Total frame size in bytes, ``len(self.encode())``."""
        return len(self.encode())

    def encode(self) -> bytes:
        """The full version-2 frame."""
        return self._frame

    @cached_property
    def _frame(self) -> bytes:
        header = _header_json(self)
        parts = [np.asarray(self.channels, dtype=_INDEX).tobytes(), self.protected.payload, self.main.payload]
        head = _HEAD.pack(MAGIC, PROTECTED_FORMAT_VERSION, len(header))
        crc = zlib.crc32(header, zlib.crc32(head))
        for part in parts:
            crc = zlib.crc32(part, crc)
        return b"".join((head, _CRC.pack(crc), header, *parts))

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, limits: PacketLimits = DEFAULT_LIMITS) -> ProtectedPacket:
        """Parse and fully verify one version-2 frame; raises :class:`PacketError` for anything malformed."""
        if not isinstance(limits, PacketLimits):
            raise TypeError(f"limits must be a PacketLimits, got {type(limits).__name__}")
        view = _immutable_view(data)
        size = view.nbytes
        if size > limits.max_total_bytes:
            raise PacketError(f"frame is {size} bytes, over the limit of {limits.max_total_bytes}")
        if size < _PRELUDE.size:
            raise PacketError(f"truncated frame: {size} bytes, the fixed prelude alone is {_PRELUDE.size}")
        magic, version, header_len, crc = _PRELUDE.unpack_from(view)
        if magic != MAGIC:
            raise PacketError(f"bad magic {magic!r}, expected {MAGIC!r}")
        if version != PROTECTED_FORMAT_VERSION:
            raise PacketError(f"format version {version} is not a protected frame (version "
                              f"{PROTECTED_FORMAT_VERSION}); read any frame with edgesplit.packet.decode_frame")
        if header_len > limits.max_header_bytes:
            raise PacketError(f"header is {header_len} bytes, over the limit of {limits.max_header_bytes}")
        start = _PRELUDE.size + header_len
        if start > size:
            raise PacketError(f"truncated frame: header needs {header_len} bytes, {size - _PRELUDE.size} left")
        obj = _parse_header(view[_PRELUDE.size:start])
        shape, count = tuple(obj["shape"]), obj["protected"]["count"]
        _check_limits(shape, limits)
        p_shape, m_shape = (*shape[:-1], count), (*shape[:-1], shape[-1] - count)
        sizes = (4 * count, payload_len(obj["protected"]["encoding"], p_shape),
                 payload_len(obj["main"]["encoding"], m_shape))
        if size - start != sum(sizes):
            kind = "truncated" if size - start < sum(sizes) else "trailing bytes after"
            raise PacketError(f"{kind} payload: expected {sum(sizes)} bytes, got {size - start}")
        if zlib.crc32(view[_CRC_FIELD.stop:], zlib.crc32(view[:_CRC_FIELD.start])) != crc:
            raise PacketError("CRC32 mismatch: the frame is corrupted")
        channels = tuple(int(c) for c in np.frombuffer(view, dtype=_INDEX, count=count, offset=start))
        fields = (obj["session_id"], obj["split_k"], obj["position_start"])
        at = start + sizes[0]
        protected = ActivationPacket(*fields, p_shape, obj["protected"]["encoding"], view[at:at + sizes[1]])
        main = ActivationPacket(*fields, m_shape, obj["main"]["encoding"], view[at + sizes[1]:])
        return cls(channels, protected, main)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProtectedPacket):
            return NotImplemented
        return (self.channels, self.protected, self.main) == (other.channels, other.protected, other.main)

    def __hash__(self) -> int:
        return hash((self.channels, self.protected, self.main))


def rest_channels(channels: tuple[int, ...], hidden: int) -> list[int]:
    """The channels not in ``channels``, in increasing order (the main part's layout)."""
    chosen = set(channels)
    return [c for c in range(hidden) if c not in chosen]


def decode_frame(data: bytes | bytearray | memoryview,
                 limits: PacketLimits = DEFAULT_LIMITS) -> ActivationPacket | ProtectedPacket:
    """Decode a version-1 (:class:`ActivationPacket`) or version-2 (:class:`ProtectedPacket`) frame."""
    view = _immutable_view(data)
    if view.nbytes > 4 and view[4] == PROTECTED_FORMAT_VERSION:
        return ProtectedPacket.decode(view, limits)
    return ActivationPacket.decode(view, limits)  # version 1, or the clear error for anything else


def _check_channels(channels: tuple[Any, ...], hidden: int) -> tuple[int, ...]:
    if not 1 <= len(channels) <= hidden:
        raise PacketError(f"a protected packet needs 1 to {hidden} channel indices, got {len(channels)}")
    if any(type(c) is not int or not 0 <= c < hidden for c in channels):
        raise PacketError(f"channel indices must be ints in [0, {hidden}), got {list(channels)}")
    if len(set(channels)) != len(channels):
        raise PacketError(f"channel indices must be distinct, got {list(channels)}")
    return channels


def _header_json(packet: ProtectedPacket) -> bytes:
    p, m = packet.protected, packet.main
    header = {"session_id": m.session_id, "split_k": m.split_k, "position_start": m.position_start,
              "shape": list(packet.shape),
              "main": {"encoding": m.encoding, "scales": _scales_descriptor(m.encoding, m.shape)},
              "protected": {"count": len(packet.channels), "encoding": p.encoding,
                            "scales": _scales_descriptor(p.encoding, p.shape)}}
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")


def _parse_header(raw: memoryview) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise PacketError(f"header is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.keys() != _HEADER_KEYS:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise PacketError(f"header must be an object with keys {sorted(_HEADER_KEYS)}, got {got}")
    shape = _check_fields(obj["session_id"], obj["split_k"], obj["position_start"], obj["shape"], "float32")
    if obj["split_k"] < 1:
        raise PacketError(f"protected packets carry hidden states (split_k >= 1), got split_k={obj['split_k']}")
    prot, main = obj["protected"], obj["main"]
    if not isinstance(prot, dict) or prot.keys() != {"count", "encoding", "scales"}:
        raise PacketError(f"'protected' must be an object with keys count, encoding, scales; got {prot!r}")
    if not isinstance(main, dict) or main.keys() != {"encoding", "scales"}:
        raise PacketError(f"'main' must be an object with keys encoding, scales; got {main!r}")
    count = prot["count"]
    if type(count) is not int or not 1 <= count <= shape[-1]:
        raise PacketError(f"protected count must be an int in 1..{shape[-1]} (the hidden size), got {count!r}")
    for name, part, width in (("protected", prot, count), ("main", main, shape[-1] - count)):
        if part["encoding"] not in PART_ENCODINGS:
            raise PacketError(f"{name} encoding must be one of {PART_ENCODINGS}, got {part['encoding']!r}")
        expected = _scales_descriptor(part["encoding"], (*shape[:-1], width))
        if part["scales"] != expected or _types(part["scales"]) != _types(expected):
            raise PacketError(f"{name} scales descriptor {part['scales']!r} does not match: expected {expected}")
    return obj

