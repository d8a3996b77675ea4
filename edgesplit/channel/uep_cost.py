"""Bits and channel uses of the parts of an unequal-error-protection scheme (:mod:`edgesplit.channel.uep`).

Each part of a :class:`~edgesplit.channel.uep.ProtectedImpairment` (the main stream, every copy of the protected
channels, every copy of the protected leading tokens) is priced from what its impairment reported, and the
unprotected baseline (``main`` alone on every element) at the same settings:

- ``digital``: exact (``bits`` per element plus one 32-bit scale per token vector; ``bits / bits_per_symbol``
  symbols);
- ``coded``: the information bits and the resource elements of the transport blocks actually sent; another shape at
  the measured MCS and HARQ rounds; when the part sent nothing (e.g. every token of a packet protected), at the MCS
  link adaptation picks for the state, one transmission per TB;
- parts that report ``bits_sent`` (and optionally ``channel_uses``): pro rata by elements;
- the rest (analog kinds): ``element_bits`` per element, one channel use per bit.
"""

from __future__ import annotations

import math

from edgesplit.channel.digital import SCALE_BITS, DigitalImpairment
from edgesplit.channel.impairment import Impairment
from edgesplit.channel.modulation import MODULATIONS
from edgesplit.channel.state import ChannelState


def part_cost(imp: Impairment, rows: int, cols: int, stats: dict[str, float], element_bits: int,
              sent: tuple[int, int] | None = None, state: ChannelState | None = None) -> tuple[float, float]:
    """(bits, channel uses) of ``rows × cols`` elements through ``imp``, from the stats it reported.

    ``sent`` is the ``(rows, cols)`` the stats were measured on (default: the same): the cost of another shape at
    the same settings. ``state`` prices a coded part that reported nothing (it was not sent) at its link adaptation.
    """
    sent = sent or (rows, cols)
    xl = float(stats.get("extra_latency_factor", 1.0))
    if isinstance(imp, DigitalImpairment):
        bits = rows * cols * imp.bits * xl + SCALE_BITS * rows
        return bits, bits / MODULATIONS[imp.modulation]
    if "coded_bits_on_air" in stats and "tbs_bits" in stats:
        return _coded_cost(imp, rows, cols, stats, (rows, cols) == tuple(sent))
    if imp.kind == "coded" and state is not None:
        return _coded_dry_cost(imp, rows, cols, state)
    if "bits_sent" in stats:
        ratio = rows * cols / (sent[0] * sent[1]) if sent[0] * sent[1] else math.nan
        bits = float(stats["bits_sent"]) * ratio
        return bits, float(stats.get("channel_uses", stats["bits_sent"])) * ratio
    bits = float(rows * cols * element_bits) * xl
    return bits, bits


def _coded_cost(imp: Impairment, rows: int, cols: int, stats: dict[str, float], measured: bool) -> tuple[float, float]:
    """A coded link's (information bits, resource elements): measured, or for another shape at the same MCS/HARQ."""
    bits = float(rows * cols * getattr(imp, "bits", 8) + SCALE_BITS * rows)
    if measured:
        return float(stats["payload_bits"]), float(stats["coded_bits_on_air"]) / float(stats["modulation_order"])
    tx = float(stats.get("transmissions", 0.0))
    per_tx = float(stats["coded_bits_on_air"]) / tx / float(stats["modulation_order"]) if tx else 0.0
    return bits, math.ceil(bits / float(stats["tbs_bits"])) * float(stats.get("extra_latency_factor", 1.0)) * per_tx


def _coded_dry_cost(imp: Impairment, rows: int, cols: int, state: ChannelState) -> tuple[float, float]:
    """A coded link's cost of a shape it did not send: the TBs at the MCS it would pick for ``state``, sent once."""
    link = imp.link
    info = link.transport_block(link.reported_snr_db(state))
    bits = float(rows * cols * imp.bits + SCALE_BITS * rows)
    return bits, math.ceil(bits / info.tbs_bits) * info.coded_bits / info.modulation_order
