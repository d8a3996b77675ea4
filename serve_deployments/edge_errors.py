"""Typed errors of the edge serving path, each with its HTTP status: what the ingress turns into a JSON error body.

The code is machine-readable (the UE client acts on it: ``unknown_session`` → re-prefill from its own history,
``capacity`` / ``overloaded`` → back off for ``retry_after_s``), the message says what was wrong and what is
accepted. Errors are plain data so they cross a Serve handle as a return value, never as a pickled exception.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

ErrorCode = Literal["bad_request", "bad_packet", "unknown_session", "forbidden", "unauthorized", "capacity",
                    "token_limit", "out_of_order", "overloaded", "edge_unavailable", "not_found", "internal"]

STATUS: dict[str, int] = {
    "bad_request": 400,
    "bad_packet": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_session": 404,
    "out_of_order": 409,
    "token_limit": 413,
    "capacity": 429,
    "overloaded": 503,
    "edge_unavailable": 503,
    "internal": 500,
}
"""HTTP status per error code."""


@dataclass(frozen=True)
class EdgeError:
    """One failed edge request."""

    code: ErrorCode
    """Machine-readable class of the failure (see :data:`STATUS`)."""
    message: str
    """What was wrong and what is accepted."""
    retry_after_s: float | None = None
    """For ``capacity`` / ``overloaded``: how long the client should wait before retrying."""

    @property
    def status(self) -> int:
        """HTTP status for this error."""
        return STATUS[self.code]

    def to_dict(self) -> dict:
        """The ``{"error": {...}}`` body the HTTP API returns."""
        return {"error": asdict(self)}


class EdgeRejected(Exception):
    """Raised inside the engine; carries the :class:`EdgeError` the caller returns."""

    def __init__(self, code: ErrorCode, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.error = EdgeError(code, message, retry_after_s)
