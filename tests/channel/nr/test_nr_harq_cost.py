"""HARQ accounting, abstracted draws and the pure cost model: constructed cases and consistency between them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("sionna.phy", reason="the coded NR link needs the nr extra: pip install 'edgesplit[nr]'")

from edgesplit.channel.nr import (  # noqa: E402
    CarrierConfig,
    HarqOutcome,
    NrLinkConfig,
    expected_latency_slots,
    failure_probabilities,
    nr_throughput_bps,
    nr_uplink_cost,
    transport_block,
)
from edgesplit.channel.nr.harq import draw_abstracted  # noqa: E402

SMALL = CarrierConfig(num_prbs=1)


def test_harq_accounting_on_a_constructed_outcome() -> None:
    outcome = HarqOutcome(transmissions=np.array([1, 3, 2, 4, 1]), delivered=np.array([True, True, True, False, True]))
    assert outcome.round_sizes() == [5, 3, 2, 1]
    assert outcome.total_transmissions == 11 and outcome.first_failures == 3 and int(outcome.erased.sum()) == 1
    assert outcome.latency_slots(rtt_slots=4) == 11 + 3 * 4  # three retransmission rounds, one RTT each
    assert HarqOutcome(np.array([1, 1]), np.array([True, False])).first_failures == 1  # N = 1: a failure is an erasure
    with pytest.raises(ValueError, match="at least once"):
        HarqOutcome(np.array([0]), np.array([True]))


def test_expected_latency_matches_the_rule() -> None:
    q = np.array([1.0, 0.5, 0.2, 0.1])
    # 3 TBs: slots 3 * (1 + 0.5 + 0.2); round 2 happens w.p. 1 - 0.5^3, round 3 w.p. 1 - 0.8^3
    assert expected_latency_slots(q, 3, 4) == pytest.approx(3 * 1.7 + 4 * ((1 - 0.5**3) + (1 - 0.8**3)))
    assert expected_latency_slots(np.array([1.0, 0.0]), 7, 4) == 7


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_abstracted_draws_match_the_cost_model(channel: str) -> None:
    info = transport_block(SMALL, 1, 9)
    snr_db = 3.0 if channel == "awgn" else 8.0
    q = failure_probabilities(info, snr_db, 3, channel)
    outcome, _ = draw_abstracted(info, 20_000, snr_db, 3, channel, torch.Generator().manual_seed(0))
    for j in (1, 2, 3):  # P(still failing after j transmissions) = q_j
        failed_j = (outcome.transmissions > j) | (~outcome.delivered & (outcome.transmissions == j))
        sigma = math.sqrt(q[j] * (1 - q[j]) / 20_000) + 1e-4
        assert failed_j.mean() == pytest.approx(q[j], abs=5 * sigma)
    link = NrLinkConfig(carrier=SMALL, mcs=9, max_transmissions=3, channel=channel)
    cost = nr_uplink_cost(20_000 * info.tbs_bits, snr_db, link)
    assert cost.num_tbs == 20_000
    assert outcome.total_transmissions / 20_000 == pytest.approx(cost.expected_transmissions_per_tb, rel=0.02)


def test_cost_model_figures() -> None:
    link = NrLinkConfig(carrier=CarrierConfig(), mcs=9, max_transmissions=4)
    info = transport_block(link.carrier, 1, 9)
    cost = nr_uplink_cost(3 * info.tbs_bits + 1, 30.0, link, tx_power_w=0.1)
    assert cost.num_tbs == 4 and cost.first_tb_error_rate == 0.0 and cost.residual_tb_loss == 0.0
    assert cost.airtime_s == pytest.approx(4 * 0.5e-3) and cost.latency_s == pytest.approx(4 * 0.5e-3)
    assert cost.tx_energy_j == pytest.approx(0.1 * cost.airtime_s)
    assert cost.shannon_rate_bps == pytest.approx(20e6 * math.log2(1 + 1000.0))
    assert cost.latency_over_shannon == pytest.approx(cost.latency_s / cost.shannon_time_s)
    # in the waterfall: retransmissions cost airtime and round trips, as the failure curve says
    snr = 2.0
    q = failure_probabilities(info, snr, 4)
    cost = nr_uplink_cost(10 * info.tbs_bits, snr, link)
    assert cost.expected_transmissions_per_tb == pytest.approx(q[:-1].sum())
    assert cost.latency_s == pytest.approx(0.5e-3 * expected_latency_slots(q, 10, 4))
    assert cost.latency_s > cost.airtime_s > 10 * 0.5e-3
    adaptive = nr_uplink_cost(10_000, 12.0, NrLinkConfig())
    assert adaptive.mcs == NrLinkConfig().select_mcs(12.0) and adaptive.first_tb_error_rate <= 0.1
    assert nr_uplink_cost(10_000, 12.0) is nr_uplink_cost(10_000, 12.0)  # cached


def test_throughput_below_shannon_and_rising() -> None:
    rates = [nr_throughput_bps(float(s)) for s in range(0, 31, 5)]
    shannon = [20e6 * math.log2(1 + 10 ** (s / 10)) for s in range(0, 31, 5)]
    assert all(a <= b for a, b in zip(rates, rates[1:], strict=False)) and rates[0] < rates[3] < rates[-1]
    assert all(0.2 < r / s < 1.0 for r, s in zip(rates, shannon, strict=True))


@pytest.mark.parametrize(
    ("args", "match"),
    [((-1, 10.0), "payload_bits"), ((1.5, 10.0), "payload_bits"), ((100, float("nan")), "snr_db"),
     ((100, 10.0, None, 0.0), "tx_power_w"), ((100, 10.0, {"mcs_tables": 1}), r"unknown link field")],
)
def test_bad_cost_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nr_uplink_cost(*args)
