"""Start Serve's HTTP proxy on a loopback port that is really free, for tests, benchmarks and the demo.

Asking the kernel for a free port (``bind(("127.0.0.1", 0))``) and handing it to ``serve.start`` races with every
other socket on the machine: the port comes from the ephemeral range, which is also where every outgoing TCP
connection (Ray's own gRPC clients among them) takes its source port, so between the check and the proxy's bind
another socket can take it and the proxy fails with "Failed to bind to address". CI hit exactly that. So the port is
drawn from a range that neither the kernel's ephemeral allocator nor Ray's worker ports use, and a failed bind is
retried on another port after shutting the half-started Serve down.
"""

from __future__ import annotations

import contextlib
import random
import socket

# Below Linux's default ephemeral range (32768-60999) and above Ray's default worker ports (10002-19999).
PORT_RANGE = (20000, 32000)


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low, high = ports.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def pick_port(host: str = "127.0.0.1", rng: random.Random | None = None, tries: int = 200) -> int:
    """A TCP port that is free on ``host`` now, drawn outside the ephemeral range (see the module docstring)."""
    rng = rng or random.Random()
    eph_low, eph_high = _ephemeral_range()
    for _ in range(tries):
        port = rng.randint(*PORT_RANGE)
        if eph_low <= port <= eph_high:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port on {host} in {PORT_RANGE[0]}-{PORT_RANGE[1]} after {tries} tries")


def start_serve(host: str = "127.0.0.1", port: int | None = None, attempts: int = 5) -> int:
    """``serve.start`` with its HTTP proxy on ``host``; returns the port it listens on.

    A given ``port`` is used as is (a bind failure is the caller's to see). Without one, a free port is picked and a
    failed bind is retried on another one, up to ``attempts`` times.
    """
    from ray import serve

    if port is not None:
        serve.start(http_options={"host": host, "port": port})
        return port
    last: Exception | None = None
    for _ in range(attempts):
        chosen = pick_port(host)
        try:
            serve.start(http_options={"host": host, "port": chosen})
            return chosen
        except Exception as err:  # Serve wraps the proxy's bind error in a RayTaskError
            if "bind" not in str(err).lower():
                raise
            last = err
            serve.shutdown()
    raise RuntimeError(f"Serve's proxy could not bind a port on {host} in {attempts} attempts") from last
