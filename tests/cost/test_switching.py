"""switch_costs: the KV-migration price of changing the split, against hand computations and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import LlamaConfig, MistralConfig

from edgesplit.channel.state import ChannelState
from edgesplit.cost import (
    DeviceProfile,
    EdgeProfile,
    LinkProfile,
    ModelProfile,
    get_device,
    get_edge,
    get_link,
    kv_migration_bits,
    kv_migration_elements,
    split_costs,
    switch_cost_table,
    switch_costs,
)

# 6 layers, 2 KV heads of width 64 / 4 = 16: 2 · 2 · 16 = 64 KV elements per token per layer
PROFILE = ModelProfile.from_config(
    LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128)
)  # fmt: skip
DEVICE = DeviceProfile("dev", flops_per_cycle=10, f_min_hz=0.5e9, f_max_hz=2e9, f_hz=1e9, utilisation=0.5,
                       kappa=1e-28, memory_bytes=1e9)  # fmt: skip
EDGE = EdgeProfile("edge", peak_flops=1e12, utilisation=0.5, memory_bytes=1e10)
LINK = LinkProfile("link", bandwidth_hz=1e6, tx_power_w=0.5, noise_psd_w_per_hz=1e-20, downlink_rate_bps=2e6,
                   header_bits=100, max_packet_payload_bits=10_000)  # fmt: skip
# linear SNR 15: rate = 1 MHz · log2(16) = 4 Mbit/s; loss 0.2: 1.25 transmissions per packet
STATE = ChannelState(mean_snr_db=10.0 * math.log10(15.0), loss_rate=0.2)


def migrate(k_from: int, k_to: int, context: int = 100, bits: int = 16, state: ChannelState = STATE, **kw):
    return switch_costs(PROFILE, k_from, k_to, DEVICE, EDGE, LINK, state, context, bits, **kw)


def test_moving_layers_to_the_edge_is_priced_by_hand():
    cost = migrate(5, 2)
    elements = 64 * 3 * 100  # 2·kv_heads·head_dim · layers [2, 5) · past tokens = 19,200
    data = elements * 16  # 307,200 bits
    on_air = data + math.ceil(data / 10_000) * 100  # 31 packets · 100 header bits -> 310,300
    uplink_s = on_air / 4e6 * 1.25  # 0.09696875 s
    assert (cost.direction, cost.layers_moved, cost.kv_elements) == ("uplink", 3, 19_200)
    assert (cost.uplink_bits, cost.downlink_bits) == (310_300, 0)
    assert cost.uplink_rate_bps == pytest.approx(4e6)
    assert cost.uplink_s == pytest.approx(0.09696875) == pytest.approx(uplink_s)
    assert cost.latency_s == pytest.approx(0.09696875)
    assert cost.ue_energy_j == pytest.approx(0.5 * 0.09696875)  # 0.048484375 J


def test_moving_layers_to_the_ue_uses_the_reliable_downlink_and_costs_no_ue_energy():
    cost = migrate(2, 5)
    assert (cost.direction, cost.uplink_bits, cost.downlink_bits) == ("downlink", 0, 310_300)
    assert cost.downlink_s == pytest.approx(310_300 / 2e6)  # 0.15515 s, no retransmissions
    assert cost.latency_s == pytest.approx(0.15515)
    assert cost.uplink_s == 0.0 and cost.ue_energy_j == 0.0  # receive energy is not modelled


def test_integer_widths_carry_one_scale_per_k_or_v_vector():
    # 19,200 elements · 8 bits + (2 · 3 layers · 100 tokens) float32 scales = 153,600 + 19,200
    assert kv_migration_bits(PROFILE, 5, 2, 100, 8) == 172_800
    cost = migrate(5, 2, bits=8)
    assert cost.uplink_bits == 172_800 + 18 * 100
    assert kv_migration_bits(PROFILE, 5, 2, 100, 32) == 19_200 * 32


def test_no_switch_and_empty_context_cost_nothing():
    for cost in (migrate(3, 3), migrate(1, 6, context=0)):
        assert cost.latency_s == 0.0 and cost.ue_energy_j == 0.0
        assert cost.uplink_bits == cost.downlink_bits == 0
    assert migrate(3, 3).direction == "none"


def test_cost_grows_with_context_and_layers_and_shrinks_with_snr_and_power():
    assert migrate(5, 2, context=200).latency_s > migrate(5, 2).latency_s
    assert migrate(6, 0).latency_s > migrate(5, 2).latency_s
    better = ChannelState(mean_snr_db=25.0, loss_rate=0.2)
    assert migrate(5, 2, state=better).latency_s < migrate(5, 2).latency_s
    louder = migrate(5, 2, tx_power_w=2.0)
    assert louder.uplink_s < migrate(5, 2).uplink_s and louder.tx_power_w == 2.0
    assert migrate(5, 2, state=ChannelState(mean_snr_db=STATE.mean_snr_db)).uplink_s == pytest.approx(
        migrate(5, 2).uplink_s / 1.25)


def test_uplink_rate_and_retransmissions_match_split_costs():
    state = ChannelState(mean_snr_db=7.0, fading_gain=0.6, loss_rate=0.1)
    cost = migrate(4, 1, state=state)
    split = split_costs(PROFILE, 1, DEVICE, EDGE, LINK, state, tokens=10, bits=16)
    assert cost.uplink_rate_bps == split.uplink_rate_bps
    assert cost.uplink_s == pytest.approx(cost.uplink_bits / split.uplink_rate_bps / 0.9)


def test_sliding_window_layers_move_only_their_window():
    mistral = ModelProfile.from_config(MistralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                                                     num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
                                                     vocab_size=128))
    assert kv_migration_elements(mistral, 0, 4, 100) == 4 * 64 * 8
    assert kv_migration_elements(mistral, 0, 4, 5) == 4 * 64 * 5


def test_presets_give_a_plausible_price():
    from surrogate.dataset import model_profile

    profile = model_profile("smollm2-135m")
    cost = switch_costs(profile, 12, 9, get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz"),
                        ChannelState(mean_snr_db=14.0), 768)
    assert cost.kv_elements == 2 * 3 * 64 * 3 * 768
    assert 0.05 < cost.latency_s < 0.5 and 0.01 < cost.ue_energy_j < 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"k_from": -1}, "split"), ({"k_to": 7}, "split"), ({"context": -1}, "context_tokens"),
    ({"context": 1.5}, "context_tokens"), ({"context": True}, "context_tokens"), ({"bits": 0}, "bits"),
    ({"bits": 33}, "bits"), ({"tx_power_w": 0.0}, "tx_power_w"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    args = {"k_from": 5, "k_to": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        migrate(args.pop("k_from"), args.pop("k_to"), **args)


def test_bad_switch_cost_fields_are_rejected():
    cost = migrate(5, 2)
    from dataclasses import replace

    with pytest.raises(ValueError, match="direction"):
        replace(cost, direction="sideways")
    with pytest.raises(ValueError, match="finite"):
        replace(cost, uplink_s=-1.0)
    assert cost.to_dict()["latency_s"] == cost.latency_s


@pytest.mark.parametrize("bits", [16, 8])
def test_switch_cost_table_equals_switch_costs_element_for_element(bits):
    ks, states = [0, 2, 3, 6], [STATE, ChannelState(mean_snr_db=0.0), ChannelState(mean_snr_db=25.0, loss_rate=0.5)]
    table = switch_cost_table(PROFILE, ks, LINK, states, 77, bits, tx_power_w=0.3)
    assert table["latency_s"].shape == table["ue_energy_j"].shape == (3, 4, 4)
    for s, state in enumerate(states):
        for i, a in enumerate(ks):
            for j, b in enumerate(ks):
                one = migrate(a, b, 77, bits, state, tx_power_w=0.3)
                assert table["latency_s"][s, i, j] == pytest.approx(one.latency_s, rel=1e-12, abs=0)
                assert table["ue_energy_j"][s, i, j] == pytest.approx(one.ue_energy_j, rel=1e-12, abs=0)
    assert np.all(np.diagonal(table["latency_s"], axis1=1, axis2=2) == 0)
