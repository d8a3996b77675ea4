"""The edge side of a fleet: one model, a tail per split point, a KV cache per session, batched steps.

:class:`EdgeWorker` is a plain class (unit-tested without Ray); :class:`EdgeActor` adds what a Ray actor needs
(build the model from the shared object-store copy, one torch thread, an optional injected fault). The fleet
applies ``ray.remote(...)`` to it with ``max_restarts`` so Ray restarts a dead edge; a restarted edge has lost its
KV caches, which it reports as ``lost_session`` so the UE re-prefills.

Every uplink frame is decoded with :meth:`ActivationPacket.decode` under :class:`PacketLimits` sized for one
sequence of at most ``max_tokens`` tokens, then checked against the session it claims (split, shape, position)
before any tensor reaches the model. A bad request gets an error reply; it never fails the other requests of
its call.

Batching: :meth:`EdgeWorker.step_many` serves every request of one call; requests at the same split with the
same cache length and step length share one tail forward (see :mod:`cluster.kv_batching`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import torch

from cluster.kv_batching import can_stack, stack_sessions, unstack_session
from cluster.messages import EdgeReply, EdgeRequest, ErrorKind
from edgesplit.models import LoadedModel
from edgesplit.packet import ActivationPacket, PacketError, PacketLimits
from edgesplit.split import EdgeTail, SideSession

DEFAULT_MAX_TOKENS = 4096
"""Longest step (prompt) an edge accepts from one packet."""


@dataclass
class _Session:
    k: int
    state: SideSession


@dataclass
class _Work:
    """One validated request, ready for the forward."""

    index: int
    session_id: str
    k: int
    payload: torch.Tensor
    session: SideSession
    close: bool
    decode_s: float


class _Rejected(Exception):
    def __init__(self, kind: ErrorKind, message: str, session_id: str = "") -> None:
        super().__init__(message)
        self.kind, self.session_id = kind, session_id


class EdgeWorker:
    """Serves tail forwards for many sessions of one model; greedy next token per request."""

    def __init__(self, loaded: LoadedModel, edge_id: int = 0, *, batch: bool = True,
                 max_tokens: int = DEFAULT_MAX_TOKENS, max_sessions: int = 4096) -> None:
        self.loaded = loaded
        self.edge_id = edge_id
        self.batch = batch
        self.max_tokens = max_tokens
        self.max_sessions = max_sessions
        self.limits = PacketLimits(max_header_bytes=4096, max_elements=max_tokens * loaded.hidden_size,
                                   max_total_bytes=4096 + 8 * max_tokens * loaded.hidden_size)
        self.sessions: dict[str, _Session] = {}
        self.calls = 0
        self._tails: dict[int, EdgeTail] = {}
        self._stackable: dict[int, bool] = {}

    def tail(self, k: int) -> EdgeTail:
        """The tail from layer ``k`` (created on first use; all tails share the one model)."""
        if k not in self._tails:
            self._tails[k] = EdgeTail(self.loaded, k)
            self._stackable[k] = can_stack(self._tails[k])
        return self._tails[k]

    # ---- validation -------------------------------------------------------------------------------------------
    def _decode(self, request: EdgeRequest) -> ActivationPacket:
        try:
            return ActivationPacket.decode(bytes(request.frame), self.limits)
        except PacketError as err:
            raise _Rejected("bad_packet", f"packet rejected: {err}") from None

    def _check_shape(self, packet: ActivationPacket) -> None:
        k, sid, hidden = packet.split_k, packet.session_id, self.loaded.hidden_size
        if not 0 <= k < self.loaded.num_layers:
            raise _Rejected("bad_request", f"split {k} outside 0..{self.loaded.num_layers - 1} (k = L stays on "
                                           f"the UE)", sid)
        shape, rank = packet.shape, 2 if k == 0 else 3
        fits = len(shape) == rank and shape[0] == 1 and shape[1] >= 1 and (k == 0 or shape[2] == hidden)
        if not fits or (k == 0) != (packet.encoding == "token_ids"):
            needs = "[1, tokens] token_ids" if k == 0 else f"[1, tokens, {hidden}] in a float encoding"
            raise _Rejected("bad_request", f"split {k} needs one sequence {needs}, got {list(shape)} "
                                           f"{packet.encoding}", sid)
        if packet.num_tokens > self.max_tokens:
            raise _Rejected("bad_request", f"{packet.num_tokens} tokens in one step, limit {self.max_tokens}", sid)

    def _session_for(self, packet: ActivationPacket) -> SideSession:
        sid, k, start = packet.session_id, packet.split_k, packet.position_start
        if start == 0:  # a prefill (re)starts the session
            if sid not in self.sessions and len(self.sessions) >= self.max_sessions:
                raise _Rejected("bad_request", f"edge {self.edge_id} holds {self.max_sessions} sessions", sid)
            self.sessions[sid] = _Session(k, self.tail(k).new_session())
            return self.sessions[sid].state
        known = self.sessions.get(sid)
        if known is None:
            raise _Rejected("lost_session", f"edge {self.edge_id} has no session {sid!r} (restarted?)", sid)
        if known.k != k or known.state.seen_tokens != start:
            raise _Rejected("bad_request", f"session {sid!r} is at split {known.k}, position "
                                           f"{known.state.seen_tokens}; got split {k}, position {start}", sid)
        return known.state

    def _validate(self, index: int, request: EdgeRequest, taken: set[str]) -> _Work:
        start = time.perf_counter()
        packet = self._decode(request)
        self._check_shape(packet)
        if packet.session_id in taken:
            raise _Rejected("bad_request", f"session {packet.session_id!r} appears twice in one call",
                            packet.session_id)
        session = self._session_for(packet)
        taken.add(packet.session_id)
        payload = packet.to_tensor()
        return _Work(index, packet.session_id, packet.split_k, payload, session, request.close,
                     time.perf_counter() - start)

    # ---- serving ----------------------------------------------------------------------------------------------
    def _groups(self, works: list[_Work]) -> list[list[_Work]]:
        if not self.batch:
            return [[w] for w in works]
        groups: dict[tuple[int, int, int], list[_Work]] = {}
        for work in works:
            key = (work.k, work.session.seen_tokens, int(work.payload.shape[1]))
            stackable = self._stackable[work.k]
            groups.setdefault(key if stackable else (work.k, -1 - work.index, 0), []).append(work)
        return list(groups.values())

    @torch.inference_mode()
    def _forward(self, group: list[_Work]) -> tuple[list[int], float]:
        start = time.perf_counter()
        tail = self.tail(group[0].k)
        if len(group) == 1:
            logits = tail(group[0].payload, session=group[0].session, last_only=True)
        else:
            sessions = [w.session for w in group]
            merged = stack_sessions(tail, sessions)
            logits = tail(torch.cat([w.payload for w in group], dim=0), session=merged, last_only=True)
            unstack_session(tail, merged, sessions)
        tokens = logits[:, -1, :].argmax(dim=-1).tolist()
        return tokens, time.perf_counter() - start

    def step_many(self, requests: list[EdgeRequest]) -> list[EdgeReply]:
        """Serve every request of one call (one step of one session each); replies in request order."""
        start = time.perf_counter()
        self.calls += 1
        replies: list[EdgeReply | None] = [None] * len(requests)
        works, taken = [], set()
        for index, request in enumerate(requests):
            try:
                works.append(self._validate(index, request, taken))
            except _Rejected as rej:
                replies[index] = EdgeReply(rej.session_id, None, str(rej), rej.kind)
        for group in self._groups(works):
            tokens, forward_s = self._forward(group)
            for work, token in zip(group, tokens, strict=True):
                replies[work.index] = EdgeReply(work.session_id, int(token), decode_s=work.decode_s,
                                                 compute_s=forward_s / len(group), batch_size=len(group))
                if work.close:
                    self.sessions.pop(work.session_id, None)
        handler_s = time.perf_counter() - start
        return [replace(reply, handler_s=handler_s) for reply in replies]

    def drop(self, session_ids: list[str]) -> int:
        """Forget sessions (e.g. abandoned requests); returns how many were held."""
        return sum(self.sessions.pop(sid, None) is not None for sid in session_ids)

    def info(self) -> dict[str, int]:
        """Identity and load: edge id, process id, calls served, sessions held."""
        return {"edge_id": self.edge_id, "pid": os.getpid(), "calls": self.calls, "sessions": len(self.sessions)}


def place_model(loaded: LoadedModel, device: str = "cpu", dtype: str = "float32",
                allow_cpu_half: bool = False) -> LoadedModel:
    """``loaded`` on ``device`` in ``dtype``, resolved against the GPUs Ray reserved for this process (a CPU float32
    model is returned as it is: the zero-copy view of the shared weights stays)."""
    from edgesplit.models.device import check_gpu_reservation, ray_gpus_reserved, resolve_device, resolve_dtype

    reserved = ray_gpus_reserved()
    if reserved is not None:
        check_gpu_reservation(device, reserved)
    torch_device = resolve_device(device, gpus_reserved=reserved)
    torch_dtype = resolve_dtype(dtype, torch_device, allow_cpu_half=allow_cpu_half)
    if loaded.model.device != torch_device or loaded.model.dtype != torch_dtype:
        loaded.model.to(device=torch_device, dtype=torch_dtype)
    return loaded


class EdgeActor(EdgeWorker):
    """:class:`EdgeWorker` built from a shared model inside a Ray actor (``ray.remote`` is applied by the fleet).

    ``fault_after_calls`` makes the first incarnation of the actor exit abruptly while serving call number
    ``fault_after_calls + 1`` (a crash mid-request, for fault-tolerance tests and demos); the restarted actor
    does not fault again. :meth:`inject_fault` arms the same crash on a running actor.
    """

    def __init__(self, shared, edge_id: int = 0, *, batch: bool = True, threads: int = 1,
                 fault_after_calls: int | None = None, device: str = "cpu", dtype: str = "float32",
                 allow_cpu_half: bool = False) -> None:
        from cluster.weights import build_model

        torch.set_num_threads(threads)
        super().__init__(place_model(build_model(shared), device, dtype, allow_cpu_half), edge_id, batch=batch)
        self.fault_at_call: int | None = None
        if fault_after_calls is not None and not self._was_restarted():
            self.fault_at_call = fault_after_calls

    @staticmethod
    def _was_restarted() -> bool:
        import ray

        return bool(ray.get_runtime_context().was_current_actor_reconstructed)

    def inject_fault(self, after_calls: int = 0) -> int:
        """Crash while serving the call after ``after_calls`` more calls; returns the call count now."""
        self.fault_at_call = self.calls + after_calls
        return self.calls

    def step_many(self, requests: list[EdgeRequest]) -> list[EdgeReply]:
        if self.fault_at_call is not None and self.calls >= self.fault_at_call:
            os._exit(1)  # an abrupt crash: no cleanup, no reply, like a lost GPU server
        return super().step_many(requests)

    def ready(self) -> dict[str, int]:
        """Returns once the model is built (the fleet waits on it before starting)."""
        return self.info()
