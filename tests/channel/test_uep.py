"""ProtectedImpairment: reassembly, repetition, per-split tables, bit accounting, validation, determinism."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch

from edgesplit.channel import IMPAIRMENTS, ChannelState, DigitalImpairment, DropoutImpairment, make_impairment
from edgesplit.channel.impairment import Impairment, ImpairmentResult, NoImpairment
from edgesplit.channel.uep import ProtectedImpairment, combine_copies

STATE = ChannelState(mean_snr_db=10.0)


def _x(shape: tuple[int, ...] = (2, 16, 64), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@dataclass
class Negate(Impairment):
    """Returns -x and remembers what it was given (to see which values crossed which part)."""

    kind: ClassVar[str] = "negate"
    seen: list[torch.Tensor] = field(default_factory=list)

    def apply(self, x, state, generator) -> ImpairmentResult:
        self.seen.append(x.clone())
        return ImpairmentResult(x=-x, stats={"mse": 0.0})


@pytest.mark.parametrize("copies", [1, 2, 3])
def test_no_op_parts_are_the_identity(copies: int) -> None:
    x = _x()
    out = ProtectedImpairment(channels=(7, 0, 63), copies=copies).apply(x, STATE, 0)
    assert torch.equal(out.x, x)
    assert out.stats["mse"] == 0.0 and out.stats["protected_erased_fraction"] == 0.0


def test_reassembly_keeps_channel_order() -> None:
    x, channels = _x(), (9, 1, 40, 5)
    protected, main = Negate(), NoImpairment()
    out = ProtectedImpairment(main=main, protected=protected, channels=channels, copies=2,
                              combine="mean", tokens=0).apply(x, STATE, 0).x
    assert len(protected.seen) == 2  # one transmission per copy
    assert torch.equal(protected.seen[0], x[..., list(channels)])  # sent in the table's order
    rest = [c for c in range(64) if c not in channels]
    assert torch.equal(out[..., list(channels)], -x[..., list(channels)])
    assert torch.equal(out[..., rest], x[..., rest])


def test_main_part_gets_the_other_channels_in_index_order() -> None:
    x, main = _x(), Negate()
    ProtectedImpairment(main=main, channels=(3, 2), tokens=0).apply(x, STATE, 0)
    assert torch.equal(main.seen[0], x[..., [c for c in range(64) if c not in (2, 3)]])


@pytest.mark.parametrize("copies", [1, 3])
def test_repetition_loses_an_element_with_probability_p_to_the_r(copies: int) -> None:
    p, x = 0.3, _x((4, 256, 64)) + 10.0  # no zero inputs
    imp = ProtectedImpairment(main=DropoutImpairment(p), protected=DropoutImpairment(p), channels=tuple(range(32)),
                              copies=copies)
    stats = imp.apply(x, STATE, 5).stats
    n, expected = 4 * 256 * 32, p**copies
    assert abs(stats["protected_erased_fraction"] - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    assert abs(stats["main.erased_fraction"] - p) < 0.02
    assert imp.rule == "first_nonzero"


def test_combining_rules() -> None:
    copies = torch.tensor([[0.0, 2.0, 0.0], [1.0, 2.0, 0.0], [5.0, 9.0, 0.0]])
    assert combine_copies(copies, "first_nonzero").tolist() == [1.0, 2.0, 0.0]
    assert combine_copies(copies, "median").tolist() == [1.0, 2.0, 0.0]
    assert combine_copies(copies, "mean").tolist() == pytest.approx([2.0, 13.0 / 3.0, 0.0])
    assert combine_copies(copies[:2], "median").tolist() == [0.5, 2.0, 0.0]


def test_auto_rule_follows_the_protected_impairment() -> None:
    assert ProtectedImpairment(protected=DigitalImpairment()).rule == "median"
    assert ProtectedImpairment(protected={"kind": "awgn"}).rule == "mean"
    assert ProtectedImpairment(protected={"kind": "erasure"}, combine="median").rule == "median"


def test_per_split_table() -> None:
    imp = ProtectedImpairment(channels={"1": [2], 2: (5, 7), 3: ()})
    assert imp.channels == {1: (2,), 2: (5, 7), 3: ()}
    assert imp.for_split(2).active_channels() == (5, 7)
    assert torch.equal(imp.for_split(3).apply(_x(), STATE, 0).x, _x())  # nothing to protect: main alone
    with pytest.raises(ValueError, match="per-split table"):
        imp.apply(_x(), STATE, 0)
    with pytest.raises(ValueError, match=r"no protected channels listed for split 4.*\[1, 2, 3\]"):
        imp.for_split(4).apply(_x(), STATE, 0)


def test_dropout_bits_and_overhead() -> None:
    x = _x((1, 10, 64))
    imp = ProtectedImpairment(main=DropoutImpairment(0.1), protected=DropoutImpairment(0.1), channels=(1, 2),
                              copies=3, element_bits=16, tokens=0)
    s = imp.apply(x, STATE, 0).stats
    assert s["main_bits"] == 10 * 62 * 16 and s["protected_bits"] == 3 * 10 * 2 * 16 and s["side_bits"] == 64
    assert s["baseline_bits"] == 10 * 64 * 16
    assert s["extra_bits_ratio"] == pytest.approx((10 * 2 * 2 * 16 + 64) / (10 * 64 * 16))
    assert s["extra_airtime_ratio"] == pytest.approx(s["extra_bits_ratio"])


def test_digital_accounting_matches_the_unprotected_impairment() -> None:
    x, main = _x(), DigitalImpairment(bits=8, modulation="qpsk")
    s = ProtectedImpairment(main=main, protected=DigitalImpairment(bits=16, modulation="bpsk"),
                            channels=(4,), tokens=0).apply(x, STATE, 0).stats
    assert s["baseline_bits"] == main.apply(x, STATE, 0).stats["bits_sent"]
    assert s["protected_bits"] == 32 * 16 + 32 * 32  # 16-bit codes + one scale per token vector
    uses = (32 * 63 * 8 + 32 * 32) / 2 + (32 * 16 + 32 * 32) / 1 + 32
    assert s["extra_airtime_ratio"] == pytest.approx(uses / ((32 * 64 * 8 + 32 * 32) / 2) - 1)


def test_taking_an_outlier_out_shrinks_the_main_quantisation_step() -> None:
    x = _x()
    x[..., 11] *= 500.0
    clean = ChannelState(mean_snr_db=60.0)
    plain = DigitalImpairment(bits=8).apply(x, clean, 0)
    split = ProtectedImpairment(main=DigitalImpairment(bits=8), protected=DigitalImpairment(bits=8),
                                channels=(11,), tokens=0).apply(x, clean, 0)
    assert split.stats["main_absmax_ratio"] < 0.05
    assert split.stats["mse"] < plain.stats["mse"] / 100


def test_same_seed_same_result_and_generator_order() -> None:
    imp = make_impairment("protected", main={"kind": "digital", "bits": 4}, protected={"kind": "dropout", "p": 0.5},
                          channels=[0, 5], copies=3)
    a, b, c = (imp.apply(_x(), STATE, seed) for seed in (1, 1, 2))
    assert torch.equal(a.x, b.x) and a.stats == b.stats and not torch.equal(a.x, c.x)


def test_registered_and_built_from_json_like_specs() -> None:
    assert IMPAIRMENTS["protected"] is ProtectedImpairment
    imp = make_impairment("protected", main={"kind": "dropout", "p": 0.2}, protected={"kind": "none"},
                          channels={"12": [507, 247]}, protected_encoding="float16")
    assert isinstance(imp.main, DropoutImpairment) and imp.channels == {12: (507, 247)}


@pytest.mark.parametrize(("params", "match"), [
    ({"copies": 0}, "copies must be an int >= 1"),
    ({"combine": "vote"}, "combine must be one of"),
    ({"channels": [1, 1]}, "must not repeat"),
    ({"channels": [-1]}, "non-negative int"),
    ({"channels": "507"}, "sequence of channel indices"),
    ({"channels": {"k12": [1]}}, "keyed by split k"),
    ({"main": "dropout"}, "main must be an Impairment"),
    ({"protected": {"kind": "fading"}}, "unknown impairment kind 'fading'"),
    ({"element_bits": 0}, "element_bits"),
    ({"protected_encoding": "int3"}, "protected_encoding"),
    ({"split_k": -1}, "split_k"),
])
def test_bad_settings_say_what_is_accepted(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_impairment("protected", **params)


def test_channels_beyond_the_hidden_size_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit a hidden size of 64"):
        ProtectedImpairment(channels=(64,)).apply(_x(), STATE, 0)


@pytest.mark.skipif("coded" not in IMPAIRMENTS, reason="the coded NR link is not registered in this checkout")
@pytest.mark.slow
def test_coded_parts_work_through_the_same_wrapper() -> None:
    imp = ProtectedImpairment(main={"kind": "coded"}, protected={"kind": "coded"}, channels=(0, 3))
    out = imp.apply(_x((1, 4, 64)), STATE, 0)
    assert out.x.shape == (1, 4, 64) and math.isfinite(out.stats["extra_bits_ratio"])
