"""A fleet on Ray: edge actors (restartable) and UE fleet actors sharing one object-store copy of the model.

Shapes and scheduling: UE ``i`` is attached to edge ``i mod edges`` and uses device profile ``devices[i mod
len(devices)]``; request ``j`` is issued by UE ``j mod ues``; UEs are spread round-robin over ``ue_actors``
actor processes. Edge actors are created with ``max_restarts`` and ``max_task_retries=0``: a crash fails the call
in flight (the UE sees it and retries from scratch) and Ray brings the edge back with empty KV caches. The
model's ``ObjectRef`` is held by :class:`RayFleet` for its whole life, so a restarted edge can rebuild from it
(Ray logs a warning about constructor arguments in the object store with ``max_restarts``; this is why it is
safe). UE fleet actors hold request state and are not restarted: if one dies, the run fails loudly.

With ``edge_backend="serve"`` there are no edge actors: the UE fleet actors (:mod:`cluster.serve_edge`) drive the
``edgesplit`` Serve app through deployment handles, ``edges`` is its number of edge replicas, and the fleet deploys
the app itself when none is running (and removes it at :meth:`RayFleet.shutdown`).

:class:`FleetConfig` validates everything a run needs before any actor starts; :func:`run_local_fleet` runs the
same UE and edge classes in this process without Ray.

Devices: the UEs simulate phones and run on CPU in float32. The edges run their tails on ``edge_device`` in
``edge_dtype`` with ``edge_num_gpus`` Ray GPUs each (``auto``: cuda exactly when the edge reserved a GPU, bfloat16
there where supported, float32 on CPU); each edge actor converts its view of the shared weights when it starts
(a CPU float32 edge keeps the zero-copy view). The Serve backend takes the device and GPUs (the app's ``device``
and ``ray_actor_options.num_gpus``); its replicas load float32 (``edge_dtype`` auto or float32 only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.edge_actor import EdgeActor, EdgeWorker
from cluster.edge_transport import LocalTransport
from cluster.policies import SplitPolicy, check_policy, parse_policy
from cluster.ue_actor import UEFleet, UEFleetActor
from cluster.ue_device import RequestSpec, UESpec
from edgesplit.channel import make_config
from edgesplit.models import LoadedModel
from edgesplit.models.device import DTYPE_NAMES, check_gpu_reservation

EDGE_BACKENDS = ("actors", "serve")
"""What the UEs' packets go to: edge actors, or the Serve app's deployments."""


def parse_value(text: str) -> Any:
    """A CLI parameter value: int, float, true/false, none, or the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_kind_params(text: str) -> tuple[str, dict[str, Any]]:
    """``"gauss_markov:distance_m=150,fading_rho=0.8"`` → ``("gauss_markov", {...})``."""
    kind, _, body = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameters look like name=value, got {item!r} in {text!r}")
        params[key.strip()] = parse_value(value)
    return kind.strip(), params


@dataclass(frozen=True)
class FleetConfig:
    """One fleet run."""

    ues: int = 8
    """Number of simulated UEs."""
    edges: int = 2
    """Number of edge workers (Ray actors; with the serve backend, edge replicas)."""
    edge_backend: str = "actors"
    """How UEs reach the edge: ``actors`` (one EdgeActor per edge) or ``serve`` (the Serve app, through handles)."""
    requests: int = 32
    """Generation requests in total, spread round-robin over the UEs."""
    ue_actors: int = 1
    """Actor processes the UEs are spread over (1: one fleet actor; ``ues``: one actor per UE)."""
    policy: str | SplitPolicy = "fixed:15"
    """Split policy: ``fixed:K``, ``snr:T=K,...``, ``import:module:Name`` or a policy object (pickled to actors)."""
    max_new_tokens: int = 16
    """Tokens generated per request (greedy; EOS does not stop generation)."""
    prompt_tokens: int = 32
    """Prompt length in tokens (every prompt has this length)."""
    channel: str = "gauss_markov"
    """Channel process kind of every UE."""
    channel_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the channel process."""
    distance_range_m: tuple[float, float] | None = None
    """Spread the UEs' mean distance evenly over this range (processes with ``distance_m`` only)."""
    impairment: str = "none"
    """Impairment of the hidden state (none, awgn, dropout, digital, erasure)."""
    impairment_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the impairment."""
    encoding: str = "float32"
    """Packet encoding of hidden states."""
    devices: tuple[str, ...] = ("phone-soc",)
    """Device profiles, cycled over the UEs."""
    link: str = "5g-nr-20mhz"
    """Link profile of the simulated link time."""
    edge_profile: str = "a100"
    """Edge profile of the simulated edge compute time."""
    seed: int = 0
    """Seed of prompts, channels and noise."""
    enforce_link_latency: bool = False
    """Sleep the simulated uplink/downlink time of every step (per tick: the slowest UE of the call)."""
    batch_edge: bool = True
    """Let edges run same-shape steps of several sessions in one forward."""
    max_restarts: int = 2
    """How often Ray may restart a dead edge actor."""
    max_request_retries: int = 3
    """How often a request is restarted from scratch after edge failures before it is logged as failed."""
    edge_fault_after_calls: int | None = None
    """Inject a crash: edge 0 exits while serving its call number N + 1 (first incarnation only)."""
    ue_num_cpus: float = 0.25
    """Ray CPUs reserved per UE fleet actor."""
    edge_num_cpus: float = 0.5
    """Ray CPUs reserved per edge actor."""
    progress_interval_s: float = 0.5
    """How long a UE fleet actor works before reporting finished rows to the driver."""
    edge_device: str = "auto"
    """Torch device of the edges' tails: auto (cuda when the edge reserved a GPU), cpu, cuda or cuda:N."""
    edge_dtype: str = "auto"
    """Weight dtype of the edges: auto (bfloat16 on a CUDA edge that supports it, else float32), float32, bfloat16,
    float16."""
    edge_num_gpus: float = 0.0
    """Ray GPUs reserved per edge actor (or edge replica with the serve backend)."""
    allow_cpu_half: bool = False
    """Accept float16/bfloat16 on CPU edges (refused otherwise, see :mod:`edgesplit.models.device`)."""

    def __post_init__(self) -> None:
        for name in ("ues", "edges", "requests", "ue_actors", "max_new_tokens", "prompt_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.ue_actors > self.ues:
            raise ValueError(f"ue_actors ({self.ue_actors}) cannot exceed ues ({self.ues})")
        if self.max_restarts < 0 or self.max_request_retries < 0:
            raise ValueError("max_restarts and max_request_retries must be >= 0")
        if self.edge_backend not in EDGE_BACKENDS:
            raise ValueError(f"edge backend must be one of {', '.join(EDGE_BACKENDS)}, got {self.edge_backend!r}")
        if self.edge_backend == "serve" and self.edge_fault_after_calls is not None:
            raise ValueError("edge_fault_after_calls crashes an edge actor; the serve backend has none (kill a "
                             "replica instead)")
        if self.edge_fault_after_calls is not None and self.edge_fault_after_calls < 0:
            raise ValueError(f"edge_fault_after_calls must be >= 0, got {self.edge_fault_after_calls}")
        for name in ("ue_num_cpus", "edge_num_cpus", "progress_interval_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        self._check_edge_device()

    def _check_edge_device(self) -> None:
        if not math.isfinite(self.edge_num_gpus):
            raise ValueError(f"edge_num_gpus must be finite, got {self.edge_num_gpus!r}")
        check_gpu_reservation(self.edge_device, self.edge_num_gpus)
        if self.edge_dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown edge dtype {self.edge_dtype!r}; accepted: {', '.join(DTYPE_NAMES)}")
        half = self.edge_dtype in ("float16", "bfloat16")
        if half and self.edge_num_gpus == 0 and not self.allow_cpu_half:
            raise ValueError(f"edge dtype {self.edge_dtype} on CPU edges (no GPU reserved) is refused unless allowed "
                             f"(--allow-cpu-half); use float32 or auto")
        if half and self.edge_backend == "serve":
            raise ValueError("the serve backend's replicas load float32; edge dtype must be auto or float32 there")
        if not self.devices:
            raise ValueError("devices needs at least one device profile")
        self._check_distances()
        self.ue_specs()  # validates channel, impairment, encoding, profiles and policy syntax

    def _check_distances(self) -> None:
        if self.distance_range_m is None:
            return
        low, high = self.distance_range_m
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise ValueError(f"distance range must be 0 < low <= high metres, got {self.distance_range_m}")
        fields = {f.name for f in dataclasses.fields(make_config(self.channel, **self.channel_params))}
        if "distance_m" not in fields:
            raise ValueError(f"channel {self.channel!r} has no distance_m; a distance range needs path_loss or "
                             f"gauss_markov")

    def check_model(self, num_layers: int) -> None:
        """Raise ``ValueError`` when the policy's splits do not fit the model."""
        check_policy(parse_policy(self.policy), num_layers)

    def ue_specs(self) -> list[UESpec]:
        """One :class:`UESpec` per UE."""
        return [self._spec(i) for i in range(self.ues)]

    def _spec(self, i: int) -> UESpec:
        params = dict(self.channel_params)
        if self.distance_range_m is not None:
            low, high = self.distance_range_m
            params["distance_m"] = low + (high - low) * i / max(self.ues - 1, 1)
        return UESpec(ue_id=i, edge=i % self.edges, device=self.devices[i % len(self.devices)],
                      channel=self.channel, channel_params=params, impairment=self.impairment,
                      impairment_params=dict(self.impairment_params), encoding=self.encoding, policy=self.policy,
                      link=self.link, edge_profile=self.edge_profile, seed=self.seed)

    def make_requests(self, prompts: list[tuple[int, ...]]) -> list[RequestSpec]:
        """One request per prompt (the CLI makes ``requests`` of them); request ``j`` goes to UE ``j mod ues``."""
        return [RequestSpec(j, j % self.ues, tuple(p), self.max_new_tokens) for j, p in enumerate(prompts)]

    def edge_options(self) -> dict[str, Any]:
        """Keyword options of :class:`EdgeActor` (device and dtype) implied by this config."""
        return {"device": self.edge_device, "dtype": self.edge_dtype, "allow_cpu_half": self.allow_cpu_half}

    def ue_options(self) -> dict[str, Any]:
        """Keyword options of :class:`UEFleet` implied by this config."""
        return {"enforce_link_latency": self.enforce_link_latency, "max_request_retries": self.max_request_retries}


def run_local_fleet(loaded: LoadedModel, config: FleetConfig, prompts: list[tuple[int, ...]]) -> list[dict]:
    """The whole fleet in this process, without Ray (same classes; edges answer synchronously)."""
    edges = [EdgeWorker(loaded, i, batch=config.batch_edge) for i in range(config.edges)]
    fleet = UEFleet(loaded, config.ue_specs(), LocalTransport(edges), **config.ue_options())
    fleet.submit(config.make_requests(prompts))
    return fleet.run()


class RayFleet:
    """Edge actors (or the Serve app) and UE fleet actors on the current Ray cluster (``ray.init`` must have been
    called)."""

    def __init__(self, config: FleetConfig, loaded: LoadedModel) -> None:
        import ray

        from cluster.weights import put_model

        self.config = config
        self.model_ref = put_model(loaded)
        self.serve_app, self.edges, self.ue_actors = None, [], []
        specs = config.ue_specs()
        self.groups = [specs[a :: config.ue_actors] for a in range(config.ue_actors)]
        try:
            self._start(ray, loaded)
        except BaseException:
            self.shutdown()  # a half-built fleet: kill what started, remove an app deployed for it
            raise

    def _start(self, ray, loaded: LoadedModel) -> None:
        config = self.config
        if config.edge_backend == "serve":
            from cluster.serve_edge import FleetServeApp, ServeUEFleetActor

            self.serve_app = FleetServeApp()
            self.serve_app.start(loaded, config.edges, config.edge_num_cpus, batching=config.batch_edge,
                                 device=config.edge_device, num_gpus=config.edge_num_gpus)
            ue_cls = ray.remote(ServeUEFleetActor).options(num_cpus=config.ue_num_cpus, max_restarts=0)
            self.ue_actors = [ue_cls.remote(self.model_ref, group, **config.ue_options()) for group in self.groups]
        else:
            edge_cls = ray.remote(EdgeActor).options(num_cpus=config.edge_num_cpus, num_gpus=config.edge_num_gpus,
                                                     max_restarts=config.max_restarts, max_task_retries=0)
            self.edges = [edge_cls.remote(self.model_ref, i, batch=config.batch_edge,
                                          fault_after_calls=config.edge_fault_after_calls if i == 0 else None,
                                          **config.edge_options())
                          for i in range(config.edges)]
            ue_cls = ray.remote(UEFleetActor).options(num_cpus=config.ue_num_cpus, max_restarts=0)
            self.ue_actors = [ue_cls.remote(self.model_ref, group, self.edges, **config.ue_options())
                              for group in self.groups]
        ray.get([actor.ready.remote() for actor in [*self.edges, *self.ue_actors]])

    def run(self, prompts: list[tuple[int, ...]],
            on_progress: Callable[[int, int, RayFleet], None] | None = None) -> list[dict[str, Any]]:
        """Serve one request per prompt; ``on_progress(rows_done, total, fleet)`` after every report."""
        import ray

        requests = self.config.make_requests(prompts)
        for actor, group in zip(self.ue_actors, self.groups, strict=True):
            ues = {spec.ue_id for spec in group}
            ray.get(actor.submit.remote([r for r in requests if r.ue in ues]))
        interval = self.config.progress_interval_s
        pending = {actor.advance.remote(interval): actor for actor in self.ue_actors}
        rows: list[dict[str, Any]] = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(ready[0])
            new_rows, done = ray.get(ready[0])
            rows += new_rows
            if on_progress is not None:
                on_progress(len(rows), len(requests), self)
            if not done:
                pending[actor.advance.remote(interval)] = actor
        if self.serve_app is not None:
            from cluster.serve_edge import number_replicas

            number_replicas(rows)
        return sorted(rows, key=lambda row: row["request_id"])

    def edge_info(self) -> list[dict[str, int]]:
        """Each edge actor's id, pid, calls and sessions (a restarted edge shows a new pid; none in serve mode)."""
        import ray

        return ray.get([edge.info.remote() for edge in self.edges])

    def shutdown(self) -> None:
        """Kill every actor of the fleet (no restarts); remove the Serve app if the fleet deployed it."""
        import ray

        for actor in [*self.ue_actors, *self.edges]:
            ray.kill(actor)
        if self.serve_app is not None:
            self.serve_app.stop()
