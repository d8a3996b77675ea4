"""``edgesplit serve``: start the Serve app from its YAML on the local Ray (or ``RAY_ADDRESS``), print the URL, block.

Does what ``serve run serve_deployments/config.yaml`` does (the same file, the same schema), plus overrides for the
host, port and edge replicas, a wait until the app is RUNNING, and a clean shutdown on Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from importlib.resources import files
from pathlib import Path

import typer
import yaml

from edgesplit.clierrors import fail

DEFAULT_CONFIG = Path(str(files("serve_deployments") / "config.yaml"))
"""The packaged Serve config (loopback, one replica per deployment, the built-in model)."""


def load_config(path: Path, host: str | None = None, port: int | None = None, edge_replicas: int | None = None):
    """The Serve deploy schema from ``path`` with the CLI's overrides applied (exit 2 on a bad file)."""
    from ray.serve.schema import ServeDeploySchema

    try:
        raw = yaml.safe_load(path.read_text())
        if host is not None or port is not None:
            raw.setdefault("http_options", {})
            raw["http_options"].update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
        if edge_replicas is not None:
            for app in raw.get("applications", []):
                for deployment in app.get("deployments", []):
                    if deployment.get("name") == "EdgeTailDeployment":
                        deployment.pop("autoscaling_config", None)
                        deployment["num_replicas"] = edge_replicas
        schema = ServeDeploySchema.model_validate(raw)
        check_devices(schema)
        return schema
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as err:
        fail(f"cannot use Serve config {path}: {err}")


def check_devices(schema) -> None:
    """ValueError when an edgesplit app's ``device`` does not fit its edge deployment's ``ray_actor_options.num_gpus``
    (:mod:`serve_deployments.edge_device`), naming the app."""
    from serve_deployments.app import EdgeAppArgs
    from serve_deployments.edge_device import check_edge_gpus

    for app in schema.applications:
        if app.import_path != "serve_deployments.app:build_app":
            continue
        device = EdgeAppArgs.model_validate(app.args or {}).device
        edge = next((d for d in app.deployments or [] if d.name == "EdgeTailDeployment"), None)
        num_gpus = getattr(edge.ray_actor_options, "num_gpus", None) if edge is not None else None
        try:
            check_edge_gpus(device, {"num_gpus": num_gpus})
        except ValueError as err:
            raise ValueError(f"app {app.name!r}: {err}") from None


def start(config, timeout_s: float = 300.0) -> str:
    """Deploy ``config`` on the connected Ray and wait until every app is RUNNING; returns the base URL."""
    from ray import serve
    from ray.serve._private import api as serve_api  # what `serve run` itself calls

    client = serve_api.serve_start(http_options=config.http_options.model_dump(),
                                   proxy_location=config.proxy_location)
    client.deploy_apps(config, _blocking=False)
    deadline = time.monotonic() + timeout_s
    names = [app.name for app in config.applications]
    while time.monotonic() < deadline:
        status = serve.status().applications
        states = {name: status[name].status if name in status else "NOT_STARTED" for name in names}
        if all(s == "RUNNING" for s in states.values()):
            return f"http://{config.http_options.host}:{config.http_options.port}"
        failed = [n for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            raise RuntimeError(f"app {failed[0]} failed to deploy: {status[failed[0]].message[:2000]}")
        time.sleep(0.5)
    raise TimeoutError(f"apps not RUNNING after {timeout_s:.0f} s: {states}")


def serve_command(
    config: Path = typer.Option(DEFAULT_CONFIG, help="Serve YAML (the schema of `serve run` / `serve deploy`)."),
    host: str = typer.Option(None, help="Override http_options.host (default in the YAML: 127.0.0.1)."),
    port: int = typer.Option(None, min=1, max=65535, help="Override http_options.port."),
    edge_replicas: int = typer.Option(None, min=1, max=64, help="Override the edge deployment's num_replicas."),
    num_cpus: int = typer.Option(None, min=1, help="CPUs of a local Ray started here (ignored with RAY_ADDRESS)."),
    timeout_s: float = typer.Option(300.0, min=1.0, help="Wait this long for the app to be RUNNING."),
) -> None:
    """Start the edge layer stack + split controller on Ray Serve and block until Ctrl-C."""
    import ray
    from ray import serve

    schema = load_config(config, host, port, edge_replicas)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    address = os.environ.get("RAY_ADDRESS")
    ray.init(address=address, namespace="serve", num_cpus=None if address else num_cpus,
             include_dashboard=False, log_to_driver=False)
    # after ray.init, which may install its own handlers: Ctrl-C and SIGTERM both end the loop below
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        url = start(schema, timeout_s)
        typer.echo(f"edgesplit serving at {url}  (docs: {url}/docs, health: {url}/healthz); Ctrl-C stops it")
        sys.stdout.flush()  # a supervisor reading a pipe sees the URL now, not when the buffer fills
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("shutting down")
    except (RuntimeError, TimeoutError) as err:
        fail(str(err))
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_demo_command(
    out: Path = typer.Option(Path("runs/demo/serve"), help="Where the serving demo writes its results."),
    ues: int = typer.Option(3, min=1, max=16, help="UE clients running at once."),
    requests: int = typer.Option(6, min=2, max=100, help="Requests per UE."),
    max_new_tokens: int = typer.Option(8, min=1, max=256),
    port: int = typer.Option(None, min=1, max=65535, help="Loopback port of the app (default: a free one)."),
    seed: int = typer.Option(0, min=0),
) -> None:
    """The serving step of the demo: start the app, run UEs (one under a fading channel), print decisions."""
    from edgesplit.outdir import check_writable_dir
    from serve_deployments.demo import run_serve_demo

    try:
        check_writable_dir(out, "--out")
    except ValueError as err:
        fail(str(err))
    run_serve_demo(out, ues=ues, requests=requests, max_new_tokens=max_new_tokens, seed=seed, port=port)
