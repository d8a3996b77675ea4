"""An OpenAI-compatible server on the UE whose every request is a split generation with the edge.

``build_proxy_app(model, ProxyConfig(edge_url=...))`` returns a FastAPI app (run it with uvicorn, or
``edgesplit ue-proxy``) serving ``GET /v1/models``, ``POST /v1/completions`` and ``POST /v1/chat/completions``,
streaming (server-sent events: ``data: {chunk}`` lines, then ``data: [DONE]``) or not. Each request runs through
one :class:`~edgesplit.client.AsyncSplitClient`: the UE's head runs here, the controller picks the split ``k``
(unless ``ProxyConfig.split`` fixes it) and the edge runs the tail and samples. Chat prompts are built with the
tokenizer's chat template. Stop strings are cut from the text (:mod:`edgesplit.client.openai_text`); EOS and stop
strings end with ``finish_reason="stop"``, the token budget with ``"length"``. The split used is in the
``x-edgesplit-k`` response header.

Errors are OpenAI error bodies (:mod:`edgesplit.client.openai_errors`): bad parameters 400, an unknown model 404, a
body over ``max_body_bytes`` 413, an edge that is overloaded 429 / 503 with its ``Retry-After`` passed on, an edge
that cannot be reached 502. A failure after a stream has begun arrives as a last ``data: {"error": ...}`` event.
Prompt + ``max_tokens`` is bounded by the model's context, the edge's per-session token limit and the proxy's own
``max_tokens_limit``. Torch work (the head, the tokenizer) runs on the server's event loop: one UE, one user.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgesplit.client.openai_errors import ProxyError, edge_error, error_response, http_error, read_request
from edgesplit.client.openai_schema import ChatCompletionRequest, CompletionRequest, SamplingRequest
from edgesplit.client.openai_text import LogprobFormatter, TextAssembler
from edgesplit.client.split_client import AsyncSplitClient, GenerationResult, TokenEvent
from edgesplit.client.transport import EdgeCallError, HttpTransport
from edgesplit.models import LoadedModel

COMPLETION_DEFAULT_TOKENS = 16
"""``max_tokens`` of a completion that gives none (the OpenAI API's default)."""


@dataclass
class ProxyConfig:
    """How the proxy reaches the edge and what it accepts."""

    edge_url: str = "http://127.0.0.1:8000"
    """Base URL of the edge (``edgesplit serve``)."""
    model_id: str | None = None
    """The id clients name in ``model``; default: the loaded model's name."""
    split: int | None = None
    """Fixed split ``k`` for every request; ``None``: ask the controller per request."""
    snr_db: float = 20.0
    """Uplink SNR the UE reports to the controller."""
    device: str | None = None
    """Device preset reported to the controller (``None``: the controller's default)."""
    api_token: str | None = None
    """Bearer token for the edge; ``None``: ``$EDGESPLIT_API_TOKEN`` if set."""
    proxy_api_key: str | None = None
    """Key clients must send (``Authorization: Bearer``) to this proxy; ``None``: no auth (loopback use)."""
    edge_retries: int = 1
    """Retries of an edge call answered 429 / 503 (or unreachable) before the error goes to the client."""
    max_backoff_s: float = 2.0
    """Longest pause between those retries."""
    edge_timeout_s: float = 60.0
    """Timeout of one edge call."""
    max_tokens_limit: int = 2048
    """Most tokens one request may generate."""
    chat_default_tokens: int = 512
    """``max_tokens`` of a chat request that gives none (bounded by the context)."""
    max_context_tokens: int | None = None
    """Cap on prompt + generated tokens (the model's and the edge's limits apply anyway)."""
    max_body_bytes: int = 4 << 20
    """Largest request body accepted."""
    encoding: str = "float32"
    """Packet encoding of the hidden states when the controller names none (a fixed split)."""

    def __post_init__(self) -> None:
        if not self.edge_url.startswith(("http://", "https://")):
            raise ValueError(f"the edge URL must start with http:// or https://, got {self.edge_url!r}")
        if self.split is not None and self.split < 0:
            raise ValueError(f"split must be >= 0 (or None for the controller), got {self.split}")
        if not -50.0 <= self.snr_db <= 80.0:
            raise ValueError(f"snr_db must be in [-50, 80] dB (what the controller accepts), got {self.snr_db}")
        if not 0 <= self.edge_retries <= 100:
            raise ValueError(f"edge_retries must be in 0..100, got {self.edge_retries}")
        for name in ("max_tokens_limit", "chat_default_tokens", "max_context_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_body_bytes < 1024 or self.edge_timeout_s <= 0 or self.max_backoff_s < 0:
            raise ValueError("max_body_bytes must be >= 1024, edge_timeout_s > 0 and max_backoff_s >= 0")


@dataclass
class _Plan:
    """One validated request, ready to generate."""

    ids: list[int]
    max_new: int
    request: SamplingRequest
    seed: int
    top: int | None
    """Top alternatives per token; ``None``: no logprobs."""
    chat: bool
    formatter: LogprobFormatter
    result: GenerationResult = field(default_factory=lambda: GenerationResult([], -1, None))
    ident: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class _Piece:
    text: str
    events: list[TokenEvent]
    finish_reason: str | None = None


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class OpenAIProxy:
    """The proxy's state and request handling; the routes of :func:`build_proxy_app` call it."""

    def __init__(self, model: LoadedModel, config: ProxyConfig) -> None:
        if model.tokenizer is None:
            raise ValueError(f"{model.name} has no tokenizer; the proxy needs text in and out")
        if config.split is not None and config.split > model.num_layers:
            raise ValueError(f"split must be in 0..{model.num_layers} for {model.name}, got {config.split}")
        self.model, self.config, self.tokenizer = model, config, model.tokenizer
        self.model_id = config.model_id or model.name
        self.created = int(time.time())
        self.client: AsyncSplitClient | None = None
        self._edge: dict | None = None
        eos = model.model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, list | tuple) else [eos]
        self.stop_ids = tuple({int(t) for t in [*eos, self.tokenizer.eos_token_id] if t is not None})

    # ---- life cycle (the httpx client binds to the server's event loop) -------------------------------------------
    async def start(self) -> None:
        """Open the edge client."""
        transport = HttpTransport(self.config.edge_url, self.config.api_token, self.config.edge_timeout_s)
        self.client = AsyncSplitClient(self.model, transport, encoding=self.config.encoding,
                                       max_retries=self.config.edge_retries, max_backoff_s=self.config.max_backoff_s)
        device = {"device": self.config.device} if self.config.device else {}
        self.client.ue_state = {"snr_db_history": [float(self.config.snr_db)], **device}

    async def stop(self) -> None:
        """Close the edge client."""
        if self.client is not None:
            await self.client.aclose()

    # ---- checks ---------------------------------------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        """Refuse a request without the proxy's API key (when one is configured)."""
        key = self.config.proxy_api_key
        if not key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), key.encode()):
            raise ProxyError(401, "missing or wrong API key (Authorization: Bearer <key>)", code="invalid_api_key")

    def model_card(self) -> dict:
        """The served model as ``GET /v1/models`` lists it."""
        return {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "edgesplit"}

    def check_model(self, name: str) -> None:
        """404 unless ``name`` is the served model."""
        if name != self.model_id:
            raise ProxyError(404, f"The model `{name}` does not exist; this proxy serves `{self.model_id}`",
                             param="model", code="model_not_found")

    async def _context(self) -> int:
        """Most tokens (prompt + generated) one request may hold: model, edge and configured limits."""
        if self._edge is None:
            try:
                info = await self.client.transport.models()
            except EdgeCallError as err:
                raise edge_error(err, self.config.edge_url) from None
            local = {"num_layers": self.model.num_layers, "hidden_size": self.model.hidden_size,
                     "vocab_size": self.model.adapter.vocab_size}
            if any(info.get(key) != value for key, value in local.items()):
                raise ProxyError(502, f"the edge serves {info.get('model')!r} "
                                      f"({ {key: info.get(key) for key in local} }), this proxy holds "
                                      f"{self.model.name!r} ({local})", type="server_error", code="edge_mismatch")
            self._edge = info
        config = self.model.model.config
        limits = [self._edge.get("max_tokens_per_session"), getattr(config, "max_position_embeddings", None),
                  self.config.max_context_tokens]
        return min(int(x) for x in limits if x)

    # ---- prompts --------------------------------------------------------------------------------------------------
    def completion_ids(self, prompt: str | list[int]) -> list[int]:
        """Token ids of a completion prompt (text is tokenised as the model's tokenizer does by default)."""
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt).input_ids)
        vocab = self.model.adapter.vocab_size
        if any(not 0 <= t < vocab for t in prompt):
            raise ProxyError(400, f"prompt token ids must be in 0..{vocab - 1}", param="prompt", code="invalid_value")
        return list(prompt)

    def chat_ids(self, request: ChatCompletionRequest) -> list[int]:
        """Token ids of the chat, rendered by the tokenizer's chat template (with the assistant's turn opened)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ProxyError(400, f"model `{self.model_id}` has no chat template; use /v1/completions with a plain "
                                  f"prompt", param="messages", code="no_chat_template")
        messages = [m.for_template() for m in request.messages]
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as err:  # jinja's TemplateError and the template's own raise_exception
            raise ProxyError(400, f"the chat template refused the messages: {err}", param="messages") from None
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    async def plan(self, request: SamplingRequest, ids: list[int], budget: int | None, top: int | None,
                   chat: bool) -> _Plan:
        """Check the lengths and fix the sampling seed."""
        param = "messages" if chat else "prompt"
        if not ids:
            raise ProxyError(400, "the prompt has no tokens", param=param, code="invalid_value")
        if budget is not None and budget > self.config.max_tokens_limit:
            raise ProxyError(400, f"max_tokens must be at most {self.config.max_tokens_limit} on this proxy, got "
                                  f"{budget}", param="max_tokens", code="invalid_value")
        context = await self._context()
        default = self.config.chat_default_tokens if chat else COMPLETION_DEFAULT_TOKENS
        wanted = budget if budget is not None else min(default, self.config.max_tokens_limit,
                                                       max(1, context - len(ids)))
        if len(ids) + wanted > context:
            raise ProxyError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                                  f"{len(ids) + wanted} tokens ({len(ids)} in the {param}, {wanted} in the "
                                  f"completion).", param=param, code="context_length_exceeded")
        seed = request.seed if request.seed is not None else (
            secrets.randbelow(2**62) if request.temperature > 0 else 0)
        return _Plan(ids, wanted, request, seed, top, chat, LogprobFormatter(self.tokenizer, top or 0, chat))

    # ---- generation -----------------------------------------------------------------------------------------------
    async def _pieces(self, plan: _Plan) -> AsyncIterator[_Piece]:
        """One piece per generated token (its released text, maybe empty), then the finishing piece."""
        text = TextAssembler(self.tokenizer, plan.request.stops)
        request = plan.request
        stream = self.client.stream(plan.ids, plan.max_new, k=self.config.split, temperature=request.temperature,
                                    top_p=request.top_p, seed=plan.seed, logprobs=max(1, plan.top or 0)
                                    if plan.top is not None else 0, stop_ids=self.stop_ids, result=plan.result)
        try:
            async for event in stream:
                piece = _Piece(text.push(event.token), [event])
                if text.stopped:
                    piece.finish_reason = "stop"
                    yield piece
                    return
                yield piece
        finally:
            await stream.aclose()  # closes the edge session now, also when the client went away
        yield _Piece(text.flush(), [], plan.result.finish_reason)

    async def respond(self, plan: _Plan) -> Response:
        """Generate; a JSON answer or an event stream. Errors before the first token get their HTTP status."""
        pieces = self._pieces(plan)
        try:
            first = await anext(pieces)
        except EdgeCallError as err:
            raise edge_error(err, self.config.edge_url) from None
        except ValueError as err:
            raise ProxyError(400, str(err)) from None
        headers = {"x-edgesplit-k": str(plan.result.k)}
        if plan.request.stream:
            return StreamingResponse(self._events(plan, first, pieces), media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        return JSONResponse(await self._whole(plan, first, pieces), headers=headers)

    async def _whole(self, plan: _Plan, first: _Piece, pieces: AsyncIterator[_Piece]) -> dict:
        text, events, finish = first.text, list(first.events), first.finish_reason
        try:
            async for piece in pieces:
                text, finish = text + piece.text, piece.finish_reason or finish
                events += piece.events
        except EdgeCallError as err:
            raise edge_error(err, self.config.edge_url) from None
        if plan.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice.update(logprobs=self._logprobs(plan, events), finish_reason=finish)
        return {**self._envelope(plan, stream=False), "choices": [choice], "usage": self._usage(plan)}

    async def _events(self, plan: _Plan, first: _Piece, pieces: AsyncIterator[_Piece]) -> AsyncIterator[str]:
        usage = {"usage": None} if plan.request.include_usage else {}
        envelope = {**self._envelope(plan, stream=True), **usage}
        if plan.chat:
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            yield _sse({**envelope, "choices": [role]})
        pending: list[TokenEvent] = []
        try:
            async for piece in _chain(first, pieces):
                pending += piece.events
                if piece.text or piece.finish_reason:
                    yield _sse({**envelope, "choices": [self._chunk_choice(plan, piece, pending)]})
                    pending = []
        except EdgeCallError as err:
            yield _sse(edge_error(err, self.config.edge_url).body())
            return
        if usage:
            yield _sse({**envelope, "choices": [], "usage": self._usage(plan)})
        yield _sse("[DONE]")

    def _chunk_choice(self, plan: _Plan, piece: _Piece, events: list[TokenEvent]) -> dict:
        if plan.chat:
            choice = {"index": 0, "delta": {"content": piece.text} if piece.text else {}}
        else:
            choice = {"index": 0, "text": piece.text}
        return {**choice, "logprobs": self._logprobs(plan, events), "finish_reason": piece.finish_reason}

    def _logprobs(self, plan: _Plan, events: list[TokenEvent]) -> dict | None:
        return plan.formatter.format(events) if plan.top is not None else None

    def _envelope(self, plan: _Plan, stream: bool) -> dict:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if plan.chat else "text_completion"
        prefix = "chatcmpl" if plan.chat else "cmpl"
        return {"id": f"{prefix}-{plan.ident}", "object": kind, "created": plan.created, "model": self.model_id,
                "system_fingerprint": f"edgesplit-k{plan.result.k}"}

    @staticmethod
    def _usage(plan: _Plan) -> dict:
        done = len(plan.result.tokens)
        return {"prompt_tokens": len(plan.ids), "completion_tokens": done, "total_tokens": len(plan.ids) + done}


async def _chain(first: _Piece, rest: AsyncIterator[_Piece]) -> AsyncIterator[_Piece]:
    yield first
    async for piece in rest:
        yield piece


def build_proxy_app(model: LoadedModel, config: ProxyConfig | None = None) -> FastAPI:
    """The OpenAI-compatible proxy as a FastAPI app (the edge client opens with the server's lifespan)."""
    proxy = OpenAIProxy(model, config or ProxyConfig())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await proxy.start()
        try:
            yield
        finally:
            await proxy.stop()

    app = FastAPI(title="edgesplit UE proxy", version="1", lifespan=lifespan,
                  description="OpenAI-compatible completions served by split inference with an edgesplit edge.")
    app.state.proxy = proxy
    app.add_exception_handler(ProxyError, error_response)
    app.add_exception_handler(StarletteHTTPException, http_error)
    limit = proxy.config.max_body_bytes

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": proxy.model_id, "edge": proxy.config.edge_url}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        proxy.authorize(request)
        return {"object": "list", "data": [proxy.model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request) -> dict:
        proxy.authorize(request)
        proxy.check_model(name)
        return proxy.model_card()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        proxy.authorize(request)
        body = await read_request(request, CompletionRequest, limit)
        proxy.check_model(body.model)
        plan = await proxy.plan(body, proxy.completion_ids(body.prompt), body.max_tokens, body.logprobs, chat=False)
        return await proxy.respond(plan)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        proxy.authorize(request)
        body = await read_request(request, ChatCompletionRequest, limit)
        proxy.check_model(body.model)
        top = (body.top_logprobs or 0) if body.logprobs else None
        plan = await proxy.plan(body, proxy.chat_ids(body), body.token_budget, top, chat=True)
        return await proxy.respond(plan)

    return app
