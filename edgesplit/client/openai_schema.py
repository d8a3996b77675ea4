"""What the UE's OpenAI-compatible proxy accepts (pydantic v2 request models) and how it reports an error.

The request models follow the OpenAI API's ``/v1/completions`` and ``/v1/chat/completions`` bodies, strictly: no
string-to-number coercion, unknown fields refused, every number bounded. Fields the OpenAI API has but the proxy
cannot honour (``n > 1``, penalties, ``logit_bias``, ``echo``, ``best_of``, ``suffix``, tools) are refused with a
message saying so, never silently ignored; ``null`` means "not given" for every field. Bodies are parsed from JSON
only (:meth:`pydantic.BaseModel.model_validate_json`, see :func:`edgesplit.client.openai_errors.read_request`);
nothing is ever unpickled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_SEQUENCES = 4
"""Most stop strings one request may give (the OpenAI API's limit)."""
MAX_STOP_CHARS = 256
"""Longest stop string."""
MAX_LOGPROBS = 20
"""Most top log-probabilities per token (what the edge returns at most)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data):
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class StreamOptions(_Strict):
    """``stream_options`` of a streaming request."""

    include_usage: bool = False
    """Send a last chunk with ``usage`` (and no choices) before ``[DONE]``."""


class SamplingRequest(_Strict):
    """The fields ``/v1/completions`` and ``/v1/chat/completions`` share."""

    model: str = Field(min_length=1, max_length=256)
    """The served model's id (``GET /v1/models``); anything else is a 404."""
    max_tokens: int | None = Field(None, ge=1, le=131_072)
    """Most tokens to generate (bounded again by the proxy's ``max_tokens_limit`` and the context)."""
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """0 for greedy decoding (the OpenAI default is 1)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    n: int = 1
    """Choices per request: only 1."""
    stream: bool = False
    """Answer with server-sent events, one chunk per piece of text."""
    stream_options: StreamOptions | None = None
    """Streaming options (``include_usage``)."""
    stop: str | list[str] | None = None
    """Up to 4 strings; generation ends before the first one, which is cut from the text."""
    seed: int | None = Field(None, ge=0, lt=2**63)
    """Seed of the sampler (the edge's draws are seeded by ``(seed, position)``); default: a fresh one."""
    presence_penalty: float = 0.0
    """Refused unless 0."""
    frequency_penalty: float = 0.0
    """Refused unless 0."""
    logit_bias: dict[str, float] | None = None
    """Refused unless empty."""
    user: str | None = Field(None, max_length=256)
    """Accepted and ignored (an end-user tag)."""

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported by this proxy (one split generation per request), got {value}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
        if stops is not None and any(not 0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop sequence must have 1..{MAX_STOP_CHARS} characters")
        return stops or None

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0.0:
            raise ValueError("penalties are not supported by this proxy (leave them at 0)")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value: dict | None) -> dict | None:
        if value:
            raise ValueError("logit_bias is not supported by this proxy")
        return value

    @property
    def stops(self) -> list[str]:
        """The stop strings (a list, possibly empty)."""
        return list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingRequest):
    """Body of ``POST /v1/completions``."""

    prompt: str | list[int] | list[str] | list[list[int]]
    """Text, or token ids; a list of one prompt is that prompt (batches of several are refused)."""
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    """Return each token's log-probability and this many top alternatives."""
    echo: bool = False
    """Refused unless false."""
    best_of: int | None = None
    """Refused unless 1."""
    suffix: str | None = None
    """Refused (no insertion mode)."""

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list) and value and isinstance(value[0], str | list):
            if len(value) != 1:
                raise ValueError(f"one prompt per request (n=1, no batches), got {len(value)}")
            value = value[0]
        if not value:
            raise ValueError("the prompt is empty")
        return value

    @model_validator(mode="after")
    def _unsupported(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported by this proxy")
        if self.best_of not in (None, 1):
            raise ValueError("best_of is not supported by this proxy (only 1)")
        if self.suffix is not None:
            raise ValueError("suffix is not supported by this proxy")
        return self


class TextPart(_Strict):
    """A text part of a message's content (the only kind the proxy accepts)."""

    type: Literal["text"]
    """Always ``text``."""
    text: str
    """The text."""


class ChatMessage(_Strict):
    """One message of a chat."""

    role: Literal["system", "developer", "user", "assistant"]
    """Who speaks (``developer`` is given to the template as ``system``)."""
    content: str | list[TextPart]
    """Text, or a list of text parts (joined)."""
    name: str | None = Field(None, max_length=64)
    """Accepted and ignored."""

    def for_template(self) -> dict:
        """``{"role", "content"}`` as a chat template expects."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ResponseFormat(_Strict):
    """``response_format``: only plain text."""

    type: Literal["text"]
    """Always ``text`` (JSON modes are not supported)."""


class ChatCompletionRequest(SamplingRequest):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    """The conversation so far; the model's chat template turns it into the prompt."""
    logprobs: bool = False
    """Return each token's log-probability."""
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    """Top alternatives per token (needs ``logprobs``)."""
    max_completion_tokens: int | None = Field(None, ge=1, le=131_072)
    """The newer name of ``max_tokens`` (wins when both are given)."""
    response_format: ResponseFormat | None = None
    """Only ``{"type": "text"}``."""

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        return self

    @property
    def token_budget(self) -> int | None:
        """``max_completion_tokens``, else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
