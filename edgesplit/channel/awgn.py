"""Analog transmission of activations over AWGN at the block's SNR.

``x + n`` with ``n ~ N(0, P / snr)`` per element, where the signal power ``P`` is, by default,
**per token**: the mean of x² over the hidden dimension of each token vector. Why per token: LLM
hidden states carry a few huge outlier activations (some tokens, e.g. the first, have norms orders
of magnitude above the rest). With one power for the whole tensor (``power="tensor"``) those outlier
tokens set the noise level for every token, so ordinary tokens see an SNR far below the nominal one
and the "SNR" axis of an experiment stops meaning what it says. Per-token power keeps every token at
the nominal SNR, as a per-packet power-normalised analog link would.

The SNR is the state's instantaneous ``snr_db`` (block fading included) unless ``snr="mean"``.
Stats: ``target_snr_db``, ``measured_snr_db`` (mean over tokens of each token's realised SNR in dB,
zero tokens skipped), ``measured_tensor_snr_db`` (total signal over total noise energy) and ``mse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from edgesplit.channel.impairment import (
    Impairment,
    ImpairmentResult,
    as_generator,
    check_activations,
    mse,
    normal_like,
)
from edgesplit.channel.state import ChannelState

POWER_MODES = ("token", "tensor")
"""How the signal power that sets the noise level is measured."""
SNR_SOURCES = ("instantaneous", "mean")
"""Which SNR of the state sets the noise: with the block's fading gain, or without."""


def _db(ratio: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(ratio)


def measured_snr_db(signal: torch.Tensor, noise: torch.Tensor) -> tuple[float, float]:
    """(mean per-token SNR in dB over tokens with signal, tensor SNR in dB) of ``signal + noise``."""
    sig = signal.pow(2).mean(-1).reshape(-1)
    noi = noise.pow(2).mean(-1).reshape(-1)
    valid = (sig > 0) & (noi > 0)
    per_token = float(_db(sig[valid] / noi[valid]).mean()) if bool(valid.any()) else float("nan")
    total = float(_db(sig.sum() / noi.sum())) if float(noi.sum()) > 0 else float("inf")
    return per_token, total


@dataclass
class AwgnImpairment(Impairment):
    """Additive white Gaussian noise at the state's SNR (analog, uncoded transmission)."""

    kind: ClassVar[str] = "awgn"
    power: str = "token"
    """Signal-power reference: 'token' (per token vector, default) or 'tensor' (whole tensor)."""
    snr: str = "instantaneous"
    """'instantaneous' uses state.snr_db (with fading); 'mean' uses state.mean_snr_db."""

    def __post_init__(self) -> None:
        if self.power not in POWER_MODES:
            raise ValueError(f"awgn power must be one of {list(POWER_MODES)}, got {self.power!r}")
        if self.snr not in SNR_SOURCES:
            raise ValueError(f"awgn snr must be one of {list(SNR_SOURCES)}, got {self.snr!r}")

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        xf = check_activations(x)
        snr_db = state.snr_db if self.snr == "instantaneous" else state.mean_snr_db
        signal_power = xf.pow(2).mean(-1, keepdim=True) if self.power == "token" else xf.pow(2).mean()
        noise_std = torch.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
        noise = noise_std * normal_like(tuple(xf.shape), as_generator(generator), xf.device)
        out = xf + noise
        per_token, total = measured_snr_db(xf, noise)
        stats = {"target_snr_db": snr_db, "measured_snr_db": per_token, "measured_tensor_snr_db": total,
                 "mse": mse(out, xf)}
        return ImpairmentResult(x=out.to(x.dtype), stats=stats)
