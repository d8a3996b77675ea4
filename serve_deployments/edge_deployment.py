"""``EdgeTailDeployment``: the edge layer stack as a Ray Serve deployment (one replica serves every split ``k``).

A thin shell over an edge engine (:mod:`serve_deployments.edge_engine`: the transformers
:class:`~serve_deployments.tail_engine.TailEngine` by default, or vLLM with ``engine: vllm``): every call that
touches the model or the session table runs on one worker thread (so the replica's event loop keeps answering
health checks while a forward runs, and no two forwards race on a cache), decode steps of concurrent sessions are
gathered by ``@serve.batch`` into one engine call (padded caches, any lengths, on the transformers engine; one
vLLM engine step on vLLM; the batch is sized to the sessions decoding now, see
:meth:`EdgeTailDeployment._size_next_batch`), and idle sessions expire in a background task.
Results and errors are returned as plain dicts (an error is ``{"error": {"code", "message", "retry_after_s"}}``),
so nothing but data crosses a handle.

Session affinity: the app builder gives this deployment Serve's consistent-hash request router, and callers pass
``handle.options(session_id=...)``, so every step of a session reaches the replica that holds its cache. When the
replica set changes a step can still land elsewhere: it answers ``unknown_session`` and the UE re-prefills.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve
from ray.serve.metrics import Counter, Gauge, Histogram

from serve_deployments.edge_engine import VLLM_INSTALL_HINT, VllmArgs, build_engine, vllm_available
from serve_deployments.edge_errors import EdgeError, EdgeRejected
from serve_deployments.tail_engine import DecodeWork, EdgeLimits, SessionCreate


class EdgeArgs(BaseModel):
    """Construction arguments of one edge replica (the ``edge`` block of the app's args)."""

    model_config = ConfigDict(extra="forbid")
    model: str = "smollm2-135m"
    """Built-in name, local directory or hub id of the model whose tail is served."""
    dtype: str = "float32"
    """Weights dtype on the edge."""
    limits: EdgeLimits = Field(default_factory=EdgeLimits)
    """Sessions, tokens, KV bytes, TTL and batch limits per replica."""
    batching: bool = True
    """Gather concurrent decode steps into one forward (``False``: one forward per step, for comparisons)."""
    batch_wait_timeout_s: float = Field(0.05, ge=0, le=1)
    """Longest wait of a decode batch for the other sessions decoding now (a lone session never waits)."""
    active_window_s: float = Field(0.5, gt=0, le=60)
    """A session that stepped within this window counts as decoding now (the batch waits for it)."""
    torch_threads: int = Field(0, ge=0, le=256)
    """Intra-op threads of the replica's torch (0: torch's default)."""
    expiry_interval_s: float = Field(5.0, gt=0, le=3600)
    """How often idle sessions are swept."""
    engine: Literal["transformers", "vllm"] = "transformers"
    """What runs the layers: the transformers split engine (every ``k``, one model), or vLLM (``k = 0`` native,
    ``0 < k < L`` as an out-of-tree tail model; needs the vllm package, see ``make setup-vllm``)."""
    vllm: VllmArgs = Field(default_factory=VllmArgs)
    """Options of the vLLM engine (block size, KV-cache space, splits built at start)."""

    @model_validator(mode="after")
    def _engine_importable(self) -> EdgeArgs:
        if self.engine == "vllm" and not vllm_available():
            raise ValueError(VLLM_INSTALL_HINT)
        return self


_BYTES = Counter("edgesplit_edge_bytes_received_total", "Packet bytes received by the edge tail.")
_TOKENS = Counter("edgesplit_edge_tokens_generated_total", "Tokens the edge tail generated.")
_REJECTED = Counter("edgesplit_edge_rejected_total", "Edge requests rejected, by reason.", tag_keys=("reason",))
_BATCH = Histogram("edgesplit_edge_decode_batch_size", "Decode steps per tail forward.",
                   boundaries=[1, 2, 4, 8, 16, 32, 64])
_SESSIONS = Gauge("edgesplit_edge_active_sessions", "Sessions held by the replica.")
_KV = Gauge("edgesplit_edge_kv_bytes", "KV-cache bytes reserved by the replica's sessions.")


class EdgeTailDeployment:
    """Serve deployment class (``serve.deployment`` is applied by the app builder)."""

    def __init__(self, args: dict | EdgeArgs) -> None:
        import torch

        self.args = EdgeArgs.model_validate(args) if isinstance(args, dict) else args
        if self.args.torch_threads:
            torch.set_num_threads(self.args.torch_threads)
        self.engine = build_engine(self.args.engine, self.args.model, self.args.dtype, self.args.limits,
                                   self.args.vllm)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-tail")
        self._decode_batch.set_max_batch_size(self.args.limits.max_batch_size)
        self._decode_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self._sweeper: asyncio.Task | None = None
        # batch sizing state, touched on the event-loop thread only: session -> its latest step / latest answer
        self._recent: dict[str, float] = {}
        self._replied: dict[str, float] = {}
        self._turnaround_s = 0.0
        self.replica = _replica_tag()

    # ---- plumbing -----------------------------------------------------------------------------------------------
    async def _run(self, fn, *args):
        """Run ``fn`` on the replica's model thread; a rejection becomes an error dict."""
        self._ensure_sweeper()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except EdgeRejected as rej:
            return self._rejected(rej.error)

    def _rejected(self, error: EdgeError) -> dict:
        _REJECTED.inc(tags={"reason": error.code})
        return error.to_dict()

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.args.expiry_interval_s)
            await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.expire)
            self._gauges()

    def _gauges(self) -> None:
        _SESSIONS.set(len(self.engine.sessions))
        _KV.set(self.engine.kv_reserved)

    def _served(self, result: dict, bytes_in: int) -> dict:
        if "error" not in result:
            _TOKENS.inc()
            _BYTES.inc(bytes_in)
            result["replica"] = self.replica
        return result

    # ---- API (called by the HTTP routes in this replica, and through handles by the UE fleet and in-cluster clients)
    async def create(self, body: dict, owner: str, session_id: str) -> dict:
        """Open a session (``body`` follows :class:`SessionCreate`)."""
        try:
            request = SessionCreate.model_validate(body)
        except ValueError as err:
            return self._rejected(EdgeError("bad_request", f"bad session request: {err}"))
        result = await self._run(self.engine.create, request, owner, session_id)
        self._gauges()
        if "error" not in result:
            result["replica"] = self.replica
        return result

    async def prefill(self, session_id: str, owner: str, frame: bytes) -> dict:
        """The prompt's packet → the first generated token."""
        return self._served(await self._run(self.engine.prefill, session_id, owner, bytes(frame)), len(frame))

    async def decode(self, session_id: str, owner: str, frame: bytes) -> dict:
        """One token's packet → the next token (batched with concurrent sessions' steps)."""
        work = await self._run(self.engine.check_decode, session_id, owner, bytes(frame))
        if isinstance(work, dict):
            return work
        if self.args.batching:
            self._size_next_batch(session_id)
            result = await self._decode_batch(work)
        else:
            result = (await self._run(self.engine.decode_many, [work]))[0]
        if isinstance(result, EdgeError):
            return self._rejected(result)
        if self.args.batching:
            self._replied[session_id] = time.monotonic()
        return self._served(result, len(frame))

    def _size_next_batch(self, session_id: str) -> None:
        """Adaptive batch: wait for the sessions that are decoding now, and not at all for a session alone.

        Serve reads the batch size and the wait when a batch's first step arrives, so they are set before each step
        is queued: the batch fires as soon as every session that stepped within the last ``active_window_s`` is in,
        or after twice the clients' measured turnaround (answer → next step, a moving average), at most
        ``batch_wait_timeout_s``; a lone session never waits. A fixed short wait splits many sessions into groups
        that stay apart (each group's stragglers arrive after the other group's forward has started), and a fixed
        long one taxes a lone session on every token.
        """
        now = time.monotonic()
        replied = self._replied.pop(session_id, None)
        if replied is not None:  # how long clients take from an answer to their next step (head + network)
            self._turnaround_s = 0.8 * self._turnaround_s + 0.2 * (now - replied)
        self._recent[session_id] = now
        cutoff = now - self.args.active_window_s
        for sid in [sid for sid, seen in self._recent.items() if seen < cutoff]:
            del self._recent[sid]
            self._replied.pop(sid, None)
        active = min(len(self._recent), self.args.limits.max_batch_size)
        wait = min(self.args.batch_wait_timeout_s, 2.0 * self._turnaround_s) if active > 1 else 0.0
        self._decode_batch.set_max_batch_size(max(1, active))
        self._decode_batch.set_batch_wait_timeout_s(wait)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.05)
    async def _decode_batch(self, works: list[DecodeWork]) -> list[dict | EdgeError]:
        _BATCH.observe(len(works))
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.decode_many, works)

    async def close(self, session_id: str, owner: str) -> dict:
        """Free a session."""
        result = await self._run(self.engine.close, session_id, owner)
        self._recent.pop(session_id, None)
        self._replied.pop(session_id, None)
        self._gauges()
        return result

    async def info(self) -> dict:
        """Model facts, limits and this replica's load."""
        stats = await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.stats)
        return {**self.engine.model_info(), **stats, "replica": self.replica, "pid": os.getpid(),
                "limits": self.args.limits.model_dump()}

    def check_health(self) -> None:
        """Serve's health probe: the model thread must be alive."""
        if self._pool._shutdown:  # noqa: SLF001 - only our own pool
            raise RuntimeError("edge tail worker thread is shut down")


def _replica_tag() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (plain tests)
        return f"local-{os.getpid()}"
