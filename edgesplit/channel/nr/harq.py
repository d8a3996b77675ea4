"""HARQ accounting of the coded uplink: transmissions, erasures, airtime and latency; the abstracted draws.

Timing rule. A packet's TBs go out back to back, one per slot, over parallel HARQ processes (enough of them that
new data never waits for feedback). Retransmissions go in rounds: round r (r >= 2) carries every TB that is still
undecoded after r - 1 transmissions; it starts one HARQ round trip (``harq_rtt_slots``) after the previous round's
last slot and takes one slot per TB. So ``latency = slot_s · (n_tb + Σ_{r >= 2, n_r > 0} (rtt_slots + n_r))``
with n_r the TBs of round r, and ``airtime = slot_s · Σ_r n_r`` (the slots the UE actually transmits in). A TB
still undecoded after ``max_transmissions`` is erased (its CRC says so; nothing wrong is delivered).

Abstracted draws. :func:`~edgesplit.channel.nr.bler.failure_probabilities` gives q_j, the probability that a TB
is still undecoded after j chase-combined transmissions (non-increasing in j; the decoder sees the sum of the
transmissions' linear SNRs, exact for symbol-level combining). One uniform U per TB makes the
events nested, as with real combining: the TB needs ``1 + #{1 <= j < N : U < q_j}`` transmissions and is erased
iff ``U < q_N``; each event has exactly its probability q_j. Under ``rayleigh`` the q_j come from the TB's own
drawn gains (cumulative linear SNR), so they are random and still non-increasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edgesplit.channel.nr.bler import tb_error_rate
from edgesplit.channel.nr.mcs import TransportBlockInfo


@dataclass(frozen=True)
class HarqOutcome:
    """What HARQ did to the TBs of one packet."""

    transmissions: np.ndarray
    """Transmissions each TB used, 1..max_transmissions (int64, one per TB)."""
    delivered: np.ndarray
    """Whether each TB was decoded (CRC passed) within max_transmissions (bool, one per TB)."""

    def __post_init__(self) -> None:
        if self.transmissions.shape != self.delivered.shape or self.transmissions.ndim != 1:
            raise ValueError("transmissions and delivered must be 1-D arrays of one entry per TB")
        if self.transmissions.size and int(self.transmissions.min()) < 1:
            raise ValueError("every TB is transmitted at least once")

    @property
    def num_tbs(self) -> int:
        """TBs in the packet."""
        return int(self.transmissions.size)

    @property
    def total_transmissions(self) -> int:
        """Slots transmitted (first transmissions + retransmissions)."""
        return int(self.transmissions.sum())

    @property
    def erased(self) -> np.ndarray:
        """TBs given up after max_transmissions."""
        return ~self.delivered

    @property
    def first_failures(self) -> int:
        """TBs whose first transmission failed."""
        return int(((self.transmissions > 1) | ~self.delivered).sum())

    def round_sizes(self) -> list[int]:
        """n_r: TBs sent in round r = 1, 2, ... (round r carries the TBs needing at least r transmissions)."""
        top = int(self.transmissions.max()) if self.num_tbs else 0
        return [int((self.transmissions >= r).sum()) for r in range(1, top + 1)]

    def latency_slots(self, rtt_slots: int) -> int:
        """Slots from the first transmission's start to the end of the last one (the module docstring's rule)."""
        rounds = self.round_sizes()
        return sum(rounds) + rtt_slots * max(len(rounds) - 1, 0)


def expected_latency_slots(q: np.ndarray, num_tbs: int, rtt_slots: int) -> float:
    """E[latency_slots] for ``num_tbs`` independent TBs with failure curve q (q[0] = 1): same rule, in expectation.

    Round r >= 2 happens iff some TB failed r - 1 times, probability ``1 - (1 - q[r-1])^n``, and carries
    ``n · q[r-1]`` TBs on average.
    """
    if num_tbs == 0:
        return 0.0
    slots = num_tbs * float(np.sum(q[:-1]))
    rounds = sum(-math.expm1(num_tbs * math.log1p(-min(float(qr), 1.0 - 1e-16))) for qr in q[1:-1])
    return slots + rtt_slots * rounds


def exponential_gains(shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
    """|h|² ~ Exp(1) (Rayleigh block fading power gains) drawn from ``generator``, as float64 NumPy."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).cpu().numpy()
    return -np.log1p(-u)


def draw_abstracted(info: TransportBlockInfo, num_tbs: int, snr_db: float, max_transmissions: int, channel: str,
                    generator: torch.Generator, rate_correction: bool = True) -> tuple[HarqOutcome, np.ndarray]:
    """Draw HARQ outcomes of ``num_tbs`` TBs from the BLER tables; also returns each TB's per-transmission SNR (dB).

    ``awgn``: every transmission at ``snr_db``. ``rayleigh``: transmission j of a TB at ``snr_db + 10 log10 g_j``
    with g_j ~ Exp(1) drawn first ([num_tbs, N]), then one uniform per TB (the module docstring's rule).
    """
    n = max_transmissions
    gains = exponential_gains((num_tbs, n), generator) if channel == "rayleigh" else np.ones((num_tbs, n))
    u = torch.rand(num_tbs, generator=generator, device=generator.device, dtype=torch.float64).cpu().numpy()
    per_tx_snr = 10.0 ** (snr_db / 10.0) * gains
    combined_db = 10.0 * np.log10(np.cumsum(per_tx_snr, axis=1))
    q = np.minimum.accumulate(tb_error_rate(info, combined_db, rate_correction).reshape(num_tbs, n), axis=1)
    transmissions = 1 + (u[:, None] < q[:, :-1]).sum(axis=1)
    return HarqOutcome(transmissions=transmissions.astype(np.int64), delivered=u >= q[:, -1]), 10 * np.log10(per_tx_snr)
