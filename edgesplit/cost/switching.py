"""The price of changing the split point mid-generation: KV migration between the UE and the edge.

from edgesplit.cost import switch_costs
cost = switch_costs(profile, 12, 8, device, edge, link, ChannelState(mean_snr_db=10.0), context_tokens=512)
cost.direction, cost.latency_s, cost.ue_energy_j

Protocol (the one :mod:`edgesplit.split.migrate` runs). The side that gains layers needs their KV cache for every
past token; nothing is recomputed:

- ``k → k' < k`` (``direction = "uplink"``): the UE sends the KV entries of layers ``[k', k)`` to the edge;
- ``k → k' > k`` (``direction = "downlink"``): the edge sends the KV entries of layers ``[k, k')`` to the UE;
- ``k' = k`` (``direction = "none"``): nothing moves and the switch costs 0.

Elements moved per sequence: ``Σ`` over the moved layers of ``kv_elements_per_token`` (``2 · kv_heads · head_dim``)
× the positions that layer's cache holds — ``context_tokens``, or the window of a sliding-window layer (the
convention of :meth:`ModelProfile.kv_cache_bytes`). For full-attention models this is exactly
``2 · num_kv_heads · head_dim · |k' − k| · context_tokens``.

Wire format, as :mod:`edgesplit.cost.split_cost` prices hidden states: ``bits_per_element`` of 16 or 32 are float
casts; any other width is integer quantisation with one float32 scale per cached K or V vector (one per layer, per
token, per K/V). The migration is one message cut into packets of at most ``link.max_packet_payload_bits``, each
with ``link.header_bits`` of overhead (:meth:`LinkProfile.on_air_bits`); a switch with nothing to move (``k' = k``
or an empty context) sends nothing.

Radio, with the machinery of :func:`~edgesplit.cost.split_costs`:

- uplink: rate :func:`~edgesplit.cost.uplink_rate_bps` at the channel state's instantaneous SNR and ``tx_power_w``
  (default the link's reference power); time ``on_air_bits / rate · expected_transmissions(loss_rate)`` (ARQ,
  independent per-packet erasures, free ACKs);
- downlink: time ``on_air_bits / link.downlink_rate_bps``, reliable (split_costs treats the downlink so too);
- coded link (``nr_link``, from :meth:`~edgesplit.scenario.ChannelSetting.nr_link`): the migration is one uplink
  message priced by the 5G NR cost model as :func:`~edgesplit.cost.split_costs` prices hidden states
  (:mod:`edgesplit.cost.coded_uplink`: MCS at the received SNR, TBs, HARQ retransmissions and round trips);
  ``uplink_rate_bps`` and ``shannon_uplink_s`` keep the Shannon figures. A KV migration rides the same uplink as
  the activations, so a planner on a coded link pays what that link costs.

Latency (the stall): the transfer time of the migration; generation at the new split waits for it. UE energy:
``tx_power_w · uplink_airtime_s`` — the UE's transmit energy (``uplink_s`` on the Shannon link; the HARQ slots,
round trips excluded, on a coded one). UE receive energy is **not modelled** (neither
:class:`DeviceProfile` nor :class:`LinkProfile` has a receive-power term, and split_costs leaves the downlink's out
too), so a downlink migration costs the UE no energy here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgesplit.channel.nr import NrLinkConfig
from edgesplit.channel.state import ChannelState
from edgesplit.cost.coded_uplink import check_carrier, nr_latency_airtime, nr_message_cost, received_snr_db
from edgesplit.cost.hardware import DeviceProfile, EdgeProfile, LinkProfile
from edgesplit.cost.model_profile import ModelProfile
from edgesplit.cost.split_cost import (
    FLOAT_BITS,
    SCALE_BITS_PER_TOKEN,
    _check_bits,
    _check_power,
    expected_transmissions,
    uplink_rate_bps,
)

DIRECTIONS: tuple[str, ...] = ("none", "uplink", "downlink")
KV_BITS = 16
"""Default bits per migrated KV element (a float16 cast)."""


@dataclass(frozen=True)
class SwitchCost:
    """Cost of one KV migration from split ``k_from`` to ``k_to`` (see the module docstring)."""

    k_from: int
    """Split before the switch."""
    k_to: int
    """Split after the switch."""
    direction: str
    """``"uplink"`` (k decreases: UE → edge), ``"downlink"`` (k increases: edge → UE) or ``"none"``."""
    layers_moved: int
    """``|k_to − k_from|``."""
    context_tokens: int
    """Past tokens whose KV entries move."""
    kv_elements: int
    """KV-cache elements moved (per sequence)."""
    bits_per_element: int
    """Bits per KV element on the wire."""
    uplink_bits: int
    """Uplink bits per attempt: data, quantisation scales and packet headers (0 unless direction is uplink)."""
    downlink_bits: int
    """Downlink bits: data, quantisation scales and packet headers (0 unless direction is downlink)."""
    tx_power_w: float
    """UE transmit power used on the uplink."""
    uplink_rate_bps: float
    """Shannon rate of the uplink for this channel state and power."""
    uplink_s: float
    """Expected uplink time, ARQ retransmissions included."""
    downlink_s: float
    """Downlink time."""
    shannon_uplink_s: float | None = None
    """Shannon uplink time of the same bits, ARQ included (None: ``uplink_s``, the Shannon link itself)."""
    uplink_airtime_s: float | None = None
    """Time the UE transmits (None: ``uplink_s``; coded: the HARQ slots, round trips excluded)."""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        for name in ("shannon_uplink_s", "uplink_airtime_s"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.uplink_s)
        times = (self.uplink_s, self.downlink_s, self.shannon_uplink_s, self.uplink_airtime_s)
        if any(t < 0 or not math.isfinite(t) for t in times):
            raise ValueError(f"transfer times must be finite and >= 0, got {times}")

    @property
    def latency_s(self) -> float:
        """Stall of the switch: the migration's transfer time (no recomputation, no compute)."""
        return self.uplink_s + self.downlink_s

    @property
    def ue_energy_j(self) -> float:
        """UE energy: ``tx_power_w · uplink_airtime_s`` (receive energy is not modelled, see the module docstring)."""
        return self.tx_power_w * self.uplink_airtime_s

    def to_dict(self) -> dict[str, Any]:
        """Flat dict with the derived totals (for DataFrames and JSON)."""
        return {**asdict(self), "latency_s": self.latency_s, "ue_energy_j": self.ue_energy_j}


def _check_context(context_tokens: int) -> None:
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int) or context_tokens < 0:
        raise ValueError(f"context_tokens must be an integer >= 0, got {context_tokens!r}")


def kv_migration_elements(model_profile: ModelProfile, k_from: int, k_to: int, context_tokens: int) -> int:
    """KV-cache elements that move when the split changes from ``k_from`` to ``k_to`` (per sequence)."""
    model_profile.check_split(k_from)
    model_profile.check_split(k_to)
    _check_context(context_tokens)
    low, high = sorted((k_from, k_to))
    return sum(layer.kv_elements_per_token * layer.attended(context_tokens) for layer in model_profile.layers[low:high])


def kv_migration_bits(model_profile: ModelProfile, k_from: int, k_to: int, context_tokens: int,
                      bits: int = KV_BITS) -> int:
    """Data bits of the migration: elements · bits, plus one float32 scale per K or V vector for integer widths."""
    _check_bits(bits)
    return _data_bits(model_profile, k_from, k_to, context_tokens, bits,
                      kv_migration_elements(model_profile, k_from, k_to, context_tokens))


def _data_bits(model_profile: ModelProfile, k_from: int, k_to: int, context_tokens: int, bits: int,
               elements: int) -> int:
    if bits in FLOAT_BITS:
        return elements * bits
    low, high = sorted((k_from, k_to))
    vectors = sum(2 * layer.attended(context_tokens) for layer in model_profile.layers[low:high])
    return elements * bits + vectors * SCALE_BITS_PER_TOKEN


def switch_costs(
    model_profile: ModelProfile,
    k_from: int,
    k_to: int,
    device: DeviceProfile,
    edge: EdgeProfile,
    link: LinkProfile,
    channel_state: ChannelState,
    context_tokens: int,
    bits: int = KV_BITS,
    *,
    tx_power_w: float | None = None,
    nr_link: NrLinkConfig | None = None,
) -> SwitchCost:
    """Stall, UE energy and bits of migrating the KV cache from split ``k_from`` to ``k_to`` (module docstring).

    ``device`` and ``edge`` are taken as :func:`~edgesplit.cost.split_costs` takes them, but the price does not
    depend on them today: a migration runs no compute, and neither profile models receive energy.
    ``tx_power_w`` defaults to the link's reference power; ``nr_link`` prices the uplink on the coded NR link.
    """
    del device, edge  # see the docstring: part of the cost model's signature, no term uses them yet
    _check_bits(bits)
    elements = kv_migration_elements(model_profile, k_from, k_to, context_tokens)
    data_bits = _data_bits(model_profile, k_from, k_to, context_tokens, bits, elements)
    p_w = link.tx_power_w if tx_power_w is None else tx_power_w
    _check_power(p_w)
    rate = uplink_rate_bps(link, channel_state, p_w)
    direction = "none" if k_to == k_from else ("uplink" if k_to < k_from else "downlink")
    on_air = link.on_air_bits(data_bits) if data_bits > 0 else 0
    up_bits = on_air if direction == "uplink" else 0
    down_bits = on_air if direction == "downlink" else 0
    arq = expected_transmissions(channel_state.loss_rate)
    shannon_s = up_bits / rate * arq
    uplink_s = airtime_s = shannon_s
    if nr_link is not None and up_bits > 0:
        nr = nr_message_cost(link, channel_state, p_w, up_bits, nr_link)
        uplink_s, airtime_s = nr.latency_s * arq, nr.airtime_s * arq
    return SwitchCost(
        k_from=k_from,
        k_to=k_to,
        direction=direction,
        layers_moved=abs(k_to - k_from),
        context_tokens=context_tokens,
        kv_elements=elements,
        bits_per_element=bits,
        uplink_bits=up_bits,
        downlink_bits=down_bits,
        tx_power_w=p_w,
        uplink_rate_bps=rate,
        uplink_s=uplink_s,
        downlink_s=down_bits / link.downlink_rate_bps,
        shannon_uplink_s=shannon_s,
        uplink_airtime_s=airtime_s,
    )


def switch_cost_table(model_profile: ModelProfile, ks: Sequence[int], link: LinkProfile,
                      channel_states: Sequence[ChannelState], context_tokens: int, bits: int = KV_BITS, *,
                      tx_power_w: float | None = None, nr_link: NrLinkConfig | None = None) -> dict[str, np.ndarray]:
    """Stall and UE energy of every switch among ``ks`` under every channel state at one context, as
    ``latency_s`` and ``ue_energy_j`` arrays of shape ``[states, from, to]`` — :func:`switch_costs` element for
    element (the same bits and the same rate, or the same NR cost with ``nr_link``; tested equal), for planners that
    price thousands of switches."""
    _check_bits(bits)
    ks = [int(k) for k in ks]
    p_w = link.tx_power_w if tx_power_w is None else tx_power_w
    _check_power(p_w)
    on_air = {}
    for low in sorted(set(ks)):
        for high in sorted(set(ks)):
            if low < high:
                data = kv_migration_bits(model_profile, low, high, context_tokens, bits)
                on_air[low, high] = link.on_air_bits(data) if data > 0 else 0
    air = np.array([[on_air.get((min(a, b), max(a, b)), 0) for b in ks] for a in ks], dtype=float)
    up = np.tril(air, -1)  # row = from, column = to: to < from sends uplink
    down_s = np.triu(air, 1) / link.downlink_rate_bps
    if nr_link is not None:
        return _nr_table(up, down_s, link, channel_states, p_w, nr_link)
    seconds_per_bit = np.array([expected_transmissions(s.loss_rate) / uplink_rate_bps(link, s, p_w)
                                for s in channel_states])
    uplink_s = seconds_per_bit[:, None, None] * up[None]
    return {"latency_s": uplink_s + down_s[None], "ue_energy_j": p_w * uplink_s}


def _nr_table(up: np.ndarray, down_s: np.ndarray, link: LinkProfile, channel_states: Sequence[ChannelState],
              p_w: float, nr_link: NrLinkConfig) -> dict[str, np.ndarray]:
    """:func:`switch_cost_table` on the coded link: each state's NR latency and airtime of every uplink migration."""
    check_carrier(link, nr_link)
    latency, airtime = [], []
    for state in channel_states:
        arq = expected_transmissions(state.loss_rate)
        lat, air = nr_latency_airtime(up.astype(np.int64), received_snr_db(link, state, p_w), nr_link)
        latency.append(lat * arq)
        airtime.append(air * arq)
    uplink_s, airtime_s = np.stack(latency), np.stack(airtime)
    return {"latency_s": uplink_s + down_s[None], "ue_energy_j": p_w * airtime_s}


__all__ = ["DIRECTIONS", "KV_BITS", "SwitchCost", "kv_migration_bits", "kv_migration_elements", "switch_cost_table",
           "switch_costs"]
