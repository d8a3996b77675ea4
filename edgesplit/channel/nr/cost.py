"""Expected uplink time, airtime and UE energy of a payload over the coded NR link (pure; no randomness).

:func:`nr_uplink_cost` prices ``payload_bits`` at a reported SNR: the MCS (fixed or from link adaptation), the
TBS, the number of TBs ``ceil(payload / TBS)``, the failure curve q_j of chase-combined HARQ
(:func:`~edgesplit.channel.nr.bler.failure_probabilities`), and from it, per TB, ``E[transmissions] = Σ_{j<N} q_j``
and the residual loss ``q_N``. Timing follows :mod:`edgesplit.channel.nr.harq` in expectation (TBs independent):
airtime = slot_s · n_tb · E[transmissions]; latency = slot_s · (n_tb · Σ_{j<N} q_j + rtt_slots ·
Σ_{r=2..N} (1 - (1 - q_{r-1})^n_tb)) (each retransmission round adds one HARQ round trip); UE transmit
energy = tx_power_w · airtime. ``snr_db`` is the received SNR at ``tx_power_w`` (the caller scales it with
power). The Shannon time ``payload / (B · log2(1 + SNR))`` with B the carrier's channel bandwidth is what
:func:`edgesplit.cost.split_cost.uplink_rate_bps` charges today; the ratios say how far the two are apart.

Results are cached per (payload, SNR, link, power); TB formats per (carrier, MCS) and the BLER curves per
process, so sweeps are cheap after the first call (which loads Sionna, ~5 s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from edgesplit.channel.nr.harq import expected_latency_slots
from edgesplit.channel.nr.link import NrLinkConfig


@dataclass(frozen=True)
class NrUplinkCost:
    """Expected cost of one payload over the coded uplink."""

    payload_bits: int
    """Bits to deliver (data + headers, as the caller counts them)."""
    snr_db: float
    """Reported SNR (Es/N0 per data RE at tx_power_w; the mean SNR for 'rayleigh' and 'tdl')."""
    tx_power_w: float
    """UE transmit power while transmitting."""
    mcs: int
    """MCS used."""
    modulation_order: int
    """Qm of the MCS."""
    code_rate: float
    """Target code rate of the MCS."""
    tbs_bits: int
    """Information bits per TB (per slot)."""
    num_tbs: int
    """TBs the payload needs."""
    first_tb_error_rate: float
    """q_1: TB error rate of a first transmission."""
    expected_transmissions_per_tb: float
    """Σ_{j<N} q_j."""
    residual_tb_loss: float
    """q_N: probability a TB is erased after max_transmissions."""
    expected_delivered_bits: float
    """payload_bits · (1 - q_N)."""
    airtime_s: float
    """Expected slots transmitted x slot duration."""
    latency_s: float
    """Expected time from the first slot to the last one, HARQ round trips included."""
    tx_energy_j: float
    """tx_power_w · airtime_s."""
    shannon_rate_bps: float
    """B · log2(1 + SNR) with B the carrier's channel bandwidth."""
    shannon_time_s: float
    """payload_bits / shannon_rate_bps (the cost model's uplink time today)."""

    @property
    def latency_over_shannon(self) -> float:
        """How many times longer than the Shannon time the coded link takes (latency)."""
        return self.latency_s / self.shannon_time_s if self.shannon_time_s > 0 else math.nan

    @property
    def airtime_over_shannon(self) -> float:
        """Coded airtime over the Shannon time."""
        return self.airtime_s / self.shannon_time_s if self.shannon_time_s > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Flat dict with the ratios (for DataFrames and JSON)."""
        return {**asdict(self), "latency_over_shannon": self.latency_over_shannon,
                "airtime_over_shannon": self.airtime_over_shannon}


def _check(payload_bits: int, snr_db: float, tx_power_w: float) -> None:
    if isinstance(payload_bits, bool) or not isinstance(payload_bits, int | np.integer) or payload_bits < 0:
        raise ValueError(f"payload_bits must be an int >= 0, got {payload_bits!r}")
    if not (isinstance(snr_db, int | float | np.floating) and math.isfinite(snr_db)):
        raise ValueError(f"snr_db must be a finite number, got {snr_db!r}")
    if not (isinstance(tx_power_w, int | float | np.floating) and math.isfinite(tx_power_w) and tx_power_w > 0):
        raise ValueError(f"tx_power_w must be a finite number > 0, got {tx_power_w!r}")


def nr_uplink_cost(payload_bits: int, snr_db: float, link: NrLinkConfig | dict[str, Any] | None = None,
                   tx_power_w: float = 0.2) -> NrUplinkCost:
    """Expected cost of sending ``payload_bits`` at reported SNR ``snr_db`` over ``link`` (see the module docstring)."""
    _check(payload_bits, snr_db, tx_power_w)
    return _cost(int(payload_bits), float(snr_db), NrLinkConfig.coerce(link), float(tx_power_w))


@lru_cache(maxsize=1 << 16)
def _cost(payload_bits: int, snr_db: float, link: NrLinkConfig, tx_power_w: float) -> NrUplinkCost:
    info = link.transport_block(snr_db)
    q = link.failure_probabilities(info, snr_db)
    n_tb = math.ceil(payload_bits / info.tbs_bits)
    slot_s = link.carrier.slot_s
    per_tb = float(np.sum(q[:-1]))
    airtime = slot_s * n_tb * per_tb
    shannon = link.carrier.bandwidth_hz * math.log2(1.0 + 10.0 ** (snr_db / 10.0))
    return NrUplinkCost(
        payload_bits=payload_bits, snr_db=snr_db, tx_power_w=tx_power_w, mcs=info.mcs,
        modulation_order=info.modulation_order, code_rate=info.code_rate, tbs_bits=info.tbs_bits, num_tbs=n_tb,
        first_tb_error_rate=float(q[1]), expected_transmissions_per_tb=per_tb, residual_tb_loss=float(q[-1]),
        expected_delivered_bits=payload_bits * (1.0 - float(q[-1])), airtime_s=airtime,
        latency_s=slot_s * expected_latency_slots(q, n_tb, link.carrier.harq_rtt_slots),
        tx_energy_j=tx_power_w * airtime, shannon_rate_bps=shannon, shannon_time_s=payload_bits / shannon,
    )


def nr_throughput_bps(snr_db: float, link: NrLinkConfig | dict[str, Any] | None = None) -> float:
    """Long-run goodput of a saturated link: TBS · (1 - q_N) per E[transmissions] slots (HARQ pipelined)."""
    cost = nr_uplink_cost(1, snr_db, link)
    slot_s = NrLinkConfig.coerce(link).carrier.slot_s
    return cost.tbs_bits * (1.0 - cost.residual_tb_loss) / (cost.expected_transmissions_per_tb * slot_s)
