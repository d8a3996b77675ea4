"""ProtectedImpairment's token protection: which rows, mechanics, repetition, exact accounting, generator order."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from edgesplit.channel import IMPAIRMENTS, ChannelState, DigitalImpairment, DropoutImpairment, make_impairment
from edgesplit.channel.impairment import NoImpairment
from edgesplit.channel.uep import TOKENS_DEFAULT, ProtectedImpairment
from edgesplit.channel.uep_cost import part_cost
from tests.channel.test_uep import Negate

STATE = ChannelState(mean_snr_db=10.0)


def _x(shape: tuple[int, ...] = (2, 16, 64), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("tokens", "position", "shape", "rows"), [
    (1, 0, (2, 16, 64), 1), (1, 1, (2, 16, 64), 0), (3, 1, (2, 16, 64), 2), (4, 0, (1, 2, 64), 2),
    (0, 0, (2, 16, 64), 0), (1, 0, (64,), 0), (2, 5, (1, 1, 64), 0), (2, 1, (1, 1, 64), 1),
])
def test_only_true_leading_positions_are_protected(tokens: int, position: int, shape: tuple, rows: int) -> None:
    imp = ProtectedImpairment(tokens=tokens).at_position(position)
    assert imp.position_start == position and imp.protected_rows(shape) == rows


def test_default_is_the_first_token() -> None:
    assert TOKENS_DEFAULT == 1 and ProtectedImpairment().tokens == 1


def test_token_rows_travel_whole_and_the_rest_per_channel() -> None:
    x, channels, main, protected = _x(), (9, 1, 40), Negate(), Negate()
    out = ProtectedImpairment(main=main, protected=protected, channels=channels, copies=2, combine="mean",
                              tokens=2).apply(x, STATE, 0)
    rest = [c for c in range(64) if c not in channels]
    assert len(main.seen) == 1 and torch.equal(main.seen[0], x[..., 2:, rest])
    assert len(protected.seen) == 4  # two copies of every row's channels, then two of the token rows' others
    assert torch.equal(protected.seen[0], x[..., list(channels)])
    assert torch.equal(protected.seen[2], x[..., :2, rest])
    assert torch.equal(out.x[..., :2, :], -x[..., :2, :])
    assert torch.equal(out.x[..., 2:, list(channels)], -x[..., 2:, list(channels)])
    assert torch.equal(out.x[..., 2:, rest], -x[..., 2:, rest])
    assert out.stats["protected_tokens"] == 2.0 and out.stats["protected_channels"] == 3.0


def test_a_decode_step_is_the_channel_only_scheme() -> None:
    imp = ProtectedImpairment(main=DropoutImpairment(0.3), protected=DropoutImpairment(0.3), channels=(0, 5),
                              copies=3, tokens=1)
    x = _x((1, 1, 64))
    step, plain = imp.at_position(7).apply(x, STATE, 3), replace(imp, tokens=0).apply(x, STATE, 3)
    assert torch.equal(step.x, plain.x) and step.stats == plain.stats and step.stats["protected_tokens"] == 0.0


def test_same_seed_same_result_with_token_rows() -> None:
    imp = ProtectedImpairment(main=DropoutImpairment(0.3), protected=DropoutImpairment(0.3), channels=(0, 5),
                              copies=2, tokens=1)
    a, b, c = (imp.apply(_x(), STATE, seed).x for seed in (4, 4, 5))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_packet_protected_whole_sends_no_main_part() -> None:
    main, x = Negate(), _x((1, 1, 64))
    s = ProtectedImpairment(main=main, protected=DropoutImpairment(0.0), channels=(3,), copies=2,
                            element_bits=16).apply(x, STATE, 0)
    assert main.seen == [] and s.stats["main_bits"] == 0.0 and s.stats["protected_channels"] == 1.0
    assert s.stats["protected_bits"] == 2 * 64 * 16 and s.stats["side_bits"] == 32 + 32
    assert s.stats["protected_token_bits"] == 2 * 63 * 16
    assert s.stats["baseline_bits"] == 64 * 16 and torch.equal(s.x, x)


def test_only_rows_no_channels() -> None:
    protected, x = Negate(), _x()
    out = ProtectedImpairment(protected=protected, channels=(), tokens=1).apply(x, STATE, 0)
    assert len(protected.seen) == 1 and torch.equal(out.x[..., 0, :], -x[..., 0, :])
    assert torch.equal(out.x[..., 1:, :], x[..., 1:, :])


@pytest.mark.parametrize("copies", [1, 3])
def test_token_rows_are_lost_with_probability_p_to_the_r(copies: int) -> None:
    p, x = 0.3, _x((512, 2, 64)) + 10.0  # no zero inputs; 512 sequences, one sink row each
    imp = ProtectedImpairment(main=DropoutImpairment(p), protected=DropoutImpairment(p), channels=(), copies=copies)
    s = imp.apply(x, STATE, 5).stats
    n, expected = 512 * 64, p**copies
    assert abs(s["tokens_erased_fraction"] - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    assert s["tokens.erased_fraction"] == pytest.approx(p, abs=0.02)


def test_dropout_bits_and_overhead_with_a_token_row() -> None:
    x = _x((1, 10, 64))
    imp = ProtectedImpairment(main=DropoutImpairment(0.1), protected=DropoutImpairment(0.1), channels=(1, 2),
                              copies=3, element_bits=16, tokens=1)
    s = imp.apply(x, STATE, 0).stats
    assert s["main_bits"] == 9 * 62 * 16 and s["protected_token_bits"] == 3 * 62 * 16
    assert s["protected_bits"] == 3 * 10 * 2 * 16 + 3 * 62 * 16 and s["side_bits"] == 2 * 32 + 32
    assert s["baseline_bits"] == 10 * 64 * 16
    extra = 2 * 10 * 2 * 16 + 2 * 62 * 16 + 96  # what the copies and side information add
    assert s["extra_bits_ratio"] == pytest.approx(extra / (10 * 64 * 16))
    assert s["extra_airtime_ratio"] == pytest.approx(s["extra_bits_ratio"])


def test_digital_accounting_is_exact() -> None:
    x, main = _x(), DigitalImpairment(bits=8, modulation="qpsk")
    s = ProtectedImpairment(main=main, protected=DigitalImpairment(bits=16, modulation="bpsk"), channels=(4,),
                            tokens=1).apply(x, STATE, 0).stats
    assert s["baseline_bits"] == main.apply(x, STATE, 0).stats["bits_sent"]
    main_bits, prot, tok = 30 * 63 * 8 + 30 * 32, 32 * 16 + 32 * 32, 2 * 63 * 16 + 2 * 32  # 30 rows, 2 sink rows
    assert s["main_bits"] == main_bits and s["protected_bits"] == prot + tok and s["protected_token_bits"] == tok
    total = main_bits + prot + tok + 64
    assert s["extra_bits_ratio"] == pytest.approx(total / s["baseline_bits"] - 1)
    uses = main_bits / 2 + (prot + tok) / 1 + 64
    assert s["extra_airtime_ratio"] == pytest.approx(uses / ((32 * 64 * 8 + 32 * 32) / 2) - 1)
    assert s["main_absmax_ratio"] < 1.0


def test_part_cost_prices_another_shape_pro_rata_for_bits_sent_parts() -> None:
    stats = {"bits_sent": 1000.0, "channel_uses": 500.0}
    assert part_cost(NoImpairment(), 4, 10, stats, 32, sent=(2, 10)) == (2000.0, 1000.0)
    assert part_cost(NoImpairment(), 2, 10, stats, 32) == (1000.0, 500.0)


@pytest.mark.parametrize(("params", "match"), [
    ({"tokens": -1}, "tokens must be an int >= 0"),
    ({"tokens": True}, "tokens must be an int >= 0"),
    ({"tokens": 1.0}, "tokens must be an int >= 0"),
    ({"position_start": -3}, "position_start must be an int >= 0"),
])
def test_bad_token_settings(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_impairment("protected", **params)


@pytest.mark.skipif("coded" not in IMPAIRMENTS, reason="the coded NR link is not registered in this checkout")
@pytest.mark.slow
def test_coded_token_rows_and_the_baseline_of_a_packet_protected_whole() -> None:
    spec = {"kind": "coded", "channel": "rayleigh", "max_transmissions": 1}
    imp = ProtectedImpairment(main=spec, protected=spec, channels=(0, 3), copies=2, tokens=1)
    x = _x((1, 24, 64))
    s = imp.apply(x, STATE, 0).stats
    assert s["tokens.num_tbs"] >= 1 and s["protected_token_bits"] == 2 * (62 * 8 + 32)
    whole = imp.apply(x[:, :1], STATE, 0).stats  # main sends nothing: its baseline at the link's own MCS
    sent = imp.main.apply(x[:, :1], STATE, 0).stats
    assert whole["baseline_bits"] == sent["payload_bits"]
    sent_res = sent["coded_bits_on_air"] / sent["modulation_order"]
    # 2 copies of the outliers + 2 of the rest, one TB each, and the side information: 4 TBs for the baseline's 1
    assert whole["extra_airtime_ratio"] == pytest.approx(3.0 + (2 * 32 + 32) / sent_res)
