"""Hostile input to ActivationPacket.decode: corruption, truncation, crafted headers and resource limits.

Crafted frames carry a *valid* CRC (built here from the documented layout) so that the header and payload
checks behind the CRC are exercised too. Every failure must be a PacketError, never another exception.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.packet import ENCODINGS, ActivationPacket, PacketError, PacketLimits

FAST = settings(max_examples=80, deadline=None)


def build_frame(header: dict[str, Any] | bytes, payload: bytes, *, magic: bytes = b"ESPK", version: int = 1) -> bytes:
    """A frame per the module docstring, with a correct CRC over everything but the CRC field."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    head = magic + bytes([version]) + struct.pack("<I", len(raw))
    return head + struct.pack("<I", zlib.crc32(head + raw + payload)) + raw + payload


def small_packet(encoding: str) -> ActivationPacket:
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 1000, (1, 3), generator=gen) if encoding == "token_ids" else torch.randn(1, 3, generator=gen)
    return ActivationPacket.from_tensor(
        x, session_id="ue", split_k=0 if encoding == "token_ids" else 2, position_start=5, encoding=encoding
    )


def good_header(**overrides: Any) -> dict[str, Any]:
    header = {"session_id": "s", "split_k": 1, "position_start": 0, "shape": [2, 2], "encoding": "float32",
              "scales": None}  # fmt: skip
    return {**header, **overrides}


def int8_header(**overrides: Any) -> dict[str, Any]:
    scales = {"scheme": "absmax_per_token", "dtype": "float32", "count": 2}
    return good_header(**{"encoding": "int8", "scales": scales, **overrides})


FLOAT_PAYLOAD = np.ones(4, dtype="<f4").tobytes()
INT8_SCALES = np.array([0.5, 0.25], dtype="<f4").tobytes()


def test_builder_agrees_with_encoder() -> None:
    frame = build_frame(good_header(), FLOAT_PAYLOAD)
    assert ActivationPacket.decode(frame).to_tensor().tolist() == [[1.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_truncation_at_every_length_is_detected(encoding: str) -> None:
    frame = small_packet(encoding).encode()
    for cut in range(len(frame)):
        with pytest.raises(PacketError):
            ActivationPacket.decode(frame[:cut])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_single_bit_flip_is_detected(encoding: str) -> None:
    frame = bytearray(small_packet(encoding).encode())
    for bit in range(8 * len(frame)):
        frame[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PacketError):
            ActivationPacket.decode(bytes(frame))
        frame[bit // 8] ^= 1 << (bit % 8)


def test_payload_corruption_is_reported_as_crc_mismatch() -> None:
    frame = bytearray(small_packet("float32").encode())
    frame[-2] ^= 0x10  # any float32 bit pattern is a valid value, so only the CRC can catch this
    with pytest.raises(PacketError, match="CRC32 mismatch"):
        ActivationPacket.decode(bytes(frame))


@FAST
@given(encoding=st.sampled_from(ENCODINGS), extra=st.binary(min_size=1, max_size=40))
def test_appended_bytes_are_rejected(encoding: str, extra: bytes) -> None:
    with pytest.raises(PacketError, match="trailing"):
        ActivationPacket.decode(small_packet(encoding).encode() + extra)


@FAST
@given(data=st.binary(max_size=300))
def test_random_bytes_only_raise_packet_error(data: bytes) -> None:
    for candidate in (data, b"ESPK\x01" + data):
        with pytest.raises(PacketError):
            ActivationPacket.decode(candidate)


@FAST
@given(
    encoding=st.sampled_from(ENCODINGS),
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from("rid")), min_size=1, max_size=4
    ),
)
def test_random_mutations_are_detected(encoding: str, edits: list[tuple[int, int, str]]) -> None:
    original = small_packet(encoding).encode()
    frame = bytearray(original)
    for pos, value, op in edits:
        i = pos % (len(frame) + 1)
        if op == "r" and i < len(frame):
            frame[i] = value
        elif op == "i":
            frame.insert(i, value)
        elif op == "d" and i < len(frame):
            del frame[i]
    if bytes(frame) == original:
        assert ActivationPacket.decode(bytes(frame)) == ActivationPacket.decode(original)
    else:
        with pytest.raises(PacketError):
            ActivationPacket.decode(bytes(frame))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (build_frame(good_header(), FLOAT_PAYLOAD, version=2), "unknown format version 2"),
        (build_frame(good_header(), FLOAT_PAYLOAD, version=0), "unknown format version 0"),
        (build_frame(good_header(), FLOAT_PAYLOAD, magic=b"ESPL"), "bad magic"),
        (build_frame(b"{not json", FLOAT_PAYLOAD), "not valid UTF-8 JSON"),
        (build_frame(b'{"session_id":"\xff"}', FLOAT_PAYLOAD), "not valid UTF-8 JSON"),
        (build_frame(b"[1, 2]", FLOAT_PAYLOAD), "must be an object"),
        (build_frame(b"[" * 5000 + b"]" * 5000, FLOAT_PAYLOAD), "JSON"),
        (build_frame(b'{"a":' + b"9" * 5000 + b"}", FLOAT_PAYLOAD), "JSON"),
        (build_frame(b'{"split_k":1,"split_k":2}', FLOAT_PAYLOAD), "duplicate"),
        (build_frame(json.dumps(good_header(split_k=float("nan"))).encode(), FLOAT_PAYLOAD), "NaN"),
        (build_frame({k: v for k, v in good_header().items() if k != "scales"}, FLOAT_PAYLOAD), "keys"),
        (build_frame(good_header(extra=1), FLOAT_PAYLOAD), "keys"),
        (build_frame(good_header(session_id=7), FLOAT_PAYLOAD), "session_id"),
        (build_frame(good_header(session_id="x" * 129), FLOAT_PAYLOAD), "session_id"),
        (build_frame(good_header(split_k=True), FLOAT_PAYLOAD), "split_k"),
        (build_frame(good_header(split_k=1.0), FLOAT_PAYLOAD), "split_k"),
        (build_frame(good_header(split_k=-1), FLOAT_PAYLOAD), "split_k"),
        (build_frame(good_header(position_start="0"), FLOAT_PAYLOAD), "position_start"),
        (build_frame(good_header(shape=[2, -2]), FLOAT_PAYLOAD), "non-negative"),
        (build_frame(good_header(shape=[2, 2.0]), FLOAT_PAYLOAD), "non-negative"),
        (build_frame(good_header(shape=[True, 4]), FLOAT_PAYLOAD), "non-negative"),
        (build_frame(good_header(shape=[]), b""), "shape"),
        (build_frame(good_header(shape="22"), FLOAT_PAYLOAD), "shape"),
        (build_frame(good_header(shape=[1] * 9), FLOAT_PAYLOAD[:4]), "shape"),
        (build_frame(good_header(shape=[3, 2]), FLOAT_PAYLOAD), "truncated payload"),
        (build_frame(good_header(shape=[1, 2]), FLOAT_PAYLOAD), "trailing bytes"),
        (build_frame(good_header(encoding="float64"), FLOAT_PAYLOAD), "unknown encoding"),
        (build_frame(good_header(encoding=["int8"]), FLOAT_PAYLOAD), "unknown encoding"),
        (build_frame(good_header(encoding="token_ids"), FLOAT_PAYLOAD), "split_k=0"),
        (build_frame(good_header(split_k=0, encoding="token_ids"), np.array([1, -1, 2, 3], "<i4").tobytes()), "ids"),
        (build_frame(good_header(scales={"scheme": "absmax_per_token"}), FLOAT_PAYLOAD), "scales"),
        (build_frame(int8_header(scales=None), INT8_SCALES + b"\x01" * 4), "scales"),
        (build_frame(int8_header(scales={"scheme": "absmax_per_token", "dtype": "float32", "count": 4}),
                     INT8_SCALES + b"\x01" * 4), "scales"),
        (build_frame(int8_header(scales={"scheme": "absmax_per_tensor", "dtype": "float32", "count": 2}),
                     INT8_SCALES + b"\x01" * 4), "scales"),
        (build_frame(int8_header(shape=[1, 2], scales={"scheme": "absmax_per_token", "dtype": "float32",
                                                       "count": True}), INT8_SCALES[:4] + b"\x01" * 2), "scales"),
        (build_frame(int8_header(), np.array([0.5, np.nan], "<f4").tobytes() + b"\x01" * 4), "finite"),
        (build_frame(int8_header(), np.array([np.inf, 1], "<f4").tobytes() + b"\x01" * 4), "finite"),
        (build_frame(int8_header(), np.array([-0.5, 1], "<f4").tobytes() + b"\x01" * 4), "non-negative"),
        (build_frame(int8_header(), INT8_SCALES + b"\x01\x80\x01\x01"), "symmetric range"),
    ],
)  # fmt: skip
def test_crafted_frames_with_valid_crc_are_rejected(frame: bytes, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        ActivationPacket.decode(frame)


def int4_header(shape: list[int]) -> dict[str, Any]:
    scales = {"scheme": "absmax_per_token", "dtype": "float32", "count": int(np.prod(shape[:-1]))}
    return good_header(encoding="int4", shape=shape, scales=scales)


@pytest.mark.parametrize(
    ("shape", "codes", "ok"),
    [([1, 2], b"\x7f", True), ([1, 2], b"\x99", True), ([1, 2], b"\x08", False), ([1, 2], b"\x80", False),
     ([1, 3], b"\x11\x01", True), ([1, 3], b"\x11\x11", False)],
)  # fmt: skip
def test_int4_codes_and_padding_checked(shape: list[int], codes: bytes, ok: bool) -> None:
    frame = build_frame(int4_header(shape), np.ones(1, "<f4").tobytes() + codes)
    if ok:
        values = ActivationPacket.decode(frame).to_tensor().flatten().tolist()
        assert all(-7 <= v <= 7 for v in values)
    else:
        with pytest.raises(PacketError, match="symmetric range or non-zero padding"):
            ActivationPacket.decode(frame)


@pytest.mark.parametrize("nibble", [0x08, 0x80])
def test_int4_minus_eight_found_at_every_byte(nibble: int) -> None:
    # 37 code bytes: four whole 64-bit words plus a tail, at an odd offset in the frame.
    shape = [1, 74]
    for pos in range(37):
        codes = bytearray(b"\x77" * 37)
        codes[pos] = nibble | (0x01 if nibble == 0x80 else 0x10)
        with pytest.raises(PacketError, match="symmetric range"):
            ActivationPacket.decode(build_frame(int4_header(shape), np.ones(1, "<f4").tobytes() + bytes(codes)))
    assert ActivationPacket.decode(build_frame(int4_header(shape), np.ones(1, "<f4").tobytes() + b"\x77" * 37))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(field=st.sampled_from(sorted(good_header())), value=json_values, payload=st.binary(max_size=40))
def test_fuzzed_header_fields_only_raise_packet_error(field: str, value: Any, payload: bytes) -> None:
    frame = build_frame(json.dumps(good_header(**{field: value})).encode(), payload)
    try:
        packet = ActivationPacket.decode(frame)
    except PacketError:
        return
    assert packet.to_tensor().shape == packet.shape  # anything accepted must be fully usable


def test_header_over_limit_rejected_before_it_is_read() -> None:
    header = json.dumps(good_header(session_id="x" * 100, padding=["y" * 1000] * 1000)).encode()
    frame = build_frame(header, FLOAT_PAYLOAD)
    tracemalloc.start()
    try:
        with pytest.raises(PacketError, match="header is .* over the limit"):
            ActivationPacket.decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(header) // 10  # the ~1 MB header was never copied or parsed


def test_claimed_header_length_beyond_limit_wins_over_truncation() -> None:
    frame = b"ESPK\x01" + struct.pack("<I", 2**32 - 1) + b"\x00" * 4
    with pytest.raises(PacketError, match="over the limit"):
        ActivationPacket.decode(frame)


def test_element_limit_checked_before_payload() -> None:
    # 2^40 float32 elements would be 4 TiB: the limit must fire on the header alone.
    frame = build_frame(good_header(shape=[2**20, 2**20]), b"")
    with pytest.raises(PacketError, match="elements, over the limit"):
        ActivationPacket.decode(frame)
    packet = ActivationPacket.from_tensor(torch.ones(4, 8), session_id="s", split_k=1)
    with pytest.raises(PacketError, match="spans 32 elements, over the limit of 31"):
        ActivationPacket.decode(packet.encode(), PacketLimits(max_elements=31))
    assert ActivationPacket.decode(packet.encode(), PacketLimits(max_elements=32)) == packet


def test_empty_tensors_cannot_declare_huge_dims() -> None:
    with pytest.raises(PacketError, match="over the limit"):
        ActivationPacket.decode(build_frame(good_header(shape=[2**40, 0]), b""))
    with pytest.raises(PacketError, match="int64 strides"):
        ActivationPacket("s", 1, 0, (0, 2**40, 2**40), "float32", b"")
    assert ActivationPacket.decode(build_frame(good_header(shape=[3, 0, 5]), b"")).to_tensor().shape == (3, 0, 5)


def test_total_size_limit() -> None:
    frame = small_packet("float32").encode()
    with pytest.raises(PacketError, match="over the limit"):
        ActivationPacket.decode(frame, PacketLimits(max_total_bytes=len(frame) - 1))
    assert ActivationPacket.decode(frame, PacketLimits(max_total_bytes=len(frame))).shape == (1, 3)


def test_decode_rejects_non_bytes_and_bad_limits() -> None:
    with pytest.raises(TypeError):
        ActivationPacket.decode("ESPK")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PacketLimits"):
        ActivationPacket.decode(small_packet("int8").encode(), limits={"max_elements": 4})  # type: ignore[arg-type]
