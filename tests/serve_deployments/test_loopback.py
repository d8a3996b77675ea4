"""Serve's proxy on a free loopback port: outside the ephemeral range, and a port taken meanwhile is retried."""

from __future__ import annotations

import contextlib
import random
import socket

import httpx
import pytest

from serve_deployments import loopback


def test_picked_ports_are_free_and_outside_the_ephemeral_range():
    low, high = loopback._ephemeral_range()
    rng = random.Random(0)
    for _ in range(50):
        port = loopback.pick_port(rng=rng)
        assert loopback.PORT_RANGE[0] <= port <= loopback.PORT_RANGE[1]
        assert not low <= port <= high
        with contextlib.closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", port))  # really free


def _echo_deployment():
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Echo:
        def __call__(self, request) -> str:
            return "up"

    return Echo


def test_a_port_taken_between_pick_and_bind_is_retried(ray_session, monkeypatch):
    """The CI failure: another socket takes the picked port before the proxy binds it; Serve starts on the next."""
    from ray import serve

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_pick = loopback.pick_port
    picks = iter([taken])
    monkeypatch.setattr(loopback, "pick_port", lambda host="127.0.0.1": next(picks, None) or real_pick(host))
    try:
        port = loopback.start_serve()
        assert port != taken
        serve.run(_echo_deployment().bind(), name="echo", route_prefix="/echo")
        reply = httpx.get(f"http://127.0.0.1:{port}/echo", timeout=30)
        assert reply.status_code == 200 and reply.text == "up"
    finally:
        serve.shutdown()
        squatter.close()


def test_an_explicit_port_that_is_taken_is_the_callers_error(ray_session):
    from ray import serve

    with contextlib.closing(socket.socket()) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        try:
            with pytest.raises(Exception, match="(?i)bind"):
                loopback.start_serve(port=squatter.getsockname()[1])
        finally:
            serve.shutdown()
