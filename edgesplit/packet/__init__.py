"""The ActivationPacket wire format (versioned JSON header + raw little-endian bytes) and absmax quantisation.

Versions 2-4 (:class:`ProtectedPacket`, read with :func:`decode_frame`) carry a hidden state split into protected
channels and the rest (2), plus its first token rows sent whole (3), or any rows sent whole, listed by position (4).
"""

from edgesplit.packet.activation_packet import (
    DEFAULT_LIMITS,
    ENCODINGS,
    FORMAT_VERSION,
    MAGIC,
    MAX_RANK,
    MAX_SESSION_ID_CHARS,
    ActivationPacket,
    PacketError,
    PacketLimits,
)
from edgesplit.packet.payload_codec import QUANT_BITS
from edgesplit.packet.protected_packet import PROTECTED_FORMAT_VERSION, ProtectedPacket, decode_frame
from edgesplit.packet.quantize import (
    dequantize_absmax,
    pack_int4,
    qmax_for_bits,
    quantize_absmax,
    unpack_int4,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ENCODINGS",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_RANK",
    "MAX_SESSION_ID_CHARS",
    "PROTECTED_FORMAT_VERSION",
    "QUANT_BITS",
    "ActivationPacket",
    "PacketError",
    "PacketLimits",
    "ProtectedPacket",
    "decode_frame",
    "dequantize_absmax",
    "pack_int4",
    "qmax_for_bits",
    "quantize_absmax",
    "unpack_int4",
]
