"""The UE's OpenAI-compatible proxy for real: the official ``openai`` client → the proxy on uvicorn (loopback) → a
Serve edge on loopback. Greedy answers equal the unsplit model's (fixed k and the controller's k, streaming or not,
chat and completions), stop strings are cut, usage is counted, and errors arrive in OpenAI's shape: 400 for bad
parameters and n=2, 404 for an unknown model, the edge's 429 / 503 passed on with Retry-After, 502 when the edge
cannot be reached."""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
import torch
from typer.testing import CliRunner

from edgesplit.client.openai_proxy import ProxyConfig, build_proxy_app
from edgesplit.client.proxy_server import ProxyServer
from serve_deployments.loopback import pick_port
from tests.serve_deployments.conftest import TOKENS, start_app

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROMPT = "The tallest mountain in the world is"
CHAT = [{"role": "user", "content": "Name a large city in France."}]
NEW = 8
FIXED_K = 15
MAX_SESSIONS = 2


@pytest.fixture(scope="module")
def edge(ray_session):
    """One Serve app (one edge replica, at most two sessions) for the whole module."""
    from ray import serve

    url = start_app(edge_replicas=1, limits={"max_sessions": MAX_SESSIONS, "max_tokens_per_session": 512})
    yield url
    serve.shutdown()


def _proxy(model, **config):
    return ProxyServer(build_proxy_app(model, ProxyConfig(edge_retries=0, **config)), port=pick_port())


@pytest.fixture(scope="module")
def proxies(edge, real_model):
    """Base URLs of two proxies on the real edge: a fixed split and the controller's choice."""
    with _proxy(real_model, edge_url=edge, api_token=TOKENS[0], split=FIXED_K) as fixed, \
            _proxy(real_model, edge_url=edge, api_token=TOKENS[1], snr_db=25.0) as chosen:
        yield {"fixed": fixed, "controller": chosen}


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def _greedy(real_model, ids: list[int], new: int = NEW) -> str:
    out = real_model.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=new, do_sample=False)
    return real_model.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True, clean_up_tokenization_spaces=False)


@pytest.fixture(scope="module")
def expected(real_model):
    """The unsplit model's greedy answers to the completion prompt and the chat."""
    tok = real_model.tokenizer
    chat_text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(chat_text, add_special_tokens=False).input_ids
    return {"completion": _greedy(real_model, tok(PROMPT).input_ids), "chat": _greedy(real_model, chat_ids),
            "prompt_tokens": len(tok(PROMPT).input_ids), "chat_tokens": len(chat_ids)}


@pytest.mark.parametrize("which", ["fixed", "controller"])
def test_completion_greedy_equals_unsplit(proxies, edge, expected, which):
    raw = _client(proxies[which]).completions.with_raw_response.create(
        model="smollm2-135m", prompt=PROMPT, max_tokens=NEW, temperature=0)
    answer = raw.parse()
    assert answer.choices[0].text == expected["completion"] and answer.choices[0].finish_reason == "length"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (expected["prompt_tokens"], NEW)
    assert answer.usage.total_tokens == expected["prompt_tokens"] + NEW
    if which == "fixed":
        assert raw.headers["x-edgesplit-k"] == str(FIXED_K)
    else:  # the controller's rule at 25 dB, asked the same way the proxy asks
        decision = httpx.post(f"{edge}/v1/split", json={"snr_db_history": [25.0]},
                              headers={"authorization": f"Bearer {TOKENS[1]}"}).json()
        assert raw.headers["x-edgesplit-k"] == str(decision["k"]) and 0 < decision["k"] < 30


def test_streamed_completion_and_chat_equal_unsplit(proxies, expected):
    client = _client(proxies["controller"])
    chunks = list(client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=NEW, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected["completion"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == NEW
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length" and len(chunks) > 3
    with httpx.stream("POST", f"{proxies['fixed']}/v1/completions", timeout=60,
                      json={"model": "smollm2-135m", "prompt": PROMPT, "max_tokens": 3, "stream": True}) as raw:
        events = raw.read().decode().split("\n\n")
    assert raw.headers["content-type"].startswith("text/event-stream") and events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])
    reply = _client(proxies["fixed"]).chat.completions.create(model="smollm2-135m", messages=CHAT, max_tokens=NEW,
                                                              temperature=0)
    assert reply.choices[0].message.content == expected["chat"] and reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens == expected["chat_tokens"] and reply.object == "chat.completion"
    stream = client.chat.completions.create(model="smollm2-135m", messages=CHAT, max_tokens=NEW, temperature=0,
                                            stream=True)
    deltas = [c.choices[0].delta for c in stream]
    assert deltas[0].role == "assistant" and "".join(d.content or "" for d in deltas) == expected["chat"]


def test_stop_strings_are_cut(proxies, expected):
    text = expected["completion"]
    word = text.split()[2]  # a word in the middle of the greedy answer
    cut = text[: text.index(word)]
    client = _client(proxies["fixed"])
    answer = client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=NEW, temperature=0,
                                       stop=["\u00a7never", word])
    assert answer.choices[0].text == cut and answer.choices[0].finish_reason == "stop"
    assert 0 < answer.usage.completion_tokens < NEW
    stream = client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=NEW, temperature=0,
                                       stop=word, stream=True)
    pieces = [(c.choices[0].text, c.choices[0].finish_reason) for c in stream]
    assert "".join(p for p, _ in pieces) == cut and pieces[-1][1] == "stop"


def test_logprobs_and_seeded_sampling(proxies, real_model):
    client = _client(proxies["fixed"])
    answer = client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2)
    lp = answer.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == 4 and all(v <= 0 for v in lp.token_logprobs)
    assert all(len(top) <= 2 and max(top.values()) == pytest.approx(v, abs=1e-4)  # greedy: the chosen is the best
               for top, v in zip(lp.top_logprobs, lp.token_logprobs, strict=True))
    assert "".join(lp.tokens) == answer.choices[0].text and lp.text_offset[0] == 0
    chat = client.chat.completions.create(model="smollm2-135m", messages=CHAT, max_tokens=3, temperature=0,
                                          logprobs=True, top_logprobs=1)
    content = chat.choices[0].logprobs.content
    assert len(content) == 3 and all(len(c.top_logprobs) == 1 and c.logprob <= 0 for c in content)
    sampled = [client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=6, temperature=1.0,
                                         top_p=0.9, seed=7).choices[0].text for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_bad_requests_get_openai_errors(proxies):
    client = _client(proxies["fixed"])
    cases = [({"temperature": 5}, "temperature"), ({"n": 2}, "n"), ({"max_tokens": 100_000}, "max_tokens"),
             ({"top_p": 0}, "top_p"), ({"stop": ["a"] * 5}, "stop"), ({"frequency_penalty": 1.0}, "frequency_penalty")]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model="smollm2-135m", prompt=PROMPT, **extra)
        assert err.value.status_code == 400 and err.value.param == param, (extra, err.value.body)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=2048)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        client.chat.completions.create(model="smollm2-135m", messages=CHAT, n=2)
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="gpt-4o", prompt=PROMPT)
    assert err.value.code == "model_not_found" and err.value.param == "model"
    assert [m.id for m in client.models.list().data] == ["smollm2-135m"]
    raw = httpx.post(f"{proxies['fixed']}/v1/completions", content=b'{"model": "smollm2-135m", "prompt": 3',
                     headers={"content-type": "application/json"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    big = httpx.post(f"{proxies['fixed']}/v1/completions", json={"model": "smollm2-135m", "prompt": "x" * (5 << 20)})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_edge_capacity_429_passes_through_with_retry_after(proxies, edge):
    auth = {"authorization": f"Bearer {TOKENS[0]}"}
    held = [secrets.token_urlsafe(24) for _ in range(MAX_SESSIONS)]
    for sid in held:  # fill the edge's session table
        httpx.post(f"{edge}/v1/sessions", json={"k": 15, "max_tokens": 64},
                   headers={**auth, "x-session-id": sid}).raise_for_status()
    try:
        with pytest.raises(openai.RateLimitError) as err:
            _client(proxies["fixed"]).completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=2,
                                                         temperature=0)
    finally:
        for sid in held:
            httpx.delete(f"{edge}/v1/sessions/{sid}", headers={**auth, "x-session-id": sid})
    assert err.value.status_code == 429 and err.value.response.headers["retry-after"] == "1"
    assert err.value.code == "capacity"


class _OverloadedEdge(BaseHTTPRequestHandler):
    """A real HTTP edge that knows the model but sheds every generation call with 503 + Retry-After: 7."""

    info: dict = {}

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"content-type": "application/json", "content-length": str(len(data)),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._send(200, self.info)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._send(503, {"error": {"code": "overloaded", "message": "queue full", "retry_after_s": 7}},
                   {"retry-after": "7"})

    def log_message(self, *args):
        pass


def test_overloaded_and_unreachable_edges(edge, real_model):
    _OverloadedEdge.info = httpx.get(f"{edge}/v1/models", headers={"authorization": f"Bearer {TOKENS[0]}"}).json()
    stub = ThreadingHTTPServer(("127.0.0.1", pick_port()), _OverloadedEdge)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    bare = dataclasses.replace(real_model, tokenizer=copy.deepcopy(real_model.tokenizer))
    bare.tokenizer.chat_template = None
    try:
        with _proxy(bare, edge_url=f"http://127.0.0.1:{stub.server_port}", proxy_api_key="sesame") as url:
            with pytest.raises(openai.InternalServerError) as err:
                _client(url, "sesame").completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=2)
            assert err.value.status_code == 503 and err.value.response.headers["retry-after"] == "7"
            with pytest.raises(openai.BadRequestError) as err:
                _client(url, "sesame").chat.completions.create(model="smollm2-135m", messages=CHAT)
            assert err.value.code == "no_chat_template"
            with pytest.raises(openai.AuthenticationError):
                _client(url, "wrong").models.list()
    finally:
        stub.shutdown()
        stub.server_close()
    with _proxy(real_model, edge_url=f"http://127.0.0.1:{pick_port()}") as url:
        with pytest.raises(openai.APIStatusError) as err:
            _client(url).completions.create(model="smollm2-135m", prompt=PROMPT, max_tokens=2)
        assert err.value.status_code == 502 and "cannot be reached" in err.value.message


@pytest.mark.parametrize("argv", [["--edge", "ftp://edge"], ["--snr-db", "120"], ["--port", "0"],
                                  ["--device", "toaster"]])
def test_cli_bad_input_exits_2(argv):
    from edgesplit.cli import app

    result = CliRunner().invoke(app, ["ue-proxy", *argv])
    assert result.exit_code == 2, result.output
