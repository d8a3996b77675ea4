"""What UEs and edge workers exchange: an uplink request (raw packet bytes) and the edge's reply (a token).

The uplink carries only :class:`~edgesplit.packet.ActivationPacket` frames as ``bytes``; the session id, split
point and position live in the frame's header, so the edge trusts nothing but what it decodes and validates.
Replies are small plain records (token id, timings, error), produced by the edge itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal["bad_packet", "bad_request", "lost_session"]
"""``bad_packet``: the bytes do not decode; ``bad_request``: a valid packet the edge cannot serve (wrong shape,
split out of range, out-of-order position); ``lost_session``: a decode step for a session the edge no longer has
(it was restarted) — the UE must re-prefill."""


@dataclass(frozen=True)
class EdgeRequest:
    """One uplink packet for one session step."""

    frame: bytes
    """An encoded ActivationPacket: token ids (k = 0) or the hidden state after layer k, for one sequence."""
    close: bool = False
    """True on a request's last step: the edge frees the session's KV cache after answering."""

    def __post_init__(self) -> None:
        if not isinstance(self.frame, bytes | bytearray | memoryview):
            raise ValueError(f"frame must be bytes, got {type(self.frame).__name__}")


@dataclass(frozen=True)
class EdgeReply:
    """The edge's answer to one :class:`EdgeRequest`."""

    session_id: str
    """Session the reply belongs to (from the packet header; empty when the packet did not decode)."""
    token: int | None
    """Greedy next-token id, or ``None`` on error."""
    error: str | None = None
    """What went wrong, or ``None``."""
    error_kind: ErrorKind | None = None
    """Machine-readable class of ``error``."""
    decode_s: float = 0.0
    """Edge time spent parsing and validating this packet."""
    compute_s: float = 0.0
    """This request's share of the tail forward it was batched into (batch time / batch size)."""
    batch_size: int = 0
    """How many sessions shared that forward."""
    handler_s: float = 0.0
    """Edge time for the whole call this request arrived in (all requests of the call)."""

    @property
    def ok(self) -> bool:
        """True when the reply carries a token."""
        return self.error is None


class EdgeUnavailable(RuntimeError):
    """An edge worker could not answer a call (its actor died or is restarting): retry from scratch."""
