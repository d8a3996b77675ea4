"""Version-4 ProtectedPacket frames: rows sent whole at listed positions (the massive-row rule's frame)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from edgesplit.packet import PacketError, ProtectedPacket, decode_frame
from edgesplit.packet.protected_packet import ROWS_FORMAT_VERSION, TOKENS_FORMAT_VERSION
from tests.packet.test_protected_packet import build_frame, good_header


def _x(shape: tuple[int, ...] = (2, 10, 16)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(3))


def _packet(rows: Any = (0, 4, 7), channels: tuple[int, ...] = (5, 0, 9), **kwargs: Any) -> ProtectedPacket:
    return ProtectedPacket.from_tensor(_x(), channels, rows=rows, session_id="ue", split_k=3, position_start=0,
                                       **kwargs)


@pytest.mark.parametrize(("encoding", "protected_encoding"), [("float32", "float32"), ("int8", "float16"),
                                                              ("int4", "bfloat16")])
def test_round_trip_with_listed_rows(encoding: str, protected_encoding: str) -> None:
    packet = _packet(encoding=encoding, protected_encoding=protected_encoding)
    frame = packet.encode()
    decoded = decode_frame(frame)
    assert frame[4] == ROWS_FORMAT_VERSION and decoded == packet and decoded.encode() == frame
    assert decoded.rows == (0, 4, 7) and decoded.positions == (0, 4, 7) and decoded.nbytes == len(frame)
    assert torch.equal(decoded.to_tensor(), packet.to_tensor())


def test_float32_rows_are_exact_and_travel_in_the_token_part() -> None:
    x, packet = _x(), _packet()
    assert torch.equal(packet.to_tensor(), x)
    rest = [c for c in range(16) if c not in (5, 0, 9)]
    assert torch.equal(packet.tokens.to_tensor(), x[..., [0, 4, 7], :][..., rest])
    others = [r for r in range(10) if r not in (0, 4, 7)]
    assert torch.equal(packet.main.to_tensor(), x[..., others, :][..., rest])
    assert packet.payload_bytes == 4 * (3 + 3) + 4 * (2 * 10 * 3 + 2 * 3 * 13 + 2 * 7 * 13)


def test_leading_rows_still_write_the_version_3_frame() -> None:
    as_rows, as_tokens = _packet(rows=[0, 1]), ProtectedPacket.from_tensor(_x(), (5, 0, 9), tokens=2,
                                                                          session_id="ue", split_k=3)
    assert as_rows.encode() == as_tokens.encode() and as_rows.encode()[4] == TOKENS_FORMAT_VERSION
    assert as_rows.positions is None and as_rows.rows == (0, 1)


@pytest.mark.parametrize(("rows", "match"), [
    ((4, 0), "distinct increasing"), ((3, 3), "distinct increasing"), ((0, 10), r"in \[0, 10\)"),
    ((), "need 1..10 row positions"), ("01", "sequence of row indices"), ((1.0,), "distinct increasing"),
])
def test_bad_rows_are_refused(rows: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _packet(rows=rows)


def test_rows_and_tokens_together_are_refused() -> None:
    with pytest.raises(ValueError, match="and tokens 0"):
        ProtectedPacket.from_tensor(_x(), (0,), tokens=1, rows=(3,), session_id="s", split_k=1)


def _v4_payload(positions: tuple[int, ...] = (1,)) -> bytes:
    """Channel 0 (= 0, 1, 2 over three rows), the listed row's others = 7, the other rows' = 1."""
    return (np.zeros(1, "<u4").tobytes() + np.asarray(positions, "<u4").tobytes()
            + np.arange(3, dtype="<f4").tobytes() + np.full(3, 7.0, "<f4").tobytes() + np.ones(6, "<f4").tobytes())


def _v4(**overrides: Any) -> dict[str, Any]:
    return good_header(**({"shape": [1, 3, 4], "tokens": {"count": 1, "encoding": "float32", "scales": None}}
                          | overrides))


def test_crafted_version_4_frame_decodes() -> None:
    packet = decode_frame(build_frame(_v4(), _v4_payload(), version=4))
    assert packet.rows == (1,)
    assert packet.to_tensor().tolist() == [[[0.0, 1.0, 1.0, 1.0], [1.0, 7.0, 7.0, 7.0], [2.0, 1.0, 1.0, 1.0]]]


@pytest.mark.parametrize(("frame", "match"), [
    (build_frame(_v4(), _v4_payload((0,)), version=4), "that packet is a version-3 frame"),
    (build_frame(_v4(), _v4_payload((3,)), version=4), r"distinct increasing ints in \[0, 3\)"),
    (build_frame(_v4(), _v4_payload()[:-4], version=4), "truncated payload"),
    (build_frame(good_header(), _v4_payload(), version=4), "version 4 header must be an object with keys"),
])
def test_malformed_version_4_frames(frame: bytes, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        decode_frame(frame)


def test_version_4_positions_are_covered_by_the_crc() -> None:
    frame = bytearray(_packet().encode())
    at = 13 + int.from_bytes(frame[5:9], "little") + 4 * 3  # the first position, after the channel indices
    frame[at] ^= 1
    with pytest.raises(PacketError, match="CRC32 mismatch"):
        decode_frame(bytes(frame))
