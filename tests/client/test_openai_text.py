"""The proxy's pieces without a server: stop strings split across tokens, multi-byte characters held back until
whole, streamed text equal to the whole text, logprob shapes, and the request models' refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgesplit.client.openai_proxy import ProxyConfig
from edgesplit.client.openai_schema import ChatCompletionRequest, CompletionRequest
from edgesplit.client.openai_text import LogprobFormatter, TextAssembler
from edgesplit.client.split_client import TokenEvent


class ByteTokenizer:
    """Each id is a byte string (as byte-level BPE pieces are); decoding joins them, bad UTF-8 becomes U+FFFD."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) -> str:
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


PIECES = [b"Hello", b" wor", b"ld", b"\n", b"EN", b"D", b"\xc3", b"\xa9", b"!"]


def _run(tokens: list[int], stops: list[str]) -> tuple[list[str], str, bool]:
    text = TextAssembler(ByteTokenizer(PIECES), stops)
    released = []
    for token in tokens:
        released.append(text.push(token))
        if text.stopped:
            break
    released.append(text.flush())
    return released, "".join(released), text.stopped


def test_stop_string_across_tokens_is_cut():
    released, whole, stopped = _run([0, 1, 2, 3, 4, 5, 8], ["\nEND"])
    assert whole == "Hello world" and stopped
    assert released[:3] == ["Hello", " wor", "ld"]  # "\n" is held: it could begin the stop string
    assert _run([0, 3, 8], ["\nEND"])[1:] == ("Hello\n!", False)  # not the stop after all: released whole


def test_multibyte_character_waits_until_complete():
    released, whole, _ = _run([0, 6, 7, 8], [])
    assert released[1] == "" and released[2] == "\u00e9" and whole == "Hello\u00e9!"


def test_earliest_of_several_stops_wins():
    assert _run([0, 1, 2, 8], ["!", "wor"])[1] == "Hello "


def test_logprob_shapes():
    tok = ByteTokenizer(PIECES)
    events = [TokenEvent(0, 0, 15, 0.0, 0.0, 0, -0.5, [[0, -0.5], [1, -1.5]]),
              TokenEvent(1, 1, 15, 0.0, 0.0, 0, -0.1, [[1, -0.1], [2, -3.0]])]
    completion = LogprobFormatter(tok, 1, chat=False).format(events)
    assert completion == {"tokens": ["Hello", " wor"], "token_logprobs": [-0.5, -0.1],
                          "top_logprobs": [{"Hello": -0.5}, {" wor": -0.1}], "text_offset": [0, 5]}
    chat = LogprobFormatter(tok, 2, chat=True).format(events[:1])["content"][0]
    assert chat["token"] == "Hello" and chat["bytes"] == list(b"Hello") and len(chat["top_logprobs"]) == 2


@pytest.mark.parametrize("body", [
    {"prompt": "x", "n": 2}, {"prompt": "x", "temperature": "0.5"}, {"prompt": ["a", "b"]}, {"prompt": []},
    {"prompt": "x", "echo": True}, {"prompt": "x", "logit_bias": {"1": 2.0}}, {"prompt": "x", "tools": []},
    {"prompt": "x", "stop": [""]}, {"prompt": "x", "seed": -1}, {"prompt": "x", "logprobs": 21},
])
def test_completion_request_refusals(body):
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", **body})


def test_requests_accept_what_openai_clients_send():
    req = CompletionRequest.model_validate_json('{"model": "m", "prompt": [[1, 2, 3]], "stop": "\\n", "n": null}')
    assert req.prompt == [1, 2, 3] and req.stops == ["\n"] and req.n == 1 and req.temperature == 1.0
    chat = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]}],
         "max_tokens": 5, "max_completion_tokens": 9, "stream_options": {"include_usage": True}})
    assert chat.messages[0].for_template() == {"role": "system", "content": "be brief"}
    assert chat.token_budget == 9 and chat.include_usage
    with pytest.raises(ValidationError, match="top_logprobs needs logprobs"):
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                              "top_logprobs": 2})


@pytest.mark.parametrize("bad", [{"edge_url": "edge:8000"}, {"split": -1}, {"snr_db": 90.0}, {"edge_retries": -1},
                                 {"max_tokens_limit": 0}, {"max_body_bytes": 10}])
def test_proxy_config_validation(bad):
    with pytest.raises(ValueError):
        ProxyConfig(**bad)
