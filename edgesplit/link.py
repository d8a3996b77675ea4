"""The uplink between a UE's head and an edge's tail: packet encoding, channel impairment, decoding.

An :class:`ImpairedLink` is the ``link`` callable that :func:`edgesplit.split.split_generate` and
:func:`edgesplit.quality.evaluate_split` accept. Each call is one packet: the payload is encoded as an
:class:`~edgesplit.packet.ActivationPacket` (really serialised to bytes and parsed back, so what is measured is
what would cross a socket), then the channel impairment is applied to the decoded activations with the link's
own seeded generator. Token ids (split ``k = 0``) travel losslessly: a real system protects them with ARQ, and a
single wrong id would change the prompt itself rather than degrade a representation.

An impairment with a ``for_split(k)`` method (:class:`~edgesplit.channel.uep.ProtectedImpairment`) is resolved for
the link's ``split_k``, and one with ``at_position(p)`` for each packet's ``position_start``; when it protects
channels or leading token rows, hidden states travel as a version-2 / 3 :class:`~edgesplit.packet.ProtectedPacket`
(the protected channels and rows apart, in their own encoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgesplit.channel import ChannelState, Impairment, NoImpairment
from edgesplit.packet import ActivationPacket, ProtectedPacket


@dataclass
class LinkLog:
    """What crossed a link so far."""

    packets: int = 0
    """Number of packets sent."""
    frame_bytes: int = 0
    """Total bytes on the wire (headers + payloads)."""
    payload_bytes: int = 0
    """Total payload bytes (tensor data and quantisation scales)."""
    tokens: int = 0
    """Token positions carried (summed over the batch)."""
    stats: list[dict[str, float]] = field(default_factory=list)
    """The impairment's measured figures, one dict per packet."""

    def mean_stat(self, key: str) -> float | None:
        """Mean of one impairment statistic over the packets that reported it."""
        values = [s[key] for s in self.stats if key in s]
        return sum(values) / len(values) if values else None


class ImpairedLink:
    """Callable uplink: ``payload → what the edge receives``; records a :class:`LinkLog`."""

    def __init__(self, impairment: Impairment | None = None, state: ChannelState | None = None, *, seed: int = 0,
                 encoding: str = "float32", session_id: str = "link", split_k: int = 0) -> None:
        self.impairment = impairment or NoImpairment()
        if callable(getattr(self.impairment, "for_split", None)):
            self.impairment = self.impairment.for_split(split_k)
        self.state = state or ChannelState(mean_snr_db=30.0)
        self.encoding = encoding
        self.session_id = session_id
        self.split_k = split_k
        self.generator = torch.Generator().manual_seed(seed)
        self.log = LinkLog()
        self._position = 0

    def __call__(self, payload: torch.Tensor) -> torch.Tensor:
        is_ids = not payload.is_floating_point()
        at_position = getattr(self.impairment, "at_position", None)  # protection of the sequence's first tokens
        impairment = at_position(self._position) if callable(at_position) else self.impairment
        received = self._round_trip(payload, is_ids, impairment)
        tokens = int(payload.shape[0] * payload.shape[1]) if payload.ndim >= 2 else int(payload.numel())
        self._position += int(payload.shape[1]) if payload.ndim >= 2 else 1
        self.log.packets += 1
        self.log.frame_bytes += received.nbytes
        self.log.payload_bytes += received.payload_bytes
        self.log.tokens += tokens
        out = received.to_tensor()
        if is_ids:
            return out.to(payload.dtype)
        result = impairment.apply(out, self.state, self.generator)
        self.log.stats.append(result.stats)
        return result.x.to(payload.dtype)

    def _round_trip(self, payload: torch.Tensor, is_ids: bool,
                    impairment: Impairment) -> ActivationPacket | ProtectedPacket:
        """The payload encoded as the frame that would cross the socket, and parsed back."""
        fields = {"session_id": self.session_id, "split_k": self.split_k, "position_start": self._position}
        protects = not is_ids and hasattr(impairment, "active_channels")
        channels = impairment.active_channels() if protects else ()
        rows = impairment.protected_rows(tuple(payload.shape)) if protects else 0
        if channels or rows:
            protected_encoding = getattr(impairment, "protected_encoding", None) or self.encoding
            packet = ProtectedPacket.from_tensor(payload, channels, encoding=self.encoding, tokens=rows,
                                                 protected_encoding=protected_encoding, **fields)
            return ProtectedPacket.decode(packet.encode())
        packet = ActivationPacket.from_tensor(payload, encoding="token_ids" if is_ids else self.encoding, **fields)
        return ActivationPacket.decode(packet.encode())
