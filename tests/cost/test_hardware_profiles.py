"""Device, edge and link profiles: presets, validation and the link budget helpers."""

from __future__ import annotations

import dataclasses
import math

import pytest

from edgesplit.cost import (
    DEVICE_PRESETS,
    EDGE_PRESETS,
    LINK_PRESETS,
    DeviceProfile,
    EdgeProfile,
    LinkProfile,
    get_device,
    get_edge,
    get_link,
)


def test_presets_are_reachable_by_name() -> None:
    for name in DEVICE_PRESETS:
        assert get_device(name).name == name
    for name in EDGE_PRESETS:
        assert get_edge(name).name == name
    for name in LINK_PRESETS:
        assert get_link(name).name == name
    assert {"phone-soc", "jetson-orin-nano", "jetson-agx-orin", "laptop-cpu"} <= set(DEVICE_PRESETS)
    assert {"a100", "h100"} <= set(EDGE_PRESETS)
    assert {"5g-nr-20mhz", "wifi6-80mhz"} <= set(LINK_PRESETS)


@pytest.mark.parametrize("getter", [get_device, get_edge, get_link])
def test_unknown_preset_lists_valid_names(getter) -> None:
    with pytest.raises(ValueError, match="valid names: .*,") as info:
        getter("no-such-thing")
    assert "no-such-thing" in str(info.value)


def test_preset_power_envelopes_are_plausible() -> None:
    phone = get_device("phone-soc")
    assert 1e-28 <= phone.kappa <= 1e-27
    assert 0.1 < phone.power_w(phone.f_max_hz) < 10
    assert get_edge("h100").effective_flops > get_edge("a100").effective_flops


def test_device_effective_flops_and_power_follow_the_model() -> None:
    dev = DeviceProfile("d", flops_per_cycle=8, f_min_hz=1e8, f_max_hz=2e9, f_hz=1e9, utilisation=0.5,
                        kappa=1e-27, memory_bytes=1e9)  # fmt: skip
    assert dev.effective_flops() == 1e9 * 8 * 0.5
    assert dev.effective_flops(2e9) == 2 * dev.effective_flops()
    assert math.isclose(dev.power_w(2e9), 8 * dev.power_w(1e9))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("utilisation", 0.0, "utilisation"),
        ("utilisation", 1.5, "utilisation"),
        ("kappa", -1e-28, "kappa"),
        ("flops_per_cycle", 0, "flops_per_cycle"),
        ("f_hz", 5e9, "f_hz must be in"),
        ("f_min_hz", 4e9, "f_min_hz"),
        ("memory_bytes", float("nan"), "memory_bytes"),
    ],
)
def test_device_profile_validation(field: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(get_device("phone-soc"), **{field: value})


def test_edge_and_link_validation() -> None:
    with pytest.raises(ValueError, match="peak_flops"):
        EdgeProfile("e", peak_flops=0, utilisation=0.5, memory_bytes=1e9)
    with pytest.raises(ValueError, match="bandwidth_hz"):
        dataclasses.replace(get_link("5g-nr-20mhz"), bandwidth_hz=-1.0)
    with pytest.raises(ValueError, match="header_bits"):
        dataclasses.replace(get_link("5g-nr-20mhz"), header_bits=-8)


def test_mean_snr_from_path_loss_matches_the_link_budget() -> None:
    link = LinkProfile("l", bandwidth_hz=1e6, tx_power_w=1e-3, noise_psd_w_per_hz=1e-20, downlink_rate_bps=1e6)
    # 0 dBm against -110 dBm of noise (1e-20 W/Hz * 1 MHz = 1e-14 W) over 100 dB of path loss -> 10 dB.
    assert math.isclose(link.mean_snr_db(100.0), 10.0)
    assert math.isclose(link.mean_snr_db(90.0), 20.0)
    nr = get_link("5g-nr-20mhz")  # 23 dBm, -174+5 dBm/Hz, 73 dB-Hz -> SNR = 119 dB - path loss
    assert math.isclose(nr.mean_snr_db(119.0), 0.0, abs_tol=1e-9)


def test_fragmentation_adds_one_header_per_packet() -> None:
    link = LinkProfile("l", 1e6, 0.1, 1e-20, 1e6, header_bits=100, max_packet_payload_bits=1000)
    assert link.packets(0) == 1 and link.on_air_bits(0) == 100
    assert link.packets(1000) == 1 and link.on_air_bits(1000) == 1100
    assert link.packets(1001) == 2 and link.on_air_bits(1001) == 1201
