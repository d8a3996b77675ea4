"""The bit-true coded link: Sionna's 5G NR TB chain end to end, HARQ with chase combining, our own noise.

Per TB format (cached per format, decoder iterations and device): ``sionna.phy.nr.TBEncoder`` (TB CRC,
code-block segmentation + CB CRCs, 5G LDPC, rate matching, bit interleaving, PUSCH scrambling),
``sionna.phy.mapping.Mapper`` (Gray QAM, unit energy), the complex channel drawn **here** from the
impairment's generator, ``Demapper("app")`` (exact LLRs ln P(1)/P(0)) and ``TBDecoder`` (descrambling, rate
recovery, 20-iteration BP, CRC checks). All TBs of a packet go through one encoder call and, per HARQ round,
one demapper / decoder call (chunked to bound memory).

Channel per transmission: ``y = h x + n`` with n ~ CN(0, 1/SNR) (SNR = Es/N0 per symbol, unit-energy QAM);
``awgn``: h = 1; ``rayleigh``: one h ~ CN(0, 1) per TB and transmission (block fading over the slot); ``tdl``: one
TR 38.901 TDL realisation per TB and transmission, ``h_re`` per data RE (codeword symbols mapped frequency first,
then symbol; :mod:`edgesplit.channel.nr.tdl`). Perfect CSI, per-RE equalisation. Chase combining (the same
codeword every time), two receivers:

* ``"symbol"`` (default): maximum-ratio combining of the received symbols per RE, ``z = Σ h_j* y_j / Σ |h_j|²``,
  demapped with per-RE noise variance ``1 / Σ SNR_j`` (``no / Σ |h_j,re|²``) — Chase's original rule, whose
  combined SNR is exactly the sum of the transmissions' linear SNRs per RE (the abstraction's rule).
* ``"llr"``: the soft buffer adds each transmission's demapper LLRs (of ``y_j / h_j`` at noise ``1 / SNR_j``, per RE).
  Same as ``"symbol"`` for QPSK; for 16QAM and up each demapper marginalises the symbol's other bits on its own,
  which costs decoding margin (``benchmarks/coded_link_check.py``, two transmissions: 0.03-0.64 dB),
  so the abstraction is then optimistic. Bit-true only.
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import torch

from edgesplit.channel.nr._sionna import load_sionna, preserve_global_rng
from edgesplit.channel.nr.carrier import CarrierConfig
from edgesplit.channel.nr.harq import HarqOutcome
from edgesplit.channel.nr.mcs import TransportBlockInfo

if TYPE_CHECKING:
    from edgesplit.channel.nr.tdl import TdlConfig

COMBINING = ("symbol", "llr")
"""Chase-combining receivers of the bit-true path: symbol-level MRC, or soft-buffer LLR addition."""
CHUNK_ELEMENTS = 1 << 24
"""Bound on TBs x symbols x constellation points per demapper call (memory, ~64 MB of float32)."""


def sionna_device(generator: torch.Generator) -> str:
    """Sionna's device string for a generator's device ('cpu', 'cuda:0', ...)."""
    dev = generator.device
    return "cpu" if dev.type == "cpu" else f"{dev.type}:{dev.index or 0}"


class BitTrueLink:
    """Sionna's encoder, mapper, demapper and decoder for one TB format on one device."""

    def __init__(self, info: TransportBlockInfo, num_bp_iter: int = 20, device: str = "cpu") -> None:
        if not info.codable:
            raise ValueError(f"TB of MCS {info.mcs} is coded at rate {info.effective_code_rate:.3f}: not codable")
        sn = load_sionna()
        self.info = info
        self.device = device
        qm = info.modulation_order
        with preserve_global_rng():
            self.encoder = sn.nr.TBEncoder(
                target_tb_size=info.tbs_bits, num_coded_bits=info.coded_bits, target_coderate=info.code_rate,
                num_bits_per_symbol=qm, channel_type="PUSCH", device=device,
            )
            self.decoder = sn.nr.TBDecoder(self.encoder, num_bp_iter=num_bp_iter, device=device)
            self.mapper = sn.mapping.Mapper("qam", qm, device=device)
            self.demapper = sn.mapping.Demapper("app", "qam", qm, device=device)
        if self.encoder.tb_size != info.tbs_bits or self.encoder.n != info.coded_bits:
            raise RuntimeError(f"Sionna's TBEncoder disagrees with the TB info: {self.encoder.tb_size} bits, "
                               f"{self.encoder.n} coded vs {info}")
        self.chunk = max(1, CHUNK_ELEMENTS // (info.symbols * (1 << qm)))

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """TB bits [n, tbs] (0/1) -> unit-energy QAM symbols [n, G / Qm] (complex64)."""
        with preserve_global_rng():
            return self.mapper(self.encoder(bits.float()))

    def _llrs(self, y: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
        with preserve_global_rng():
            return torch.cat([self.demapper(y[i: i + self.chunk], no[i: i + self.chunk])
                              for i in range(0, y.shape[0], self.chunk)])

    def _decode(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with preserve_global_rng():
            parts = [self.decoder(llr[i: i + self.chunk]) for i in range(0, llr.shape[0], self.chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def send(self, bits: torch.Tensor, snr_db: float, max_transmissions: int, channel: str,
             generator: torch.Generator, combining: str = "symbol", carrier: CarrierConfig | None = None,
             tdl: TdlConfig | None = None,
             channel_log: list | None = None) -> tuple[torch.Tensor, HarqOutcome, np.ndarray]:
        """Send TBs [n, tbs] with HARQ; (decoded bits [n, tbs], outcome, per-transmission SNR dB [n, N] or NaN).

        ``tdl`` needs ``carrier`` (the TB's allocation) and takes ``tdl`` (default TdlConfig()). The per-transmission
        SNR is the mean over the REs for ``tdl``. ``channel_log`` (calibration) gets one ``(round, TB indices [k],
        |h|² float64 [k, 1 or symbols])`` per round. Draw order, per round: the round's channel (rayleigh: [k, 2];
        tdl: k TDL realisations, :func:`~edgesplit.channel.nr.tdl.frequency_response`) then its noise
        ([k, symbols, 2]).
        """
        if combining not in COMBINING:
            raise ValueError(f"combining must be one of {list(COMBINING)}, got {combining!r}")
        if channel == "tdl":
            from edgesplit.channel.nr.tdl import TdlConfig, frequency_response

            if carrier is None or carrier.data_re != self.info.symbols:
                raise ValueError(f"channel 'tdl' needs the TB's carrier allocation ({self.info.symbols} data REs), "
                                 f"got {carrier!r}")
            tdl = TdlConfig.coerce(tdl)
        n, gdev = bits.shape[0], generator.device
        width = self.info.symbols if channel == "tdl" else 1  # channel coefficients per TB transmission
        x = self.encode(bits.to(self.device))
        if combining == "llr":
            llr = torch.zeros(n, self.info.coded_bits, device=self.device)
        else:
            mrc = torch.zeros(n, self.info.symbols, dtype=torch.complex64, device=self.device)  # Σ h* y
            energy = torch.zeros(n, width, device=self.device)  # Σ |h|² (per RE for tdl)
        decoded = torch.zeros(n, self.info.tbs_bits, device=self.device)
        transmissions = np.zeros(n, dtype=np.int64)
        delivered = np.zeros(n, dtype=bool)
        snr_tx = np.full((n, max_transmissions), np.nan)
        no = 10.0 ** (-snr_db / 10.0)
        active = torch.arange(n, device=self.device)
        for j in range(max_transmissions):
            k = int(active.numel())
            if k == 0:
                break
            if channel == "rayleigh":
                h = torch.randn(k, 2, generator=generator, device=gdev).to(self.device) / math.sqrt(2.0)
                h = torch.complex(h[:, 0], h[:, 1]).unsqueeze(-1)
            elif channel == "tdl":
                h = frequency_response(carrier, tdl, k, generator).to(self.device)
            else:
                h = torch.ones(k, 1, dtype=torch.complex64, device=self.device)
            w = torch.randn(k, self.info.symbols, 2, generator=generator, device=gdev).to(self.device)
            y = h * x[active] + math.sqrt(no / 2.0) * torch.complex(w[..., 0], w[..., 1])
            gain = h.abs().square()
            if channel_log is not None:
                channel_log.append((j, active.cpu().numpy(), gain.cpu().double().numpy()))
            if combining == "llr":
                llr[active] += self._llrs(y / h, no / gain)
                attempt = llr[active]
            else:
                mrc[active] += h.conj() * y
                energy[active] += gain
                attempt = self._llrs(mrc[active] / energy[active], no / energy[active])
            bits_hat, crc_ok = self._decode(attempt)
            decoded[active] = bits_hat
            idx = active.cpu().numpy()
            transmissions[idx] += 1
            delivered[idx] = crc_ok.cpu().numpy()
            snr_tx[idx, j] = snr_db + 10.0 * np.log10(gain.mean(-1).cpu().double().numpy())
            active = active[~crc_ok]
        return decoded, HarqOutcome(transmissions=transmissions, delivered=delivered), snr_tx


@cache
def bit_true_link(info: TransportBlockInfo, num_bp_iter: int = 20, device: str = "cpu") -> BitTrueLink:
    """The cached :class:`BitTrueLink` of a TB format (building one takes ~0.1-1 s)."""
    return BitTrueLink(info, num_bp_iter, device)
