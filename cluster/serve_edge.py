"""Serve-mode UEs (``--edge serve``): fleet UEs that reach the edge through the Serve app's deployment handles.

Instead of sending packets to :class:`~cluster.edge_actor.EdgeActor`\\ s, each UE drives the ``edgesplit`` Serve
app (``serve_deployments.app``) with its own :class:`~edgesplit.client.SplitClient` over a
:class:`~serve_deployments.handle_transport.HandleTransport` — the same client, sessions, consistent-hash
routing, ``@serve.batch`` decode and 429/503/lost-session handling a deployment uses. What stays the fleet's:

- the split: the UE's policy picks ``k`` per request from the measured channel block (``fixed:K`` / ``snr:...``)
  and passes it to the client, so the controller is not asked;
- the channel: the client runs in simulation mode with the UE's own impairment, applied to the UE's own channel
  block of every step (the same process steps and the same noise seed as with actor edges, so an actor-edge run
  and a serve run see the same blocks; SplitClient's own simulation mode knows only an SNR, while fleet blocks
  also carry fading and loss and fleet impairments take more parameters than a ``ChannelSetting``);
- the records: one row per request with :meth:`~cluster.ue_device.UEDevice.row`'s columns, priced by the same
  cost model, plus ``replica`` (the Serve replica that answered the last step), ``resumes`` (re-prefills after
  a lost session) and ``call_retries`` (calls retried after 429/503); ``retries`` counts the restarts from
  scratch, as with actor edges. The Serve path reports the tail's compute time (``edge_compute_s``, the share
  of a batched forward) but not the rest, so ``encode_s`` (folded into ``head_s``), ``edge_decode_s`` and
  ``call_overhead_s`` are NaN; ``rtt_s`` is the wall
  time of the edge calls, session creation included. A re-prefill's extra uplink shows in ``bytes_sent``; the
  simulated costs (``sim_*``) price the request's logical steps, as with actor edges.

The UEs of one :class:`ServeUEFleet` run concurrently, one thread each (each UE serves its own requests in order),
so their decode steps meet in the replica's batches. :func:`start_app` / :func:`stop_app` deploy and remove the app
for a fleet run when none is running.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cluster.ue_device import RequestRun, RequestSpec, UEDevice, UESpec, derive_seed
from edgesplit.channel import ChannelState
from edgesplit.client import EdgeCallError, GenerationResult, SplitClient, TokenEvent
from edgesplit.client.transport import RESUMABLE, RETRYABLE
from edgesplit.models import LoadedModel

APP_NAME = "edgesplit"
"""Name of the Serve application the fleet drives (what ``HandleTransport`` looks up)."""
NOT_MEASURED = ("encode_s", "edge_decode_s", "call_overhead_s")
"""Row columns the Serve path cannot measure (NaN in serve mode)."""


class UEBlockChannel:
    """The ``channel`` of a UE's SplitClient: the UE's impairment applied with the UE's current channel block."""

    def __init__(self, impairment) -> None:
        self._impairment = impairment
        self.block = ChannelState(mean_snr_db=30.0)
        """The block of the step being sent (the fleet sets it before each step)."""

    @property
    def snr_db(self) -> float:
        return self.block.snr_db

    def impairment(self) -> UEBlockChannel:
        return self

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator):
        """Impair with the full block (fading, loss rate), not the SNR-only state the client derives."""
        return self._impairment.apply(x, self.block, generator)


class RecordingTransport:
    """Wraps a transport and keeps what the fleet's rows need: session-opening time, the last step's answer.

    The method names stay those of the transport: the client decides what to retry by them.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.last_answer: dict = {}
        self._create_s = 0.0
        self._create_started: float | None = None

    def take_create_s(self) -> float:
        """Wall time spent opening sessions (back-off between retries included) since the last call."""
        spent, self._create_s = self._create_s, 0.0
        return spent

    async def create(self, body: dict) -> dict:
        if self._create_started is None:  # a failed attempt leaves it set, so the span covers the back-off too
            self._create_started = time.perf_counter()
        answer = await self.inner.create(body)
        self._create_s += time.perf_counter() - self._create_started
        self._create_started = None
        return answer

    async def prefill(self, session_id: str, frame: bytes) -> dict:
        self.last_answer = await self.inner.prefill(session_id, frame)
        return self.last_answer

    async def decode(self, session_id: str, frame: bytes) -> dict:
        self.last_answer = await self.inner.decode(session_id, frame)
        return self.last_answer

    async def close(self, session_id: str) -> dict:
        return await self.inner.close(session_id)

    async def split(self, state: dict) -> dict:
        return await self.inner.split(state)

    async def models(self) -> dict:
        return await self.inner.models()

    async def aclose(self) -> None:
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()


class _ServeUE:
    """One UE of a serve-mode fleet: its device (channel, policy, pricing), its client and its transport."""

    def __init__(self, spec: UESpec, loaded: LoadedModel, transport, client_options: dict[str, Any]) -> None:
        self.device = UEDevice(spec, loaded)
        self.channel = UEBlockChannel(self.device.impairment)
        self.transport = RecordingTransport(transport)
        # The client's noise generator gets the seed UEDevice gives its own: the same draws as with actor edges.
        self.client = SplitClient(loaded, self.transport, channel=self.channel, encoding=spec.encoding,
                                  seed=derive_seed(spec.seed, spec.ue_id, 1), **client_options)
        self.lock = threading.Lock()

    def next_block(self, run: RequestRun) -> None:
        """Step the channel for the next packet and hand the block to the client."""
        state = self.device._step_state(run)  # the actor fleet's own bookkeeping: decision block first
        self.channel.block = state
        self.client.ue_state["snr_db_history"] = [state.snr_db]


class ServeUEFleet:
    """UEs generating through a Serve app (plain class: ``transport_factory`` gives each UE its transport)."""

    def __init__(self, loaded: LoadedModel, specs: list[UESpec], transport_factory: Callable[[], Any], *,
                 enforce_link_latency: bool = False, max_request_retries: int = 3,
                 client_options: dict[str, Any] | None = None) -> None:
        self.loaded = loaded
        self.ues = {spec.ue_id: _ServeUE(spec, loaded, transport_factory(), client_options or {}) for spec in specs}
        self.enforce_link_latency = enforce_link_latency
        self.max_request_retries = max_request_retries
        self._pool = ThreadPoolExecutor(max_workers=len(self.ues), thread_name_prefix="serve-ue")
        self._rows: queue.Queue[dict[str, Any]] = queue.Queue()
        self._submitted = self._finished = 0
        self._crash: BaseException | None = None

    def submit(self, requests: list[RequestSpec]) -> None:
        """Queue requests; each UE starts on its own at once and serves its requests in order."""
        for request in requests:
            if request.ue not in self.ues:
                raise ValueError(f"request {request.request_id} is for UE {request.ue}, not in this fleet "
                                 f"({sorted(self.ues)})")
        for ue_id in self.ues:
            mine = [r for r in requests if r.ue == ue_id]
            if mine:
                self._submitted += len(mine)
                self._pool.submit(self._serve_all, ue_id, mine)

    @property
    def done(self) -> bool:
        """True when every submitted request has produced its row."""
        return self._finished == self._submitted

    def advance(self, max_s: float = 0.5) -> tuple[list[dict[str, Any]], bool]:
        """Wait up to ``max_s`` seconds for rows; returns the rows finished meanwhile and whether all are done."""
        deadline = time.perf_counter() + max_s
        rows: list[dict[str, Any]] = []
        while not self.done and self._crash is None:
            try:
                rows.append(self._rows.get(timeout=max(deadline - time.perf_counter(), 0.0)))
            except queue.Empty:
                break
            self._finished += 1
        if self._crash is not None:
            raise RuntimeError(f"a serve-mode UE crashed: {self._crash!r}") from self._crash
        return rows, self.done

    def run(self) -> list[dict[str, Any]]:
        """Serve everything submitted; the rows of every request."""
        rows = []
        while not self.done:
            rows += self.advance(60.0)[0]
        return rows

    def close(self) -> None:
        """Stop the clients' loop threads (after the last request)."""
        self._pool.shutdown(wait=True)
        for ue in self.ues.values():
            ue.client.close()

    # ---- one UE -----------------------------------------------------------------------------------------------
    def _serve_all(self, ue_id: int, requests: list[RequestSpec]) -> None:
        ue = self.ues[ue_id]
        try:
            with ue.lock:  # one request at a time per UE, even across submit() calls
                for request in requests:
                    self._rows.put(self._serve(ue, request))
        except BaseException as err:  # a bug, not an edge failure: fail the run loudly, from advance()
            self._crash = err

    def _serve(self, ue: _ServeUE, request: RequestSpec) -> dict[str, Any]:
        """Generate one request; restart it from scratch (new split decision) when the client gives up on the edge."""
        run = ue.device.begin(request)
        while run.error is None:
            result = GenerationResult([], run.k, None)
            try:
                self._generate(ue, run, result)
                return self._row(ue, run, result, "ok")
            except EdgeCallError as err:
                if err.code not in RETRYABLE | RESUMABLE or run.attempt >= self.max_request_retries:
                    return self._row(ue, run, result, "failed", f"edge error after {run.attempt} retries: {err}")
                run = ue.device.begin(request, run.attempt + 1)
            except (ValueError, RuntimeError) as err:
                return self._row(ue, run, result, "failed", f"UE error: {err}")
        return self._row(ue, run, GenerationResult([], run.k, None), "failed", run.error)

    def _generate(self, ue: _ServeUE, run: RequestRun, result: GenerationResult) -> None:
        ue.next_block(run)
        ue.transport.take_create_s()
        ue.transport.last_answer = {}
        for event in ue.client.stream(list(run.spec.prompt), run.spec.max_new_tokens, k=run.k, result=result):
            self._record(ue, run, event)
            if self.enforce_link_latency:  # this UE's own link: its steps wait out their simulated air time
                time.sleep(sum(run.last_link_s))
            if not run.done:
                ue.next_block(run)

    def _record(self, ue: _ServeUE, run: RequestRun, event: TokenEvent) -> None:
        at_edge = run.k < self.loaded.num_layers
        ue.transport.take_create_s()  # the client's head_s excludes opening a session; its round_trip_s includes it
        run.tokens.append(event.token)
        run.add(head_s=event.head_s, rtt_s=event.round_trip_s, edge_compute_s=event.edge_compute_s or 0.0,
                bytes_sent=event.frame_bytes, packets=int(at_edge),
                edge_batch_size=ue.transport.last_answer.get("batch_size", 1) if at_edge else 0)
        ue.device._price(run, run.states[-1], len(run.spec.prompt) if event.index == 0 else 1)

    def _row(self, ue: _ServeUE, run: RequestRun, result: GenerationResult, status: str,
             error: str | None = None) -> dict[str, Any]:
        row = ue.device.row(run, status, error)
        at_edge = 0 <= run.k < self.loaded.num_layers
        replica = str(ue.transport.last_answer.get("replica", "")) if at_edge else ""
        row.update(dict.fromkeys(NOT_MEASURED, math.nan), edge=-1, replica=replica, resumes=result.resumes,
                   call_retries=result.retries)
        return row


class ServeUEFleetActor(ServeUEFleet):
    """:class:`ServeUEFleet` inside a Ray actor: the shared model, one HandleTransport per UE."""

    def __init__(self, shared, specs: list[UESpec], *, app_name: str = APP_NAME, threads: int = 1,
                 **options: Any) -> None:
        from cluster.weights import build_model
        from serve_deployments.handle_transport import HandleTransport

        torch.set_num_threads(threads)
        super().__init__(build_model(shared), specs, lambda: HandleTransport(app_name), **options)

    def ready(self) -> list[int]:
        """The UE ids this actor holds (the fleet waits on it before starting)."""
        return sorted(self.ues)


def number_replicas(rows: list[dict[str, Any]]) -> None:
    """Set each row's ``edge`` to the index of its ``replica`` among the replicas seen in the run (-1: none)."""
    replicas = sorted({row["replica"] for row in rows if row.get("replica")})
    for row in rows:
        row["edge"] = replicas.index(row["replica"]) if row.get("replica") else -1


@dataclass
class FleetServeApp:
    """The Serve app of one fleet run: deployed by :meth:`start` unless one is already running, removed by
    :meth:`stop` only if this run deployed it (and Serve itself shut down only if this run started it)."""

    app_name: str = APP_NAME
    """Serve application name."""
    deployed: bool = False
    """True when :meth:`start` deployed the app."""
    started_serve: bool = False
    """True when :meth:`start` also started Serve (no HTTP proxy: the fleet uses handles only)."""

    def start(self, loaded: LoadedModel, replicas: int, num_cpus: float, batching: bool = True,
              device: str = "auto", num_gpus: float = 0.0) -> dict:
        """Deploy the app for ``loaded``'s model (replicas on ``device`` with ``num_gpus`` each), or use a running one
        as it is (its replicas, limits and devices) when its model matches; returns the edge's model facts."""
        from ray import serve
        from ray.serve.context import _get_global_client

        status = serve.status().applications.get(self.app_name)
        if status is None or status.status != "RUNNING":
            from serve_deployments.app import EdgeAppArgs, compose
            from serve_deployments.edge_deployment import EdgeArgs

            if _get_global_client(raise_if_no_controller_running=False) is None:
                serve.start(proxy_location="Disabled")  # handles only: no proxy, no port to collide on
                self.started_serve = True
            name = str(Path(loaded.name).resolve()) if Path(loaded.name).is_dir() else loaded.name
            edge = EdgeArgs(model=name, batching=batching, torch_threads=max(1, math.ceil(num_cpus)))
            options = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}
            self.deployed = True
            serve.run(compose(EdgeAppArgs(edge=edge, device=device), options), name=self.app_name, route_prefix=None)
        return self.check_model(loaded)

    def check_model(self, loaded: LoadedModel) -> dict:
        """The edge's model facts; ``ValueError`` when they are not those of the UEs' model."""
        from ray import serve

        info = serve.get_deployment_handle("EdgeTailDeployment", self.app_name).info.remote().result(timeout_s=120)
        ours = {"num_layers": loaded.num_layers, "hidden_size": loaded.hidden_size,
                "vocab_size": loaded.adapter.vocab_size}
        theirs = {key: info.get(key) for key in ours}
        if theirs != ours:
            raise ValueError(f"Serve app {self.app_name!r} serves {info.get('model')!r} {theirs}, but the fleet's "
                             f"model {loaded.name!r} has {ours}; delete that app or pick its model")
        return info

    def stop(self) -> None:
        """Remove what :meth:`start` created."""
        from ray import serve

        if self.started_serve:
            serve.shutdown()
        elif self.deployed:
            serve.delete(self.app_name)
        self.deployed = self.started_serve = False
