"""ProtectedPacket with protected leading token rows (format version 3): round trips, layout and hostile input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from edgesplit.packet import ActivationPacket, PacketError, ProtectedPacket, decode_frame
from edgesplit.packet.protected_packet import PROTECTED_FORMAT_VERSION, TOKENS_FORMAT_VERSION
from tests.packet.test_protected_packet import PART_ENCODINGS, build_frame, good_header

FIELDS = {"session_id": "ue", "split_k": 3, "position_start": 0}


def _x(shape: tuple[int, ...] = (2, 5, 16)) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x[..., 0, :] *= 20.0  # the attention sink
    x[..., 5] *= 100.0  # an outlier channel
    return x


def _packet(tokens: int = 1, channels: tuple[int, ...] = (5, 0, 9), **kwargs: Any) -> ProtectedPacket:
    return ProtectedPacket.from_tensor(_x(), channels, tokens=tokens, **(FIELDS | kwargs))


@pytest.mark.parametrize("protected_encoding", PART_ENCODINGS)
@pytest.mark.parametrize("encoding", ["float32", "int8", "int4"])
def test_round_trip_every_encoding_pair(encoding: str, protected_encoding: str) -> None:
    packet = _packet(2, encoding=encoding, protected_encoding=protected_encoding)
    frame = packet.encode()
    decoded = decode_frame(frame)
    assert isinstance(decoded, ProtectedPacket) and decoded == packet and decoded.encode() == frame
    assert frame[4] == TOKENS_FORMAT_VERSION == decoded.version and decoded.token_rows == 2
    assert decoded.shape == (2, 5, 16) and decoded.nbytes == len(frame)
    x, out = _x(), decoded.to_tensor()
    rest = [c for c in range(16) if c not in (5, 0, 9)]
    sink = ActivationPacket.from_tensor(x[..., :2, rest], encoding=protected_encoding, **FIELDS).to_tensor()
    assert torch.equal(out[..., :2, rest], sink)  # the first rows' other channels, in the protected encoding
    chans = ActivationPacket.from_tensor(x[..., [5, 0, 9]], encoding=protected_encoding, **FIELDS).to_tensor()
    assert torch.equal(out[..., [5, 0, 9]], chans)  # every row's outliers, as in version 2


def test_float32_is_exact_and_the_parts_are_laid_out_as_documented() -> None:
    packet = _packet(1)
    assert torch.equal(packet.to_tensor(), _x())
    assert packet.protected.shape == (2, 5, 3) and packet.tokens.shape == (2, 1, 13) and packet.main.shape == (2, 4, 13)
    frame, indices = packet.encode(), np.asarray((5, 0, 9), dtype="<u4").tobytes()
    payload = frame[len(frame) - packet.payload_bytes:]
    assert payload == indices + bytes(packet.protected.payload) + bytes(packet.tokens.payload) + \
        bytes(packet.main.payload)
    assert packet.payload_bytes == 4 * 3 + 4 * (2 * 5 * 3 + 2 * 1 * 13 + 2 * 4 * 13)


def test_int8_sink_row_keeps_the_main_streams_scale_granularity() -> None:
    x = _x()
    with_row = _packet(1, encoding="int8", protected_encoding="int8").to_tensor()
    without = ProtectedPacket.from_tensor(x, (5, 0, 9), encoding="int8", protected_encoding="int8",
                                          **FIELDS).to_tensor()
    assert torch.equal(with_row, without)  # same encodings: the same values, only the layout moved


def test_no_channels_and_every_row_protected() -> None:
    only_rows = _packet(1, channels=(), protected_encoding="int8")
    assert only_rows.protected.payload_bytes == 0 and only_rows.protected.encoding == "float32"
    assert decode_frame(only_rows.encode()) == only_rows and only_rows.channels == ()
    assert only_rows.tokens.shape == (2, 1, 16)
    whole = _packet(5, protected_encoding="float32")
    assert whole.main.shape == (2, 0, 13) and torch.equal(decode_frame(whole.encode()).to_tensor(), _x())


def test_tokens_zero_writes_the_version_2_frame() -> None:
    v2 = ProtectedPacket.from_tensor(_x(), (5,), **FIELDS)
    assert _packet(0, channels=(5,)).encode() == v2.encode() and v2.encode()[4] == PROTECTED_FORMAT_VERSION
    with pytest.raises(PacketError, match="1 to 16"):
        _packet(0, channels=())  # nothing protected: that is a version-1 frame


def test_version_1_reader_refuses_a_version_3_frame() -> None:
    with pytest.raises(PacketError, match="unknown format version 3"):
        ActivationPacket.decode(_packet().encode())


@pytest.mark.parametrize(("tokens", "shape"), [(6, (2, 5, 16)), (1, (16,)), (-1, (2, 5, 16)), (True, (2, 5, 16))])
def test_from_tensor_refuses_bad_token_counts(tokens: Any, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="tokens must be an int in 0..T"):
        ProtectedPacket.from_tensor(torch.randn(shape), (0,), tokens=tokens, session_id="s", split_k=1)


def _v3(**overrides: Any) -> dict[str, Any]:
    return good_header(**({"shape": [1, 2, 4], "tokens": {"count": 1, "encoding": "float32", "scales": None}}
                          | overrides))


def _v3_payload(count: int = 1) -> bytes:
    """Indices 0..count-1, those channels = 0, 1 (two rows), the first row's others = 7, the second row's = 1."""
    values = np.arange(2 * count, dtype="<f4").tobytes() + np.full(4 - count, 7.0, dtype="<f4").tobytes()
    return np.arange(count, dtype="<u4").tobytes() + values + np.ones(4 - count, dtype="<f4").tobytes()


def test_crafted_version_3_frame_decodes() -> None:
    packet = decode_frame(build_frame(_v3(), _v3_payload(), version=3))
    assert packet.token_rows == 1 and packet.to_tensor().tolist() == [[[0.0, 7.0, 7.0, 7.0], [1.0, 1.0, 1.0, 1.0]]]
    empty = decode_frame(build_frame(_v3(protected={"count": 0, "encoding": "float32", "scales": None}),
                                     _v3_payload(0), version=3))
    assert empty.channels == () and empty.to_tensor().tolist() == [[[7.0] * 4, [1.0] * 4]]


@pytest.mark.parametrize(("frame", "match"), [
    (build_frame(good_header(), _v3_payload(), version=3), "version 3 header must be an object with keys"),
    (build_frame(_v3(), _v3_payload(), version=2), "version 2 header must be an object with keys"),
    (build_frame(_v3(tokens={"count": 0, "encoding": "float32", "scales": None}), _v3_payload(), version=3),
     r"tokens count must be an int in 1..T"),
    (build_frame(_v3(tokens={"count": 3, "encoding": "float32", "scales": None}), _v3_payload(), version=3),
     r"tokens count must be an int in 1..T"),
    (build_frame(_v3(shape=[4]), _v3_payload(), version=3), "tokens count"),
    (build_frame(_v3(tokens={"count": 1, "encoding": "token_ids", "scales": None}), _v3_payload(), version=3),
     "tokens encoding"),
    (build_frame(_v3(tokens={"count": 1, "encoding": "int8", "scales": None}), _v3_payload(), version=3),
     "tokens scales"),
    (build_frame(_v3(tokens={"count": 1}), _v3_payload(), version=3), "'tokens' must be an object"),
    (build_frame(_v3(), _v3_payload()[:-4], version=3), "truncated payload"),
    (build_frame(_v3(), _v3_payload() + b"\0", version=3), "trailing bytes"),
    (build_frame(_v3(protected={"count": 5, "encoding": "float32", "scales": None}), _v3_payload(), version=3),
     r"count must be an int in 0..4"),
])
def test_malformed_version_3_frames_raise_packet_errors(frame: bytes, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        decode_frame(frame)


def test_every_truncation_and_a_flipped_byte_are_caught() -> None:
    frame = _packet(2, encoding="int4", protected_encoding="int8").encode()
    for cut in range(len(frame)):
        with pytest.raises(PacketError):
            decode_frame(frame[:cut])
    corrupted = bytearray(frame)
    corrupted[-3] ^= 0x40
    with pytest.raises(PacketError, match="CRC32 mismatch"):
        decode_frame(bytes(corrupted))
