"""Grid parsing and ProfileConfig validation: inclusive ranges, lists, 'all' splits, and clear errors."""

from __future__ import annotations

import pytest

from edgesplit.profile import ProfileConfig, parse_float_grid, parse_int_grid, parse_splits, parse_str_grid
from edgesplit.profile.cells import ProfileCell, enumerate_cells, fading_gain, window_seed
from edgesplit.quality import Window
from edgesplit.scenario import ChannelSetting


def test_float_range_is_inclusive_and_drift_free():
    assert parse_float_grid("0:30:5") == (0, 5, 10, 15, 20, 25, 30)
    p = parse_float_grid("0.02:0.30:0.04")
    assert p == (0.02, 0.06, 0.1, 0.14, 0.18, 0.22, 0.26, 0.3)
    assert parse_float_grid("30:0:-10") == (30, 20, 10, 0)
    assert parse_float_grid("0:10:5, 20,-3.5") == (0, 5, 10, 20, -3.5)
    assert parse_float_grid("0:2") == (0, 1, 2)
    assert parse_float_grid("7") == (7,)


@pytest.mark.parametrize(("spec", "message"), [
    ("10:0:5", "empty"), ("0:10:0", "zero step"), ("", "empty grid"), ("a,b", "not a number"),
    ("0:1:2:3", "start:stop"), ("1,,2", "empty item"), ("1,1", "appears twice"), ("nan", "finite"),
])
def test_bad_float_grids_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_float_grid(spec, "--snr-db")


def test_int_and_string_grids():
    assert parse_int_grid("2,4,8", "--bits", 1, 16) == (2, 4, 8)
    assert parse_int_grid("2:8:2", "--bits", 1, 16) == (2, 4, 6, 8)
    with pytest.raises(ValueError, match="non-integers"):
        parse_int_grid("2.5", "--bits")
    with pytest.raises(ValueError, match=r"out of range; accepted: 1\.\.16"):
        parse_int_grid("0,4", "--bits", 1, 16)
    assert parse_str_grid("QPSK, 16qam", "--modulation", ("bpsk", "qpsk", "16qam")) == ("qpsk", "16qam")
    with pytest.raises(ValueError, match="unknown value '8psk'"):
        parse_str_grid("8psk", "--modulation", ("bpsk", "qpsk"))


def test_splits():
    assert parse_splits("all") is None
    assert parse_splits("all", 4) == (0, 1, 2, 3, 4)
    assert parse_splits("4,0,2", 4) == (0, 2, 4)
    with pytest.raises(ValueError, match=r"out of range; accepted: 0\.\.4"):
        parse_splits("0:6:2", 4)
    with pytest.raises(ValueError, match="k=31 is out of range"):
        ProfileConfig(out="x", splits=(0, 31)).resolve_splits(30)


def test_config_grids_per_channel_kind():
    awgn = ProfileConfig(out="x", channel="awgn", snr_db=(0.0, 10.0))
    assert [s.label for s in awgn.settings()] == ["awgn 0 dB", "awgn 10 dB"]
    digital = ProfileConfig(out="x", channel="digital", snr_db=(5.0,), bits=(4, 8), modulations=("qpsk", "16qam"))
    assert len(digital.settings()) == 4 and digital.settings()[1].label == "digital 4b 16qam 5 dB"
    dropout = ProfileConfig(out="x", channel="dropout", p=(0.1, 0.2))
    assert [s.p for s in dropout.settings()] == [0.1, 0.2] and dropout.snr_db == (30.0,)
    assert ProfileConfig(out="x", channel="awgn").snr_db == (0, 5, 10, 15, 20, 25, 30)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"channel": "fm"}, "unknown channel kind 'fm'"),
    ({"channel": "awgn", "snr_db": ()}, "snr_db grid is empty"),
    ({"channel": "dropout", "snr_db": (0.0, 10.0)}, "no SNR axis"),
    ({"channel": "dropout", "p": (1.0,)}, "dropout p must be in"),
    ({"channel": "digital", "bits": (17,)}, "bits must be an int in 1..16"),
    ({"channel": "digital", "modulations": ("8psk",)}, "unknown modulation"),
    ({"fading": "nakagami"}, "unknown fading"),
    ({"device": "toaster"}, "unknown device preset"),
    ({"context": 64, "stride": 65}, "stride must be in"),
    ({"seeds": 0}, "seeds must be at least 1"),
    ({"tokens": 1}, "tokens must be at least 2"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProfileConfig(out="x", **kwargs)


def test_config_roundtrips_through_dict():
    config = ProfileConfig(out="runs/a", channel="digital", bits=(2, 4), splits=(1, 3), seeds=2, stride=128)
    again = ProfileConfig.from_dict(config.to_dict())
    assert again == config and again.identity()["stride"] == 128


def test_cells_and_seeding_are_pure_functions():
    settings = [ChannelSetting("awgn", snr_db=s) for s in (0.0, 10.0)]
    cells = enumerate_cells((0, 2), settings, (0, 1))
    assert [c.key for c in cells[:3]] == [(0, "awgn 0 dB", "none", 0), (0, "awgn 0 dB", "none", 1),
                                          (0, "awgn 10 dB", "none", 0)]
    w = Window(0, 32, 1)
    seeds = {window_seed(c.seed, c.k, c.setting, w) for c in cells}
    assert len(seeds) == len(cells)  # every cell draws its own noise
    assert window_seed(1, 2, settings[0], w) == window_seed(1, 2, ChannelSetting("awgn", snr_db=0.0), w)
    assert window_seed(1, 2, settings[0], w) != window_seed(1, 2, settings[0], Window(32, 64, 32))
    gains = [fading_gain(s, "rayleigh") for s in range(200)]
    assert gains[:3] == [fading_gain(s, "rayleigh") for s in range(3)]
    assert 0.8 < sum(gains) / len(gains) < 1.2 and fading_gain(5, "none") == 1.0
    faded = ProfileCell(k=1, setting=settings[1], seed=3, fading="rayleigh")
    assert faded.channel.fading_gain == gains[3] and faded.setting.fading_gain == 1.0
