"""split_costs: latency, energy and memory per split, against hand computations and monotonic facts."""

from __future__ import annotations

import dataclasses
import math

import pytest
from transformers import LlamaConfig

from edgesplit.channel.state import ChannelState
from edgesplit.cost import (
    DeviceProfile,
    EdgeProfile,
    LinkProfile,
    ModelProfile,
    expected_transmissions,
    get_device,
    get_edge,
    get_link,
    hidden_payload_bits,
    split_costs,
    sweep_split_costs,
    uplink_rate_bps,
)

PROFILE = ModelProfile.from_config(
    LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128)
)  # fmt: skip
DEVICE = DeviceProfile("dev", flops_per_cycle=10, f_min_hz=0.5e9, f_max_hz=2e9, f_hz=1e9, utilisation=0.5,
                       kappa=1e-28, memory_bytes=1e9)  # fmt: skip
EDGE = EdgeProfile("edge", peak_flops=1e12, utilisation=0.5, memory_bytes=1e10)
LINK = LinkProfile("link", bandwidth_hz=1e6, tx_power_w=0.1, noise_psd_w_per_hz=1e-20, downlink_rate_bps=1e7,
                   header_bits=320, max_packet_payload_bits=12_000)  # fmt: skip
CLEAR = ChannelState(mean_snr_db=10.0)


def cost(k: int = 1, tokens: int = 5, bits: int = 8, state: ChannelState = CLEAR, **kwargs):
    return split_costs(PROFILE, k, DEVICE, EDGE, LINK, state, tokens, bits, **kwargs)


def test_one_split_by_hand() -> None:
    c = cost(k=1, tokens=5, bits=8, tx_power_w=0.2, state=ChannelState(10.0, loss_rate=0.2))
    # Device: layer 0 prefill of 5 tokens = 5*(24576+36864) + 256*15 FLOPs.
    assert c.device_flops == 311040
    t_dev = 311040 / (1e9 * 10 * 0.5)
    assert math.isclose(c.device_compute_s, t_dev)
    assert math.isclose(c.ue_compute_energy_j, 1e-28 * (1e9 * t_dev) * 1e9**2)  # kappa * cycles * f^2
    # Uplink: 5 tokens * (64*8 bits + 32-bit scale) + one 320-bit header, twice the reference power.
    assert c.payload_bits == 5 * (64 * 8 + 32) + 320 == 3040
    rate = 1e6 * math.log2(1 + 10.0 * 0.2 / 0.1)
    assert math.isclose(c.uplink_rate_bps, rate)
    assert math.isclose(c.uplink_s, 3040 / rate / (1 - 0.2))  # ARQ: 1/(1-p) transmissions on average
    assert math.isclose(c.ue_tx_energy_j, 0.2 * c.uplink_s)
    assert math.isclose(c.ue_energy_j, c.ue_compute_energy_j + c.ue_tx_energy_j)
    # Edge: layer 1 + LM head on the last position; downlink: one 7-bit token id + header.
    assert c.edge_flops == 311040 + 2 * 64 * 128
    assert math.isclose(c.edge_compute_s, c.edge_flops / 0.5e12)
    assert c.downlink_bits == 7 + 320 and math.isclose(c.downlink_s, 327 / 1e7)
    parts = c.device_compute_s + c.uplink_s + c.edge_compute_s + c.downlink_s
    assert math.isclose(c.total_latency_s, parts)
    assert c.to_dict()["total_latency_s"] == c.total_latency_s


def test_k0_sends_token_ids_and_k_l_stays_on_device() -> None:
    first, last = cost(k=0, tokens=5), cost(k=PROFILE.num_layers, tokens=5)
    assert first.device_flops == 0 and first.device_compute_s == 0 and first.ue_compute_energy_j == 0
    assert first.payload_bits == 5 * 7 + 320 and first.device_memory_bytes == 0
    assert last.payload_bits == 0 and last.uplink_s == 0 and last.ue_tx_energy_j == 0
    assert last.edge_flops == 0 and last.edge_compute_s == 0 and last.downlink_s == 0
    assert last.device_flops == PROFILE.prefill_flops(0, 2, 5) + PROFILE.head_flops(1)


def test_more_snr_means_less_uplink_time() -> None:
    times = [cost(state=ChannelState(snr)).uplink_s for snr in (-5.0, 0.0, 10.0, 30.0)]
    assert times == sorted(times, reverse=True) and len(set(times)) == 4
    faded = cost(state=ChannelState(10.0, fading_gain=0.1)).uplink_s
    assert math.isclose(faded, cost(state=ChannelState(0.0)).uplink_s)


def test_higher_frequency_less_time_more_energy_quadratically() -> None:
    slow, fast = cost(f_hz=0.5e9), cost(f_hz=2e9)
    assert math.isclose(slow.device_compute_s / fast.device_compute_s, 4.0)
    assert math.isclose(fast.ue_compute_energy_j / slow.ue_compute_energy_j, 16.0)  # same cycles, energy ∝ f²


def test_more_layers_on_device_more_device_work_less_edge_work() -> None:
    costs = sweep_split_costs(PROFILE, DEVICE, EDGE, LINK, CLEAR, 16, 8)
    assert [c.k for c in costs] == [0, 1, 2]
    device = [c.device_flops for c in costs]
    edge = [c.edge_flops for c in costs]
    assert device == sorted(device) and edge == sorted(edge, reverse=True)


def test_quantisation_shrinks_payload_and_floats_have_no_scale() -> None:
    assert hidden_payload_bits(3, 64, 32) == 3 * 64 * 32
    assert hidden_payload_bits(3, 64, 16) == 3 * 64 * 16
    assert hidden_payload_bits(3, 64, 4) == 3 * (64 * 4 + 32)
    assert cost(bits=4).uplink_s < cost(bits=8).uplink_s < cost(bits=32).uplink_s
    # 10 float32 tokens = 20480 bits > one 12000-bit packet: two headers.
    assert cost(tokens=10, bits=32).payload_bits == 20480 + 2 * 320


def test_decode_pays_a_header_and_a_result_per_step() -> None:
    d = cost(tokens=4, phase="decode", context_len=20)
    assert d.payload_bits == 4 * (64 * 8 + 32 + 320)
    assert d.downlink_bits == 4 * (7 + 320)
    steps = sum(PROFILE.decode_flops(0, 1, c) for c in range(17, 21))
    assert d.device_flops == steps
    one = cost(tokens=1, phase="decode", context_len=20)
    assert one.device_flops == PROFILE.decode_flops(0, 1, 20)


def test_arq_expected_transmissions() -> None:
    assert expected_transmissions(0.0) == 1.0
    assert math.isclose(expected_transmissions(0.5), 2.0)
    lossy = cost(state=ChannelState(10.0, loss_rate=0.5))
    assert math.isclose(lossy.uplink_s, 2 * cost().uplink_s)
    assert math.isclose(lossy.ue_tx_energy_j, 2 * cost().ue_tx_energy_j)


def test_memory_infeasibility_is_flagged() -> None:
    small = dataclasses.replace(DEVICE, memory_bytes=60_000)
    costs = sweep_split_costs(PROFILE, small, EDGE, LINK, CLEAR, 8, 8)
    assert costs[0].feasible and costs[0].infeasible_reason is None
    assert not costs[2].feasible and "device memory" in costs[2].infeasible_reason
    assert costs[1].device_memory_bytes < costs[2].device_memory_bytes
    # Layer-0 weights (fp16) + embedding + KV for 8 positions + one layer's activations.
    expected = (PROFILE.embedding_params + PROFILE.layers[0].params) * 2 + 8 * 2 * 2 * 16 * 4 + 8 * (128 + 192) * 4
    assert costs[1].device_memory_bytes == expected
    tiny_edge = dataclasses.replace(EDGE, memory_bytes=1.0)
    assert "edge memory" in split_costs(PROFILE, 0, DEVICE, tiny_edge, LINK, CLEAR, 2, 8).infeasible_reason


def test_sweep_as_dataframe_has_one_row_per_split() -> None:
    df = sweep_split_costs(PROFILE, get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz"), CLEAR, 32, 8,
                           as_dataframe=True)  # fmt: skip
    assert list(df["k"]) == [0, 1, 2]
    assert {"total_latency_s", "ue_energy_j", "feasible", "payload_bits"} <= set(df.columns)


def test_uplink_rate_scales_with_power_like_snr() -> None:
    assert math.isclose(uplink_rate_bps(LINK, CLEAR, 0.1), 1e6 * math.log2(11))
    assert math.isclose(uplink_rate_bps(LINK, CLEAR, 1.0), uplink_rate_bps(LINK, ChannelState(20.0)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": -1}, r"\[0, 2\]"),
        ({"k": 3}, r"\[0, 2\]"),
        ({"tokens": 0}, "tokens"),
        ({"bits": 0}, "1..32"),
        ({"bits": 33}, "1..32"),
        ({"bits": 8.0}, "1..32"),
        ({"f_hz": 3e9}, "f_hz must be in"),
        ({"tx_power_w": 0.0}, "tx_power_w"),
        ({"phase": "train"}, "phase"),
        ({"phase": "decode"}, "context_len"),
        ({"tokens": 8, "context_len": 4}, "context_len"),
        ({"logits_tokens": 9}, "logits_tokens"),
    ],
)
def test_bad_inputs_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cost(**kwargs)
