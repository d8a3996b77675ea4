"""Gray-coded BPSK / QPSK / 16-QAM / 64-QAM: bit mapping, symbol-level simulation and closed-form BER.

SNR convention: ``snr_db`` is **Es/N0 per symbol** (received symbol energy over noise PSD), the
SNR a :class:`~edgesplit.channel.state.ChannelState` reports. Per bit, Eb/N0 = Es/N0 / log2(M).

Closed forms (AWGN, hard decisions, binary-reflected Gray code per I/Q axis), each written as a sum
``BER = Σ c_j · Q(sqrt(a_j · γ))`` with γ the linear Es/N0:

* BPSK: ``Q(sqrt(2γ))`` (exact);
* QPSK: ``Q(sqrt(γ))`` per bit (exact; each axis carries half the symbol energy);
* square M-QAM: the exact expression of Cho & Yoon (IEEE Trans. Commun. 50(7), 2002); the common
  approximation ``(4/log2 M)(1 - 1/sqrt M) Q(sqrt(3γ/(M-1)))`` is its leading term
  (``ber_awgn(..., exact=False)``).

Because every BER is a sum of Q terms, the average over Rayleigh fading (|h|² exponential, mean 1)
is closed form for every modulation: ``E[Q(sqrt(aγ))] = (1 - sqrt(aγ̄ / (2 + aγ̄))) / 2``. Nakagami-m
averages are computed by numerical integration (:func:`ber_fading_avg`).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from scipy import special

MODULATIONS: dict[str, int] = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6}
"""Supported modulations and their bits per symbol."""


def check_modulation(name: str) -> str:
    """Return the canonical (lower-case) modulation name or raise ValueError listing the valid ones."""
    key = str(name).lower().replace("-", "")
    if key not in MODULATIONS:
        raise ValueError(f"unknown modulation {name!r}; valid: {sorted(MODULATIONS)}")
    return key


def q_function(x: np.ndarray | float) -> np.ndarray | float:
    """Gaussian tail probability Q(x) = P(N(0,1) > x)."""
    return 0.5 * special.erfc(np.asarray(x, dtype=float) / math.sqrt(2.0))


@cache
def _qam_terms(order: int) -> tuple[tuple[float, float], ...]:
    """(c_j, a_j) of the exact Gray square-QAM BER (Cho & Yoon 2002, eq. 16), merged by a_j."""
    levels = math.isqrt(order)
    bits_per_axis = int(math.log2(levels))
    terms: dict[int, float] = {}
    for k in range(1, bits_per_axis + 1):
        half = 1 << (k - 1)
        for i in range(levels - levels // (1 << k)):
            sign = -1 if ((i * half) // levels) % 2 else 1
            weight = sign * (half - (2 * i * half + levels) // (2 * levels))
            # erfc((2i+1) sqrt(3γ/(2(M-1)))) = 2 Q(sqrt((2i+1)² · 3γ/(M-1)))
            terms[2 * i + 1] = terms.get(2 * i + 1, 0.0) + 2.0 * weight / levels
    return tuple(
        (c / bits_per_axis, (odd**2) * 3.0 / (order - 1)) for odd, c in sorted(terms.items()) if c != 0.0
    )


def ber_terms(modulation: str, exact: bool = True) -> tuple[tuple[float, float], ...]:
    """The (c_j, a_j) pairs with BER(γ) = Σ c_j Q(sqrt(a_j γ)) for a modulation."""
    mod = check_modulation(modulation)
    if mod == "bpsk":
        return ((1.0, 2.0),)
    order = 2 ** MODULATIONS[mod]
    if not exact:
        log2m = MODULATIONS[mod]
        return ((4.0 / log2m * (1.0 - 1.0 / math.sqrt(order)), 3.0 / (order - 1)),)
    return _qam_terms(order)


def _linear(snr_db: np.ndarray | float) -> np.ndarray:
    snr = np.asarray(snr_db, dtype=float)
    if not np.all(np.isfinite(snr)):
        raise ValueError(f"snr_db must be finite, got {snr_db!r}")
    return 10.0 ** (snr / 10.0)


def _as_output(value: np.ndarray) -> np.ndarray | float:
    return float(value) if np.ndim(value) == 0 else value


def ber_awgn(modulation: str, snr_db: np.ndarray | float, exact: bool = True) -> np.ndarray | float:
    """Bit error rate over AWGN at Es/N0 = ``snr_db`` (per symbol); vectorised over ``snr_db``."""
    gamma = _linear(snr_db)
    ber = sum(c * q_function(np.sqrt(a * gamma)) for c, a in ber_terms(modulation, exact))
    return _as_output(np.clip(ber, 0.0, 0.5))


def ber_rayleigh_avg(modulation: str, mean_snr_db: np.ndarray | float) -> np.ndarray | float:
    """BER averaged over Rayleigh fading (|h|² ~ Exp(1)) at mean Es/N0 = ``mean_snr_db``; closed form."""
    gamma = _linear(mean_snr_db)
    ber = sum(c * 0.5 * (1.0 - np.sqrt(a * gamma / (2.0 + a * gamma))) for c, a in ber_terms(modulation))
    return _as_output(np.clip(ber, 0.0, 0.5))


def ber_fading_avg(modulation: str, mean_snr_db: float, fading: str = "rayleigh", m: float = 1.0) -> float:
    """BER averaged over block fading by numerical integration: ``fading`` is 'rayleigh' or 'nakagami' (shape m).

    |h|² ~ Gamma(m, 1/m) (Rayleigh is m = 1). Integrates over log|h|² so that the small-gain region,
    which dominates the average at high SNR, is resolved.
    """
    from scipy import integrate, stats  # deferred: scipy.stats adds ~0.5 s to every import of the package

    if fading not in ("rayleigh", "nakagami"):
        raise ValueError(f"fading must be 'rayleigh' or 'nakagami', got {fading!r}")
    shape = 1.0 if fading == "rayleigh" else float(m)
    if not shape >= 0.5:
        raise ValueError(f"Nakagami m must be >= 0.5, got {m!r}")
    gamma_bar = float(_linear(mean_snr_db))
    gain = stats.gamma(shape, scale=1.0 / shape)

    def integrand(u: float) -> float:
        g = math.exp(u)
        return float(ber_awgn(modulation, 10.0 * math.log10(g * gamma_bar))) * gain.pdf(g) * g

    lo, hi = math.log(1e-14), math.log(gain.isf(1e-16))
    knee = min(max(-math.log(gamma_bar), lo + 1.0), hi - 1.0)
    value, _ = integrate.quad(integrand, lo, hi, points=[knee, 0.0], limit=400, epsabs=1e-14, epsrel=1e-8)
    return float(value)


def packet_error_rate(modulation: str, snr_db: float, packet_bits: int) -> float:
    """Probability that a packet of ``packet_bits`` independent bits holds at least one error."""
    ber = float(ber_awgn(modulation, snr_db))
    return float(-math.expm1(packet_bits * math.log1p(-ber)))


def _gray_to_index(gray: torch.Tensor, nbits: int) -> torch.Tensor:
    index = gray.clone()
    for shift in range(1, nbits):
        index ^= gray >> shift
    return index


def _bits_to_int(bits: torch.Tensor) -> torch.Tensor:
    weights = 1 << torch.arange(bits.shape[-1] - 1, -1, -1, device=bits.device)
    return (bits.long() * weights).sum(-1)


def _int_to_bits(value: torch.Tensor, nbits: int) -> torch.Tensor:
    shifts = torch.arange(nbits - 1, -1, -1, device=value.device)
    return ((value.unsqueeze(-1) >> shifts) & 1).bool()


def _pam_levels(bits: torch.Tensor) -> torch.Tensor:
    """Gray-coded PAM amplitudes (±1, ±3, ...) of bit groups [..., b] (MSB first)."""
    nbits = bits.shape[-1]
    index = _gray_to_index(_bits_to_int(bits), nbits)
    return (2 * index - (2**nbits - 1)).float()


def _pam_decide(amplitude: torch.Tensor, nbits: int) -> torch.Tensor:
    """Nearest-level hard decision on unnormalised PAM amplitudes, back to Gray bits [..., b]."""
    top = 2**nbits - 1
    index = torch.clamp(torch.round((amplitude + top) / 2.0), 0, top).long()
    return _int_to_bits(index ^ (index >> 1), nbits)


def _energy(mod: str) -> float:
    """Average energy of the unnormalised constellation (±1, ±3, ... per axis)."""
    return 1.0 if mod == "bpsk" else 2.0 * (2 ** MODULATIONS[mod] - 1) / 3.0


def modulate(bits: torch.Tensor, modulation: str) -> torch.Tensor:
    """Map bit groups [..., bits_per_symbol] to unit-energy complex symbols [...]; I takes the first half."""
    mod = check_modulation(modulation)
    k = MODULATIONS[mod]
    if bits.shape[-1] != k:
        raise ValueError(f"{mod} maps {k} bits per symbol; got a last dimension of {bits.shape[-1]}")
    if mod == "bpsk":
        real, imag = _pam_levels(bits), torch.zeros(bits.shape[:-1], device=bits.device)
    else:
        real, imag = _pam_levels(bits[..., : k // 2]), _pam_levels(bits[..., k // 2 :])
    return torch.complex(real, imag) / math.sqrt(_energy(mod))


def demodulate(symbols: torch.Tensor, modulation: str) -> torch.Tensor:
    """Hard-decision demapping of (equalised) complex symbols [...] to bits [..., bits_per_symbol]."""
    mod = check_modulation(modulation)
    k = MODULATIONS[mod]
    scaled = symbols * math.sqrt(_energy(mod))
    if mod == "bpsk":
        return _pam_decide(scaled.real, 1)
    return torch.cat([_pam_decide(scaled.real, k // 2), _pam_decide(scaled.imag, k // 2)], dim=-1)


def transmit_bits(
    bits: torch.Tensor,
    modulation: str,
    snr_db: float,
    generator: torch.Generator,
    rayleigh: bool = False,
) -> torch.Tensor:
    """Send a flat bool bit vector through modulator, channel and hard demodulator; return received bits.

    The channel is complex AWGN at Es/N0 = ``snr_db``; with ``rayleigh=True`` every symbol also sees
    an independent CN(0, 1) gain, equalised coherently (ideal interleaving within the packet).
    Random numbers are drawn on ``generator``'s device and moved to the bits' device.
    """
    mod = check_modulation(modulation)
    k = MODULATIONS[mod]
    n = bits.numel()
    padded = torch.zeros(-(-n // k) * k, dtype=torch.bool, device=bits.device)
    padded[:n] = bits.reshape(-1).bool()
    symbols = modulate(padded.view(-1, k), mod)
    noise_std = math.sqrt(0.5 / float(_linear(snr_db)))
    gen_device = generator.device
    noise = torch.randn(symbols.shape[0], 2, generator=generator, device=gen_device).to(bits.device)
    noise = noise_std * torch.complex(noise[:, 0], noise[:, 1])
    if not rayleigh:
        return demodulate(symbols + noise, mod).reshape(-1)[:n]
    h = torch.randn(symbols.shape[0], 2, generator=generator, device=gen_device).to(bits.device)
    h = torch.complex(h[:, 0], h[:, 1]) / math.sqrt(2.0)
    return demodulate((h * symbols + noise) / h, mod).reshape(-1)[:n]
