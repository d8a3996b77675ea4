"""The UE side of a deployment: runs the head, streams tokens from the edge, survives overload and replica loss.

:class:`AsyncSplitClient` holds the model's head (layers ``0..k-1``); per request it asks the live controller for
``k`` (unless a fixed split is given), opens an edge session at that ``k``, prefills, and decodes one token per
round trip. In **simulation** mode (a :class:`~edgesplit.scenario.ChannelSetting` is given) the activations are
impaired by the channel model before encoding, as the Ray fleet does; in **deployment** mode they go clean.

Failures it handles (the approach Petals' client takes: it keeps every input it sent):

- ``429`` / ``503`` (capacity, Serve back-pressure, an unavailable replica): wait ``Retry-After`` (or an
  exponential back-off with seeded jitter) and retry the same call, up to ``max_retries``;
- ``unknown_session`` or a broken connection mid-generation: open a new session and re-prefill the whole history
  (prompt + tokens generated so far); with greedy decoding (or the edge's position-seeded sampling) the tokens
  equal an uninterrupted run.

:class:`SplitClient` is the same client for synchronous code: it runs the async one on a private event loop in a
background thread, so it also works where another loop is already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import torch

from edgesplit.channel import ChannelState
from edgesplit.client.transport import RESUMABLE, RETRYABLE, EdgeCallError, HttpTransport
from edgesplit.models import LoadedModel
from edgesplit.packet import ActivationPacket
from edgesplit.scenario import ChannelSetting
from edgesplit.split import DeviceHead
from edgesplit.split.sampling import Sampler


@dataclass(frozen=True)
class TokenEvent:
    """One generated token as the client saw it."""

    token: int
    """Token id."""
    index: int
    """0 for the first generated token."""
    k: int
    """Split the token was computed at."""
    head_s: float
    """UE time in the head (and the channel model in simulation mode) for this step."""
    round_trip_s: float
    """Wall time of the edge call(s) for this step: opening the session when there is one, retries included."""
    frame_bytes: int
    """Bytes sent on the uplink for this step (a re-prefill counts the whole history)."""
    logprob: float | None = None
    """Log-probability of the token, when the session asked for them."""
    top_logprobs: list | None = None
    """``[[token, logprob], ...]`` alternatives, when asked for."""
    replica: str | None = None
    """The edge replica that computed the token (as it reports itself)."""
    edge_compute_s: float | None = None
    """The edge's tail forward for this token (its share of a batched forward)."""


@dataclass
class GenerationResult:
    """A finished request."""

    tokens: list[int]
    """Generated token ids."""
    k: int
    """Split used (the controller's answer or the fixed split)."""
    decision: dict | None
    """The controller's full decision (``None`` with a fixed split)."""
    events: list[TokenEvent] = field(default_factory=list)
    """Per-token timings."""
    resumes: int = 0
    """Times the session was re-opened and re-prefilled (lost replica, unknown session)."""
    retries: int = 0
    """Calls retried after 429/503."""
    finish_reason: str = "length"
    """``length``, ``stop`` (EOS or a stop token)."""


class AsyncSplitClient:
    """UE client over an async transport (HTTP by default)."""

    def __init__(self, model: LoadedModel, transport: HttpTransport | str, *, channel: ChannelSetting | None = None,
                 encoding: str = "float32", max_retries: int = 20, backoff_s: float = 0.1, max_backoff_s: float = 5.0,
                 seed: int = 0) -> None:
        self.model = model
        self.transport = HttpTransport(transport) if isinstance(transport, str) else transport
        self.channel, self.encoding = channel, encoding
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self._jitter = random.Random(seed)
        self._noise = torch.Generator().manual_seed(seed)
        self._heads: dict[int, DeviceHead] = {}
        self.ue_state: dict = {"snr_db_history": [30.0]}
        """What the client reports to the controller (``UEState`` fields); callers update it as conditions move."""

    # ---- edge calls with retry ----------------------------------------------------------------------------------
    async def _retrying(self, call: Callable, *args, stats: GenerationResult | None = None) -> dict:
        for attempt in range(self.max_retries + 1):
            try:
                return await call(*args)
            except EdgeCallError as err:
                if err.code not in RETRYABLE or attempt == self.max_retries or (
                        err.code in RESUMABLE and call.__name__ in ("prefill", "decode")):
                    raise
                if stats is not None:
                    stats.retries += 1
                await asyncio.sleep(self._pause(err, attempt))
        raise AssertionError("unreachable")

    def _pause(self, err: EdgeCallError, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        wait = err.retry_after_s if err.retry_after_s is not None else base
        return min(self.max_backoff_s, wait) * (0.5 + self._jitter.random())

    # ---- the head -----------------------------------------------------------------------------------------------
    def head(self, k: int) -> DeviceHead:
        """The head for split ``k`` (built on first use; all heads share the model)."""
        if k not in self._heads:
            self._heads[k] = DeviceHead(self.model, k)
        return self._heads[k]

    def _frame(self, k: int, session_id: str, position: int, payload: torch.Tensor, encoding: str) -> bytes:
        if k > 0 and self.channel is not None:  # simulation mode: the uplink's impairment, as the fleet applies it
            payload = self.channel.impairment().apply(payload.float(), self._state(), self._noise).x
        packet = ActivationPacket.from_tensor(payload, session_id=session_id, split_k=k, position_start=position,
                                              encoding=encoding)
        return packet.encode()

    def _state(self) -> ChannelState:
        snr = self.ue_state.get("snr_db_history", [self.channel.snr_db])[-1]
        return ChannelState(mean_snr_db=float(snr))

    # ---- one request --------------------------------------------------------------------------------------------
    async def decide(self) -> dict:
        """Ask the controller for the split of the next request, reporting :attr:`ue_state`."""
        return await self._retrying(self.transport.split, dict(self.ue_state))

    async def stream(self, input_ids: list[int], max_new_tokens: int = 32, *, k: int | None = None,
                     temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, logprobs: int = 0,
                     stop_ids: tuple[int, ...] = (), result: GenerationResult | None = None
                     ) -> AsyncIterator[TokenEvent]:
        """Generate up to ``max_new_tokens`` after ``input_ids``, yielding each token as it arrives."""
        if not input_ids or max_new_tokens < 1:
            raise ValueError("need a non-empty prompt and max_new_tokens >= 1")
        decision = None if k is not None else await self.decide()
        k = int(decision["k"]) if decision is not None else k
        if not 0 <= k <= self.model.num_layers:
            raise ValueError(f"split k must be in 0..{self.model.num_layers}, got {k}")
        result = result if result is not None else GenerationResult([], k, decision)
        result.k, result.decision = k, decision
        if k == self.model.num_layers:
            sampler = Sampler(temperature=temperature, top_p=top_p, seed=seed, logprobs=logprobs)
            async for event in self._local(input_ids, max_new_tokens, stop_ids, result, sampler):
                yield event
            return
        encoding = "token_ids" if k == 0 else (decision or {}).get("encoding") or self.encoding
        spec = {"k": k, "encoding": "float32" if k == 0 else encoding,
                "max_tokens": len(input_ids) + max_new_tokens, "temperature": temperature, "top_p": top_p,
                "seed": seed, "logprobs": logprobs}
        history = list(input_ids)
        session, head_state = None, None
        try:
            while len(result.tokens) < max_new_tokens:
                opened = time.perf_counter()
                if session is None:  # open (or re-open) and prefill the whole history
                    session = (await self._retrying(self.transport.create, spec, stats=result))["session_id"]
                    head_state = self.head(k).new_session()
                    step_ids, position, call = history, 0, self.transport.prefill
                else:
                    step_ids, position, call = history[-1:], len(history) - 1, self.transport.decode
                start = time.perf_counter()  # the head's time excludes opening the session
                payload = self.head(k)(torch.tensor([step_ids]), session=head_state)
                frame = self._frame(k, session, position, payload, encoding)
                head_s = time.perf_counter() - start
                try:
                    answer = await self._retrying(call, session, frame, stats=result)
                except EdgeCallError as err:
                    if err.code not in RESUMABLE:
                        raise
                    session = None
                    result.resumes += 1
                    if result.resumes > self.max_retries:
                        raise
                    await asyncio.sleep(self._pause(err, min(result.resumes, 5)))
                    continue
                event = TokenEvent(int(answer["token"]), len(result.tokens), k, head_s,
                                   time.perf_counter() - opened - head_s, len(frame), answer.get("logprob"),
                                   answer.get("top_logprobs"), answer.get("replica"), answer.get("compute_s"))
                history.append(event.token)
                result.tokens.append(event.token)
                result.events.append(event)
                yield event
                if event.token in stop_ids:
                    result.finish_reason = "stop"
                    break
        finally:
            if session is not None:
                await self._close_quietly(session)

    async def _close_quietly(self, session_id: str) -> None:
        with contextlib.suppress(EdgeCallError):  # gone already, or the edge will expire it
            await self.transport.close(session_id)

    async def _local(self, input_ids, max_new_tokens, stop_ids, result, sampler: Sampler) -> AsyncIterator[TokenEvent]:
        """``k = L``: the whole model runs on the UE and nothing crosses the link; tokens are chosen as the edge
        chooses them (the same :class:`~edgesplit.split.sampling.Sampler`, the same positions), so a seeded sampled
        generation does not depend on where the split fell."""
        from edgesplit.split import EdgeTail

        head, tail = self.head(self.model.num_layers), EdgeTail(self.model, self.model.num_layers)
        hs, ts, step = head.new_session(), tail.new_session(), list(input_ids)
        for index in range(max_new_tokens):
            start = time.perf_counter()
            logits = tail(head(torch.tensor([step]), session=hs), session=ts, last_only=True)[0, -1]
            token = sampler.choose(logits, len(input_ids) + index)
            chosen = sampler.report(logits, token)
            event = TokenEvent(token, index, self.model.num_layers, time.perf_counter() - start, 0.0, 0,
                               chosen.get("logprob"), chosen.get("top_logprobs"))
            result.tokens.append(token)
            result.events.append(event)
            yield event
            if token in stop_ids:
                result.finish_reason = "stop"
                return
            step = [token]

    async def generate(self, input_ids: list[int], max_new_tokens: int = 32, **options) -> GenerationResult:
        """Run :meth:`stream` to the end; returns the tokens, the decision and the timings."""
        result = GenerationResult([], -1, None)
        async for _ in self.stream(input_ids, max_new_tokens, result=result, **options):
            pass
        return result

    async def aclose(self) -> None:
        """Release the transport."""
        closer = getattr(self.transport, "aclose", None)
        if closer is not None:
            await closer()


class SplitClient:
    """Synchronous :class:`AsyncSplitClient`: the async client runs on a private loop in a daemon thread."""

    def __init__(self, model: LoadedModel, transport: HttpTransport | str, **options) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="split-client", daemon=True)
        self._thread.start()
        self.inner = self._run(self._build(model, transport, options))

    @staticmethod
    async def _build(model, transport, options) -> AsyncSplitClient:
        return AsyncSplitClient(model, transport, **options)  # the httpx client binds to this loop

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def ue_state(self) -> dict:
        """What the client reports to the controller (mutable)."""
        return self.inner.ue_state

    def decide(self) -> dict:
        """The controller's split decision for :attr:`ue_state`."""
        return self._run(self.inner.decide())

    def generate(self, input_ids: list[int], max_new_tokens: int = 32, **options) -> GenerationResult:
        """Generate to the end (see :meth:`AsyncSplitClient.stream` for the options)."""
        return self._run(self.inner.generate(input_ids, max_new_tokens, **options))

    def stream(self, input_ids: list[int], max_new_tokens: int = 32, **options) -> Iterator[TokenEvent]:
        """Yield tokens as they arrive."""
        agen = self.inner.stream(input_ids, max_new_tokens, **options)
        while True:
            try:
                yield self._run(agen.__anext__())
            except StopAsyncIteration:
                return

    def close(self) -> None:
        """Close the transport and stop the loop thread."""
        if self._loop.is_running():
            self._run(self.inner.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> SplitClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
