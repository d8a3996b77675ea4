"""The coded link in the cost model: split and switch costs priced by the NR cost model, hand-checked against
``nr_uplink_cost``; the Shannon kinds unchanged (their numbers are pinned in the other tests of this folder)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import LlamaConfig

from edgesplit.channel.nr import nr_uplink_cost
from edgesplit.channel.state import ChannelState
from edgesplit.cost import (
    ModelProfile,
    get_device,
    get_edge,
    get_link,
    split_costs,
    switch_cost_table,
    switch_costs,
    uplink_rate_bps,
)
from edgesplit.reward import SplitReward, reward_preset
from edgesplit.scenario import ChannelSetting

PROFILE = ModelProfile.from_config(
    LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128)
)  # fmt: skip
DEVICE, EDGE, LINK = get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz")
CODED = ChannelSetting("coded", snr_db=6.0, bits=8)
STATE = ChannelState(mean_snr_db=6.0, fading_gain=0.5, loss_rate=0.2)


def price(k: int, setting: ChannelSetting = CODED, state: ChannelState = STATE, **kwargs):
    return split_costs(PROFILE, k, DEVICE, EDGE, LINK, state, 64, setting.bits_per_element,
                       nr_link=setting.nr_link(), **kwargs)


def test_prefill_uplink_is_the_nr_cost_of_one_message_at_the_scaled_snr():
    c = price(2, tx_power_w=0.1)
    snr_db = 6.0 + 10 * math.log10(0.5) + 10 * math.log10(0.1 / 0.2)  # fading gain, then power vs reference
    assert math.isclose(c.nr_uplink.snr_db, snr_db, abs_tol=1e-12)
    nr = nr_uplink_cost(c.payload_bits, c.nr_uplink.snr_db, CODED.nr_link(), 0.1)
    arq = 1 / (1 - 0.2)
    assert c.nr_uplink == nr and c.payload_bits == 64 * (64 * 8 + 32) + 3 * 320  # three packets' headers
    assert math.isclose(c.uplink_s, nr.latency_s * arq) and math.isclose(c.uplink_airtime_s, nr.airtime_s * arq)
    assert math.isclose(c.ue_tx_energy_j, 0.1 * nr.airtime_s * arq)
    rate = uplink_rate_bps(LINK, STATE, 0.1)
    assert c.uplink_rate_bps == rate and math.isclose(c.shannon_uplink_s, c.payload_bits / rate * arq)
    assert c.uplink_s > c.shannon_uplink_s  # NR (DMRS, code rate, HARQ) is slower than Shannon
    row = c.to_dict()
    assert row["nr_mcs"] == nr.mcs and row["nr_num_tbs"] == nr.num_tbs and "nr_uplink" not in row


def test_decode_steps_each_pay_one_message_and_the_ue_end_sends_nothing():
    state = ChannelState(mean_snr_db=6.0)
    decode = price(2, state=state, phase="decode", context_len=80)
    step = nr_uplink_cost(decode.payload_bits // 64, 6.0, CODED.nr_link(), LINK.tx_power_w)
    assert math.isclose(decode.uplink_s, 64 * step.latency_s)
    local = price(PROFILE.num_layers)
    assert local.uplink_s == 0 and local.ue_tx_energy_j == 0 and local.nr_uplink is None


def test_other_kinds_keep_shannon_and_their_numbers():
    awgn = ChannelSetting("awgn", snr_db=6.0, encoding="float16")
    c = price(2, setting=awgn)
    plain = split_costs(PROFILE, 2, DEVICE, EDGE, LINK, STATE, 64, 16)
    assert c == plain and c.nr_uplink is None and c.shannon_uplink_s == c.uplink_s == c.uplink_airtime_s
    assert math.isclose(c.uplink_s, c.payload_bits / uplink_rate_bps(LINK, STATE) / 0.8)
    assert not any(key.startswith("nr_") for key in c.to_dict())


def test_a_carrier_other_than_the_links_bandwidth_is_refused():
    with pytest.raises(ValueError, match="NR carrier is 20 MHz but link '5g-nr-100mhz' charges 100 MHz"):
        split_costs(PROFILE, 2, DEVICE, EDGE, get_link("5g-nr-100mhz"), STATE, 64, 8, nr_link=CODED.nr_link())
    wide = ChannelSetting("coded", snr_db=6.0, carrier_bandwidth_hz=100e6)
    fast = split_costs(PROFILE, 2, DEVICE, EDGE, get_link("5g-nr-100mhz"), STATE, 64, 8, nr_link=wide.nr_link())
    assert fast.uplink_s < price(2).uplink_s


def test_reward_prices_coded_settings_with_nr():
    reward = SplitReward(reward_preset("latency-energy"), PROFILE)
    cost = reward.cost(2, CODED)
    assert cost.nr_uplink is not None
    assert cost == split_costs(PROFILE, 2, DEVICE, EDGE, LINK, CODED.state(), 256, 8, nr_link=CODED.nr_link())


def test_switch_costs_and_their_table_agree_on_the_coded_link():
    nr_link, state = CODED.nr_link(), ChannelState(mean_snr_db=3.0, loss_rate=0.1)
    up = switch_costs(PROFILE, 3, 1, DEVICE, EDGE, LINK, state, 200, nr_link=nr_link)
    nr = nr_uplink_cost(up.uplink_bits, 3.0, nr_link, LINK.tx_power_w)
    assert math.isclose(up.uplink_s, nr.latency_s / 0.9) and math.isclose(up.ue_energy_j, nr.tx_energy_j / 0.9)
    assert math.isclose(up.shannon_uplink_s, up.uplink_bits / up.uplink_rate_bps / 0.9)
    down = switch_costs(PROFILE, 1, 3, DEVICE, EDGE, LINK, state, 200, nr_link=nr_link)
    assert down.uplink_s == 0 and down.downlink_s > 0
    ks, states = [0, 1, 3, 4], [state, ChannelState(mean_snr_db=20.0)]
    table = switch_cost_table(PROFILE, ks, LINK, states, 200, nr_link=nr_link)
    for s, st in enumerate(states):
        for i, a in enumerate(ks):
            for j, b in enumerate(ks):
                one = switch_costs(PROFILE, a, b, DEVICE, EDGE, LINK, st, 200, nr_link=nr_link)
                assert np.isclose(table["latency_s"][s, i, j], one.latency_s, rtol=1e-12, atol=0)
                assert np.isclose(table["ue_energy_j"][s, i, j], one.ue_energy_j, rtol=1e-12, atol=0)
