"""The ``coded`` impairment: activations over a 5G NR PUSCH-like link with LDPC, MCS link adaptation and HARQ.

Pipeline of ``apply(x, state, generator)``:

1. **Quantise** exactly as the ``digital`` impairment (:func:`~edgesplit.channel.digital.quantize_codes`,
   ``bits``-bit two's complement codes, one float32 absmax scale per token).
2. **Serialise** to one bit stream: the scales first (32 bits each, the *protected header*), then every code MSB
   first, row-major. The header travels in the TBs (so it costs airtime) but, as in ``digital``, the receiver is
   assumed to get the scales right (in practice a header is short and sent robustly).
3. **Segment** into transport blocks of the slot's TBS (one TB per slot of the allocation; the last one
   zero-padded). The MCS is fixed or chosen per packet from the reported SNR (:mod:`edgesplit.channel.nr.link`).
4. **HARQ**: every TB is sent up to ``max_transmissions`` times with chase combining, ``path="bit_true"`` through
   Sionna's TB chain (:mod:`edgesplit.channel.nr.bit_true`), ``path="abstracted"`` by drawing block errors from
   the BLER tables (:mod:`edgesplit.channel.nr.harq`). Both paths draw every random number from ``generator``.
   The abstraction's rule (combined SNR = sum of the transmissions' linear SNRs) is exact for symbol-level
   combining, the bit-true default; ``combining="llr"`` (soft-buffer LLR addition, bit-true only) is what many
   receivers do and loses up to ~0.6 dB at 16QAM and up (see :mod:`edgesplit.channel.nr.bit_true`).
5. **Erase**: a TB still failing after the last transmission is erased (its CRC detects it: no silent
   corruption); every element with at least one bit in an erased TB is set to **0** (an element straddling two
   TBs is lost if either is). Delivered TBs carry their bits exactly (bit-true: the decoder's output; a CRC miss,
   ~2^-24 per TB, would show as ``residual_bit_errors``).

Channel: ``awgn`` sends every transmission at the state's instantaneous ``snr_db`` (block fading: the packet
sees the state's |h|²). ``rayleigh`` ignores the state's ``fading_gain`` and draws |h|² ~ Exp(1) per TB and
transmission around ``mean_snr_db`` (perfect CSI at the receiver); link adaptation then uses the mean SNR and the
Rayleigh-averaged TB error rate. ``tdl`` does the same with one TR 38.901 TDL realisation (``tdl``: profile, delay
spread, UE speed, carrier frequency) per TB and transmission, frequency-selective per RE (bit-true: per-RE
equalisation and MRC; abstracted: Sionna's EESM; :mod:`edgesplit.channel.nr.tdl`); link adaptation uses the
mean SNR and the TDL-averaged TB error rate. ``mean_tx_snr_db`` is then the mean per-RE SNR. The state's
``loss_rate`` is not used (chain an ``erasure`` impairment in a ``compose`` for losses above the PHY).
SNR is Es/N0 per data RE (what :class:`ChannelState` reports).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from edgesplit.channel.digital import (
    SCALE_BITS,
    dequantize_codes,
    from_twos_complement,
    quantize_codes,
    to_twos_complement,
)
from edgesplit.channel.impairment import Impairment, ImpairmentResult, as_generator, check_activations, mse
from edgesplit.channel.nr.bit_true import COMBINING
from edgesplit.channel.nr.carrier import CarrierConfig
from edgesplit.channel.nr.harq import HarqOutcome
from edgesplit.channel.nr.link import NrLinkConfig
from edgesplit.channel.nr.mcs import TransportBlockInfo
from edgesplit.channel.nr.tdl import TdlConfig
from edgesplit.channel.state import ChannelState

PATHS = ("abstracted", "bit_true")
"""Block errors drawn from BLER curves (fast), or Sionna's LDPC chain end to end (slow; tests, calibration)."""


def _to_bits(values: torch.Tensor, width: int) -> torch.Tensor:
    """Flat unsigned ``width``-bit values -> bits [n * width] (MSB first, uint8)."""
    shifts = torch.arange(width - 1, -1, -1, device=values.device)
    return ((values.reshape(-1, 1) >> shifts) & 1).to(torch.uint8).reshape(-1)


def _from_bits(bits: torch.Tensor, width: int) -> torch.Tensor:
    """Bits [n * width] (MSB first) -> unsigned int64 values [n]."""
    shifts = torch.arange(width - 1, -1, -1, device=bits.device)
    return (bits.reshape(-1, width).long() << shifts).sum(-1)


def lost_elements(erased_tbs: torch.Tensor, header_bits: int, num_elements: int, bits: int,
                  tbs_bits: int) -> torch.Tensor:
    """Bool [num_elements]: elements with a bit in an erased TB (element e holds stream bits header + e·bits ...)."""
    first = header_bits + torch.arange(num_elements, device=erased_tbs.device) * bits
    if erased_tbs.numel() == 0:
        return torch.zeros(num_elements, dtype=torch.bool, device=erased_tbs.device)
    return erased_tbs[first // tbs_bits] | erased_tbs[(first + bits - 1) // tbs_bits]


@dataclass
class CodedImpairment(Impairment):
    """Quantise, then send over a coded 5G NR uplink (LDPC, MCS, HARQ); elements of erased TBs come back as 0."""

    kind: ClassVar[str] = "coded"
    bits: int = 8
    """Bits per element, 1..16 (two's complement codes, as the ``digital`` impairment)."""
    path: str = "abstracted"
    """'abstracted' (block errors from Sionna's BLER tables) or 'bit_true' (Sionna's LDPC chain end to end)."""
    channel: str = "awgn"
    """'awgn' (every transmission at state.snr_db), 'rayleigh' (|h|² ~ Exp(1) per TB transmission, mean SNR) or
    'tdl' (a TR 38.901 TDL realisation per TB transmission, frequency-selective, mean SNR)."""
    tdl: TdlConfig | dict[str, Any] = field(default_factory=TdlConfig)
    """Channel 'tdl': profile 'A'..'E', delay_spread_s, ue_speed_kmh, carrier_frequency_hz (a TdlConfig or a dict)."""
    carrier: CarrierConfig | dict[str, Any] = field(default_factory=CarrierConfig)
    """Carrier, numerology and allocation (a CarrierConfig or a dict of its fields)."""
    mcs_table: int = 1
    """TS 38.214 Table 5.1.3.1-1 (1, up to 64QAM) or 5.1.3.1-2 (2, up to 256QAM)."""
    mcs: int | None = None
    """Fixed MCS index; None: link adaptation per packet from the reported SNR (ideal CQI)."""
    target_bler: float = 0.1
    """Link adaptation's first-transmission TB error rate target."""
    max_transmissions: int = 4
    """HARQ transmissions per TB at most (chase combining); 1 = no HARQ."""
    rate_correction: bool = True
    """Abstracted path and link adaptation: correct the BLER tables for the TB's effective code rate."""
    num_bp_iter: int = 20
    """Bit-true path: LDPC belief-propagation iterations."""
    combining: str = "symbol"
    """Bit-true chase combining: 'symbol' (MRC of the symbols, the abstraction's rule) or 'llr' (bit_true only)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and not isinstance(self.bits, bool) and 1 <= self.bits <= 16):
            raise ValueError(f"coded bits must be an int in 1..16, got {self.bits!r}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {list(PATHS)}, got {self.path!r}")
        nbp = self.num_bp_iter
        if not (isinstance(nbp, int) and not isinstance(nbp, bool) and 1 <= nbp <= 200):
            raise ValueError(f"num_bp_iter must be an int in 1..200, got {nbp!r}")
        if self.combining not in COMBINING:
            raise ValueError(f"combining must be one of {list(COMBINING)}, got {self.combining!r}")
        if self.combining == "llr" and self.path != "bit_true":
            raise ValueError("combining='llr' needs path='bit_true': the abstraction models symbol-level combining "
                             "(combined SNR = sum of the linear SNRs)")
        self.carrier = CarrierConfig.coerce(self.carrier)
        self.tdl = TdlConfig.coerce(self.tdl)
        link = self.link  # validates the link fields
        if self.path == "abstracted" and link.mcs is not None:
            from edgesplit.channel.nr.bler import available_mcs

            if link.mcs not in available_mcs(link.mcs_table):
                raise ValueError(f"the abstracted path has no BLER curve for MCS {link.mcs} of table "
                                 f"{link.mcs_table}; valid: {list(available_mcs(link.mcs_table))} (or path='bit_true')")

    @property
    def link(self) -> NrLinkConfig:
        """The link configuration (carrier, MCS policy, HARQ, channel) as used by the cost model too."""
        return NrLinkConfig(carrier=self.carrier, mcs_table=self.mcs_table, mcs=self.mcs, target_bler=self.target_bler,
                            max_transmissions=self.max_transmissions, channel=self.channel,
                            rate_correction=self.rate_correction, tdl=self.tdl)

    def _send(self, stream: torch.Tensor, info: TransportBlockInfo, n_tb: int, snr_db: float,
              gen: torch.Generator) -> tuple[torch.Tensor, HarqOutcome, np.ndarray]:
        """TB-segmented bit stream through HARQ: (received stream, outcome, per-transmission SNR dB)."""
        link = self.link
        if self.path == "abstracted" and link.channel == "tdl":
            from edgesplit.channel.nr.tdl import draw_tdl_abstracted

            outcome, snr_tx = draw_tdl_abstracted(info, link.carrier, link.tdl, n_tb, snr_db, link.max_transmissions,
                                                  gen, link.rate_correction)
            return stream, outcome, snr_tx
        if self.path == "abstracted":
            from edgesplit.channel.nr.harq import draw_abstracted

            outcome, snr_tx = draw_abstracted(info, n_tb, snr_db, link.max_transmissions, link.channel, gen,
                                              link.rate_correction)
            return stream, outcome, snr_tx
        from edgesplit.channel.nr.bit_true import bit_true_link, sionna_device

        padded = torch.zeros(n_tb * info.tbs_bits, dtype=torch.uint8, device=stream.device)
        padded[: stream.numel()] = stream
        sim = bit_true_link(info, self.num_bp_iter, sionna_device(gen))
        decoded, outcome, snr_tx = sim.send(padded.reshape(n_tb, -1), snr_db, link.max_transmissions, link.channel,
                                            gen, self.combining, carrier=link.carrier, tdl=link.tdl)
        return decoded.reshape(-1)[: stream.numel()].to(torch.uint8).to(stream.device), outcome, snr_tx

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        xf = check_activations(x)
        gen = as_generator(generator)
        link = self.link
        q, scales = quantize_codes(xf, self.bits)
        clean = dequantize_codes(q, scales, self.bits)
        codes = to_twos_complement(q, self.bits).reshape(-1)
        header = _to_bits(scales.reshape(-1).contiguous().view(torch.int32).long() & 0xFFFFFFFF, SCALE_BITS)
        stream = torch.cat([header, _to_bits(codes, self.bits)]) if self.path == "bit_true" else None
        header_bits, payload_bits = header.numel(), header.numel() + codes.numel() * self.bits
        snr_db = link.reported_snr_db(state)
        info = link.transport_block(snr_db)
        n_tb = math.ceil(payload_bits / info.tbs_bits)
        if n_tb == 0:
            outcome, snr_tx, received = HarqOutcome(np.zeros(0, np.int64), np.zeros(0, bool)), np.zeros((0, 1)), codes
        else:
            received_stream, outcome, snr_tx = self._send(stream, info, n_tb, snr_db, gen)
            received = codes if stream is None else _from_bits(received_stream[header_bits:], self.bits)
        erased_tb = torch.as_tensor(outcome.erased, device=codes.device)
        lost = lost_elements(erased_tb, header_bits, codes.numel(), self.bits, info.tbs_bits)
        values = dequantize_codes(from_twos_complement(received.reshape(q.shape), self.bits), scales, self.bits)
        out = torch.where(lost.reshape(q.shape), torch.zeros_like(values), values)
        residual = int(((received != codes) & ~lost).sum()) if stream is not None else 0
        stats = self._stats(info, outcome, snr_tx, snr_db, payload_bits, header_bits, n_tb)
        stats |= {
            "erased_elements": float(lost.sum()),
            "erased_fraction": float(lost.float().mean()) if lost.numel() else 0.0,
            "residual_code_errors": float(residual),
            "quantization_mse": mse(clean, xf),
            "mse": mse(out, xf),
        }
        return ImpairmentResult(x=out.to(x.dtype), stats=stats, lost=lost.reshape(q.shape))

    def _expected_first_error(self, info: TransportBlockInfo, snr_db: float) -> float:
        """The abstraction's first-transmission TB error rate (NaN for an MCS without a BLER curve)."""
        from edgesplit.channel.nr.bler import available_mcs

        if info.mcs not in available_mcs(info.mcs_table):
            return math.nan
        return self.link.first_tb_error_rate(info, snr_db)

    def _stats(self, info: TransportBlockInfo, outcome: HarqOutcome, snr_tx: np.ndarray, snr_db: float,
               payload_bits: int, header_bits: int, n_tb: int) -> dict[str, float]:
        carrier = self.carrier
        tx = outcome.total_transmissions
        sent = np.arange(snr_tx.shape[1])[None, :] < outcome.transmissions[:, None]
        mean_tx_snr = float(np.mean(10.0 ** (snr_tx[sent] / 10.0))) if tx else math.nan
        erased = np.flatnonzero(outcome.erased)
        erased_payload = sum(min(info.tbs_bits, payload_bits - i * info.tbs_bits) for i in erased)
        shannon_bps = carrier.bandwidth_hz * math.log2(1.0 + 10.0 ** (snr_db / 10.0))
        return {
            "reported_snr_db": snr_db,
            "mean_tx_snr_db": 10.0 * math.log10(mean_tx_snr) if tx else math.nan,
            "mcs": float(info.mcs),
            "mcs_table": float(info.mcs_table),
            "modulation_order": float(info.modulation_order),
            "code_rate": info.code_rate,
            "effective_code_rate": info.effective_code_rate,
            "tbs_bits": float(info.tbs_bits),
            "code_blocks_per_tb": float(info.num_code_blocks),
            "code_block_bits": float(info.code_block_bits),
            "expected_first_tb_error_rate": self._expected_first_error(info, snr_db),
            "num_tbs": float(n_tb),
            "transmissions": float(tx),
            "retransmissions": float(tx - n_tb),
            "harq_rounds": float(len(outcome.round_sizes())),
            "first_tx_failures": float(outcome.first_failures),
            "first_tx_tb_error_rate": outcome.first_failures / n_tb if n_tb else 0.0,
            "failed_tbs": float(outcome.erased.sum()),
            "payload_bits": float(payload_bits),
            "header_bits": float(header_bits),
            "padding_bits": float(n_tb * info.tbs_bits - payload_bits),
            "delivered_payload_bits": float(payload_bits - erased_payload),
            "coded_bits_on_air": float(tx * info.coded_bits),
            "airtime_s": tx * carrier.slot_s,
            "harq_latency_s": outcome.latency_slots(carrier.harq_rtt_slots) * carrier.slot_s,
            "extra_latency_factor": tx / n_tb if n_tb else 1.0,
            "shannon_time_s": payload_bits / shannon_bps,
        }
