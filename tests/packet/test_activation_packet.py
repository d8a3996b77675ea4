"""ActivationPacket round trips, header fields, sizes and from_tensor validation."""

from __future__ import annotations

import copy
import json
import pickle
import struct
import zlib

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.packet import (
    ENCODINGS,
    MAX_SESSION_ID_CHARS,
    ActivationPacket,
    PacketError,
    PacketLimits,
    dequantize_absmax,
    quantize_absmax,
)

FAST = settings(max_examples=60, deadline=None)

small_shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)
finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def round_trip(x: torch.Tensor, encoding: str, **kwargs: object) -> tuple[ActivationPacket, torch.Tensor]:
    fields = {"session_id": "s", "split_k": 0 if encoding == "token_ids" else 3, **kwargs}
    packet = ActivationPacket.from_tensor(x, encoding=encoding, **fields)  # type: ignore[arg-type]
    frame = packet.encode()
    decoded = ActivationPacket.decode(frame)
    assert decoded == packet and decoded.encode() == frame
    return decoded, decoded.to_tensor()


@FAST
@given(x=hnp.arrays(np.float32, small_shapes, elements=st.floats(width=32)))
def test_float32_round_trip_is_bitwise(x: np.ndarray) -> None:
    # NaN, inf, -0.0 and subnormals all travel unchanged.
    _, y = round_trip(torch.from_numpy(x), "float32")
    assert y.dtype == torch.float32 and tuple(y.shape) == x.shape
    assert np.array_equal(y.numpy().view(np.uint32), x.view(np.uint32))


@FAST
@given(
    x=hnp.arrays(np.float32, small_shapes, elements=st.floats(-60000, 60000, width=32)),
    encoding=st.sampled_from(["float16", "bfloat16"]),
)
def test_half_encodings_round_to_nearest(x: np.ndarray, encoding: str) -> None:
    t = torch.from_numpy(x)
    wire_dtype = torch.float16 if encoding == "float16" else torch.bfloat16
    _, y = round_trip(t, encoding)
    assert y.dtype == torch.float32
    assert torch.equal(y, t.to(wire_dtype).to(torch.float32))
    # Relative rounding error of a normal number is at most 2^-11 (float16) or 2^-8 (bfloat16).
    rel = 2.0**-11 if encoding == "float16" else 2.0**-8
    assert ((y - t).abs() <= t.abs() * rel + 1e-7).all()


@FAST
@given(x=hnp.arrays(np.float32, small_shapes, elements=finite_f32), encoding=st.sampled_from(["int8", "int4"]))
def test_quantised_error_bounded_per_token(x: np.ndarray, encoding: str) -> None:
    t = torch.from_numpy(x)
    bits, qmax = (8, 127) if encoding == "int8" else (4, 7)
    packet, y = round_trip(t, encoding)
    assert torch.equal(y, dequantize_absmax(*quantize_absmax(t, bits)))
    xd = x.astype(np.float64)
    absmax = np.abs(xd).max(axis=-1, keepdims=True, initial=0.0)
    assert (np.abs(y.double().numpy() - xd) <= absmax / (2 * qmax) + 1e-6 * absmax + 1e-37).all()


def test_quantised_error_on_hidden_state_like_tensor() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 64, generator=gen) * torch.logspace(-2, 2, 16).view(1, 16, 1)
    spiked = x.clone()
    spiked[0, 3, 5] = 300.0  # an outlier activation only affects its own token's scale
    for encoding, qmax in (("int8", 127), ("int4", 7)):
        _, y = round_trip(spiked, encoding)
        err = (y - spiked).abs().amax(dim=-1)
        assert (err <= spiked.abs().amax(dim=-1) / (2 * qmax) * (1 + 1e-5)).all()
        _, clean = round_trip(x, encoding)
        others = torch.ones(2, 16, dtype=torch.bool)
        others[0, 3] = False
        assert torch.equal(y[others], clean[others])
        assert not torch.equal(y[0, 3], clean[0, 3])


@FAST
@given(ids=hnp.arrays(np.int64, small_shapes, elements=st.integers(0, 2**31 - 1)))
def test_token_ids_exact(ids: np.ndarray) -> None:
    packet, y = round_trip(torch.from_numpy(ids), "token_ids")
    assert y.dtype == torch.int64
    assert np.array_equal(y.numpy(), ids)
    assert packet.payload_bytes == 4 * ids.size


def test_token_ids_accept_int32_and_report_tokens() -> None:
    ids = torch.tensor([[1, 2, 3, 49151]], dtype=torch.int32)
    packet, y = round_trip(ids, "token_ids", position_start=7)
    assert y.tolist() == [[1, 2, 3, 49151]]
    assert packet.num_tokens == 4 and packet.position_start == 7 and packet.split_k == 0


@FAST
@given(
    session_id=st.text(max_size=MAX_SESSION_ID_CHARS),
    split_k=st.integers(0, 10**6),
    position_start=st.integers(0, 2**40),
    shape=small_shapes,
    encoding=st.sampled_from([e for e in ENCODINGS if e != "token_ids"]),
)
def test_header_fields_round_trip(
    session_id: str, split_k: int, position_start: int, shape: tuple[int, ...], encoding: str
) -> None:
    x = torch.ones(shape)
    packet = ActivationPacket.from_tensor(
        x, session_id=session_id, split_k=split_k, position_start=position_start, encoding=encoding
    )
    decoded = ActivationPacket.decode(packet.encode())
    assert decoded.session_id == session_id
    assert decoded.split_k == split_k
    assert decoded.position_start == position_start
    assert decoded.shape == tuple(shape)
    assert decoded.encoding == encoding
    assert decoded.to_tensor().shape == x.shape


def test_frame_matches_documented_layout() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    packet = ActivationPacket.from_tensor(x, session_id="ue-7", split_k=4, position_start=10, encoding="int8")
    header = json.dumps(
        {
            "session_id": "ue-7",
            "split_k": 4,
            "position_start": 10,
            "shape": [1, 2, 3],
            "encoding": "int8",
            "scales": {"scheme": "absmax_per_token", "dtype": "float32", "count": 2},
        },
        separators=(",", ":"),
    ).encode()
    scales = np.array([2.0 / 127, 5.0 / 127], dtype="<f4")
    codes = np.array([0, 64, 127, 76, 102, 127], dtype=np.int8)
    payload = scales.tobytes() + codes.tobytes()
    head = b"ESPK" + bytes([1]) + struct.pack("<I", len(header))
    expected = head + struct.pack("<I", zlib.crc32(head + header + payload)) + header + payload
    assert packet.encode() == expected
    assert packet.header_bytes == 13 + len(header) and packet.payload_bytes == len(payload)


@pytest.mark.parametrize(
    ("encoding", "payload_bytes"),
    [("float32", 4 * 512 * 576), ("float16", 2 * 512 * 576), ("bfloat16", 2 * 512 * 576),
     ("int8", 4 * 512 + 512 * 576), ("int4", 4 * 512 + 512 * 576 // 2)],
)  # fmt: skip
def test_sizes_and_bits_per_element(encoding: str, payload_bytes: int) -> None:
    x = torch.randn(1, 512, 576, generator=torch.Generator().manual_seed(1))
    packet = ActivationPacket.from_tensor(x, session_id="s", split_k=5, encoding=encoding)
    assert packet.payload_bytes == payload_bytes
    assert packet.nbytes == len(packet.encode()) == packet.header_bytes + payload_bytes
    assert packet.bits_per_element == pytest.approx(8 * payload_bytes / (512 * 576))
    assert packet.numel == 512 * 576 and packet.num_tokens == 512


def test_bits_per_element_includes_scale_overhead() -> None:
    x = torch.randn(4, 576)
    assert ActivationPacket.from_tensor(x, session_id="", split_k=1, encoding="int4").bits_per_element == 4 + 32 / 576
    assert ActivationPacket.from_tensor(x, session_id="", split_k=1, encoding="int8").bits_per_element == 8 + 32 / 576


def test_direct_construction_and_decode_of_copies_agree() -> None:
    x = torch.randn(3, 5).t()  # non-contiguous input
    packet = ActivationPacket.from_tensor(x, session_id="a", split_k=2, encoding="bfloat16")
    rebuilt = ActivationPacket("a", 2, 0, (5, 3), "bfloat16", bytes(packet.payload))
    assert rebuilt == packet and hash(rebuilt) == hash(packet)
    assert rebuilt.encode() == packet.encode()
    buf = bytearray(packet.encode())
    decoded = ActivationPacket.decode(buf)
    buf[-1] ^= 0xFF  # the caller mutating its buffer afterwards must not reach the packet
    assert decoded == packet
    assert ActivationPacket.decode(memoryview(packet.encode())) == packet
    assert "payload" not in repr(packet)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_to_tensor_returns_independent_writable_tensors(encoding: str) -> None:
    x = torch.arange(12).reshape(3, 4)
    packet, y = round_trip(x if encoding == "token_ids" else x.float(), encoding)
    frame, before = packet.encode(), y.clone()
    y += 1  # must neither fail (read-only buffer) nor reach the packet or its frame
    assert torch.equal(packet.to_tensor(), before)
    assert packet.encode() == frame


def test_pickle_and_deepcopy_go_through_the_verified_frame() -> None:
    # Ray pickles objects passed between actors; the memoryview payload must not break that.
    packet = ActivationPacket.from_tensor(torch.randn(2, 3, 8), session_id="ray", split_k=4, encoding="int4")
    for clone in (pickle.loads(pickle.dumps(packet)), copy.deepcopy(packet)):
        assert clone == packet and clone.encode() == packet.encode()
        assert torch.equal(clone.to_tensor(), packet.to_tensor())


def test_packets_differing_in_payload_are_unequal() -> None:
    a = ActivationPacket.from_tensor(torch.zeros(4), session_id="s", split_k=1)
    b = ActivationPacket.from_tensor(torch.tensor([0.0, 0.0, 0.0, 1.0]), session_id="s", split_k=1)
    assert a != b


def test_any_rank_and_empty_tensors() -> None:
    for shape in [(7,), (2, 3), (1, 2, 3, 4), (0,), (2, 0, 5), (3, 0)]:
        x = torch.randn(shape)
        for encoding in ("float32", "int8", "int4"):
            _, y = round_trip(x, encoding)
            assert y.shape == x.shape


def test_gradients_and_devices_are_ignored() -> None:
    x = torch.randn(2, 4, requires_grad=True)
    _, y = round_trip(x, "float32")
    assert torch.equal(y, x.detach()) and not y.requires_grad


@pytest.mark.parametrize("encoding", ["float64", "int2", "", "FLOAT32"])
def test_from_tensor_rejects_unknown_encoding(encoding: str) -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        ActivationPacket.from_tensor(torch.ones(2), session_id="s", split_k=1, encoding=encoding)


@pytest.mark.parametrize("encoding", ["int8", "int4"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_from_tensor_rejects_non_finite_for_quantised(encoding: str, bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        ActivationPacket.from_tensor(torch.tensor([[1.0, bad]]), session_id="s", split_k=1, encoding=encoding)


def test_from_tensor_rejects_half_precision_overflow() -> None:
    with pytest.raises(ValueError, match="float16 range"):
        ActivationPacket.from_tensor(torch.tensor([70000.0]), session_id="s", split_k=1, encoding="float16")
    with pytest.raises(ValueError, match="float32 range"):
        ActivationPacket.from_tensor(torch.tensor([1e300], dtype=torch.float64), session_id="s", split_k=1)
    # inf that was already inf is carried, not an overflow
    _, y = round_trip(torch.tensor([float("inf"), 1.0]), "float16")
    assert y[0] == float("inf")


def test_from_tensor_rejects_bad_token_ids() -> None:
    def make(x: torch.Tensor, split_k: int = 0) -> ActivationPacket:
        return ActivationPacket.from_tensor(x, session_id="s", split_k=split_k, encoding="token_ids")

    with pytest.raises(ValueError, match="integer tensor"):
        make(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="integer tensor"):
        make(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="must lie in"):
        make(torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="must lie in"):
        make(torch.tensor([2**31]))
    with pytest.raises(PacketError, match="split_k=0"):
        make(torch.tensor([1, 2]), split_k=3)
    with pytest.raises(ValueError, match="floating-point"):
        ActivationPacket.from_tensor(torch.tensor([1, 2]), session_id="s", split_k=1, encoding="int8")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"session_id": "x" * (MAX_SESSION_ID_CHARS + 1)}, "session_id"),
        ({"session_id": 5}, "session_id"),
        ({"split_k": -1}, "split_k"),
        ({"split_k": True}, "split_k"),
        ({"split_k": 2.0}, "split_k"),
        ({"position_start": -3}, "position_start"),
    ],
)
def test_from_tensor_rejects_bad_header_fields(kwargs: dict[str, object], match: str) -> None:
    fields = {"session_id": "s", "split_k": 1, **kwargs}
    with pytest.raises(PacketError, match=match):
        ActivationPacket.from_tensor(torch.ones(2, 2), **fields)  # type: ignore[arg-type]


def test_from_tensor_rejects_scalars_and_non_tensors() -> None:
    with pytest.raises(ValueError, match="at least one dimension"):
        ActivationPacket.from_tensor(torch.tensor(1.0), session_id="s", split_k=1)
    with pytest.raises(ValueError, match="torch.Tensor"):
        ActivationPacket.from_tensor(np.ones(3), session_id="s", split_k=1)  # type: ignore[arg-type]


def test_direct_construction_validates_payload_length() -> None:
    with pytest.raises(PacketError, match="needs 24 bytes"):
        ActivationPacket("s", 1, 0, (2, 3), "float32", b"\x00" * 20)


@pytest.mark.parametrize("field", ["max_header_bytes", "max_elements", "max_total_bytes"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_limits_validate(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        PacketLimits(**{field: value})  # type: ignore[arg-type]
