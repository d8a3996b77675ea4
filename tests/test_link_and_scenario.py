"""The uplink composition (packet on the wire + impairment) and named channel settings."""

from __future__ import annotations

import pytest
import torch

from edgesplit.link import ImpairedLink
from edgesplit.scenario import CHANNEL_KINDS, ChannelSetting
from edgesplit.split import DeviceHead, EdgeTail, split_generate


def test_ideal_link_is_exact_and_counts_bytes():
    link = ImpairedLink(encoding="float32")
    x = torch.randn(2, 5, 64)
    assert torch.equal(link(x), x)
    ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(link(ids), ids)
    assert link.log.packets == 2 and link.log.tokens == 13
    assert link.log.payload_bytes == 2 * 5 * 64 * 4 + 3 * 4  # float32 elements + int32 token ids
    assert link.log.frame_bytes > link.log.payload_bytes


def test_float16_encoding_rounds_like_float16():
    x = torch.randn(1, 4, 64)
    assert torch.equal(ImpairedLink(encoding="float16")(x), x.half().float())


def test_same_seed_same_noise_and_different_seed_differs():
    setting = ChannelSetting("awgn", snr_db=5.0)
    x = torch.randn(2, 6, 64)
    a = ImpairedLink(setting.impairment(), setting.state(), seed=7)(x)
    b = ImpairedLink(setting.impairment(), setting.state(), seed=7)(x)
    c = ImpairedLink(setting.impairment(), setting.state(), seed=8)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noisy_generation_is_reproducible(tiny_llama):
    setting = ChannelSetting("digital", snr_db=4.0, bits=4, modulation="16qam")
    ids = torch.randint(2, 128, (1, 6), generator=torch.Generator().manual_seed(0))

    def run(seed):
        link = ImpairedLink(setting.impairment(), setting.state(), seed=seed, split_k=2)
        return split_generate(DeviceHead(tiny_llama, 2), EdgeTail(tiny_llama, 2), ids, max_new_tokens=12, link=link)

    assert torch.equal(run(1), run(1))


def test_numbers_are_normalised_so_equal_settings_serialise_alike():
    assert ChannelSetting("awgn", snr_db=10).to_dict() == ChannelSetting("awgn", snr_db=10.0).to_dict()
    assert isinstance(ChannelSetting("dropout", p=0).p, float)
    with pytest.raises(ValueError, match="snr_db must be a number"):
        ChannelSetting("awgn", snr_db="10")


def test_channel_setting_labels_and_bits():
    assert ChannelSetting("awgn", snr_db=10).label == "awgn 10 dB"
    assert ChannelSetting("dropout", p=0.06).label == "dropout p=0.06"
    digital = ChannelSetting("digital", snr_db=5, bits=4, modulation="16qam")
    assert digital.label == "digital 4b 16qam 5 dB" and digital.bits_per_element == 4
    assert ChannelSetting("awgn", encoding="float16").bits_per_element == 16


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "rician"}, "accepted: " + ", ".join(CHANNEL_KINDS)),
    ({"kind": "dropout", "p": 1.2}, "p must be in"),
    ({"kind": "digital", "bits": 0}, "bits"),
    ({"kind": "digital", "modulation": "8psk"}, "modulation"),
    ({"kind": "awgn", "loss_rate": 1.0}, "loss_rate"),
    ({"kind": "awgn", "encoding": "int3"}, "encoding"),
])
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChannelSetting(**kwargs)
