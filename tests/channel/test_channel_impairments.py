"""Impairments on activations: measured SNR / BER / erasure statistics, determinism and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from edgesplit.channel import (
    IMPAIRMENTS,
    MODULATIONS,
    AwgnImpairment,
    ChannelState,
    Compose,
    DigitalImpairment,
    DropoutImpairment,
    ErasureImpairment,
    ber_awgn,
    ber_rayleigh_avg,
    make_impairment,
)
from edgesplit.channel.digital import flip_bits, from_twos_complement, quantize_codes, to_twos_complement
from edgesplit.packet.quantize import dequantize_absmax, quantize_absmax

STATE = ChannelState(mean_snr_db=10.0)


def _x(seed: int = 0, shape: tuple[int, ...] = (4, 64, 128)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _outliers(seed: int = 0) -> torch.Tensor:
    x = _x(seed, (4, 128, 256))
    x[:, 0, :] *= 300.0  # attention-sink-like first token
    x[..., 7] *= 40.0  # a couple of massive channels in every token
    x[..., 99] -= 60.0
    return x


def _per_token_snr_db(x: torch.Tensor, out: torch.Tensor) -> float:
    return float((10 * torch.log10(x.pow(2).mean(-1) / (out - x).pow(2).mean(-1))).mean())


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
@pytest.mark.parametrize("data", ["gaussian", "outliers"])
def test_awgn_per_token_snr_within_0_2_db(snr_db: float, data: str) -> None:
    x = _x(1) if data == "gaussian" else _outliers(1)
    result = AwgnImpairment().apply(x, ChannelState(mean_snr_db=snr_db), 3)
    assert _per_token_snr_db(x, result.x) == pytest.approx(snr_db, abs=0.2)
    assert result.stats["measured_snr_db"] == pytest.approx(_per_token_snr_db(x, result.x), abs=1e-4)
    assert result.stats["target_snr_db"] == snr_db


def test_awgn_tensor_power_lets_outliers_set_the_noise() -> None:
    x = _outliers(2)
    result = AwgnImpairment(power="tensor").apply(x, ChannelState(mean_snr_db=10.0), 3)
    assert result.stats["measured_tensor_snr_db"] == pytest.approx(10.0, abs=0.2)
    assert _per_token_snr_db(x, result.x) < 10.0 - 3.0  # ordinary tokens drown
    gaussian = AwgnImpairment(power="tensor").apply(_x(2), ChannelState(mean_snr_db=10.0), 3)
    assert _per_token_snr_db(_x(2), gaussian.x) == pytest.approx(10.0, abs=0.2)


def test_awgn_uses_instantaneous_snr_with_fading() -> None:
    state = ChannelState(mean_snr_db=10.0, fading_gain=0.1)
    assert AwgnImpairment().apply(_x(), state, 0).stats["measured_snr_db"] == pytest.approx(0.0, abs=0.2)
    assert AwgnImpairment(snr="mean").apply(_x(), state, 0).stats["measured_snr_db"] == pytest.approx(10.0, abs=0.2)


def test_awgn_zero_tokens_stay_zero() -> None:
    x = _x()
    x[0, :5] = 0.0
    out = AwgnImpairment().apply(x, STATE, 0).x
    assert torch.equal(out[0, :5], x[0, :5]) and math.isfinite(AwgnImpairment().apply(x, STATE, 0).stats["mse"])


@pytest.mark.parametrize("p", [0.02, 0.1, 0.3])
def test_dropout_fraction_within_binomial_ci(p: float) -> None:
    x = _x(3).abs() + 0.1  # no exact zeros in the input
    result = DropoutImpairment(p=p).apply(x, STATE, 5)
    zeros = int((result.x == 0).sum())
    lo, hi = stats.binom.interval(0.999, x.numel(), p)
    assert lo <= zeros <= hi
    kept = result.x != 0
    assert torch.equal(result.x[kept], x[kept])  # no rescaling by default (reference paper)
    assert result.stats["erased_fraction"] == pytest.approx(zeros / x.numel())


def test_dropout_rescale_option() -> None:
    x = _x(3).abs() + 0.1
    out = DropoutImpairment(p=0.25, rescale=True).apply(x, STATE, 5).x
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.75)


@pytest.mark.parametrize("mod", sorted(MODULATIONS))
@pytest.mark.parametrize("snr_db", [0.0, 6.0, 12.0])
def test_digital_flip_ber_within_binomial_ci(mod: str, snr_db: float) -> None:
    x = _x(4, (2, 100, 128))
    imp = DigitalImpairment(bits=8, modulation=mod)
    state = ChannelState(mean_snr_db=snr_db)
    result = imp.apply(x, state, 9)
    n_bits = x.numel() * 8
    p = ber_awgn(mod, snr_db)
    lo, hi = stats.binom.interval(0.999, n_bits, p)
    assert result.stats["ber_target"] == pytest.approx(p)
    assert lo <= result.stats["bit_errors"] <= hi


def test_flip_bits_counts_are_the_hamming_distance() -> None:
    gen = torch.Generator().manual_seed(0)
    codes = to_twos_complement(quantize_codes(_x(), 6)[0], 6)
    flipped, n_errors = flip_bits(codes, 6, 0.05, gen)
    hamming = sum(int(((codes ^ flipped) >> b & 1).sum()) for b in range(6))
    assert hamming == n_errors and flipped.max() < 64 and flipped.min() >= 0
    lo, hi = stats.binom.interval(0.999, codes.numel() * 6, 0.05)
    assert lo <= n_errors <= hi


def test_digital_rayleigh_average_ber_model() -> None:
    imp = DigitalImpairment(bits=8, modulation="16qam", ber_model="rayleigh_average")
    state = ChannelState(mean_snr_db=15.0, fading_gain=4.0)  # the average ignores this block's gain
    result = imp.apply(_x(4, (2, 100, 128)), state, 1)
    p = ber_rayleigh_avg("16qam", 15.0)
    lo, hi = stats.binom.interval(0.999, 2 * 100 * 128 * 8, p)
    assert lo <= result.stats["bit_errors"] <= hi


@pytest.mark.parametrize(("mod", "snr_db"), [("qpsk", 6.0), ("16qam", 12.0), ("64qam", 18.0)])
def test_digital_symbol_simulation_matches_closed_form(mod: str, snr_db: float) -> None:
    x = _x(6, (2, 100, 128))
    result = DigitalImpairment(bits=6, modulation=mod, bit_errors="symbols").apply(x, ChannelState(snr_db), 2)
    p, k, n_bits = ber_awgn(mod, snr_db), MODULATIONS[mod], x.numel() * 6
    # 99.9% interval; errors of the k bits of one symbol may be correlated, which inflates the variance <= k-fold.
    half_width = 3.29 * math.sqrt(k * p * (1 - p) / n_bits)
    assert abs(result.stats["bit_error_rate"] - p) < half_width


def test_digital_high_snr_is_quantisation_error_only() -> None:
    x = _outliers(5)
    result = DigitalImpairment(bits=8).apply(x, ChannelState(mean_snr_db=40.0), 0)
    assert result.stats["bit_errors"] == 0
    q, scales = quantize_absmax(x, 8)
    assert torch.equal(result.x, dequantize_absmax(q, scales))
    assert result.stats["mse"] == pytest.approx(result.stats["quantization_mse"])
    step = scales.unsqueeze(-1)
    assert bool(((result.x - x).abs() <= step / 2 + 1e-6 * x.abs()).all())


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 12, 16])
def test_quantiser_and_twos_complement_round_trip(bits: int) -> None:
    x = _x(7)
    q, scales = quantize_codes(x, bits)
    codes = to_twos_complement(q, bits)
    assert codes.min() >= 0 and codes.max() < 2**bits
    assert torch.equal(from_twos_complement(codes, bits), q)
    if bits >= 2:
        assert q.abs().max() == 2 ** (bits - 1) - 1
    out = DigitalImpairment(bits=bits).apply(x, ChannelState(mean_snr_db=60.0), 0).x
    mse = float((out - x).pow(2).mean())
    if bits == 1:  # sign quantiser at mean |x|: relative MSE 1 - 2/pi for Gaussian data
        assert mse / float(x.pow(2).mean()) == pytest.approx(1 - 2 / math.pi, abs=0.02)
    else:  # uniform rounding noise step²/12, step = absmax / qmax (x.abs() <= absmax keeps it an upper bound)
        step = x.abs().amax(-1) / (2 ** (bits - 1) - 1)
        assert mse <= 1.1 * float(step.pow(2).mean()) / 12
        if bits > 2:  # (2 bits: most values round to 0, not uniform noise)
            assert mse >= 0.5 * float(step.pow(2).mean()) / 12


def test_sign_bit_flip_is_large() -> None:
    # Two's complement: flipping the MSB of int8 +3 gives -125.
    q = torch.tensor([3])
    assert from_twos_complement(to_twos_complement(q, 8) ^ (1 << 7), 8).item() == -125


def test_digital_erasure_zero_fraction_of_fragments() -> None:
    x = _x(8, (4, 256, 128)).abs() + 0.1
    state = ChannelState(mean_snr_db=40.0, loss_rate=0.2)
    result = DigitalImpairment(erasure="zero", fragment_elements=64).apply(x, state, 3)
    n_frag = x.numel() // 64
    lost = (result.x.reshape(n_frag, 64) == 0).all(-1)
    lo, hi = stats.binom.interval(0.999, n_frag, 0.2)
    assert lo <= int(lost.sum()) <= hi
    assert int((result.x == 0).sum()) == 64 * int(lost.sum())  # whole fragments, nothing else
    assert result.stats["fragments_lost"] == int(lost.sum())


def test_digital_arq_keeps_data_and_reports_retransmissions() -> None:
    x = _x(8, (4, 256, 128))
    state = ChannelState(mean_snr_db=40.0, loss_rate=0.3)
    result = DigitalImpairment(erasure="arq", fragment_elements=64).apply(x, state, 3)
    clean = DigitalImpairment().apply(x, ChannelState(mean_snr_db=40.0), 3)
    assert torch.equal(result.x, clean.x)
    n_frag = x.numel() // 64
    # Mean of Geometric(0.7) is 1/0.7; std of the mean is sqrt(0.3)/0.7/sqrt(n).
    tol = 3.3 * math.sqrt(0.3) / 0.7 / math.sqrt(n_frag)
    assert result.stats["transmissions_mean"] == pytest.approx(1 / 0.7, abs=tol)
    assert result.stats["extra_latency_factor"] == pytest.approx(result.stats["transmissions_mean"])
    assert result.stats["retransmissions"] == pytest.approx((result.stats["transmissions_mean"] - 1) * n_frag)
    assert result.stats["bits_sent"] > 1.3 * result.stats["payload_bits"]


def test_truncated_arq_zeroes_fragments_that_never_arrive() -> None:
    x = _x(9).abs() + 0.1
    result = ErasureImpairment(mode="arq", fragment_elements=32, max_transmissions=2, loss_rate=0.5).apply(x, STATE, 0)
    lost = result.stats["fragments_lost"]
    lo, hi = stats.binom.interval(0.999, x.numel() // 32, 0.25)
    assert lo <= lost <= hi and int((result.x == 0).sum()) == 32 * lost
    assert result.stats["transmissions_mean"] <= 2.0


def test_compose_chains_and_prefixes_stats() -> None:
    chain = make_impairment(
        "compose",
        impairments=[{"kind": "digital", "bits": 4}, {"kind": "erasure", "mode": "zero"}, DropoutImpairment(p=0.1),
                     {"kind": "erasure", "mode": "arq"}],
    )
    state = ChannelState(mean_snr_db=12.0, loss_rate=0.1)
    result = chain.apply(_x(), state, 11)
    assert {"digital.bit_errors", "erasure[1].fragments_lost", "dropout.erased_fraction",
            "erasure[3].retransmissions", "mse"} <= set(result.stats)
    # The chain equals applying the parts in order on one generator.
    gen = torch.Generator().manual_seed(11)
    out = _x()
    for part in chain.impairments:
        out = part.apply(out, state, gen).x
    assert torch.equal(out, result.x)


def _all_impairments() -> dict[str, object]:
    return {
        "none": make_impairment("none"),
        "dropout": make_impairment("dropout", p=0.2),
        "awgn": make_impairment("awgn"),
        "digital": make_impairment("digital", bits=4, modulation="16qam", erasure="zero"),
        "digital_symbols": make_impairment("digital", bits=3, bit_errors="symbols", ber_model="rayleigh_average"),
        "digital_arq": make_impairment("digital", erasure="arq", fragment_elements=100),
        "erasure": make_impairment("erasure", fragment_elements=50),
        "compose": Compose([AwgnImpairment(), DropoutImpairment(p=0.05)]),
        "protected": make_impairment("protected", main={"kind": "dropout", "p": 0.2}, channels=[3, 0], copies=2),
        "coded": make_impairment("coded", bits=4, carrier={"num_prbs": 1}, mcs=12, max_transmissions=1),
    }


def test_every_kind_is_covered() -> None:
    assert set(IMPAIRMENTS) <= set(_all_impairments())


@pytest.mark.parametrize("name", sorted(_all_impairments()))
def test_seeded_determinism_and_dtype(name: str) -> None:
    imp = _all_impairments()[name]
    state = ChannelState(mean_snr_db=5.0, loss_rate=0.2)
    a = imp.apply(_x(), state, torch.Generator().manual_seed(1))
    b = imp.apply(_x(), state, 1)
    assert torch.equal(a.x, b.x) and a.stats == b.stats
    assert a.x.shape == _x().shape and a.x.dtype == torch.float32
    if name != "none":
        c = imp.apply(_x(), state, 2)
        assert not torch.equal(a.x, c.x)
    half = imp.apply(_x().to(torch.bfloat16), state, 1)
    assert half.x.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("fading", {}, r"unknown impairment kind 'fading'.*'awgn'.*'digital'.*'dropout'"),
        ("dropout", {"p": 1.0}, r"\[0, 1\)"),
        ("dropout", {"p": -0.1}, r"\[0, 1\)"),
        ("dropout", {"prob": 0.1}, r"unknown parameter\(s\) \['prob'\].*'p'.*'rescale'"),
        ("digital", {"bits": 0}, "1..16"),
        ("digital", {"bits": 17}, "1..16"),
        ("digital", {"modulation": "8psk"}, r"'16qam'.*'64qam'.*'bpsk'.*'qpsk'"),
        ("digital", {"erasure": "drop"}, r"'none'.*'zero'.*'arq'"),
        ("digital", {"ber_model": "avg"}, "rayleigh_average"),
        ("digital", {"fragment_elements": 0}, "fragment_elements"),
        ("awgn", {"power": "channel"}, r"'token'.*'tensor'"),
        ("erasure", {"max_transmissions": 0}, "max_transmissions"),
        ("compose", {"parts": []}, "impairments"),
    ],
)
def test_bad_input_raises_value_error_naming_valid_values(kind: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_impairment(kind, **params)


def test_bad_tensor_and_generator() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        AwgnImpairment().apply(torch.arange(4), STATE, 0)
    with pytest.raises(ValueError, match="generator"):
        AwgnImpairment().apply(_x(), STATE, "seed")
