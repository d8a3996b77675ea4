"""Digital transmission of activations: absmax quantisation, Gray-mapped modulation, bit errors, erasures.

Pipeline per tensor ``[..., hidden]``:

1. **Quantise** each token vector (row of the last dim) to ``bits``-bit signed integers with one
   absmax scale per row: ``scale = absmax / (2**(bits-1) - 1)``, ``q = round(x / scale)``. Widths 2..8
   use :func:`edgesplit.packet.quantize.quantize_absmax` (the wire format); 9..16 use the same formula
   here; ``bits = 1`` is a sign quantiser (``±scale`` with ``scale = mean |x|``, the MSE-optimal level).
2. **Codes on the wire** are ``bits``-bit **two's complement** (1 bit: the sign bit). A flipped sign
   bit turns a small value into a large one of the other sign (e.g. int8 3 -> -125): realistic, and
   the reason uncoded digital links degrade sharply. The scales are sent in a protected header
   (32-bit floats, assumed error-free: headers are short and get strong coding in practice).
3. **Bit errors** at the modulation's BER for the received Es/N0 (see
   :mod:`edgesplit.channel.modulation`). ``bit_errors="flip"`` flips each payload bit independently
   at the closed-form BER (a Bernoulli mask over ``[n_elements, bits]``); ``"symbols"`` runs the actual
   Gray mapper, complex AWGN and a hard demapper (errors then cluster within symbols, as on air).
   ``ber_model="instantaneous"`` uses the state's instantaneous SNR: block fading, the whole packet
   sees one |h|². ``"rayleigh_average"`` uses the Rayleigh-averaged BER at the state's mean SNR: fast
   fading with ideal interleaving, every symbol sees its own |h|².
4. **Erasures** of fragments at the state's ``loss_rate`` (:mod:`edgesplit.channel.erasure`): lost
   fragments are zeroed (``"zero"``) or retransmitted (``"arq"``, stats report the extra airtime).

Bit flips model errors that reach the receiver undetected (uncoded / approximate-computing links);
erasures model losses a CRC detects. Use either or both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from edgesplit.channel.erasure import check_erasure_fields, erase_fragments
from edgesplit.channel.impairment import (
    Impairment,
    ImpairmentResult,
    as_generator,
    check_activations,
    mse,
    uniform_like,
)
from edgesplit.channel.modulation import ber_awgn, ber_rayleigh_avg, check_modulation, transmit_bits
from edgesplit.channel.state import ChannelState
from edgesplit.packet.quantize import MAX_BITS, MIN_BITS, dequantize_absmax, quantize_absmax

BER_MODELS = ("instantaneous", "rayleigh_average")
"""Which SNR / fading assumption sets the bit error rate."""
BIT_ERROR_MODES = ("flip", "symbols")
"""Closed-form independent bit flips, or a symbol-level simulation of the modulation."""
SCALE_BITS = 32
"""Header bits per row (one float32 absmax scale per token vector)."""


def quantize_codes(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row absmax quantisation of float32 ``x``: (signed int64 values, float32 scales of shape x.shape[:-1])."""
    if bits == 1:
        scales = x.abs().mean(-1)
        return torch.where(x < 0, -1, 1).long(), scales
    if MIN_BITS <= bits <= MAX_BITS:
        q, scales = quantize_absmax(x, bits)
        return q.long(), scales
    qmax = (1 << (bits - 1)) - 1
    scales = x.abs().amax(-1) / qmax
    safe = torch.where(scales > 0, scales, torch.ones_like(scales)).unsqueeze(-1)
    return (x / safe).round().clamp(-qmax, qmax).long(), scales


def dequantize_codes(q: torch.Tensor, scales: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`quantize_codes` (float32)."""
    if MIN_BITS <= bits <= MAX_BITS:
        return dequantize_absmax(q, scales)
    return q.float() * scales.unsqueeze(-1)


def to_twos_complement(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed values -> unsigned ``bits``-bit codes (1 bit: 1 for negative)."""
    return (q < 0).long() if bits == 1 else q & ((1 << bits) - 1)


def from_twos_complement(code: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned ``bits``-bit codes -> signed values (1 bit: ±1)."""
    if bits == 1:
        return 1 - 2 * code
    return code - (((code >> (bits - 1)) & 1) << bits)


def flip_bits(codes: torch.Tensor, bits: int, ber: float, generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """XOR each of the ``bits`` bits of every code with an independent Bernoulli(ber) error; (codes, errors)."""
    errors = uniform_like((codes.numel(), bits), generator, codes.device) < ber
    weights = 1 << torch.arange(bits, device=codes.device)
    pattern = (errors.long() * weights).sum(-1).reshape(codes.shape)
    return codes ^ pattern, int(errors.sum())


def send_symbols(
    codes: torch.Tensor, bits: int, modulation: str, snr_db: float, generator: torch.Generator, rayleigh: bool
) -> tuple[torch.Tensor, int]:
    """Send the codes' bits (MSB first) through the modulator and channel; (received codes, bit errors)."""
    shifts = torch.arange(bits - 1, -1, -1, device=codes.device)
    sent = ((codes.reshape(-1, 1) >> shifts) & 1).bool()
    received = transmit_bits(sent.reshape(-1), modulation, snr_db, generator, rayleigh).reshape(-1, bits)
    value = (received.long() << shifts).sum(-1).reshape(codes.shape)
    return value, int((received != sent).sum())


@dataclass
class DigitalImpairment(Impairment):
    """Quantise, modulate, corrupt at the link's BER, optionally erase fragments; then dequantise."""

    kind: ClassVar[str] = "digital"
    bits: int = 8
    """Bits per element, 1..16 (two's complement codes; 1 bit is a sign quantiser)."""
    modulation: str = "qpsk"
    """One of 'bpsk', 'qpsk', '16qam', '64qam' (Gray coded)."""
    ber_model: str = "instantaneous"
    """'instantaneous' (state.snr_db, block fading) or 'rayleigh_average' (mean SNR, fast fading)."""
    bit_errors: str = "flip"
    """'flip' (independent flips at the closed-form BER) or 'symbols' (simulate the modulation)."""
    erasure: str = "none"
    """Fragment erasures at the state's loss_rate: 'none', 'zero' or 'arq'."""
    fragment_elements: int = 1024
    """Elements per fragment for erasures."""
    max_transmissions: int | None = None
    """ARQ only: zero a fragment still lost after this many transmissions; None retries forever."""

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and not isinstance(self.bits, bool) and 1 <= self.bits <= 16):
            raise ValueError(f"digital bits must be an int in 1..16, got {self.bits!r}")
        self.modulation = check_modulation(self.modulation)
        if self.ber_model not in BER_MODELS:
            raise ValueError(f"ber_model must be one of {list(BER_MODELS)}, got {self.ber_model!r}")
        if self.bit_errors not in BIT_ERROR_MODES:
            raise ValueError(f"bit_errors must be one of {list(BIT_ERROR_MODES)}, got {self.bit_errors!r}")
        check_erasure_fields(self.erasure, self.fragment_elements, self.max_transmissions, None)

    def link_snr_db(self, state: ChannelState) -> float:
        """The Es/N0 in dB that sets the BER: instantaneous, or the mean SNR for Rayleigh averaging."""
        return state.snr_db if self.ber_model == "instantaneous" else state.mean_snr_db

    def bit_error_rate(self, state: ChannelState) -> float:
        """The closed-form BER this impairment applies in ``state``."""
        if self.ber_model == "instantaneous":
            return float(ber_awgn(self.modulation, state.snr_db))
        return float(ber_rayleigh_avg(self.modulation, state.mean_snr_db))

    def _corrupt(self, codes: torch.Tensor, state: ChannelState, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        if self.bit_errors == "flip":
            return flip_bits(codes, self.bits, self.bit_error_rate(state), gen)
        rayleigh = self.ber_model == "rayleigh_average"
        return send_symbols(codes, self.bits, self.modulation, self.link_snr_db(state), gen, rayleigh)

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        xf = check_activations(x)
        gen = as_generator(generator)
        q, scales = quantize_codes(xf, self.bits)
        clean = dequantize_codes(q, scales, self.bits)
        codes, n_errors = self._corrupt(to_twos_complement(q, self.bits), state, gen)
        received = dequantize_codes(from_twos_complement(codes, self.bits), scales, self.bits)
        flat, stats = erase_fragments(
            received.reshape(-1), state.loss_rate, self.fragment_elements, self.erasure, gen, self.max_transmissions
        )
        out = flat.reshape(xf.shape)
        payload_bits = xf.numel() * self.bits
        header_bits = SCALE_BITS * math.prod(xf.shape[:-1])
        stats |= {
            "ber_target": self.bit_error_rate(state),
            "bit_errors": float(n_errors),
            "bit_error_rate": n_errors / payload_bits if payload_bits else 0.0,
            "payload_bits": float(payload_bits),
            "header_bits": float(header_bits),
            "bits_sent": payload_bits * stats["extra_latency_factor"] + header_bits,
            "quantization_mse": mse(clean, xf),
            "mse": mse(out, xf),
        }
        return ImpairmentResult(x=out.to(x.dtype), stats=stats)
