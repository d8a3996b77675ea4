"""The edge's layer stack as a plain class: sessions with their own KV cache, limits, TTL, batched decode steps.

:class:`TailEngine` is what :class:`~serve_deployments.edge_deployment.EdgeTailDeployment` wraps (tested without
Ray). One engine serves every split ``k`` of one model: a session fixes its ``k`` and packet encoding at creation.

Life of a session: ``create`` (``k``, encoding, token budget, sampling) → ``prefill`` (one packet with the prompt's
hidden states after layer ``k``, or its token ids at ``k = 0``) → ``decode`` steps (one token's packet each) →
``close`` (or expiry after ``idle_ttl_s``). Every call answers the next token (and optional log-probabilities).

Untrusted input: a frame is decoded under :class:`~edgesplit.packet.PacketLimits` sized for the step before any
tensor is built, then checked against the session (id, split, encoding, shape, position, token-id range, finite
values). Admission control reserves a session's whole KV cache (its token budget at its split, from the cost
model) at creation, so a replica never runs out of memory mid-generation: past ``max_sessions`` or
``max_kv_bytes`` a new session gets ``capacity`` (HTTP 429) with ``Retry-After``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgesplit.cost.model_profile import ModelProfile
from edgesplit.models import LoadedModel
from edgesplit.packet import ActivationPacket, PacketError, PacketLimits
from edgesplit.split import EdgeTail, SideSession
from edgesplit.split.padded_batch import batched_decode_logits, can_pad_stack
from edgesplit.split.sampling import Sampler
from serve_deployments.edge_errors import EdgeError, EdgeRejected

FLOAT_ENCODINGS = ("float32", "float16", "bfloat16", "int8", "int4")
"""Encodings of a hidden state (``0 < k < L``); ``k = 0`` always sends ``token_ids``."""
MAX_ABS_ACTIVATION = 1e8
"""Largest accepted activation magnitude: beyond it float32 attention overflows; real states stay below ~1e4."""


class EdgeLimits(BaseModel):
    """Per-replica limits of an edge tail (a Serve config value)."""

    model_config = ConfigDict(extra="forbid")
    max_sessions: int = Field(64, ge=1, le=100_000)
    """Sessions one replica holds at once."""
    max_tokens_per_session: int = Field(2048, ge=2, le=131_072)
    """Longest sequence (prompt + generated) of one session."""
    max_kv_bytes: int = Field(1 << 30, ge=1 << 20)
    """KV-cache bytes one replica may reserve in all (each session reserves its token budget at its split)."""
    idle_ttl_s: float = Field(300.0, gt=0, le=86_400)
    """A session unused this long is closed and its cache freed."""
    retry_after_s: float = Field(1.0, ge=0, le=600)
    """``Retry-After`` sent with ``capacity`` rejections."""
    max_batch_size: int = Field(16, ge=1, le=256)
    """Most decode steps in one tail forward."""


class SessionCreate(BaseModel):
    """Body of ``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(..., ge=0)
    """Split point: the edge runs layers ``k..L-1`` (``0 <= k < L``)."""
    encoding: str = "float32"
    """Wire encoding of the hidden states (ignored at ``k = 0``, which sends token ids)."""
    max_tokens: int = Field(512, ge=2)
    """Token budget of the session (prompt + generated); reserves its KV cache."""
    temperature: float = Field(0.0, ge=0.0, le=10.0)
    """0 for greedy decoding."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Seed of the session's sampler."""
    logprobs: int = Field(0, ge=0, le=20)
    """Top log-probabilities returned per token."""


@dataclass
class _Session:
    session_id: str
    owner: str
    k: int
    encoding: str
    max_tokens: int
    kv_reserved: int
    sampler: Sampler
    state: SideSession
    """The session's decoding state (another engine keeps its own object with the same ``seen_tokens``)."""
    last_used: float
    generated: int = 0


@dataclass
class DecodeWork:
    """A validated decode step, ready for a batched forward."""

    session: _Session
    payload: torch.Tensor
    bytes_in: int
    position: int
    """The session's length when the step was validated (it must still be that when the step runs)."""


class TailEngine:
    """Serves tail forwards for many sessions of one model, any split."""

    def __init__(self, loaded: LoadedModel, limits: EdgeLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.loaded = loaded
        self._init_table(loaded.name, loaded.model.config, loaded.model.dtype, limits, clock)
        self.num_layers, self.hidden = loaded.num_layers, loaded.hidden_size
        self.vocab = loaded.adapter.vocab_size
        self._tails: dict[int, EdgeTail] = {}
        self._pad_stack: dict[int, bool] = {}

    def _init_table(self, name: str, config, dtype: torch.dtype, limits: EdgeLimits | None,
                    clock: Callable[[], float]) -> None:
        """Model facts, limits and the empty session table (shared with the other edge engines)."""
        self.name, self.limits, self.clock = name, limits or EdgeLimits(), clock
        text = config.get_text_config(decoder=True)
        self.num_layers, self.hidden, self.vocab = text.num_hidden_layers, text.hidden_size, text.vocab_size
        self.profile = ModelProfile.from_config(config)
        self.kv_element_bytes = torch.finfo(dtype).bits // 8
        self.sessions: dict[str, _Session] = {}
        self.kv_reserved = 0
        self.counters = {"tokens": 0, "bytes_in": 0, "forwards": 0, "expired": 0}

    # ---- model --------------------------------------------------------------------------------------------------
    def tail(self, k: int) -> EdgeTail:
        """The tail from layer ``k`` (all tails share the one model)."""
        if k not in self._tails:
            self._tails[k] = EdgeTail(self.loaded, k)
            self._pad_stack[k] = can_pad_stack(self._tails[k])
        return self._tails[k]

    def model_info(self) -> dict:
        """What a UE needs to check it runs the matching head."""
        return {"model": self.name, "num_layers": self.num_layers, "hidden_size": self.hidden,
                "vocab_size": self.vocab, "encodings": list(FLOAT_ENCODINGS),
                "max_tokens_per_session": self.limits.max_tokens_per_session}

    def kv_bytes(self, k: int, tokens: int) -> int:
        """KV-cache bytes of ``tokens`` positions over the edge's layers ``k..L-1`` (cost model)."""
        return int(self.profile.kv_cache_bytes(k, self.num_layers, tokens, self.kv_element_bytes))

    # ---- sessions -----------------------------------------------------------------------------------------------
    def create(self, request: SessionCreate, owner: str, session_id: str | None = None) -> dict:
        """Open a session; raises :class:`EdgeRejected` (``bad_request`` or ``capacity``)."""
        self.expire()
        k = request.k
        if not 0 <= k < self.num_layers:
            raise EdgeRejected("bad_request", f"k must be in 0..{self.num_layers - 1} (k = {self.num_layers} runs "
                                              f"entirely on the UE), got {k}")
        encoding = "token_ids" if k == 0 else request.encoding
        if k > 0 and encoding not in FLOAT_ENCODINGS:
            raise EdgeRejected("bad_request", f"encoding must be one of {', '.join(FLOAT_ENCODINGS)} for k > 0, "
                                              f"got {request.encoding!r}")
        if request.max_tokens > self.limits.max_tokens_per_session:
            raise EdgeRejected("token_limit", f"max_tokens {request.max_tokens} exceeds this edge's limit of "
                                              f"{self.limits.max_tokens_per_session} tokens per session")
        sid = session_id or secrets.token_urlsafe(24)
        if sid in self.sessions:
            raise EdgeRejected("bad_request", "session id already in use")
        reserve = self.kv_bytes(k, request.max_tokens)
        self._admit(reserve)
        sampler = Sampler(request.temperature, request.top_p, request.seed, request.logprobs)
        self.sessions[sid] = _Session(sid, owner, k, encoding, request.max_tokens, reserve, sampler,
                                      self._new_state(k, request.max_tokens), self.clock())
        self.kv_reserved += reserve
        return {"session_id": sid, "k": k, "encoding": encoding, "max_tokens": request.max_tokens,
                "kv_reserved_bytes": reserve, **self.model_info()}

    def _new_state(self, k: int, max_tokens: int) -> SideSession:
        return self.tail(k).new_session()

    def _admit(self, reserve: int) -> None:
        retry = self.limits.retry_after_s
        if len(self.sessions) >= self.limits.max_sessions:
            raise EdgeRejected("capacity", f"this edge replica holds its limit of {self.limits.max_sessions} "
                                           f"sessions; retry later", retry)
        if self.kv_reserved + reserve > self.limits.max_kv_bytes:
            raise EdgeRejected("capacity", f"KV cache full: {self.kv_reserved} of {self.limits.max_kv_bytes} bytes "
                                           f"reserved, this session needs {reserve}; retry later or ask for fewer "
                                           f"max_tokens", retry)

    def _session(self, session_id: str, owner: str) -> _Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise EdgeRejected("unknown_session", "this edge replica holds no such session (expired, closed or "
                                                  "the replica restarted): open a new one and re-prefill")
        if not secrets.compare_digest(session.owner, owner):
            raise EdgeRejected("forbidden", "this session belongs to another API token")
        session.last_used = self.clock()
        return session

    def close(self, session_id: str, owner: str) -> dict:
        """Free a session's cache."""
        session = self._session(session_id, owner)
        self._drop(session)
        return {"session_id": session_id, "closed": True, "generated": session.generated}

    def _drop(self, session: _Session) -> None:
        if self.sessions.pop(session.session_id, None) is not None:
            self.kv_reserved -= session.kv_reserved

    def expire(self) -> int:
        """Close sessions idle for longer than ``idle_ttl_s``; returns how many."""
        cutoff = self.clock() - self.limits.idle_ttl_s
        stale = [s for s in self.sessions.values() if s.last_used < cutoff]
        for session in stale:
            self._drop(session)
        self.counters["expired"] += len(stale)
        return len(stale)

    # ---- packets ------------------------------------------------------------------------------------------------
    def _packet(self, session: _Session, frame: bytes, max_tokens: int) -> ActivationPacket:
        width = 1 if session.k == 0 else self.hidden
        limits = PacketLimits(max_header_bytes=1024, max_elements=max(1, max_tokens * width),
                              max_total_bytes=1024 + 13 + 4 * max_tokens * (width + 1))
        try:
            packet = ActivationPacket.decode(frame, limits)
        except PacketError as err:
            raise EdgeRejected("bad_packet", f"packet rejected: {err}") from None
        if packet.session_id != session.session_id:
            raise EdgeRejected("bad_packet", "the packet's session_id differs from the session in the URL")
        if packet.split_k != session.k or packet.encoding != session.encoding:
            raise EdgeRejected("bad_packet", f"session is at k={session.k}, encoding {session.encoding}; packet "
                                             f"has k={packet.split_k}, encoding {packet.encoding}")
        expected = "[1, tokens]" if session.k == 0 else f"[1, tokens, {self.hidden}]"
        shape = packet.shape
        if len(shape) != (2 if session.k == 0 else 3) or shape[0] != 1 or shape[1] < 1 or \
                (session.k > 0 and shape[2] != self.hidden):
            raise EdgeRejected("bad_packet", f"payload must be one sequence {expected}, got {list(shape)}")
        if packet.position_start != session.state.seen_tokens:
            raise EdgeRejected("out_of_order", f"session has {session.state.seen_tokens} tokens; packet starts at "
                                               f"position {packet.position_start}")
        if session.state.seen_tokens + packet.num_tokens > session.max_tokens:
            raise EdgeRejected("token_limit", f"session budget is {session.max_tokens} tokens; it holds "
                                              f"{session.state.seen_tokens} and the packet adds {packet.num_tokens}")
        return packet

    def _payload(self, session: _Session, packet: ActivationPacket) -> torch.Tensor:
        try:
            tensor = packet.to_tensor()
        except (PacketError, ValueError) as err:
            raise EdgeRejected("bad_packet", f"payload rejected: {err}") from None
        if session.k == 0:
            if int(tensor.min()) < 0 or int(tensor.max()) >= self.vocab:
                raise EdgeRejected("bad_packet", f"token ids must be in 0..{self.vocab - 1}")
            return tensor.long()
        if not bool(torch.isfinite(tensor).all()) or float(tensor.abs().max()) > MAX_ABS_ACTIVATION:
            raise EdgeRejected("bad_packet", f"hidden state must be finite with |x| <= {MAX_ABS_ACTIVATION:g}")
        return tensor.float()

    # ---- steps --------------------------------------------------------------------------------------------------
    def _answer(self, session: _Session, logits: torch.Tensor) -> dict:
        if not bool(torch.isfinite(logits).all()):
            self._non_finite(session)
        token = session.sampler.choose(logits, session.state.seen_tokens)
        return self._record(session, session.sampler.report(logits, token))

    def _non_finite(self, session: _Session) -> None:
        self._drop(session)
        raise EdgeRejected("bad_packet", "the activations gave non-finite logits; the session was closed")

    def _record(self, session: _Session, report: dict) -> dict:
        """Count a generated token and add its position and the session's KV bytes to the answer."""
        session.generated += 1
        self.counters["tokens"] += 1
        return {**report, "position": session.state.seen_tokens,
                "kv_bytes": self.kv_bytes(session.k, session.state.seen_tokens)}

    @torch.inference_mode()
    def prefill(self, session_id: str, owner: str, frame: bytes) -> dict:
        """Run the prompt through the tail; returns the first generated token."""
        session = self._session(session_id, owner)
        if session.state.seen_tokens:
            raise EdgeRejected("out_of_order", "this session is already prefilled; open a new session")
        packet = self._packet(session, frame, self.limits.max_tokens_per_session)
        payload = self._payload(session, packet)
        self.counters["bytes_in"] += len(frame)
        start = time.perf_counter()
        answer = self._run_prefill(session, payload)
        self.counters["forwards"] += 1
        return {**answer, "batch_size": 1, "compute_s": time.perf_counter() - start}

    def _run_prefill(self, session: _Session, payload: torch.Tensor) -> dict:
        logits = self.tail(session.k)(payload, session=session.state, last_only=True)[0, -1]
        return self._answer(session, logits)

    def check_decode(self, session_id: str, owner: str, frame: bytes) -> DecodeWork:
        """Validate one decode step (one token) without running it."""
        session = self._session(session_id, owner)
        if not session.state.seen_tokens:
            raise EdgeRejected("out_of_order", "decode before prefill: send the prompt to /prefill first")
        packet = self._packet(session, frame, 1)
        return DecodeWork(session, self._payload(session, packet), len(frame), session.state.seen_tokens)

    @torch.inference_mode()
    def decode_many(self, works: list[DecodeWork]) -> list[dict | EdgeError]:
        """Run validated decode steps, batching sessions at the same split (any cache lengths) per forward."""
        results: list[dict | EdgeError | None] = [None] * len(works)
        for group in self._groups(works, results):
            batch = [works[i] for i in group]
            tail = self.tail(batch[0].session.k)
            start = time.perf_counter()
            logits = batched_decode_logits(tail, [w.payload for w in batch], [w.session.state for w in batch])
            share = (time.perf_counter() - start) / len(batch)
            self.counters["forwards"] += 1
            for index, work, row in zip(group, batch, logits, strict=True):
                self.counters["bytes_in"] += work.bytes_in
                try:
                    results[index] = {**self._answer(work.session, row), "batch_size": len(batch),
                                      "compute_s": share}
                except EdgeRejected as rej:
                    results[index] = rej.error
        return results

    def _fresh(self, works: list[DecodeWork], results: list) -> list[int]:
        """Indices of the steps that can run; stale or duplicate steps fail (``out_of_order`` in ``results``)."""
        fresh: list[int] = []
        seen: set[str] = set()
        for index, work in enumerate(works):
            session = work.session
            if self.sessions.get(session.session_id) is not session or session.session_id in seen or \
                    session.state.seen_tokens != work.position:
                results[index] = EdgeError("out_of_order", "the session moved on (or closed) while this step "
                                                           "waited; send one step at a time per session")
                continue
            seen.add(session.session_id)
            fresh.append(index)
        return fresh

    def _groups(self, works: list[DecodeWork], results: list) -> list[list[int]]:
        """Indices per forward: same split together (up to ``max_batch_size``); stale or duplicate steps fail."""
        groups: dict[int, list[list[int]]] = {}
        for index in self._fresh(works, results):
            session = works[index].session
            chunks = groups.setdefault(session.k, [[]])
            if not self._pad_stack[session.k] or len(chunks[-1]) >= self.limits.max_batch_size:
                chunks.append([])
            chunks[-1].append(index)
        return [chunk for chunks in groups.values() for chunk in chunks if chunk]

    def decode(self, session_id: str, owner: str, frame: bytes) -> dict:
        """One unbatched decode step (validate + forward)."""
        result = self.decode_many([self.check_decode(session_id, owner, frame)])[0]
        if isinstance(result, EdgeError):
            raise EdgeRejected(result.code, result.message, result.retry_after_s)
        return result

    def stats(self) -> dict:
        """Load figures: sessions, KV bytes reserved and in use, counters."""
        used = sum(self.kv_bytes(s.k, s.state.seen_tokens) for s in self.sessions.values())
        return {"sessions": len(self.sessions), "kv_reserved_bytes": self.kv_reserved, "kv_used_bytes": used,
                "max_kv_bytes": self.limits.max_kv_bytes, **self.counters}
