"""A real Serve app on loopback for the serving tests (the built-in model, 2 edge replicas, two API tokens)."""

from __future__ import annotations

import os

import pytest

from serve_deployments.loopback import start_serve

TOKENS = ("alice-token-0123456789", "bob-token-9876543210")
"""The API tokens the test app accepts."""


def start_app(edge_replicas: int = 2, limits: dict | None = None, edge_options: dict | None = None,
              tokens: tuple[str, ...] = TOKENS, name: str = "edgesplit") -> str:
    """Deploy the edgesplit app (Serve started on a fresh loopback port); returns the base URL."""
    from ray import serve

    from serve_deployments.app import EdgeAppArgs, compose

    port = start_serve()  # a free loopback port, retried if another socket takes it first
    os.environ["EDGESPLIT_TEST_TOKENS"] = ",".join(tokens)
    args = EdgeAppArgs(edge={"model": "smollm2-135m", "torch_threads": 1, "limits": limits or {}},
                       api_token_env="EDGESPLIT_TEST_TOKENS")
    options = {"num_replicas": edge_replicas, "ray_actor_options": {"num_cpus": 0.5}, **(edge_options or {})}
    serve.run(compose(args, options), name=name, route_prefix="/")
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def serve_url(ray_session):
    """Base URL of a module-scoped app; Serve is shut down after the module."""
    from ray import serve

    url = start_app()
    yield url
    serve.shutdown()
