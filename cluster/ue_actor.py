"""A fleet of UEs in one process, sending their packets to edge workers.

Why many UEs per actor: on a machine with few cores, one actor process per UE costs a Python + torch process
each (hundreds of MB, seconds to start) while the UEs would still take turns on the same cores. One
:class:`UEFleet` steps all of its UEs in lockstep ticks instead: each tick every busy UE runs its head for its
current step, the packets bound for the same edge go out in **one** ``step_many`` call (which lets the edge batch
them), the edges work in parallel, and the replies come back in completion order. ``--ue-actors N`` spreads the
UEs over N such actors (N = number of UEs gives one actor per UE).

Each UE handles its requests one after another. When an edge cannot answer, the affected requests restart from
scratch (new sessions, new prefill; one retry each): if its actor died, the call fails, the edge is marked down
and probed until Ray has restarted it, and its UEs wait; if it was restarted between two calls, it reports the
session as lost. A request that needs more than ``max_request_retries`` retries, or whose edge stays down longer
than ``edge_down_timeout_s``, is logged as failed. Every request ends as exactly one row.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from cluster.edge_transport import LocalTransport, Outcome, RayTransport
from cluster.messages import EdgeRequest, EdgeUnavailable
from cluster.ue_device import RequestRun, RequestSpec, UEDevice, UESpec
from edgesplit.models import LoadedModel

PROBE_INTERVAL_S = 0.25
"""How often a down edge is asked whether it is back."""


@dataclass
class _DownEdge:
    probe: Any
    since_s: float
    next_probe_s: float


class UEFleet:
    """Many UEs stepping their requests through head → packet → edge in lockstep ticks."""

    def __init__(self, loaded: LoadedModel, specs: list[UESpec], transport: LocalTransport | RayTransport, *,
                 enforce_link_latency: bool = False, max_request_retries: int = 3,
                 edge_down_timeout_s: float = 120.0) -> None:
        self.loaded = loaded
        self.ues = {spec.ue_id: UEDevice(spec, loaded) for spec in specs}
        self.transport = transport
        self.enforce_link_latency = enforce_link_latency
        self.max_request_retries = max_request_retries
        self.edge_down_timeout_s = edge_down_timeout_s
        self.queues: dict[int, deque[RequestSpec]] = {ue: deque() for ue in self.ues}
        self.active: dict[int, RequestRun] = {}
        self.down: dict[int, _DownEdge] = {}
        self.rows: list[dict[str, Any]] = []

    def submit(self, requests: list[RequestSpec]) -> None:
        """Queue requests on their UEs (each UE serves its queue in order)."""
        for request in requests:
            if request.ue not in self.queues:
                raise ValueError(f"request {request.request_id} is for UE {request.ue}, not in this fleet "
                                 f"({sorted(self.queues)})")
            self.queues[request.ue].append(request)

    @property
    def done(self) -> bool:
        """True when every queued request has produced its row."""
        return not self.active and not any(self.queues.values())

    def advance(self, max_s: float = 0.5) -> tuple[list[dict[str, Any]], bool]:
        """Run ticks for up to ``max_s`` seconds; returns the rows finished meanwhile and whether all are done."""
        deadline = time.perf_counter() + max_s
        while not self.done and time.perf_counter() < deadline:
            self.tick()
        rows, self.rows = self.rows, []
        return rows, self.done

    def run(self) -> list[dict[str, Any]]:
        """Serve everything queued; the rows of every request."""
        rows = []
        while not self.done:
            rows += self.advance(60.0)[0]
        return rows

    # ---- one tick ---------------------------------------------------------------------------------------------
    def _edge_of(self, run: RequestRun) -> int | None:
        return None if run.k == self.loaded.num_layers else self.ues[run.spec.ue].spec.edge

    def tick(self) -> None:
        """One step of every request whose edge is up: heads, one call per edge, replies."""
        for ue, queue in self.queues.items():
            if ue not in self.active and queue:
                self._start(self.ues[ue].begin(queue.popleft()))
        self._check_down_edges()
        ready = [run for run in self.active.values() if self._edge_of(run) not in self.down]
        if not ready:
            time.sleep(0.02)  # every busy UE waits for a restarting edge
            return
        by_edge: dict[int, list[RequestRun]] = {}
        for run in ready:
            edge = self._edge_of(run)
            if edge is None:
                self._guard(run, self.ues[run.spec.ue].run_local)
            else:
                by_edge.setdefault(edge, []).append(run)
        pending = [p for p in (self._send(edge, runs) for edge, runs in by_edge.items()) if p is not None]
        for index, outcome, done_s in self.transport.gather([p[2] for p in pending]):
            edge, runs, _, sent_s = pending[index]
            self._deliver(edge, runs, outcome, done_s - sent_s)
        for run in [r for r in self.active.values() if r.done]:
            self._finish(run, "ok")

    def _send(self, edge: int, runs: list[RequestRun]) -> tuple[int, list[RequestRun], Any, float] | None:
        requests, sent = [], []
        for run in runs:
            frame = self._guard(run, self.ues[run.spec.ue].emit)
            if frame is not None:
                requests.append(EdgeRequest(frame, close=run.last_step))
                sent.append(run)
        if not sent:
            return None
        if self.enforce_link_latency:  # UEs transmit in parallel on their own links: wait for the slowest
            time.sleep(max(run.last_link_s[0] for run in sent))
        start = time.perf_counter()
        return edge, sent, self.transport.submit(edge, requests), start

    def _deliver(self, edge: int, runs: list[RequestRun], outcome: Outcome, rtt_s: float) -> None:
        if isinstance(outcome, EdgeUnavailable):
            self._mark_down(edge)
            for run in runs:
                self._retry(run, str(outcome))
            return
        if self.enforce_link_latency:
            time.sleep(max(run.last_link_s[1] for run in runs))
        for run, reply in zip(runs, outcome, strict=True):
            if reply.ok:
                self.ues[run.spec.ue].receive(run, reply, rtt_s)
            elif reply.error_kind == "lost_session":
                self._retry(run, reply.error or "lost session")
            else:
                self._finish(run, "failed", reply.error)

    def _guard(self, run: RequestRun, step) -> Any:
        """Run a UE-side step; a UE-side error fails that request (logged), not the fleet."""
        try:
            return step(run)
        except (ValueError, RuntimeError) as err:
            self._finish(run, "failed", f"UE error: {err}")
            return None

    # ---- failures ---------------------------------------------------------------------------------------------
    def _mark_down(self, edge: int) -> None:
        if edge not in self.down:
            now = time.perf_counter()
            self.down[edge] = _DownEdge(self.transport.probe(edge), now, now + PROBE_INTERVAL_S)

    def _check_down_edges(self) -> None:
        now = time.perf_counter()
        for edge, down in list(self.down.items()):
            status = self.transport.probe_result(down.probe)
            if status:
                del self.down[edge]
            elif now - down.since_s > self.edge_down_timeout_s:
                del self.down[edge]
                for run in [r for r in self.active.values() if self._edge_of(r) == edge]:
                    self._finish(run, "failed", f"edge {edge} down for more than {self.edge_down_timeout_s:g} s")
            elif status is False and now >= down.next_probe_s:
                down.probe, down.next_probe_s = self.transport.probe(edge), now + PROBE_INTERVAL_S

    def _retry(self, run: RequestRun, reason: str) -> None:
        if run.attempt >= self.max_request_retries:
            self._finish(run, "failed", f"gave up after {run.attempt} retries: {reason}")
            return
        self._start(self.ues[run.spec.ue].begin(run.spec, run.attempt + 1))

    def _start(self, run: RequestRun) -> None:
        if run.error is not None:
            self.rows.append(self.ues[run.spec.ue].row(run, "failed", run.error))
            self.active.pop(run.spec.ue, None)
        else:
            self.active[run.spec.ue] = run

    def _finish(self, run: RequestRun, status: str, error: str | None = None) -> None:
        self.rows.append(self.ues[run.spec.ue].row(run, status, error))
        if self.active.get(run.spec.ue) is run:
            del self.active[run.spec.ue]


class UEFleetActor(UEFleet):
    """:class:`UEFleet` built inside a Ray actor from the shared model, talking to edge actor handles."""

    def __init__(self, shared, specs: list[UESpec], edge_handles: list[Any], *, threads: int = 1,
                 **options: Any) -> None:
        from cluster.weights import build_model

        torch.set_num_threads(threads)
        super().__init__(build_model(shared), specs, RayTransport(edge_handles), **options)

    def ready(self) -> list[int]:
        """The UE ids this actor holds (the fleet waits on it before starting)."""
        return sorted(self.ues)
