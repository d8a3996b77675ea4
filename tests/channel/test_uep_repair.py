"""Loss reports (ImpairmentResult.lost), the erasure-repair rule and the massive-row rule of ProtectedImpairment."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from edgesplit.channel import IMPAIRMENTS, ChannelState, DigitalImpairment, DropoutImpairment, make_impairment
from edgesplit.channel.erasure import ErasureImpairment
from edgesplit.channel.uep import INDEX_BITS, ProtectedImpairment, RepairValues, massive_rows, repair
from tests.channel.test_uep import Negate

STATE = ChannelState(mean_snr_db=10.0, loss_rate=0.3)
H = 32


def _x(shape: tuple[int, ...] = (1, 24, H), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _fill(k: int = 3, body: float = 7.0, sink: float = -3.0) -> RepairValues:
    return RepairValues(body={k: torch.full((H,), body)}, sink={k: torch.full((H,), sink)}, source="test")


def test_dropout_and_erasure_report_exactly_what_they_zeroed() -> None:
    x = _x()
    for imp in (DropoutImpairment(0.3), ErasureImpairment(fragment_elements=5)):
        result = imp.apply(x, STATE, 1)
        assert result.lost is not None and result.lost.shape == x.shape and bool(result.lost.any())
        assert torch.equal(result.x[result.lost], torch.zeros(int(result.lost.sum())))
        assert torch.equal(result.x[~result.lost], x[~result.lost])
    assert DigitalImpairment(bits=8).apply(x, STATE, 1).lost is None  # it cannot tell


@pytest.mark.skipif("coded" not in IMPAIRMENTS, reason="the coded link is not registered")
def test_the_coded_link_reports_its_crc_failures() -> None:
    pytest.importorskip("sionna")
    x = _x((1, 64, H))
    result = make_impairment("coded", bits=8, channel="rayleigh", max_transmissions=1).apply(x, STATE, 5)
    assert result.lost is not None and result.lost.shape == x.shape
    assert float(result.lost.sum()) == result.stats["erased_elements"]
    assert bool((result.x[result.lost] == 0).all())


def test_repair_touches_only_the_lost_elements() -> None:
    x = _x()
    plain = ProtectedImpairment(main=DropoutImpairment(0.3), protected=DropoutImpairment(0.3), channels=(2, 9),
                                copies=2, tokens=1, split_k=3)
    fixed = replace(plain, fill=_fill())
    a, b = plain.apply(x, STATE, 4), fixed.apply(x, STATE, 4)
    assert torch.equal(a.lost, b.lost) and bool(a.lost.any())  # the same draws
    lost = b.lost
    assert torch.equal(b.x[~lost], a.x[~lost]) and torch.equal(b.x[~lost], x[~lost])
    expected = torch.full_like(x, 7.0)
    expected[:, 0, :] = -3.0  # the row sent whole (the sink) takes the sink values
    assert torch.equal(b.x[lost], expected[lost])
    assert b.stats["repaired_fraction"] == pytest.approx(float(lost.float().mean())) and bool(lost.any())
    assert a.stats["repaired_fraction"] == 0.0 and a.stats["lost_fraction"] == b.stats["repaired_fraction"]


def test_a_protected_element_is_lost_only_if_every_copy_is() -> None:
    x = _x((1, 200, H))
    imp = ProtectedImpairment(main=DropoutImpairment(0.5), protected=DropoutImpairment(0.5), channels=(4,),
                              copies=3, tokens=0)
    result = imp.apply(x, STATE, 0)
    rate = float(result.lost[..., 4].float().mean())
    assert 0.05 < rate < 0.22  # p^3 = 0.125, not p
    assert torch.equal(result.lost[..., 4], result.x[..., 4] == 0)


def test_a_part_without_a_loss_report_is_left_as_received() -> None:
    x = _x()
    imp = ProtectedImpairment(main=DigitalImpairment(bits=8), protected=DropoutImpairment(0.2), channels=(1,),
                              tokens=0, split_k=3, fill=_fill())
    result, plain = imp.apply(x, STATE, 0), replace(imp, fill=None).apply(x, STATE, 0)
    assert result.lost is None  # the whole can not say what it lost
    rest = [c for c in range(H) if c != 1]
    assert torch.equal(result.x[..., rest], plain.x[..., rest])  # the digital main part: nothing flagged
    dropped = plain.x[..., 1] == 0  # the dropout part: its losses are known and repaired
    assert bool(dropped.any()) and bool((result.x[..., 1][dropped] == 7.0).all())
    assert result.stats["repaired_fraction"] == pytest.approx(float(dropped.sum()) / x[..., 0].numel() / H)


def test_repair_function_and_its_checks() -> None:
    out, lost = torch.zeros(1, 3, 2), torch.tensor([[[True, False], [False, True], [True, True]]])
    got = repair(out, lost, torch.tensor([1.0, 2.0]), torch.tensor([5.0, 6.0]), [1])
    assert got.tolist() == [[[1.0, 0.0], [0.0, 6.0], [1.0, 2.0]]]
    with pytest.raises(ValueError, match="does not match"):
        repair(out, lost[..., :1], torch.ones(2), torch.ones(2), [])


def test_massive_row_detection_finds_a_planted_token() -> None:
    x = _x((2, 40, H))
    x[1, 17, 3] = 500.0  # one massive value in one sequence of the batch: the position counts
    x[0, 30, :] *= 4.0  # a louder row, far below tau
    assert massive_rows(x, 10.0, 8) == [17]
    assert massive_rows(x, 1000.0, 8) == []
    x[0, 5, 0] = -900.0
    assert massive_rows(x, 10.0, 8) == [5, 17] and massive_rows(x, 10.0, 1) == [5]
    assert massive_rows(torch.zeros(3, H), 10.0, 8) == []
    with pytest.raises(ValueError, match=r"\[..., T, hidden\]"):
        massive_rows(torch.ones(H), 10.0, 8)


def test_massive_rows_travel_whole_and_are_priced() -> None:
    x = _x()
    x[0, 11, 6] = 400.0
    main, protected = Negate(), Negate()
    imp = ProtectedImpairment(main=main, protected=protected, channels=(6,), tokens=1, massive_tau=10.0)
    result = imp.apply(x, STATE, 0)
    rest = [c for c in range(H) if c != 6]
    assert imp.row_indices(x) == [0, 11] and result.stats["massive_rows"] == 1.0
    assert result.stats["protected_tokens"] == 2.0
    assert torch.equal(protected.seen[1], x[..., [0, 11], :][..., rest])
    assert torch.equal(main.seen[0], x[..., [r for r in range(24) if r not in (0, 11)], :][..., rest])
    assert torch.equal(result.x, -x)
    plain = replace(imp, massive_tau=None).apply(x, STATE, 0)
    assert result.stats["side_bits"] == plain.stats["side_bits"] + INDEX_BITS
    assert imp.at_position(5).row_indices(x) == [11]  # a later packet: no sink, the massive row still found


def test_without_the_new_fields_nothing_changes() -> None:
    x = _x()
    imp = ProtectedImpairment(main=DropoutImpairment(0.3), protected=DropoutImpairment(0.3), channels=(2, 9),
                              copies=2, tokens=1)
    quiet = replace(imp, massive_tau=1000.0)  # the rule on, no row above it
    a, b = imp.apply(x, STATE, 9), quiet.apply(x, STATE, 9)
    assert torch.equal(a.x, b.x) and a.stats == b.stats


@pytest.mark.parametrize(("params", "match"), [
    ({"massive_tau": 1.0}, "massive_tau must be None or a finite number > 1"),
    ({"massive_tau": True}, "massive_tau"), ({"massive_tau": "10"}, "massive_tau"),
    ({"max_massive_rows": 0}, "max_massive_rows must be an int >= 1"), ({"fill": {3: [1.0]}}, "fill must be None"),
])
def test_bad_settings(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProtectedImpairment(**params)


def test_fill_needs_its_split_and_width() -> None:
    imp = ProtectedImpairment(main=DropoutImpairment(0.3), channels={3: (1,)}, fill=_fill())
    with pytest.raises(ValueError, match="channels is a per-split table"):
        imp.apply(_x(), STATE, 0)
    with pytest.raises(ValueError, match="no repair values for split 4"):
        replace(imp, channels=(1,), split_k=4).apply(_x(), STATE, 0)
    with pytest.raises(ValueError, match="fill holds per-split values"):
        replace(imp, channels=(1,)).apply(_x(), STATE, 0)
    with pytest.raises(ValueError, match="fill values have 32 channels, the hidden state 8"):
        imp.for_split(3).apply(_x((1, 4, 8)), STATE, 0)


@pytest.mark.parametrize(("body", "sink", "match"), [
    ({3: torch.ones(4)}, {4: torch.ones(4)}, "same splits"),
    ({3: torch.ones(2, 2)}, {3: torch.ones(4)}, "finite 1-D float"),
    ({3: torch.tensor([1.0, float("nan")])}, {3: torch.ones(2)}, "finite 1-D float"),
    ({3: torch.ones(4)}, {3: torch.ones(5)}, "one width"),
    ({-1: torch.ones(4)}, {-1: torch.ones(4)}, "keyed by split"),
])
def test_bad_repair_values(body: dict, sink: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RepairValues(body=body, sink=sink)
