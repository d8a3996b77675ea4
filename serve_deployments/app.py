"""The edgesplit Serve application: the edge (HTTP routes + layer stack, session affinity) + the live split controller.

Run it with ``serve run serve_deployments/config.yaml`` (or ``edgesplit serve``, which reads the same YAML), or
from Python with ``serve.run(build_app(EdgeAppArgs(...)))``. The YAML's ``args`` are validated by pydantic against
:class:`EdgeAppArgs` (this module deliberately has no ``from __future__ import annotations``: Serve validates a
builder's argument only when its annotation is a real class). Replicas, ``max_ongoing_requests``,
``max_queued_requests``, autoscaling and per-replica resources (``num_cpus``; ``num_gpus`` on GPU machines) are
the YAML's per-deployment options; the defaults below are what a 2-core loopback machine runs.

Bearer tokens are read from the environment variable named by ``api_token_env`` (comma-separated) where the app is
built (the driver); only their SHA-256 digests go into the deployments' arguments.

Devices: ``device`` (auto, cpu, cuda, cuda:N) is where each edge replica's layer stack runs, checked against the GPUs
the replica reserves (the edge deployment's ``ray_actor_options.num_gpus``): GPUs reserved need device cuda or auto,
device cuda needs GPUs reserved, and auto means cuda exactly when the replica reserved one
(:mod:`serve_deployments.edge_device`: ``edgesplit serve`` checks the YAML before deploying, every replica checks
its own reservation when it starts).
"""

import hashlib
import os

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve.config import BackpressureConfig, RequestRouterConfig

from edgesplit.models.device import check_device_name
from serve_deployments.controller import ControllerArgs, SplitControllerDeployment
from serve_deployments.edge_deployment import EdgeArgs, EdgeTailDeployment
from serve_deployments.edge_device import check_edge_gpus, place_engine, replica_device
from serve_deployments.ingress import EdgeHttpRoutes, IngressArgs, app

CONSISTENT_HASH_ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"
"""Serve's session-affinity router: a session id always hashes to the same replica while the replica set holds."""


class EdgeAppArgs(BaseModel):
    """Arguments of the whole app (the ``args`` block of an application in the Serve YAML)."""

    model_config = ConfigDict(extra="forbid")
    edge: EdgeArgs = Field(default_factory=EdgeArgs)
    """The edge layer stack: model, limits, batching."""
    controller: ControllerArgs = Field(default_factory=ControllerArgs)
    """The split controller: policy to load (a server-side path), fallback rule."""
    ingress: IngressArgs = Field(default_factory=IngressArgs)
    """HTTP limits, timeouts and token digests of the edge's routes."""
    api_token_env: str = "EDGESPLIT_API_TOKEN"
    """Environment variable holding the bearer token(s), comma-separated; unset or empty means no auth."""
    session_affinity: bool = True
    """Route each session's requests by consistent hashing of its id (off: Serve's default power-of-two router)."""
    device: str = "auto"
    """Torch device of the edge replicas' layer stack: auto (cuda when the replica reserves a GPU with
    ``ray_actor_options.num_gpus``, else cpu), cpu, cuda or cuda:N (see the module docstring)."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device_name(value)


# Decorated at import (not inside the builder): serve.ingress rewrites the module-level FastAPI app's routes into
# class-based views, and a replica that imports this module must see the same rewrite.
@serve.ingress(app)
class EdgeServer(EdgeHttpRoutes, EdgeTailDeployment):
    """The edge replica: the layer stack (handle API) with the HTTP routes served in the same process."""

    def __init__(self, edge: dict, controller, http: dict | None = None, device: str = "cpu") -> None:
        torch_device = replica_device(device)  # before the weights load: a wrong reservation fails fast
        EdgeTailDeployment.__init__(self, edge)
        place_engine(self.engine, torch_device)
        self.controller = controller
        self.http = IngressArgs.model_validate(http or {})


def edge_deployment(affinity: bool = True, retry_after_s: float = 1.0):
    """The edge (HTTP ingress + layer stack) as a Serve deployment, with the defaults the YAML can override."""
    options = {"name": "EdgeTailDeployment", "max_ongoing_requests": 32, "max_queued_requests": 256,
               "ray_actor_options": {"num_cpus": 1}, "health_check_period_s": 5,
               "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=retry_after_s)}
    if affinity:
        options["request_router_config"] = RequestRouterConfig(
            request_router_class=CONSISTENT_HASH_ROUTER,
            request_router_kwargs={"num_virtual_nodes": 100, "num_fallback_replicas": 0})
    return serve.deployment(**options)(EdgeServer)


def controller_deployment():
    """The split controller as a Serve deployment."""
    return serve.deployment(name="SplitControllerDeployment", max_ongoing_requests=64,
                            ray_actor_options={"num_cpus": 0})(SplitControllerDeployment)


def compose(args: EdgeAppArgs, edge_options: dict | None = None) -> serve.Application:
    """Compose edge (with its HTTP routes) + controller with ``.bind()``; ``edge_options`` override Serve options."""
    tokens = [t.strip() for t in os.environ.get(args.api_token_env, "").split(",") if t.strip()]
    digests = [hashlib.sha256(t.encode()).hexdigest() for t in tokens] + list(args.ingress.api_token_sha256)
    http = args.ingress.model_copy(update={"api_token_sha256": digests})
    edge = edge_deployment(args.session_affinity, args.ingress.retry_after_s)
    if edge_options:
        if "ray_actor_options" in edge_options:
            check_edge_gpus(args.device, edge_options["ray_actor_options"])
        edge = edge.options(**edge_options)
    controller = controller_deployment().bind(args.controller.model_dump())
    return edge.bind(args.edge.model_dump(), controller, http.model_dump(), args.device)


def build_app(args: EdgeAppArgs) -> serve.Application:
    """The ``import_path`` target of the YAML (``serve_deployments.app:build_app``)."""
    return compose(EdgeAppArgs.model_validate(args) if isinstance(args, dict) else args)
