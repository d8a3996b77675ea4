"""The uplink of a coded setting priced by the 5G NR cost model instead of Shannon.

:func:`~edgesplit.cost.split_costs` and :func:`~edgesplit.cost.switch_costs` take ``nr_link`` (an
:class:`~edgesplit.channel.nr.NrLinkConfig`, from :meth:`edgesplit.scenario.ChannelSetting.nr_link` of a ``coded``
setting; None for every other kind, which keeps the Shannon rate and every number as before). With it, each uplink
message of ``D`` on-air bits (data, scales, packet headers) costs what :func:`edgesplit.channel.nr.nr_uplink_cost`
says: the MCS chosen at the received SNR (ideal-CQI link adaptation at the link's target BLER), ``ceil(D / TBS)``
transport blocks one slot each, chase-combined HARQ retransmissions and their round trips, in expectation:

- uplink time = the expected HARQ latency of the message (HARQ round trips included);
- airtime = the slots the UE actually transmits in; UE transmit energy = ``tx_power_w · airtime`` (the UE is
  silent during round trips, so for a coded link the energy is not ``tx_power_w · uplink_s``);
- both times the ARQ factor ``1 / (1 − loss_rate)`` of a loss above the PHY, as the Shannon path charges it.

Received SNR: the state's instantaneous SNR (fading included) scaled by ``tx_power_w / link.tx_power_w``, the rule
of :func:`~edgesplit.cost.uplink_rate_bps`. The carrier must be the one the cost model charges: ValueError when the
NR carrier's bandwidth is not ``link.bandwidth_hz`` (build coded settings with the link preset's bandwidth). The
Shannon time of the same bits is kept beside the NR one (``shannon_uplink_s``), so how far apart they are is visible.

:func:`nr_latency_airtime` prices many payloads at one SNR at once (one link adaptation, one HARQ failure curve) with
the same formulas as ``nr_uplink_cost``, for planners that price thousands of KV migrations.
"""

from __future__ import annotations

import math

import numpy as np

from edgesplit.channel.nr import NrLinkConfig, NrUplinkCost, expected_latency_slots
from edgesplit.channel.nr import nr_uplink_cost as _nr_uplink_cost
from edgesplit.channel.state import ChannelState
from edgesplit.cost.hardware import LinkProfile


def received_snr_db(link: LinkProfile, channel_state: ChannelState, tx_power_w: float) -> float:
    """The state's instantaneous SNR at ``tx_power_w``: ``snr_db + 10 log10(tx_power_w / link.tx_power_w)``."""
    return 10.0 * math.log10(channel_state.snr_linear * tx_power_w / link.tx_power_w)


def check_carrier(link: LinkProfile, nr_link: NrLinkConfig) -> None:
    """ValueError unless the NR carrier's bandwidth is the bandwidth ``link`` charges."""
    if not isinstance(nr_link, NrLinkConfig):
        raise ValueError(f"nr_link must be an NrLinkConfig (ChannelSetting.nr_link()), got {type(nr_link).__name__}")
    carrier_hz = nr_link.carrier.bandwidth_hz
    if not math.isclose(carrier_hz, link.bandwidth_hz, rel_tol=1e-9):
        raise ValueError(f"the coded link's NR carrier is {carrier_hz / 1e6:g} MHz but link {link.name!r} charges "
                         f"{link.bandwidth_hz / 1e6:g} MHz; build the coded setting with carrier_bandwidth_hz="
                         f"{link.bandwidth_hz:g} (the link preset's bandwidth)")


def nr_message_cost(link: LinkProfile, channel_state: ChannelState, tx_power_w: float, message_bits: int,
                    nr_link: NrLinkConfig) -> NrUplinkCost:
    """The NR cost of one uplink message of ``message_bits`` on-air bits (carrier checked against ``link``)."""
    check_carrier(link, nr_link)
    return _nr_uplink_cost(int(message_bits), received_snr_db(link, channel_state, tx_power_w), nr_link, tx_power_w)


def nr_latency_airtime(payload_bits: np.ndarray, snr_db: float, nr_link: NrLinkConfig) -> tuple[np.ndarray, np.ndarray]:
    """Expected (latency_s, airtime_s) of every payload in ``payload_bits`` at one received SNR, each sent alone —
    ``nr_uplink_cost(b, snr_db, nr_link).latency_s`` / ``.airtime_s`` element for element (tested equal)."""
    payload = np.asarray(payload_bits, dtype=np.int64)
    latency, airtime = np.zeros(payload.shape), np.zeros(payload.shape)
    if not (payload > 0).any():
        return latency, airtime
    info = nr_link.transport_block(snr_db)
    q = nr_link.failure_probabilities(info, snr_db)
    slot_s, per_tb = nr_link.carrier.slot_s, float(np.sum(q[:-1]))
    tbs = -(-payload // info.tbs_bits)
    for value in np.unique(tbs[tbs > 0]):
        rows = tbs == value
        latency[rows] = slot_s * expected_latency_slots(q, int(value), nr_link.carrier.harq_rtt_slots)
        airtime[rows] = slot_s * int(value) * per_tb
    return latency, airtime


__all__ = ["check_carrier", "nr_latency_airtime", "nr_message_cost", "received_snr_db"]
