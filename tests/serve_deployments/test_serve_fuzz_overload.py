"""Hostile and heavy traffic against the real Serve app: ≥ 2,000 random and mutated bodies and headers across the
routes give zero 5xx; a burst past the session caps gets 429 + Retry-After and the client's back-off completes
every request with the right tokens."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesplit.client import AsyncSplitClient, HttpTransport
from edgesplit.packet import ActivationPacket
from edgesplit.split import DeviceHead, EdgeTail, split_generate
from tests.serve_deployments.conftest import TOKENS, start_app

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROUTES = ["/v1/sessions", "/v1/sessions/{sid}/prefill", "/v1/sessions/{sid}/decode", "/v1/sessions/{sid}",
          "/v1/split", "/v1/models", "/healthz", "/readyz", "/v1/sessions/{sid}/{sid}", "/v1/../v1/split"]


@pytest.fixture(scope="module")
def small_app(ray_session):
    """One edge replica with tight caps: 3 sessions (idle ones expire after 3 s), a short queue."""
    from ray import serve

    url = start_app(edge_replicas=1, limits={"max_sessions": 3, "max_tokens_per_session": 256, "retry_after_s": 0.5,
                                                   "idle_ttl_s": 3.0},
                    edge_options={"max_ongoing_requests": 4, "max_queued_requests": 8})
    yield url
    serve.shutdown()


@pytest.fixture(scope="module")
def seeds(small_app, real_model):
    """A live session and a valid prefill frame to mutate."""
    sid = secrets.token_urlsafe(24)
    httpx.post(f"{small_app}/v1/sessions", json={"k": 15, "max_tokens": 64},
               headers={"authorization": f"Bearer {TOKENS[0]}", "x-session-id": sid}).raise_for_status()
    frame = ActivationPacket.from_tensor(DeviceHead(real_model, 15)(torch.tensor([[3, 4, 5]])), session_id=sid,
                                         split_k=15, position_start=0, encoding="float16").encode()
    return sid, frame


def _mutate(frame: bytes, data) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice", "random", "json"]))
    if kind == "flip":
        index = data.draw(st.integers(0, len(frame) - 1))
        return frame[:index] + bytes([frame[index] ^ data.draw(st.integers(1, 255))]) + frame[index + 1:]
    if kind == "truncate":
        return frame[: data.draw(st.integers(0, len(frame) - 1))]
    if kind == "extend":
        return frame + data.draw(st.binary(min_size=1, max_size=64))
    if kind == "splice":
        index = data.draw(st.integers(0, 200))
        return frame[:index] + data.draw(st.binary(max_size=32)) + frame[index:]
    if kind == "json":
        return data.draw(st.sampled_from([b'{"k": 5}', b'{"k": -1}', b'{"k": 1e308}', b"[]", b"null", b'{"k": "5"}',
                                          b'{"snr_db_history": [NaN]}', b'{"snr_db_history": [1e999]}']))
    return data.draw(st.binary(max_size=256))


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_fuzz_no_5xx(small_app, seeds, data):
    sid, frame = seeds
    sid = data.draw(st.sampled_from([sid, "x" * 20, "%2e%2e", sid[:-1]]))
    route = data.draw(st.sampled_from(ROUTES)).format(sid=sid)
    method = data.draw(st.sampled_from(["POST", "GET", "DELETE", "PUT"]))
    headers = {"authorization": data.draw(st.sampled_from([f"Bearer {TOKENS[0]}", f"Bearer {TOKENS[1]}", "Bearer",
                                                           "Basic abc", "", "Bearer " + "x" * 300]))}
    headers["content-type"] = data.draw(st.sampled_from(["application/octet-stream", "application/json",
                                                         "text/plain", "multipart/form-data"]))
    routed = data.draw(st.sampled_from([sid, seeds[0], "", "y" * 40, "%00"]))
    if routed:
        headers["x-session-id"] = routed
    reply = httpx.request(method, small_app + route, content=_mutate(frame, data), headers=headers, timeout=30)
    assert reply.status_code < 500, (method, route, reply.status_code, reply.text[:300])


def test_generation_after_fuzz_and_burst_backoff(small_app, real_model):
    ids = real_model.tokenizer("A short history of the bicycle:").input_ids
    expected = split_generate(DeviceHead(real_model, 15), EdgeTail(real_model, 15), torch.tensor([ids]),
                              max_new_tokens=6)[0].tolist()

    async def burst():
        clients = [AsyncSplitClient(real_model, HttpTransport(small_app, TOKENS[i % 2]), seed=i, backoff_s=0.05)
                   for i in range(10)]
        try:
            return await asyncio.gather(*(c.generate(ids, 6, k=15) for c in clients))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    results = asyncio.run(burst())
    assert all(r.tokens == expected for r in results)
    assert sum(r.retries for r in results) > 0, "ten clients against three sessions must have been told to back off"
    full = [httpx.post(f"{small_app}/v1/sessions", json={"k": 15, "max_tokens": 200},
                       headers={"authorization": f"Bearer {TOKENS[0]}", "x-session-id": secrets.token_urlsafe(24)})
            for _ in range(4)]
    rejected = [r for r in full if r.status_code == 429]
    assert rejected and all(r.headers["retry-after"] == "1" for r in rejected)
    assert rejected[0].json()["error"]["code"] == "capacity"


def test_flood_past_the_queue_gets_503_with_retry_after(small_app):
    """Max 4 ongoing + 8 queued calls on the edge: a flood of 48 gets some 503s with Retry-After (Serve's proxy sheds
    them; never a 5xx of another kind)."""

    async def flood():
        async with httpx.AsyncClient(base_url=small_app, timeout=60,
                                     headers={"authorization": f"Bearer {TOKENS[0]}"}) as client:
            return await asyncio.gather(*(client.get("/v1/models") for _ in range(48)))

    replies = asyncio.run(flood())
    codes = {r.status_code for r in replies}
    assert codes <= {200, 503}, codes
    shed = [r for r in replies if r.status_code == 503]
    assert shed, "48 concurrent calls against 4 ongoing + 8 queued must shed some"
    assert all(int(r.headers["retry-after"]) >= 1 for r in shed)  # Serve's BackpressureConfig on the edge
