"""ProtectedPacket (format version 2): round trips, version dispatch, hostile input (v3: test_uep_token_frames)."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
import torch

from edgesplit.packet import (
    PROTECTED_FORMAT_VERSION,
    ActivationPacket,
    PacketError,
    ProtectedPacket,
    decode_frame,
)

PART_ENCODINGS = ("float32", "float16", "bfloat16", "int8", "int4")


def _x(shape: tuple[int, ...] = (2, 3, 16)) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x[..., 5] *= 1000.0  # an outlier channel
    return x


def _packet(**kwargs: Any) -> ProtectedPacket:
    fields = {"session_id": "ue", "split_k": 3, "position_start": 7, **kwargs}
    return ProtectedPacket.from_tensor(_x(), (5, 0, 9), **fields)


def build_frame(header: dict[str, Any], payload: bytes, version: int = 2) -> bytes:
    """A frame with a valid CRC, per the module docstring."""
    raw = json.dumps(header).encode()
    head = b"ESPK" + bytes([version]) + struct.pack("<I", len(raw))
    return head + struct.pack("<I", zlib.crc32(head + raw + payload)) + raw + payload


def good_header(**overrides: Any) -> dict[str, Any]:
    header = {"session_id": "s", "split_k": 1, "position_start": 0, "shape": [2, 4],
              "main": {"encoding": "float32", "scales": None},
              "protected": {"count": 1, "encoding": "float32", "scales": None}}
    return {**header, **overrides}


def good_payload(indices: tuple[int, ...] = (2,), main_width: int = 3) -> bytes:
    values = np.arange(2 * len(indices), dtype="<f4").tobytes()
    return np.asarray(indices, dtype="<u4").tobytes() + values + np.ones(2 * main_width, dtype="<f4").tobytes()


@pytest.mark.parametrize("protected_encoding", PART_ENCODINGS)
@pytest.mark.parametrize("encoding", PART_ENCODINGS)
def test_round_trip_every_encoding_pair(encoding: str, protected_encoding: str) -> None:
    packet = _packet(encoding=encoding, protected_encoding=protected_encoding)
    frame = packet.encode()
    decoded = decode_frame(frame)
    assert isinstance(decoded, ProtectedPacket) and decoded == packet and decoded.encode() == frame
    assert frame[4] == PROTECTED_FORMAT_VERSION and decoded.nbytes == len(frame)
    x, out = _x(), decoded.to_tensor()
    assert out.shape == x.shape and decoded.channels == (5, 0, 9)
    expected_protected = ActivationPacket.from_tensor(x[..., [5, 0, 9]], session_id="ue", split_k=3,
                                                      encoding=protected_encoding).to_tensor()
    assert torch.equal(out[..., [5, 0, 9]], expected_protected)  # each value back at its own channel


def test_float32_parts_are_exact_and_main_scales_shrink() -> None:
    x = _x()
    assert torch.equal(_packet().to_tensor(), x)
    rest = [c for c in range(16) if c not in (5, 0, 9)]
    int8 = _packet(encoding="int8").to_tensor()
    plain = ActivationPacket.from_tensor(x, session_id="ue", split_k=3, encoding="int8").to_tensor()
    assert (int8[..., rest] - x[..., rest]).abs().max() < (plain[..., rest] - x[..., rest]).abs().max() / 100


def test_version_1_frames_still_parse_and_readers_refuse_each_other() -> None:
    v1 = ActivationPacket.from_tensor(_x(), session_id="ue", split_k=3, encoding="int8")
    assert decode_frame(v1.encode()) == v1
    with pytest.raises(PacketError, match="unknown format version 2.*decode_frame"):
        ActivationPacket.decode(_packet().encode())
    with pytest.raises(PacketError, match="format version 1 is not a protected frame"):
        ProtectedPacket.decode(v1.encode())
    with pytest.raises(PacketError, match="unknown format version 5"):
        decode_frame(build_frame(good_header(), good_payload(), version=5))


def test_crafted_good_frame_decodes() -> None:
    packet = decode_frame(build_frame(good_header(), good_payload()))
    assert packet.channels == (2,) and packet.to_tensor()[:, 2].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("frame", "match"), [
    (build_frame(good_header(), good_payload((4,))), r"channel indices must be ints in \[0, 4\)"),
    (build_frame(good_header(protected={"count": 2, "encoding": "float32", "scales": None}),
                 good_payload((1, 1), 2)), "distinct"),
    (build_frame(good_header(protected={"count": 0, "encoding": "float32", "scales": None}),
                 good_payload((), 4)), r"count must be an int in 1..4"),
    (build_frame(good_header(protected={"count": 5, "encoding": "float32", "scales": None}),
                 good_payload()), r"count must be an int in 1..4"),
    (build_frame(good_header(), good_payload()[:-4]), "truncated payload"),
    (build_frame(good_header(), good_payload() + b"\0"), "trailing bytes"),
    (build_frame(good_header(split_k=0), good_payload()), "split_k >= 1"),
    (build_frame(good_header(main={"encoding": "token_ids", "scales": None}), good_payload()), "main encoding"),
    (build_frame(good_header(main={"encoding": "int8", "scales": None}), good_payload()), "main scales"),
    (build_frame(good_header(extra=1), good_payload()), "header must be an object with keys"),
    (build_frame(good_header(protected={"count": 1}), good_payload()), "'protected' must be an object"),
    (build_frame(good_header(shape=[2, "4"]), good_payload()), "non-negative ints"),
    (b"ESPK\x02", "truncated frame"),
    (b"XXXX" + build_frame(good_header(), good_payload())[4:], "bad magic"),
])
def test_malformed_frames_raise_packet_errors(frame: bytes, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        decode_frame(frame)


def test_every_truncation_and_a_flipped_byte_are_caught() -> None:
    frame = _packet(encoding="int4", protected_encoding="float16").encode()
    for cut in range(len(frame)):
        with pytest.raises(PacketError):
            decode_frame(frame[:cut])
    corrupted = bytearray(frame)
    corrupted[-3] ^= 0x40
    with pytest.raises(PacketError, match="CRC32 mismatch"):
        decode_frame(bytes(corrupted))


@pytest.mark.parametrize(("channels", "match"), [((16,), r"\[0, 16\)"), ((), "1 to 16"), ((2, 2), "distinct")])
def test_from_tensor_refuses_bad_channels(channels: tuple[int, ...], match: str) -> None:
    with pytest.raises(PacketError, match=match):
        ProtectedPacket.from_tensor(_x(), channels, session_id="s", split_k=1)


def test_from_tensor_refuses_ids_and_unknown_encodings() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        ProtectedPacket.from_tensor(torch.ones(2, 4, dtype=torch.long), (0,), session_id="s", split_k=1)
    with pytest.raises(ValueError, match="protected_encoding must be one of"):
        ProtectedPacket.from_tensor(_x(), (0,), session_id="s", split_k=1, protected_encoding="token_ids")
