"""The Serve app for real, on loopback: HTTP and handle generation equal the unsplit model, auth and ownership,
malformed input gets 4xx, a killed replica mid-generation costs nothing but a re-prefill."""

from __future__ import annotations

import secrets

import httpx
import pytest
import torch

from edgesplit.client import EdgeCallError, HttpTransport, SplitClient
from edgesplit.packet import ActivationPacket
from edgesplit.split import DeviceHead, EdgeTail, split_generate
from tests.serve_deployments.conftest import TOKENS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROMPT = "The tallest mountain in the world is"


def _reference(real_model, ids, new, k=15):
    out = split_generate(DeviceHead(real_model, k), EdgeTail(real_model, k), torch.tensor([ids]), max_new_tokens=new)
    return out[0].tolist()


def _auth(token=TOKENS[0]):
    return {"authorization": f"Bearer {token}"}


def test_health_docs_and_auth(serve_url):
    assert httpx.get(f"{serve_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{serve_url}/readyz", timeout=30).status_code == 200
    denied = httpx.get(f"{serve_url}/v1/models")
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{serve_url}/v1/models", headers=_auth("wrong")).status_code == 401
    info = httpx.get(f"{serve_url}/v1/models", headers=_auth()).json()
    assert info["num_layers"] == 30 and info["hidden_size"] == 576
    paths = httpx.get(f"{serve_url}/openapi.json").json()["paths"]
    assert {"/v1/sessions", "/v1/sessions/{session_id}/prefill", "/v1/split"} <= set(paths)


@pytest.mark.parametrize("k", [15, 0])
def test_http_generation_equals_unsplit(serve_url, real_model, k):
    ids = real_model.tokenizer(PROMPT).input_ids
    with SplitClient(real_model, HttpTransport(serve_url, TOKENS[0])) as client:
        result = client.generate(ids, 12, k=k)
    assert result.tokens == _reference(real_model, ids, 12)
    assert result.resumes == 0 and all(e.k == k for e in result.events)
    unsplit = real_model.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    assert result.tokens == unsplit[0, len(ids):].tolist()


def test_controller_chooses_k_and_streams(serve_url, real_model):
    ids = real_model.tokenizer(PROMPT).input_ids
    with SplitClient(real_model, HttpTransport(serve_url, TOKENS[1])) as client:
        client.ue_state.update({"snr_db_history": [25.0, 24.0]})
        events = list(client.stream(ids, 6))
        decision = client.decide()
    assert 0 <= decision["k"] <= 30 and decision["policy_version"]
    assert [e.token for e in events] == _reference(real_model, ids, 6, k=events[0].k)


def test_handle_generation_equals_unsplit(serve_url, real_model):
    from serve_deployments.handle_transport import HandleTransport

    ids = real_model.tokenizer(PROMPT).input_ids
    with SplitClient(real_model, HandleTransport("edgesplit", TOKENS[0])) as client:
        result = client.generate(ids, 8, k=15)
    assert result.tokens == _reference(real_model, ids, 8)


def _open(url, token, k=15, **spec):
    sid = secrets.token_urlsafe(24)
    reply = httpx.post(f"{url}/v1/sessions", json={"k": k, "max_tokens": 64, **spec},
                       headers={**_auth(token), "x-session-id": sid})
    assert reply.status_code == 201, reply.text
    assert reply.json()["session_id"] == sid
    return sid


def test_sessions_belong_to_their_token(serve_url, real_model):
    sid = _open(serve_url, TOKENS[0])
    frame = ActivationPacket.from_tensor(DeviceHead(real_model, 15)(torch.tensor([[1, 2, 3]])), session_id=sid,
                                         split_k=15, position_start=0, encoding="float32").encode()
    headers = {"content-type": "application/octet-stream", "x-session-id": sid}
    stolen = httpx.post(f"{serve_url}/v1/sessions/{sid}/prefill", content=frame,
                        headers={**headers, **_auth(TOKENS[1])})
    assert stolen.status_code == 403 and stolen.json()["error"]["code"] == "forbidden"
    routed = {"x-session-id": sid}
    assert httpx.delete(f"{serve_url}/v1/sessions/{sid}", headers={**routed, **_auth(TOKENS[1])}).status_code == 403
    mine = httpx.post(f"{serve_url}/v1/sessions/{sid}/prefill", content=frame, headers={**headers, **_auth()})
    assert mine.status_code == 200 and mine.json()["position"] == 3
    assert httpx.delete(f"{serve_url}/v1/sessions/{sid}", headers={**routed, **_auth()}).json()["closed"] is True
    assert httpx.delete(f"{serve_url}/v1/sessions/{sid}", headers={**routed, **_auth()}).status_code == 404


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("POST", "/v1/sessions", {"json": {"k": 31}, "headers": {"x-session-id": "B" * 32}}, 400, "bad_request"),
    ("POST", "/v1/sessions", {"json": {"k": 5, "encoding": "pickle"}}, 400, "bad_request"),
    ("POST", "/v1/sessions", {"json": {"k": 5, "extra": 1}}, 400, "bad_request"),
    ("POST", "/v1/sessions", {"content": b"\x80\x04K\x01.", "headers": {"content-type": "application/json"}}, 400,
     "bad_request"),
    ("POST", "/v1/sessions", {"json": {"k": 5, "max_tokens": 10**7}, "headers": {"x-session-id": "C" * 32}}, 413,
     "token_limit"),
    ("POST", "/v1/sessions/not-a-session/decode", {"content": b"x"}, 404, "unknown_session"),
    ("POST", "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/prefill",
     {"content": b"x", "headers": {"x-session-id": "A" * 32}}, 404, "unknown_session"),
    ("POST", "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/prefill", {"content": b"x"}, 400, "bad_request"),
    ("POST", "/v1/sessions", {"json": {"k": 5}, "headers": {"x-session-id": "short"}}, 400, "bad_request"),
    ("POST", "/v1/split", {"json": {"snr_db_history": []}}, 400, "bad_request"),
    ("POST", "/v1/split", {"json": {"snr_db_history": [10.0], "device": "../../etc/passwd"}}, 400, "bad_request"),
    ("GET", "/v1/nothing", {}, 404, "not_found"),
])
def test_malformed_requests_get_4xx(serve_url, method, path, kwargs, status, code):
    kwargs.setdefault("headers", {}).update(_auth())
    reply = httpx.request(method, f"{serve_url}{path}", **kwargs)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code


def test_bad_frames_get_4xx(serve_url, real_model):
    sid = _open(serve_url, TOKENS[0])
    good = ActivationPacket.from_tensor(DeviceHead(real_model, 15)(torch.tensor([[4, 5]])), session_id=sid,
                                        split_k=15, position_start=0, encoding="float32").encode()
    frames = [b"", b"ESPK", good[:-1], good + b"\0", good[:20] + bytes([good[20] ^ 1]) + good[21:],
              ActivationPacket.from_tensor(torch.randn(1, 2, 576), session_id=sid, split_k=14, position_start=0,
                                           encoding="float32").encode(),
              ActivationPacket.from_tensor(torch.full((1, 2, 576), 1e30), session_id=sid, split_k=15,
                                           position_start=0, encoding="float32").encode()]
    headers = {**_auth(), "x-session-id": sid}
    for frame in frames:
        reply = httpx.post(f"{serve_url}/v1/sessions/{sid}/prefill", content=frame, headers=headers)
        assert 400 <= reply.status_code < 500, (frame[:40], reply.text)
    assert httpx.post(f"{serve_url}/v1/sessions/{sid}/prefill", content=good, headers=headers).status_code == 200


def _replica_actor(replica_id):
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if replica_id in actor["name"]:
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise LookupError(replica_id)


def test_killed_replica_mid_generation_resumes_exactly(serve_url, real_model):
    import ray

    ids = real_model.tokenizer("In 1969 the first people to walk on the Moon were").input_ids
    expected = _reference(real_model, ids, 16)
    with SplitClient(real_model, HttpTransport(serve_url, TOKENS[0]), backoff_s=0.2) as client:
        stream = client.stream(ids, 16, k=15)
        first = [next(stream) for _ in range(5)]
        ray.kill(_replica_actor(first[-1].replica), no_restart=False)
        rest = list(stream)
    tokens = [e.token for e in first + rest]
    assert tokens == expected
    assert {e.replica for e in rest[1:]} - {first[-1].replica}, "the generation moved to another replica"


def test_client_error_is_typed(serve_url, real_model):
    with SplitClient(real_model, HttpTransport(serve_url, "wrong-token")) as client, \
            pytest.raises(EdgeCallError) as err:
        client.generate([1, 2, 3], 2, k=15)
    assert err.value.code == "unauthorized" and err.value.status == 401
