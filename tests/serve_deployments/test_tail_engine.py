"""TailEngine without Ray: session life cycle, limits, TTL, packet validation, batched = unbatched, sampling."""

from __future__ import annotations

import pytest
import torch

from edgesplit.packet import ActivationPacket
from edgesplit.split import DeviceHead, EdgeTail, split_generate
from serve_deployments.edge_errors import EdgeError, EdgeRejected
from serve_deployments.tail_engine import EdgeLimits, SessionCreate, TailEngine


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _frame(sid, k, position, payload, encoding="float32"):
    return ActivationPacket.from_tensor(payload, session_id=sid, split_k=k, position_start=position,
                                        encoding="token_ids" if k == 0 else encoding).encode()


def _generate(engine, loaded, ids, k, steps, owner="", **spec):
    """Greedy generation through the engine, one session, unbatched."""
    sid = engine.create(SessionCreate(k=k, max_tokens=ids.shape[1] + steps, **spec), owner)["session_id"]
    head = DeviceHead(loaded, k)
    hs = head.new_session()
    out = [engine.prefill(sid, owner, _frame(sid, k, 0, head(ids, session=hs)))["token"]]
    for step in range(steps - 1):
        payload = head(torch.tensor([[out[-1]]]), session=hs)
        out.append(engine.decode(sid, owner, _frame(sid, k, ids.shape[1] + step, payload))["token"])
    return out, sid


@pytest.mark.parametrize("k", [0, 2, 3])
def test_engine_generation_equals_split_generate(tiny_llama, k):
    engine = TailEngine(tiny_llama)
    ids = torch.randint(2, 128, (1, 6), generator=torch.Generator().manual_seed(k))
    tokens, _ = _generate(engine, tiny_llama, ids, k, 8)
    reference = split_generate(DeviceHead(tiny_llama, k), EdgeTail(tiny_llama, k), ids, max_new_tokens=8)
    assert tokens == reference[0].tolist()


def test_batched_decode_equals_unbatched_mixed_lengths(tiny_llama):
    engine = TailEngine(tiny_llama)
    head = DeviceHead(tiny_llama, 2)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 128, (1, n), generator=g) for n in (2, 9, 5, 13)]
    sessions = []
    for ids in prompts:
        sid = engine.create(SessionCreate(k=2, max_tokens=40), "")["session_id"]
        hs = head.new_session()
        token = engine.prefill(sid, "", _frame(sid, 2, 0, head(ids, session=hs)))["token"]
        sessions.append([sid, hs, ids.shape[1], [token]])
    for _ in range(5):
        works = []
        for s in sessions:
            payload = head(torch.tensor([[s[3][-1]]]), session=s[1])
            works.append(engine.check_decode(s[0], "", _frame(s[0], 2, s[2], payload)))
            s[2] += 1
        answers = engine.decode_many(works)
        assert all(a["batch_size"] == 4 for a in answers)
        for s, a in zip(sessions, answers, strict=True):
            s[3].append(a["token"])
    for ids, s in zip(prompts, sessions, strict=True):
        reference = split_generate(DeviceHead(tiny_llama, 2), EdgeTail(tiny_llama, 2), ids, max_new_tokens=6)
        assert s[3] == reference[0].tolist()


def test_caps_and_ttl(tiny_llama):
    clock = Clock()
    limits = EdgeLimits(max_sessions=2, idle_ttl_s=10, retry_after_s=2.5, max_tokens_per_session=64)
    engine = TailEngine(tiny_llama, limits, clock=clock)
    first = engine.create(SessionCreate(k=1, max_tokens=8), "")["session_id"]
    engine.create(SessionCreate(k=1, max_tokens=8), "")
    with pytest.raises(EdgeRejected) as full:
        engine.create(SessionCreate(k=1, max_tokens=8), "")
    assert full.value.error.code == "capacity" and full.value.error.status == 429
    assert full.value.error.retry_after_s == 2.5
    with pytest.raises(EdgeRejected, match="exceeds this edge's limit"):
        engine.create(SessionCreate(k=1, max_tokens=65), "")
    clock.now = 11.0
    assert engine.expire() == 2
    assert engine.kv_reserved == 0
    with pytest.raises(EdgeRejected) as gone:
        engine.close(first, "")
    assert gone.value.error.code == "unknown_session"


def test_kv_admission_from_cost_model(tiny_llama):
    engine = TailEngine(tiny_llama)
    per_session = engine.kv_bytes(1, 100)
    # 3 edge layers x 2 (K and V) x 2 kv heads x head dim 16 x 4 bytes x 100 tokens
    assert per_session == 3 * 2 * 2 * 16 * 4 * 100
    engine = TailEngine(tiny_llama, EdgeLimits(max_kv_bytes=2**20))
    created = 0
    with pytest.raises(EdgeRejected, match="KV cache full"):
        while True:
            engine.create(SessionCreate(k=0, max_tokens=2000), "")
            created += 1
    assert created == 2**20 // engine.kv_bytes(0, 2000)


def test_owner_and_validation(tiny_llama):
    engine = TailEngine(tiny_llama)
    sid = engine.create(SessionCreate(k=2, max_tokens=8), "alice")["session_id"]
    hidden = torch.randn(1, 3, 64)
    with pytest.raises(EdgeRejected) as forbidden:
        engine.prefill(sid, "mallory", _frame(sid, 2, 0, hidden))
    assert forbidden.value.error.code == "forbidden"
    bad = {
        "bad_packet": [b"junk", _frame("other-session-id", 2, 0, hidden), _frame(sid, 3, 0, hidden),
                       _frame(sid, 2, 0, torch.randn(1, 3, 32)), _frame(sid, 2, 0, torch.randn(2, 3, 64)),
                       _frame(sid, 2, 0, hidden, "int8"), _frame(sid, 2, 0, torch.full((1, 2, 64), float("nan")))],
        "out_of_order": [_frame(sid, 2, 4, hidden)],
        "token_limit": [_frame(sid, 2, 0, torch.randn(1, 9, 64))],
    }
    for code, frames in bad.items():
        for frame in frames:
            with pytest.raises(EdgeRejected) as rej:
                engine.prefill(sid, "alice", frame)
            assert rej.value.error.code == code, rej.value.error
    with pytest.raises(EdgeRejected, match="decode before prefill"):
        engine.check_decode(sid, "alice", _frame(sid, 2, 0, hidden[:, :1]))
    ids_sid = engine.create(SessionCreate(k=0, max_tokens=8), "alice")["session_id"]
    with pytest.raises(EdgeRejected, match="token ids must be in"):
        engine.prefill(ids_sid, "alice", _frame(ids_sid, 0, 0, torch.tensor([[5, 128]])))
    assert engine.prefill(sid, "alice", _frame(sid, 2, 0, hidden))["position"] == 3


def test_stale_and_duplicate_steps_fail_alone(tiny_llama):
    engine = TailEngine(tiny_llama)
    head = DeviceHead(tiny_llama, 1)
    sid = engine.create(SessionCreate(k=1, max_tokens=8), "")["session_id"]
    hs = head.new_session()
    engine.prefill(sid, "", _frame(sid, 1, 0, head(torch.tensor([[3, 4]]), session=hs)))
    frame = _frame(sid, 1, 2, head(torch.tensor([[5]]), session=hs))
    works = [engine.check_decode(sid, "", frame), engine.check_decode(sid, "", frame)]
    first, second = engine.decode_many(works)
    assert isinstance(first, dict) and isinstance(second, EdgeError) and second.code == "out_of_order"


def test_sampling_seeded_by_position(tiny_llama):
    ids = torch.tensor([[5, 6, 7]])
    spec = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "logprobs": 3}
    a, _ = _generate(TailEngine(tiny_llama), tiny_llama, ids, 2, 10, **spec)
    b, _ = _generate(TailEngine(tiny_llama), tiny_llama, ids, 2, 10, **spec)
    c, _ = _generate(TailEngine(tiny_llama), tiny_llama, ids, 2, 10, **{**spec, "seed": 8})
    assert a == b and a != c
    engine = TailEngine(tiny_llama)
    sid = engine.create(SessionCreate(k=2, max_tokens=8, logprobs=3), "")["session_id"]
    answer = engine.prefill(sid, "", _frame(sid, 2, 0, DeviceHead(tiny_llama, 2)(ids)))
    assert len(answer["top_logprobs"]) == 3 and answer["logprob"] <= 0
    assert answer["top_logprobs"][0][0] == answer["token"]  # greedy: the chosen token is the most likely


def test_bad_create_requests(tiny_llama):
    engine = TailEngine(tiny_llama)
    with pytest.raises(EdgeRejected, match="k must be in 0..3"):
        engine.create(SessionCreate(k=4), "")
    with pytest.raises(EdgeRejected, match="encoding must be one of"):
        engine.create(SessionCreate(k=1, encoding="token_ids"), "")
    with pytest.raises(ValueError):
        SessionCreate(k=1, top_p=0.0)
