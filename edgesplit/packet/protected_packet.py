"""ProtectedPacket: a hidden state split into protected channels, protected token rows and the rest (v2, v3, v4).

Unequal error protection (:mod:`edgesplit.channel.uep`) sends a few outlier channels of the hidden state apart from
the rest, and optionally the first token rows (the attention sink) whole. The frame says which channels and how many
leading rows travel apart and at which precision, so the edge can put every value back in its place. Version 1
frames (:class:`~edgesplit.packet.ActivationPacket`) are unchanged and still written for every packet without a
protected part, version 2 for packets with protected channels only, version 3 when the first N rows are sent whole,
version 4 when the rows sent whole are others (e.g. massive rows found by the sender), listed by position;
:func:`decode_frame` reads all four versions.

Frame layout, versions 2 to 4 (all integers little-endian)::

    offset   size  field
    0        4     magic b"ESPK"
    4        1     format version, u8 (2: channels only; 3: with protected leading token rows; 4: listed rows)
    5        4     header_len H, u32
    9        4     crc32, u32: zlib.crc32 of the whole frame except this field (as in version 1)
    13       H     header: a UTF-8 JSON object (below)
    13 + H   4M    the M protected channel indices, u32 each, in the order their values are sent
    ...      4N    version 4 only: the positions (axis -2, from the packet's first row) of the N rows sent whole,
                   u32 each, strictly increasing, not 0..N-1 (that packet is a version-3 frame)
    ...      Pp    protected part: x[..., channels], every row, in its own encoding
    ...      Pt    versions 3 and 4, token part: the other channels of the first N rows, x[..., :N, rest], in its own
                   encoding (with the protected part: the first N rows whole)
    ...      Pm    main part: the other channels (``rest``, increasing index order) of rows N.., x[..., N:, rest]

The parts' shapes are ``shape[:-1] + [M]``, ``[*lead, N, hidden - M]`` and ``[*lead, T - N, hidden - M]`` for
``shape = [*lead, T, hidden]`` (version 2: N = 0, ``shape[:-1] + [hidden - M]`` for the main part of any rank). The
first rows' other channels travel apart from their outliers so that each part has its own absmax scale per row.
The header has exactly the keys ``session_id``, ``split_k`` (>= 1: token ids are never split), ``position_start``
and ``shape`` (as in version 1; the full tensor), ``main`` = ``{"encoding", "scales"}``, ``protected`` =
``{"count": M, "encoding", "scales"}`` and, version 3 only, ``tokens`` = ``{"count": N, "encoding", "scales"}``
(rows ``position_start .. position_start + N - 1`` of the sequence). Each part's encoding is one of the float or
quantised encodings of version 1 (``token_ids`` is refused) and its ``scales`` descriptor is the one version 1 writes
for that encoding and part shape; each part's bytes are laid out, and checked, exactly as a version 1 payload.
Indices must be distinct and below ``hidden``; version 2: ``1 <= M <= hidden``; version 3: ``0 <= M <= hidden``,
``1 <= N <= T``, ``shape`` of rank >= 2 (version 4 the same, the token part holding the listed rows and the main
part the others, in increasing order) (an empty channel part is written as float32: 0 bytes). Anything else raises
:class:`PacketError`.
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
"""Frame version of packets with protected channels (and no protected token rows)."""
TOKENS_FORMAT_VERSION = 3
"""Frame version of packets whose first token rows also travel whole in the protected encoding."""
ROWS_FORMAT_VERSION = 4
"""Frame version of packets whose rows sent whole are any rows (e.g. massive ones), listed by position."""
PART_ENCODINGS = ("float32", "float16", "bfloat16", "int8", "int4")
"""Encodings either part of a protected packet may use."""

_HEADER_KEYS = frozenset({"session_id", "split_k", "position_start", "shape", "main", "protected"})
_HEADER_KEYS_V3 = _HEADER_KEYS | {"tokens"}
_INDEX = np.dtype("<u4")


@dataclass(frozen=True, eq=False)
class ProtectedPacket:
    """A hidden state ``[..., hidden]`` as version-1 payloads: protected channels, protected token rows, the rest."""

    channels: tuple[int, ...]
    """Protected channel indices, in the order their values are sent (distinct, below ``hidden``)."""
    protected: ActivationPacket
    """The protected channels' values of every row, shape ``shape[:-1] + [M]``."""
    main: ActivationPacket
    """Every other channel of rows N.. in increasing index order, shape ``[*lead, T - N, hidden - M]``."""
    tokens: ActivationPacket | None = None
    """The other channels of the N rows sent whole, ``[*lead, N, hidden - M]`` (versions 3, 4); None: none."""
    positions: tuple[int, ...] | None = None
    """Rows (axis -2, from the packet's first) sent whole, increasing (version 4); None: the first N rows (version
    3). The first N rows given explicitly are stored as None, so they still make a version-3 frame."""

    def __post_init__(self) -> None:
        parts = {"protected": self.protected, "main": self.main} | ({"tokens": self.tokens} if self.tokens else {})
        for name, part in parts.items():
            if not isinstance(part, ActivationPacket) or part.encoding not in PART_ENCODINGS:
                raise PacketError(f"the {name} part must be an ActivationPacket with an encoding in {PART_ENCODINGS}")
        p, m, t = self.protected, self.main, self.tokens
        if any((q.session_id, q.split_k, q.position_start) != (m.session_id, m.split_k, m.position_start)
               for q in parts.values()):
            raise PacketError("the parts must share session, split and position")
        if p.split_k < 1:
            raise PacketError(f"protected packets carry hidden states (split_k >= 1), got split_k={p.split_k}")
        if t is None and p.shape[:-1] != m.shape[:-1]:
            raise PacketError("the protected and main parts must share leading dims")
        if t is not None and (min(len(p.shape), len(t.shape), len(m.shape)) < 2
                              or not t.shape[:-2] == m.shape[:-2] == p.shape[:-2] or t.shape[-2] < 1
                              or t.shape[-1] != m.shape[-1] or p.shape[-2] != t.shape[-2] + m.shape[-2]):
            raise PacketError(f"with token rows the parts must be [*lead, T, M], [*lead, N >= 1, W] and "
                              f"[*lead, T - N, W], got {list(p.shape)}, {list(t.shape)} and {list(m.shape)}")
        _check_channels(self.channels, p.shape[-1] + m.shape[-1], 0 if t is not None else 1)
        if len(self.channels) != p.shape[-1]:
            raise PacketError(f"{len(self.channels)} channel indices for a protected part of {p.shape[-1]} channels")
        if self.positions is not None:
            if t is None:
                raise PacketError("row positions need a token part (the rows they name)")
            rows = _check_positions(tuple(self.positions), t.shape[-2], p.shape[-2])
            object.__setattr__(self, "positions", None if rows == tuple(range(len(rows))) else rows)

    @classmethod
    def from_tensor(cls, x: torch.Tensor, channels: tuple[int, ...] | list[int], *, session_id: str, split_k: int,
                    position_start: int = 0, encoding: str = "float32", protected_encoding: str = "float32",
                    tokens: int = 0, rows: tuple[int, ...] | list[int] | None = None) -> ProtectedPacket:
        """Split ``x`` ``[..., hidden]`` into ``x[..., channels]``, the rest of the rows sent whole (the first
        ``tokens``, or the increasing row indices ``rows`` when given) and the rest."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or not x.is_floating_point():
            raise ValueError("ProtectedPacket.from_tensor needs a floating-point tensor [..., hidden]")
        for name, enc in (("encoding", encoding), ("protected_encoding", protected_encoding)):
            if enc not in PART_ENCODINGS:
                raise ValueError(f"{name} must be one of {PART_ENCODINGS}, got {enc!r}")
        if type(tokens) is not int or tokens < 0 or (tokens and (x.dim() < 2 or tokens > x.shape[-2])):
            raise ValueError(f"tokens must be an int in 0..T of a [..., T, hidden] tensor, got {tokens!r} for "
                             f"shape {list(x.shape)}")
        if rows is not None:
            if tokens or x.dim() < 2 or isinstance(rows, str | bytes) or not hasattr(rows, "__iter__"):
                raise ValueError(f"rows must be a sequence of row indices of a [..., T, hidden] tensor (and tokens "
                                 f"0), got rows={rows!r}, tokens={tokens!r}")
            try:
                rows = _check_positions(tuple(rows), len(tuple(rows)), int(x.shape[-2]))
            except PacketError as err:
                raise ValueError(str(err)) from None
        sent = list(rows) if rows is not None else list(range(tokens))
        tokens = len(sent)
        chosen = _check_channels(tuple(channels), int(x.shape[-1]), 0 if tokens else 1)
        rest = rest_channels(chosen, int(x.shape[-1]))
        fields = {"session_id": session_id, "split_k": split_k, "position_start": position_start}
        part_encoding = protected_encoding if chosen else "float32"  # an empty part: 0 bytes
        protected = ActivationPacket.from_tensor(x[..., list(chosen)], encoding=part_encoding, **fields)
        others = [r for r in range(int(x.shape[-2])) if r not in set(sent)] if tokens else []
        main = ActivationPacket.from_tensor((x[..., others, :] if tokens else x)[..., rest], encoding=encoding,
                                            **fields)
        head = ActivationPacket.from_tensor(x[..., sent, :][..., rest], encoding=protected_encoding, **fields) \
            if tokens else None
        return cls(chosen, protected, main, head, tuple(sent) if tokens else None)

    def to_tensor(self) -> torch.Tensor:
        """The reassembled float32 tensor ``[..., hidden]``: every value back at its channel and row."""
        n, rest = self.token_rows, rest_channels(self.channels, self.hidden_size)
        out = torch.empty(self.shape, dtype=torch.float32)
        out[..., list(self.channels)] = self.protected.to_tensor()
        if self.positions is None:
            (out[..., n:, :] if n else out)[..., rest] = self.main.to_tensor()
            if self.tokens is not None:
                out[..., :n, rest] = self.tokens.to_tensor()
            return out
        sent = list(self.positions)
        others = [r for r in range(self.shape[-2]) if r not in set(sent)]
        cols = torch.tensor(rest)[None, :]
        out[..., torch.tensor(others, dtype=torch.long)[:, None], cols] = self.main.to_tensor()
        out[..., torch.tensor(sent)[:, None], cols] = self.tokens.to_tensor()
        return out

    @property
    def rows(self) -> tuple[int, ...]:
        """The rows sent whole (axis -2, increasing; empty for a version-2 packet)."""
        return tuple(range(self.token_rows)) if self.positions is None else self.positions

    @property
    def token_rows(self) -> int:
        """Leading rows sent whole (N; 0 for a version-2 packet)."""
        return 0 if self.tokens is None else self.tokens.shape[-2]

    @property
    def version(self) -> int:
        """Frame format version: 4 with rows sent whole listed by position, 3 with the first rows, else 2."""
        if self.tokens is None:
            return PROTECTED_FORMAT_VERSION
        return TOKENS_FORMAT_VERSION if self.positions is None else ROWS_FORMAT_VERSION

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the whole tensor."""
        return (*self.protected.shape[:-1], self.hidden_size)

    @property
    def hidden_size(self) -> int:
        """Width of the last dimension (protected + main channels)."""
        return self.protected.shape[-1] + self.main.shape[-1]

    @property
    def payload_bytes(self) -> int:
        """Index list plus every part's payload (scales included)."""
        head = self.tokens.payload_bytes if self.tokens is not None else 0
        listed = len(self.channels) + (len(self.positions) if self.positions is not None else 0)
        return _INDEX.itemsize * listed + self.protected.payload_bytes + head + self.main.payload_bytes

    @property
    def nbytes(self) -> int:
        """Total frame size in bytes, ``len(self.encode())``."""
        return len(self.encode())

    def encode(self) -> bytes:
        """The full version-2, 3 or 4 frame."""
        return self._frame

    @cached_property
    def _frame(self) -> bytes:
        header = _header_json(self)
        head_part = [self.tokens.payload] if self.tokens is not None else []
        positions = [np.asarray(self.positions, dtype=_INDEX).tobytes()] if self.positions is not None else []
        parts = [np.asarray(self.channels, dtype=_INDEX).tobytes(), *positions, self.protected.payload, *head_part,
                 self.main.payload]
        head = _HEAD.pack(MAGIC, self.version, len(header))
        crc = zlib.crc32(header, zlib.crc32(head))
        for part in parts:
            crc = zlib.crc32(part, crc)
        return b"".join((head, _CRC.pack(crc), header, *parts))

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, limits: PacketLimits = DEFAULT_LIMITS) -> ProtectedPacket:
        """Parse and fully verify one version-2, 3 or 4 frame; raises :class:`PacketError` for anything malformed."""
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
        if version not in _VERSIONS:
            raise PacketError(f"format version {version} is not a protected frame (versions {list(_VERSIONS)}); read "
                              "any frame with edgesplit.packet.decode_frame")
        if header_len > limits.max_header_bytes:
            raise PacketError(f"header is {header_len} bytes, over the limit of {limits.max_header_bytes}")
        start = _PRELUDE.size + header_len
        if start > size:
            raise PacketError(f"truncated frame: header needs {header_len} bytes, {size - _PRELUDE.size} left")
        obj = _parse_header(view[_PRELUDE.size:start], version)
        _check_limits(tuple(obj["shape"]), limits)
        shapes = _part_shapes(obj)
        encodings = {name: obj[name]["encoding"] for name in shapes}
        listed = obj["tokens"]["count"] if version == ROWS_FORMAT_VERSION else 0
        sizes = {"indices": 4 * obj["protected"]["count"], "positions": 4 * listed} | \
            {name: payload_len(encodings[name], shape) for name, shape in shapes.items()}
        if size - start != sum(sizes.values()):
            kind = "truncated" if size - start < sum(sizes.values()) else "trailing bytes after"
            raise PacketError(f"{kind} payload: expected {sum(sizes.values())} bytes, got {size - start}")
        if zlib.crc32(view[_CRC_FIELD.stop:], zlib.crc32(view[:_CRC_FIELD.start])) != crc:
            raise PacketError("CRC32 mismatch: the frame is corrupted")
        channels = tuple(int(c) for c in np.frombuffer(view, dtype=_INDEX, count=sizes["indices"] // 4, offset=start))
        at = start + sizes["indices"]
        positions = tuple(int(r) for r in np.frombuffer(view, dtype=_INDEX, count=listed, offset=at)) \
            if version == ROWS_FORMAT_VERSION else None
        if positions is not None and positions == tuple(range(listed)):
            raise PacketError("version-4 row positions are the first rows: that packet is a version-3 frame")
        fields, parts, at = (obj["session_id"], obj["split_k"], obj["position_start"]), {}, at + sizes["positions"]
        for name, shape in shapes.items():  # in wire order: protected, tokens, main
            parts[name] = ActivationPacket(*fields, shape, encodings[name], view[at:at + sizes[name]])
            at += sizes[name]
        return cls(channels, parts["protected"], parts["main"], parts.get("tokens"), positions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProtectedPacket):
            return NotImplemented
        return (self.channels, self.protected, self.main, self.tokens, self.positions) == \
            (other.channels, other.protected, other.main, other.tokens, other.positions)

    def __hash__(self) -> int:
        return hash((self.channels, self.protected, self.main, self.tokens, self.positions))


def rest_channels(channels: tuple[int, ...], hidden: int) -> list[int]:
    """The channels not in ``channels``, in increasing order (the main part's layout)."""
    chosen = set(channels)
    return [c for c in range(hidden) if c not in chosen]


def decode_frame(data: bytes | bytearray | memoryview,
                 limits: PacketLimits = DEFAULT_LIMITS) -> ActivationPacket | ProtectedPacket:
    """Decode a version-1 (:class:`ActivationPacket`) or version-2 / 3 / 4 (:class:`ProtectedPacket`) frame."""
    view = _immutable_view(data)
    if view.nbytes > 4 and view[4] in _VERSIONS:
        return ProtectedPacket.decode(view, limits)
    return ActivationPacket.decode(view, limits)  # version 1, or the clear error for anything else


_VERSIONS = (PROTECTED_FORMAT_VERSION, TOKENS_FORMAT_VERSION, ROWS_FORMAT_VERSION)


def _check_positions(rows: tuple[Any, ...], count: int, total: int) -> tuple[int, ...]:
    """``rows``: ``count`` strictly increasing ints in ``[0, total)``, else PacketError."""
    if len(rows) != count or not 1 <= count <= total:
        raise PacketError(f"need 1..{total} row positions, one per row sent whole ({count}), got {len(rows)}")
    if any(type(r) is not int or not 0 <= r < total for r in rows) or list(rows) != sorted(set(rows)):
        raise PacketError(f"row positions must be distinct increasing ints in [0, {total}), got {list(rows)}")
    return rows


def _check_channels(channels: tuple[Any, ...], hidden: int, least: int = 1) -> tuple[int, ...]:
    if not least <= len(channels) <= hidden:
        raise PacketError(f"a protected packet needs {least} to {hidden} channel indices, got {len(channels)}")
    if any(type(c) is not int or not 0 <= c < hidden for c in channels):
        raise PacketError(f"channel indices must be ints in [0, {hidden}), got {list(channels)}")
    if len(set(channels)) != len(channels):
        raise PacketError(f"channel indices must be distinct, got {list(channels)}")
    return channels


def _part_shapes(obj: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Each part's shape, in wire order, from a validated header."""
    shape, count = tuple(obj["shape"]), obj["protected"]["count"]
    if "tokens" not in obj:
        return {"protected": (*shape[:-1], count), "main": (*shape[:-1], shape[-1] - count)}
    n, width = obj["tokens"]["count"], shape[-1] - count
    return {"protected": (*shape[:-1], count), "tokens": (*shape[:-2], n, width),
            "main": (*shape[:-2], shape[-2] - n, width)}


def _header_json(packet: ProtectedPacket) -> bytes:
    p, m, t = packet.protected, packet.main, packet.tokens
    header = {"session_id": m.session_id, "split_k": m.split_k, "position_start": m.position_start,
              "shape": list(packet.shape),
              "main": {"encoding": m.encoding, "scales": _scales_descriptor(m.encoding, m.shape)},
              "protected": {"count": len(packet.channels), "encoding": p.encoding,
                            "scales": _scales_descriptor(p.encoding, p.shape)}}
    if t is not None:
        header["tokens"] = {"count": packet.token_rows, "encoding": t.encoding,
                            "scales": _scales_descriptor(t.encoding, t.shape)}
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")


def _parse_header(raw: memoryview, version: int = PROTECTED_FORMAT_VERSION) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise PacketError(f"header is not valid UTF-8 JSON: {exc}") from exc
    keys = _HEADER_KEYS if version == PROTECTED_FORMAT_VERSION else _HEADER_KEYS_V3
    if not isinstance(obj, dict) or obj.keys() != keys:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise PacketError(f"version {version} header must be an object with keys {sorted(keys)}, got {got}")
    shape = _check_fields(obj["session_id"], obj["split_k"], obj["position_start"], obj["shape"], "float32")
    if obj["split_k"] < 1:
        raise PacketError(f"protected packets carry hidden states (split_k >= 1), got split_k={obj['split_k']}")
    for name in sorted(keys - _FIELD_KEYS):
        part, want = obj[name], {"encoding", "scales"} | ({"count"} if name != "main" else set())
        if not isinstance(part, dict) or part.keys() != want:
            raise PacketError(f"{name!r} must be an object with keys {', '.join(sorted(want))}; got {part!r}")
    count, least = obj["protected"]["count"], 0 if "tokens" in obj else 1
    if type(count) is not int or not least <= count <= shape[-1]:
        raise PacketError(f"protected count must be an int in {least}..{shape[-1]} (the hidden size), got {count!r}")
    if "tokens" in obj:
        n = obj["tokens"]["count"]
        if len(shape) < 2 or type(n) is not int or not 1 <= n <= shape[-2]:
            raise PacketError(f"tokens count must be an int in 1..T of a [..., T, hidden] shape, got {n!r} for "
                              f"shape {list(shape)}")
    for name, part_shape in _part_shapes(obj).items():
        part = obj[name]
        if part["encoding"] not in PART_ENCODINGS:
            raise PacketError(f"{name} encoding must be one of {PART_ENCODINGS}, got {part['encoding']!r}")
        expected = _scales_descriptor(part["encoding"], part_shape)
        if part["scales"] != expected or _types(part["scales"]) != _types(expected):
            raise PacketError(f"{name} scales descriptor {part['scales']!r} does not match: expected {expected}")
    return obj


_FIELD_KEYS = frozenset({"session_id", "split_k", "position_start", "shape"})
