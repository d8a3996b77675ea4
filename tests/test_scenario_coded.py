"""The ``coded`` channel setting: validation, labels, equality and serialisation, the impairment and link it builds."""

from __future__ import annotations

import json

import pytest

from edgesplit.channel import CodedImpairment
from edgesplit.profile.cells import window_seed
from edgesplit.quality import Window
from edgesplit.scenario import CODED_DEFAULTS, ChannelSetting


def test_coded_setting_builds_the_nr_impairment_and_link():
    setting = ChannelSetting("coded", snr_db=12, bits=8)
    assert setting.label == "coded 8b 12 dB" and setting.bits_per_element == 8
    impairment = setting.impairment()
    assert isinstance(impairment, CodedImpairment) and impairment.path == "abstracted"
    link = setting.nr_link()
    assert (link.mcs_table, link.target_bler, link.max_transmissions, link.mcs) == (1, 0.1, 4, None)
    assert link.carrier.bandwidth_hz == 20e6 and link.carrier.subcarrier_spacing_hz == 30_000
    assert ChannelSetting("digital", snr_db=12).nr_link() is None


def test_non_default_options_show_in_the_label_and_reach_the_link():
    setting = ChannelSetting("coded", snr_db=3, bits=4, mcs_table=2, target_bler=0.01, harq_transmissions=1,
                             coded_path="bit_true", carrier_bandwidth_hz=100e6)
    assert setting.label == "coded 4b 3 dB table2 bler0.01 harq1 bit-true 100MHz"
    link = setting.nr_link()
    assert (link.mcs_table, link.target_bler, link.max_transmissions) == (2, 0.01, 1)
    assert link.carrier.bandwidth_hz == 100e6 and setting.impairment().path == "bit_true"


@pytest.mark.parametrize("channel", ["rayleigh", "tdl"])
def test_coded_channel_reaches_the_impairment_label_and_cost(channel):
    from edgesplit.channel.nr import CHANNELS, nr_uplink_cost

    assert set(CHANNELS) == {"awgn", "rayleigh", "tdl"}
    setting = ChannelSetting("coded", snr_db=8, bits=8, coded_channel=channel)
    assert setting.label == f"coded 8b 8 dB {channel}" and setting.impairment().channel == channel
    assert setting.nr_link().channel == channel and setting != ChannelSetting("coded", snr_db=8, bits=8)
    assert ChannelSetting(**json.loads(json.dumps(setting.to_dict()))) == setting
    # fading asks link adaptation for margin: a lower MCS and a longer uplink than on AWGN at the same mean SNR
    faded = nr_uplink_cost(100_000, 8.0, setting.nr_link())
    flat = nr_uplink_cost(100_000, 8.0, ChannelSetting("coded", snr_db=8, bits=8).nr_link())
    assert faded.mcs < flat.mcs and faded.latency_s > flat.latency_s


def test_equal_settings_are_equal_hash_and_round_trip_through_json():
    a = ChannelSetting("coded", snr_db=10, bits=8, target_bler=0.1, carrier_bandwidth_hz=20_000_000)
    b = ChannelSetting("coded", snr_db=10.0, bits=8, target_bler=0.10, carrier_bandwidth_hz=20e6)
    assert a == b and hash(a) == hash(b) and a.to_dict() == b.to_dict()
    data = json.loads(json.dumps(a.to_dict()))
    assert ChannelSetting(**data) == a and set(CODED_DEFAULTS) <= set(data)


def test_other_kinds_serialise_and_seed_as_before():
    setting = ChannelSetting("awgn", snr_db=10)
    assert not set(CODED_DEFAULTS) & set(setting.to_dict())
    # the profiler's per-window seed of an awgn cell, as computed before the coded kind existed
    assert window_seed(0, 3, setting, Window(0, 32, 1)) == 5753500605584876668


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "coded", "bits": 0}, "coded bits must be an int in 1..16"),
    ({"kind": "coded", "mcs_table": 3}, "mcs_table must be one of"),
    ({"kind": "coded", "mcs_table": 1.0}, "mcs_table must be an int"),
    ({"kind": "coded", "target_bler": 1.0}, r"target_bler must be in \(0, 1\)"),
    ({"kind": "coded", "target_bler": "0.1"}, "target_bler must be a number"),
    ({"kind": "coded", "harq_transmissions": 0}, "harq_transmissions must be in 1..16"),
    ({"kind": "coded", "coded_path": "fast"}, "unknown coded_path 'fast'; accepted: abstracted, bit_true"),
    ({"kind": "coded", "carrier_bandwidth_hz": 21e6}, "not a TS 38.101-1 channel bandwidth"),
    ({"kind": "coded", "coded_channel": "tdl-c"}, "unknown coded_channel 'tdl-c'; accepted: awgn, rayleigh, tdl"),
    ({"kind": "awgn", "coded_channel": "tdl"}, "coded_channel applies to kind 'coded' only"),
    ({"kind": "awgn", "harq_transmissions": 2}, "harq_transmissions applies to kind 'coded' only"),
    ({"kind": "digital", "carrier_bandwidth_hz": 100e6}, "carrier_bandwidth_hz applies to kind 'coded' only"),
])
def test_bad_coded_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChannelSetting(**kwargs)
