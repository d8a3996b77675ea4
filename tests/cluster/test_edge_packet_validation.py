"""The edge decodes and checks every uplink frame; a bad one gets an error reply and harms no other request."""

from __future__ import annotations

import pytest
import torch

from cluster.edge_actor import EdgeWorker
from cluster.messages import EdgeRequest
from edgesplit.packet import ActivationPacket
from edgesplit.split import DeviceHead
from tests.conftest import make_tiny


@pytest.fixture(scope="module")
def llama():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_tiny("llama", seed=1)
    torch.set_num_threads(threads)


def _frame(x: torch.Tensor, sid: str = "s", k: int = 2, start: int = 0, encoding: str = "float32") -> bytes:
    return ActivationPacket.from_tensor(x, session_id=sid, split_k=k, position_start=start,
                                       encoding=encoding).encode()


def _prefill(llama, sid: str = "s", k: int = 2, tokens: int = 5) -> bytes:
    ids = torch.arange(1, tokens + 1).unsqueeze(0)
    return _frame(DeviceHead(llama, k)(ids), sid, k)


def test_good_request_next_to_bad_ones(llama) -> None:
    edge = EdgeWorker(llama)
    good = _prefill(llama, "good")
    corrupted = bytearray(_prefill(llama, "bad"))
    corrupted[-3] ^= 0xFF
    replies = edge.step_many([EdgeRequest(b"not a packet"), EdgeRequest(bytes(corrupted)), EdgeRequest(good)])
    assert [r.error_kind for r in replies] == ["bad_packet", "bad_packet", None]
    assert "CRC32" in replies[1].error
    assert replies[2].ok and replies[2].session_id == "good" and isinstance(replies[2].token, int)
    assert set(edge.sessions) == {"good"}


@pytest.mark.parametrize("frame_kind, message", [
    ("wrong_hidden", "needs one sequence"),
    ("batch_two", "needs one sequence"),
    ("float_at_k0", "token_ids"),
    ("k_equals_L", "outside"),
    ("too_long", "limit"),
])
def test_valid_packets_the_edge_cannot_serve(llama, frame_kind: str, message: str) -> None:
    edge = EdgeWorker(llama, max_tokens=16)
    frames = {
        "wrong_hidden": lambda: _frame(torch.zeros(1, 3, 32)),
        "batch_two": lambda: _frame(torch.zeros(2, 3, 64)),
        "float_at_k0": lambda: _frame(torch.zeros(1, 3), k=0),
        "k_equals_L": lambda: _frame(torch.zeros(1, 3, 64), k=4),
        "too_long": lambda: _frame(torch.zeros(1, 17, 64)),
    }
    (reply,) = edge.step_many([EdgeRequest(frames[frame_kind]())])
    assert reply.error_kind in ("bad_request", "bad_packet") and message in reply.error
    assert reply.token is None and not edge.sessions


def test_oversized_frames_are_rejected_before_decoding(llama) -> None:
    edge = EdgeWorker(llama, max_tokens=16)
    (reply,) = edge.step_many([EdgeRequest(_frame(torch.zeros(1, 100, 64)))])
    assert reply.error_kind == "bad_packet" and "over the limit" in reply.error


def test_session_rules(llama) -> None:
    edge = EdgeWorker(llama)
    head = DeviceHead(llama, 2)
    session = head.new_session()
    first = head(torch.tensor([[3, 4, 5]]), session=session)
    (reply,) = edge.step_many([EdgeRequest(_frame(first, "a"))])
    step = head(torch.tensor([[reply.token]]), session=session)
    lost, wrong_pos, wrong_k = edge.step_many([
        EdgeRequest(_frame(step, "unknown", start=3)),
        EdgeRequest(_frame(step, "a", start=7)),
        EdgeRequest(_frame(torch.zeros(1, 1, 64), "a", k=1, start=3)),
    ])
    assert lost.error_kind == "lost_session"
    assert wrong_pos.error_kind == "bad_request" and "position 3" in wrong_pos.error
    assert wrong_k.error_kind == "bad_request" and "got split 1" in wrong_k.error
    ok, twice = edge.step_many([EdgeRequest(_frame(step, "a", start=3), close=True),
                                EdgeRequest(_frame(step, "a", start=3))])
    assert ok.ok and "a" not in edge.sessions  # close frees the KV cache
    assert twice.error_kind == "bad_request" and "appears twice" in twice.error


def test_token_ids_at_k0_and_quantised_encodings(llama) -> None:
    edge = EdgeWorker(llama)
    ids_frame = _frame(torch.tensor([[5, 6, 7]]), "ids", k=0, encoding="token_ids")
    hidden = DeviceHead(llama, 2)(torch.tensor([[5, 6, 7]]))
    replies = edge.step_many([EdgeRequest(ids_frame), EdgeRequest(_frame(hidden, "q", encoding="int8"))])
    assert all(r.ok for r in replies)
    assert replies[0].token == int(llama.model(torch.tensor([[5, 6, 7]])).logits[0, -1].argmax())
