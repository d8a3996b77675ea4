"""How a UE reaches the edge: the HTTP transport (httpx, async) and the typed error every transport raises.

A transport has six coroutines — ``models``, ``create``, ``prefill``, ``decode``, ``close``, ``split`` — that
return the edge's JSON answer as a dict or raise :class:`EdgeCallError`. The HTTP one speaks the routes of
``serve_deployments/ingress.py``; ``serve_deployments.handle_transport`` offers the same coroutines over Serve
handles for clients inside the cluster. A connection that breaks is reported as ``edge_unavailable`` so the client
treats it like a lost replica (re-open, re-prefill). Over HTTP the UE names each new session itself (192 random
bits from :mod:`secrets`) and sends the id in ``x-session-id`` with every call of the session: that header is what
Serve's proxy routes by, so the session lives on, and keeps reaching, one replica.
"""

from __future__ import annotations

import os
import secrets

import httpx

RETRYABLE = frozenset({"capacity", "overloaded", "edge_unavailable"})
"""Error codes worth retrying after a pause (the same request may succeed later)."""
SESSION_HEADER = "x-session-id"
"""Header carrying the session id on every session call: Serve's proxy routes a session to its replica by it."""
RESUMABLE = frozenset({"unknown_session", "edge_unavailable"})
"""Error codes after which the session is presumed lost: open a new one and re-prefill from the history."""


class EdgeCallError(RuntimeError):
    """An edge call failed: ``code`` (see ``serve_deployments.edge_errors``), message, optional Retry-After."""

    def __init__(self, code: str, message: str, status: int = 0, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.retry_after_s = code, message, status, retry_after_s


def _retry_after(response: httpx.Response, body: dict) -> float | None:
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    value = body.get("retry_after_s")
    return float(value) if isinstance(value, int | float) else None


def _raise_for(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.is_success and isinstance(body, dict):
        return body
    error = body.get("error", {}) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {}
    code = error.get("code") or {429: "capacity", 503: "overloaded"}.get(response.status_code, "http_error")
    message = error.get("message") or response.text[:200] or response.reason_phrase
    raise EdgeCallError(code, message, response.status_code, _retry_after(response, error))


class HttpTransport:
    """The edge's HTTP API over one pooled :class:`httpx.AsyncClient`."""

    def __init__(self, base_url: str, api_token: str | None = None, timeout_s: float = 60.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"edge URL must start with http:// or https://, got {base_url!r}")
        token = api_token if api_token is not None else os.environ.get("EDGESPLIT_API_TOKEN") or None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = await self._client.request(method, path, **kwargs)
        except (httpx.TransportError, httpx.TimeoutException) as err:
            raise EdgeCallError("edge_unavailable", f"{type(err).__name__}: {err}") from None
        return _raise_for(response)

    async def models(self) -> dict:
        return await self._call("GET", "/v1/models")

    async def create(self, body: dict) -> dict:
        session_id = secrets.token_urlsafe(24)  # the UE names the session: Serve routes by it from the first call
        return await self._call("POST", "/v1/sessions", json=body, headers={SESSION_HEADER: session_id})

    async def prefill(self, session_id: str, frame: bytes) -> dict:
        return await self._call("POST", f"/v1/sessions/{session_id}/prefill", content=frame,
                                headers={"content-type": "application/octet-stream", SESSION_HEADER: session_id})

    async def decode(self, session_id: str, frame: bytes) -> dict:
        return await self._call("POST", f"/v1/sessions/{session_id}/decode", content=frame,
                                headers={"content-type": "application/octet-stream", SESSION_HEADER: session_id})

    async def close(self, session_id: str) -> dict:
        return await self._call("DELETE", f"/v1/sessions/{session_id}", headers={SESSION_HEADER: session_id})

    async def split(self, state: dict) -> dict:
        return await self._call("POST", "/v1/split", json=state)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
