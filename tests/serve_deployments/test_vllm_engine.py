"""The vLLM edge engine against the transformers one on the built-in model (runs in .venv-vllm; skipped without vllm).

``make test`` runs this module in ``.venv-vllm`` (``pytest -m vllm``); in the main venv every test here but the
config check is skipped. Greedy tokens must equal TailEngine's, through the engine interface, at ``k = 0`` (native
vLLM, streaming requests paused and resumed) and ``k = 15`` (the out-of-tree tail over ``prompt_embeds``).
"""

from __future__ import annotations

import os

import pytest
import torch

from edgesplit.packet import ActivationPacket
from edgesplit.split import DeviceHead
from serve_deployments.edge_engine import VLLM_INSTALL_HINT, VllmArgs, vllm_available
from serve_deployments.tail_engine import EdgeLimits, SessionCreate, TailEngine

needs_vllm = pytest.mark.skipif(not vllm_available(), reason="vllm is not installed here (make setup-vllm)")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

K_TAIL = 15
PROMPTS = ["The capital of France is", "Write a short poem about the sea. The waves are " * 3]
"""One prompt under a block (32 tokens), one over it (prefix cache hits at every step of its k > 0 session)."""
STEPS = 10


def _frame(sid, k, position, payload):
    return ActivationPacket.from_tensor(payload, session_id=sid, split_k=k, position_start=position,
                                        encoding="token_ids" if k == 0 else "float32").encode()


def _generate_all(engine, loaded, k, prompts, steps, override=None, **spec):
    """Greedy sessions stepped together through ``decode_many``; ``override`` = (step, token) the UE sends instead."""
    head = DeviceHead(loaded, k)
    sessions = []
    for text in prompts:
        ids = torch.tensor([loaded.tokenizer(text).input_ids])
        sid = engine.create(SessionCreate(k=k, max_tokens=ids.shape[1] + steps + 1, **spec), "")["session_id"]
        hs = head.new_session()
        answer = engine.prefill(sid, "", _frame(sid, k, 0, head(ids, session=hs)))
        sessions.append({"sid": sid, "hs": hs, "pos": ids.shape[1], "out": [answer["token"]], "answers": [answer]})
    for step in range(steps):
        works = []
        for s in sessions:
            token = override[1] if override and step == override[0] else s["out"][-1]
            s["sent"] = token
            payload = head(torch.tensor([[token]]), session=s["hs"])
            works.append(engine.check_decode(s["sid"], "", _frame(s["sid"], k, s["pos"], payload)))
            s["pos"] += 1
        for s, answer in zip(sessions, engine.decode_many(works), strict=True):
            assert "token" in answer, answer
            s["out"].append(answer["token"])
            s["answers"].append(answer)
    return sessions


@pytest.fixture(scope="module")
def engines(real_model):
    if not vllm_available():
        pytest.skip("vllm is not installed here (make setup-vllm)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from serve_deployments.vllm_engine import VllmEdgeEngine

    limits = EdgeLimits(max_tokens_per_session=256, max_batch_size=4)
    vllm = VllmEdgeEngine("smollm2-135m", limits=limits, options=VllmArgs(splits=[0, K_TAIL], run_ahead_tokens=4))
    return TailEngine(real_model, limits), vllm


@needs_vllm
@pytest.mark.parametrize("k", [0, K_TAIL])
def test_greedy_tokens_equal_transformers(engines, real_model, k):
    reference, vllm = engines
    expected = _generate_all(reference, real_model, k, PROMPTS, STEPS)
    got = _generate_all(vllm, real_model, k, PROMPTS, STEPS)
    for want, have in zip(expected, got, strict=True):
        assert have["out"] == want["out"]
        assert [a["position"] for a in have["answers"]] == [a["position"] for a in want["answers"]]
        assert all(a["batch_size"] == len(PROMPTS) for a in have["answers"][1:])
    stats = vllm.stats()
    assert stats["engine"] == "vllm" and k in stats["vllm_splits"]
    if k > 0:  # one request per step, the full blocks of its history from the prefix cache
        assert stats["prefix_cached_tokens"] >= 32 * STEPS
    for s in got:
        assert vllm.close(s["sid"], "")["closed"]
    assert not vllm._requests, "closing a session aborts its live request"


@needs_vllm
def test_k0_ue_override_resumes_from_history(engines, real_model):
    reference, vllm = engines
    override = (3, 504)  # at step 3 the UE sends token 504 instead of the one it was answered
    expected = _generate_all(reference, real_model, 0, PROMPTS[:1], 6, override=override)
    got = _generate_all(vllm, real_model, 0, PROMPTS[:1], 6, override=override)
    assert got[0]["out"] == expected[0]["out"]


@needs_vllm
def test_sampling_seeded_and_logprobs(engines, real_model):
    _, vllm = engines
    spec = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "logprobs": 3}
    runs = [_generate_all(vllm, real_model, k, PROMPTS[:1], 4, **s)[0]
            for k, s in ((K_TAIL, spec), (K_TAIL, spec), (0, spec))]
    assert runs[0]["out"] == runs[1]["out"]
    for answer in runs[0]["answers"] + runs[2]["answers"]:
        assert len(answer["top_logprobs"]) == 3 and answer["logprob"] <= 0
    greedy = _generate_all(vllm, real_model, K_TAIL, PROMPTS[:1], 1, logprobs=2)[0]["answers"][0]
    assert greedy["top_logprobs"][0][0] == greedy["token"]


@needs_vllm
def test_same_validation_as_transformers(engines):
    from serve_deployments.edge_errors import EdgeRejected

    _, vllm = engines
    sid = vllm.create(SessionCreate(k=K_TAIL, max_tokens=8), "alice")["session_id"]
    with pytest.raises(EdgeRejected) as bad:
        vllm.prefill(sid, "alice", _frame(sid, K_TAIL, 0, torch.full((1, 2, 576), float("nan"))))
    assert bad.value.error.code == "bad_packet"
    with pytest.raises(EdgeRejected, match="decode before prefill"):
        vllm.check_decode(sid, "alice", _frame(sid, K_TAIL, 0, torch.zeros(1, 1, 576)))
    assert vllm.close(sid, "alice")["closed"]


@pytest.mark.skipif(vllm_available(), reason="checks the message given where vllm is absent")
def test_vllm_engine_refused_clearly_without_vllm():
    from pydantic import ValidationError

    from serve_deployments.edge_deployment import EdgeArgs

    assert EdgeArgs().engine == "transformers"
    with pytest.raises(ValidationError, match="make setup-vllm") as err:
        EdgeArgs(engine="vllm")
    assert VLLM_INSTALL_HINT in str(err.value)
    with pytest.raises(ValidationError):
        EdgeArgs(engine="onnx")
