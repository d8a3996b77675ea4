"""ImpairedLink with unequal error protection: per-split resolution, version-2 packets, end to end on a tiny model."""

from __future__ import annotations

import pytest
import torch

from edgesplit.channel import ChannelState, DropoutImpairment
from edgesplit.channel.uep import ProtectedImpairment
from edgesplit.link import ImpairedLink
from edgesplit.packet import ActivationPacket, ProtectedPacket
from edgesplit.quality import evaluate_split
from edgesplit.quality.outliers import detect_outliers
from tests.conftest import make_tiny


def test_link_resolves_the_split_and_sends_a_protected_frame() -> None:
    imp = ProtectedImpairment(channels={2: (5, 1), 3: ()}, tokens=0)
    x = torch.randn(1, 4, 64)
    link = ImpairedLink(imp, split_k=2, encoding="float16")
    assert link.impairment.split_k == 2 and torch.equal(link(x), x.half().float())
    expected = ProtectedPacket.from_tensor(x, (5, 1), session_id="link", split_k=2, encoding="float16",
                                           protected_encoding="float16")
    assert link.log.frame_bytes == expected.nbytes and link.log.payload_bytes == expected.payload_bytes
    assert link.log.stats[0]["protected_channels"] == 2.0


def test_protected_encoding_and_empty_entries() -> None:
    x = torch.randn(1, 4, 64)
    x[..., 9] *= 1e4
    link = ImpairedLink(ProtectedImpairment(channels=(9,), protected_encoding="float32"), encoding="int8", split_k=1)
    out = link(x)
    assert torch.equal(out[..., 9], x[..., 9])  # the outlier travels as exact float32
    plain = ImpairedLink(ProtectedImpairment(channels={3: ()}, tokens=0), encoding="int8", split_k=3)
    plain(x)
    expected = ActivationPacket.from_tensor(x, session_id="link", split_k=3, encoding="int8")
    assert plain.log.frame_bytes == expected.nbytes  # nothing to protect: a plain version-1 frame


def test_token_ids_need_no_table_entry() -> None:
    link = ImpairedLink(ProtectedImpairment(channels={5: (1,)}), split_k=0)
    ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(link(ids), ids)
    with pytest.raises(ValueError, match="no protected channels listed for split 2"):
        ImpairedLink(ProtectedImpairment(channels={5: (1,)}), split_k=2)(torch.randn(1, 2, 64))


def test_protection_of_a_planted_outlier_beats_plain_dropout() -> None:
    model = make_tiny("llama")
    with torch.no_grad():
        model.model.model.layers[0].mlp.down_proj.weight[21] *= 300.0
    ids = torch.randint(2, 128, (96,), generator=torch.Generator().manual_seed(1))
    table = detect_outliers(model, ids, context=48)
    assert table.channels(2) == (21,)
    state, p = ChannelState(mean_snr_db=30.0), 0.4
    uep = ProtectedImpairment(main=DropoutImpairment(p), protected=DropoutImpairment(p),
                              channels=table.channels_by_split(), copies=4)

    def kl(impairment, seed):
        link = ImpairedLink(impairment, state, seed=seed, split_k=2)
        return evaluate_split(model, ids, 2, link, context=48).kl_nats

    plain = [kl(DropoutImpairment(p), seed) for seed in range(3)]
    protected = [kl(uep, seed) for seed in range(3)]
    assert max(protected) < min(plain)
    assert kl(uep, 7) == kl(uep, 7)


def test_the_prefill_packet_protects_its_first_row_and_decode_steps_none() -> None:
    imp = ProtectedImpairment(channels=(5,), tokens=1, protected_encoding="float32")
    link = ImpairedLink(imp, encoding="int8", split_k=2)
    prefill, step = torch.randn(1, 4, 64) * 10, torch.randn(1, 1, 64)
    out = link(prefill)
    assert torch.equal(out[:, 0], prefill[:, 0])  # the sink row whole, as exact float32
    expected = ProtectedPacket.from_tensor(prefill, (5,), session_id="link", split_k=2, encoding="int8",
                                           protected_encoding="float32", tokens=1)
    assert link.log.frame_bytes == expected.nbytes and expected.version == 3
    link(step)  # position 4: no sink row, a version-2 frame
    v2 = ProtectedPacket.from_tensor(step, (5,), session_id="link", split_k=2, encoding="int8",
                                     protected_encoding="float32", position_start=4)
    assert link.log.frame_bytes == expected.nbytes + v2.nbytes
    assert [s["protected_tokens"] for s in link.log.stats] == [1.0, 0.0]


def test_leading_decode_steps_count_until_the_configured_position() -> None:
    link = ImpairedLink(ProtectedImpairment(channels={2: ()}, tokens=2), encoding="int8", split_k=2)
    x = torch.randn(1, 1, 64)
    sizes = []
    for _ in range(3):  # positions 0, 1 (protected whole), 2 (nothing to protect: version 1)
        before = link.log.frame_bytes
        link(x)
        sizes.append(link.log.frame_bytes - before)
    plain = ActivationPacket.from_tensor(x, session_id="link", split_k=2, encoding="int8", position_start=2)
    assert sizes[2] == plain.nbytes and sizes[0] == sizes[1] > plain.nbytes
    assert [s["protected_tokens"] for s in link.log.stats] == [1.0, 1.0, 0.0]
