"""Serve an ASGI app with uvicorn on a socket bound up front: in the foreground (the CLI) or in a thread (tests).

Binding the listening socket before uvicorn starts turns "address in use" into a clear :class:`OSError` at the
caller, and leaves no window in which another socket can take the port between a free-port check and the bind.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` contains a colon); raises :class:`OSError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for ``app`` (lifespan on, no access log)."""
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on"))


class ProxyServer:
    """``with ProxyServer(app, port=...) as url:`` — the app served from a daemon thread until the block ends."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0) -> None:
        self.sock = bind_socket(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn_server(app)
        self.start_timeout_s = start_timeout_s
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="ue-proxy", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server (``http://host:port``)."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the proxy did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def close(self) -> None:
        """Stop the server (lifespan shutdown included) and release the socket."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.sock.close()

    def __exit__(self, *exc) -> None:
        self.close()
