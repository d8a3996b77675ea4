"""Per-token absmax quantisation helpers and int4 packing (edgesplit.packet.quantize)."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.packet import dequantize_absmax, pack_int4, qmax_for_bits, quantize_absmax, unpack_int4

FAST = settings(max_examples=80, deadline=None)

finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
small_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)


@pytest.mark.parametrize(("bits", "qmax"), [(2, 1), (3, 3), (4, 7), (5, 15), (6, 31), (7, 63), (8, 127)])
def test_qmax_is_symmetric_range(bits: int, qmax: int) -> None:
    assert qmax_for_bits(bits) == qmax


@pytest.mark.parametrize("bits", [1, 9, 0, 4.0, True, "8"])
def test_bad_bit_widths_rejected(bits: object) -> None:
    with pytest.raises(ValueError, match="bits"):
        quantize_absmax(torch.ones(2, 3), bits)  # type: ignore[arg-type]


@FAST
@given(x=hnp.arrays(np.float32, small_shapes, elements=finite_f32), bits=st.integers(2, 8))
def test_error_bounded_by_half_step_per_row(x: np.ndarray, bits: int) -> None:
    t = torch.from_numpy(x)
    qmax = qmax_for_bits(bits)
    q, scales = quantize_absmax(t, bits)
    assert q.dtype == torch.int8 and q.shape == t.shape
    assert scales.dtype == torch.float32 and scales.shape == t.shape[:-1]
    if q.numel():
        assert int(q.abs().max()) <= qmax
    deq = dequantize_absmax(q, scales).double().numpy()
    assert np.isfinite(deq).all()
    xd = x.astype(np.float64)
    absmax = np.abs(xd).max(axis=-1, keepdims=True, initial=0.0)
    # Half a step per row, plus float32 rounding (relative) and subnormal slack (absolute).
    bound = absmax / (2 * qmax) + 1e-6 * absmax + 1e-37
    assert (np.abs(deq - xd) <= bound).all()
    assert (np.abs(deq) <= absmax).all()


@FAST
@given(x=hnp.arrays(np.float32, small_shapes, elements=finite_f32.filter(lambda v: abs(v) > 1e-30)))
def test_row_absmax_uses_the_top_code(x: np.ndarray) -> None:
    q, _ = quantize_absmax(torch.from_numpy(x), 8)
    if q.numel():
        assert (q.abs().amax(dim=-1) == 127).all()


def test_zero_rows_give_zero_scale_and_zeros_not_nan() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [-0.0, 0.0, -0.0]])
    for bits in (4, 8):
        q, scales = quantize_absmax(x, bits)
        assert scales[0] == 0 and scales[2] == 0 and scales[1] > 0
        deq = dequantize_absmax(q, scales)
        assert torch.isfinite(deq).all()
        assert torch.equal(deq[0], torch.zeros(3)) and torch.equal(deq[2], torch.zeros(3))


def test_scales_are_per_token_not_per_tensor() -> None:
    # One huge outlier token must not destroy the resolution of a small token in the same tensor.
    x = torch.tensor([[[1000.0, -500.0, 3.0], [0.01, -0.02, 0.015]]])
    q, scales = quantize_absmax(x, 8)
    deq = dequantize_absmax(q, scales)
    assert scales.shape == (1, 2)
    assert torch.allclose(scales, torch.tensor([[1000.0 / 127, 0.02 / 127]]))
    assert (deq[0, 1] - x[0, 1]).abs().max() <= 0.02 / 254 * 1.0001


def test_non_finite_and_non_float_inputs_rejected() -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="NaN or inf"):
            quantize_absmax(torch.tensor([[1.0, bad]]), 8)
    with pytest.raises(ValueError, match="floating-point"):
        quantize_absmax(torch.tensor([[1, 2]]), 8)
    with pytest.raises(ValueError, match="floating-point"):
        quantize_absmax(torch.tensor(1.0), 8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_accepted(dtype: torch.dtype) -> None:
    x = torch.linspace(-3, 3, 24).reshape(2, 12).to(dtype)
    q, scales = quantize_absmax(x, 4)
    deq = dequantize_absmax(q, scales)
    assert deq.dtype == torch.float32
    assert ((deq - x.float()).abs() <= scales.unsqueeze(-1) / 2 + 1e-6).all()


def test_dequantize_validates_inputs() -> None:
    q = torch.ones(2, 3, dtype=torch.int8)
    with pytest.raises(ValueError, match="shape"):
        dequantize_absmax(q, torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        dequantize_absmax(q, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="non-negative"):
        dequantize_absmax(q, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="integer"):
        dequantize_absmax(q.float(), torch.ones(2))


def test_pack_int4_layout_low_nibble_first() -> None:
    packed = pack_int4(torch.tensor([1, -1, 7, -7, 3], dtype=torch.int8))
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [0xF1, 0x97, 0x03]


@FAST
@given(values=st.lists(st.integers(-8, 7), max_size=41))
def test_pack_unpack_round_trip(values: list[int]) -> None:
    q = torch.tensor(values, dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.numel() == (len(values) + 1) // 2
    assert unpack_int4(packed, len(values)).tolist() == values


def test_pack_unpack_validation() -> None:
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(torch.tensor([8], dtype=torch.int8))
    with pytest.raises(ValueError, match="int8"):
        pack_int4(torch.tensor([1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_int4(torch.zeros(2, dtype=torch.uint8), 5)
