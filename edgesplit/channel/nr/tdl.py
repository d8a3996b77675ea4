"""The ``tdl`` channel of the coded uplink: 3GPP TR 38.901 tapped-delay-line fading, frequency-selective per RE.

Channel. ``sionna.phy.channel.tr38901.TDL`` (scalable profiles A..E of TR 38.901 §7.7.2, Tables 7.7.2-1..5,
tap delays = normalised delays x ``delay_spread_s``; sum-of-sinusoids taps with the Doppler of ``ue_speed_kmh`` at
``carrier_frequency_hz``; D and E have a Rician first tap) gives the taps of one slot at the OFDM symbol times
``l · slot_s / 14``; ``sionna.phy.channel.cir_to_ofdm_channel`` turns them into the frequency response on the
allocation's ``12 · prbs`` subcarriers (``subcarrier_frequencies``, spacing SCS; where the allocation sits in the
carrier does not matter for a wide-sense stationary TDL). Kept: the PUSCH data symbols, taken as symbols
``dmrs_symbols .. pusch_symbols - 1`` of the slot (front-loaded DMRS first; TS 38.211 puts it at symbol 2 or 3, a
shift far below the coherence time at the speeds accepted). Perfect cyclic prefix (taps beyond the CP cause no
inter-symbol interference) and no inter-carrier interference from Doppler: the usual frequency-domain model
(Sionna's ``OFDMChannel`` makes the same assumption). Power: Sionna normalises the power-delay profile to total
power 1, so ``E|h_re|² = 1`` on every RE (unit *average* power); realisations are not normalised one by one,
which would remove the slot's fading.

RE order. A TB's coded QAM symbols fill the allocation's data REs **frequency first, then symbol**: symbol ``i``
of the codeword sits on subcarrier ``i mod (12 · prbs)`` of data symbol ``i // (12 · prbs)`` (what TS 38.211
§6.3.1.6 does for PUSCH), so ``h[..., i]`` below is the channel of codeword symbol ``i``.

Independence. Every TB transmission (first and each HARQ retransmission) sees its own independent realisation.
Retransmissions are at least one HARQ round trip apart (``harq_rtt_slots`` + the other TBs' slots), and TBs of a
packet go out in different slots; at 3 km/h and 3.5 GHz the coherence time (~0.4 / f_D ≈ 40 ms) is longer than
that, so independence is the documented simplification (optimistic for HARQ diversity at low speed).

Randomness. Sionna's TDL draws from ``self.torch_rng`` (Sionna's global per-device generator); the subclass here
returns the caller's ``torch.Generator`` instead, so every number comes from the impairment's generator (same
generator state, same channel) and the global torch / NumPy / Python RNGs are untouched
(:func:`~edgesplit.channel.nr._sionna.preserve_global_rng` around every Sionna call as well).

Abstraction. The effective SNR of a TB transmission is Sionna's exponential effective SINR mapping
(``sionna.sys.EESM``, ``SNR_eff = -beta ln(mean_re exp(-SNR_re / beta))``) with the beta per MCS table and index
Sionna ships (``sionna/sys/esm_params/eesm_beta_table.json``, tables 1 and 2 of TS 38.214 §5.1.3.1; Sionna
states that their calibration provenance is not recorded), used as is (double precision, Sionna's
[-30, 30] dB clip on SNR_eff); the TB error rate is then the AWGN one at SNR_eff
(:func:`~edgesplit.channel.nr.bler.tb_error_rate`). Chase combining: per-RE linear SNRs add across the
transmissions (exact for per-RE MRC), then the EESM. The *expected* TB error rate that link adaptation and the cost
model need is the average over a fixed set of realisations drawn from a fixed seed (:data:`EXPECTATION_SEED`;
deterministic, cached per carrier, TDL configuration and HARQ depth).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import torch

from edgesplit.channel.nr._sionna import load_sionna, preserve_global_rng
from edgesplit.channel.nr.bit_true import sionna_device
from edgesplit.channel.nr.bler import tb_error_rate
from edgesplit.channel.nr.carrier import SUBCARRIERS_PER_PRB, SYMBOLS_PER_SLOT, CarrierConfig, coerce_config
from edgesplit.channel.nr.harq import HarqOutcome
from edgesplit.channel.nr.mcs import TransportBlockInfo

PROFILES = ("A", "B", "C", "D", "E")
"""TR 38.901 §7.7.2 scalable TDL profiles: A, B, C NLOS (Rayleigh taps); D, E LOS (Rician first tap)."""
DELAY_SPREAD_RANGE_S = (1e-9, 1e-6)
"""Accepted RMS delay spread: 1 ns .. 1000 ns (TR 38.901 Table 7.7.3-1 spans 10 ns 'very short' .. 1000 ns 'very
long'; beyond that TDL-C's last tap, 8.65 x DS, is far outside the 2.3 µs cyclic prefix of 30 kHz SCS)."""
SPEED_RANGE_KMH = (0.0, 500.0)
"""Accepted UE speed (TR 38.901 covers up to 500 km/h)."""
CARRIER_FREQUENCY_RANGE_HZ = (0.5e9, 100e9)
"""TR 38.901's range of validity for the TDL models."""
EXPECTATION_SEED = 20_260_000
"""Seed of the fixed realisation set behind the expected TB error rate (link adaptation, cost model); transmission
i of every set is drawn from seed ``EXPECTATION_SEED + i``."""
EXPECTATION_REALISATIONS = (128, 8192, 1 << 22)
"""(min, max, RE budget): M = clip(budget // data REs, min, max) realisation sets (one realisation per transmission).
2 PRB: M = 8192 (Monte Carlo std of a TB error rate of 0.3 ~0.004; with 1024 it was ~0.01, and a 1024-set was seen
0.03 low); 51 PRB: M = 527, whose wideband realisations vary far less from slot to slot."""
CHUNK_REALISATIONS = 256
"""Realisations per Sionna TDL call when building the expectation set (memory; part of the set's definition)."""


def _number_in(value: Any, name: str, low: float, high: float, unit: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}] {unit}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TdlConfig:
    """A TR 38.901 TDL channel: profile, delay spread, UE speed and carrier frequency (channel 'tdl' only)."""

    profile: str = "C"
    """Scalable profile 'A'..'E' (TDL-C: NLOS, 24 taps, the urban-macro-like default of many NR link studies)."""
    delay_spread_s: float = 300e-9
    """RMS delay spread. 300 ns: TR 38.901 Table 7.7.3-1's 'long' value, between the UMi (~100 ns) and UMa
    (~400 ns) NLOS medians of Table 7.5-6 at 3.5 GHz, and the TDLC300 profile of TS 38.101-4's tests."""
    ue_speed_kmh: float = 3.0
    """UE speed (pedestrian); the Doppler is ``speed / c · carrier_frequency_hz`` (10 Hz at 3 km/h, 3.5 GHz)."""
    carrier_frequency_hz: float = 3.5e9
    """Carrier frequency (the carrier config has none; 3.5 GHz = band n78, TDD with 30 kHz SCS)."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"TDL profile must be one of {list(PROFILES)} (TR 38.901 §7.7.2), got {self.profile!r}")
        _number_in(self.delay_spread_s, "delay_spread_s", *DELAY_SPREAD_RANGE_S, "s")
        _number_in(self.ue_speed_kmh, "ue_speed_kmh", *SPEED_RANGE_KMH, "km/h")
        _number_in(self.carrier_frequency_hz, "carrier_frequency_hz", *CARRIER_FREQUENCY_RANGE_HZ, "Hz")

    @classmethod
    def coerce(cls, value: TdlConfig | dict[str, Any] | None) -> TdlConfig:
        """A TdlConfig from itself, a dict of its fields or None (the defaults)."""
        return coerce_config(cls, value, "tdl")

    @property
    def max_doppler_hz(self) -> float:
        """Maximum Doppler shift v / c · f_c."""
        return self.ue_speed_kmh / 3.6 / 299_792_458.0 * self.carrier_frequency_hz

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


@cache
def _tdl_model(tdl: TdlConfig, device: str) -> Any:
    """Sionna's TDL for a configuration, drawing from a generator we hand it (see the module docstring)."""
    load_sionna()  # the first Sionna import, RNG-neutral
    with preserve_global_rng():
        from sionna.phy.channel.tr38901 import TDL

        class GeneratorTDL(TDL):
            """Sionna's TDL whose random numbers come from ``self.generator`` rather than Sionna's own RNG."""

            generator: torch.Generator | None = None

            @property
            def torch_rng(self) -> torch.Generator:
                if self.generator is None:
                    raise RuntimeError("GeneratorTDL needs a generator (set by frequency_response)")
                return self.generator

        speed = tdl.ue_speed_kmh / 3.6
        model = GeneratorTDL(tdl.profile, tdl.delay_spread_s, tdl.carrier_frequency_hz, min_speed=speed,
                             max_speed=speed, device=device)
    return model


@cache
def _subcarrier_frequencies(num_subcarriers: int, spacing_hz: int, device: str) -> torch.Tensor:
    with preserve_global_rng():
        from sionna.phy.channel import subcarrier_frequencies

        return subcarrier_frequencies(num_subcarriers, float(spacing_hz), device=device)


def frequency_response(carrier: CarrierConfig, tdl: TdlConfig, num: int, generator: torch.Generator) -> torch.Tensor:
    """``num`` independent slots' channel on the data REs, complex64 [num, data_re] (frequency first), on the
    generator's device. Draws Sionna's TDL taps from ``generator`` (3 uniform tensors per call; 4 for D / E)."""
    device = sionna_device(generator)
    n_sc = SUBCARRIERS_PER_PRB * carrier.prbs
    if num == 0:
        return torch.zeros(0, carrier.data_re, dtype=torch.complex64, device=generator.device)
    model = _tdl_model(tdl, device)
    with preserve_global_rng():
        from sionna.phy.channel import cir_to_ofdm_channel

        model.generator = generator
        try:
            a, tau = model(num, carrier.pusch_symbols, SYMBOLS_PER_SLOT / carrier.slot_s)
        finally:
            model.generator = None
        h = cir_to_ofdm_channel(_subcarrier_frequencies(n_sc, carrier.subcarrier_spacing_hz, device),
                                a[..., carrier.dmrs_symbols:], tau)
    return h[:, 0, 0, 0, 0].reshape(num, -1).to(torch.complex64)


@cache
def _eesm() -> Any:
    with preserve_global_rng():
        return load_sionna().sys.EESM(precision="double", device="cpu")


def effective_snr(re_snr: np.ndarray, mcs_table: int, mcs: int) -> np.ndarray:
    """Sionna's EESM of per-RE linear SNRs [..., RE] for an MCS: the linear effective SNR [...] (float64)."""
    re_snr = np.asarray(re_snr, dtype=np.float64)
    batch = re_snr.shape[:-1]
    sinr = torch.from_numpy(np.ascontiguousarray(re_snr.reshape(-1, 1, re_snr.shape[-1], 1, 1)))
    with preserve_global_rng():
        eff = _eesm()(sinr, mcs, mcs_table_index=mcs_table)
    return eff.reshape(batch).numpy()


def transmission_error_rate(info: TransportBlockInfo, re_snr: np.ndarray, rate_correction: bool = True) -> np.ndarray:
    """TB error rate of (chase-combined) per-RE linear SNRs [..., RE]: AWGN tables at the EESM effective SNR."""
    eff = effective_snr(re_snr, info.mcs_table, info.mcs)
    return np.asarray(tb_error_rate(info, 10.0 * np.log10(eff), rate_correction), dtype=np.float64)


def expectation_realisations(carrier: CarrierConfig) -> int:
    """M: realisation sets behind the expected TB error rate for an allocation (see EXPECTATION_REALISATIONS)."""
    low, high, budget = EXPECTATION_REALISATIONS
    return int(min(high, max(low, budget // carrier.data_re)))


@cache
def expectation_gains(carrier: CarrierConfig, tdl: TdlConfig, transmission: int) -> np.ndarray:
    """Per-RE power gains |h|², float32 [M, data_re], of transmission ``transmission`` (0, 1, ...) of the fixed
    realisation set (its own seed, so the set of N transmissions extends the set of N - 1: q_j does not depend
    on N)."""
    m = expectation_realisations(carrier)
    gen = torch.Generator().manual_seed(EXPECTATION_SEED + transmission)
    parts = [frequency_response(carrier, tdl, min(CHUNK_REALISATIONS, m - i), gen).abs().square()
             for i in range(0, m, CHUNK_REALISATIONS)]
    return torch.cat(parts).numpy().astype(np.float32)


@lru_cache(maxsize=1 << 14)
def tdl_failure_probabilities(info: TransportBlockInfo, carrier: CarrierConfig, tdl: TdlConfig, snr_db: float,
                              max_transmissions: int, rate_correction: bool = True) -> np.ndarray:
    """q[j] = E[P(TB undecoded after j chase-combined transmissions)] over the fixed realisation set (q[0] = 1).

    ``snr_db`` is the mean per-RE SNR; realisation set m gives ``TBLER(EESM(SNR · Σ_{i<=j} |h_i,re|²))``.
    """
    if info.data_re != carrier.data_re:
        raise ValueError(f"TB info of {info.data_re} data REs does not belong to a {carrier.data_re}-RE allocation")
    gamma = 10.0 ** (snr_db / 10.0)
    q = np.ones(max_transmissions + 1)
    combined = np.zeros((expectation_realisations(carrier), carrier.data_re))
    for j in range(1, max_transmissions + 1):
        combined += gamma * expectation_gains(carrier, tdl, j - 1)
        q[j] = float(np.mean(transmission_error_rate(info, combined, rate_correction)))
    return np.minimum.accumulate(np.clip(q, 0.0, 1.0))


def draw_tdl_abstracted(info: TransportBlockInfo, carrier: CarrierConfig, tdl: TdlConfig, num_tbs: int,
                        snr_db: float, max_transmissions: int, generator: torch.Generator,
                        rate_correction: bool = True) -> tuple[HarqOutcome, np.ndarray]:
    """HARQ outcomes of ``num_tbs`` TBs over TDL from the EESM; also each transmission's mean per-RE SNR (dB, NaN
    where not sent).

    Draw order: one uniform U per TB ([num_tbs], float64), then per round one realisation per still-undecoded TB
    (:func:`frequency_response`). Round j's failure probability is ``q_j = min(q_{j-1}, TBLER(EESM(S_j)))`` with S_j
    the TB's per-RE SNR summed over its j transmissions; the TB fails round j iff ``U < q_j``: the nested rule of
    :mod:`edgesplit.channel.nr.harq`, drawing a realisation only for transmissions that happen.
    """
    u = torch.rand(num_tbs, generator=generator, device=generator.device, dtype=torch.float64).cpu().numpy()
    gamma = 10.0 ** (snr_db / 10.0)
    combined = np.zeros((num_tbs, info.symbols))
    q = np.ones(num_tbs)
    transmissions = np.zeros(num_tbs, dtype=np.int64)
    per_tx_db = np.full((num_tbs, max_transmissions), np.nan)
    active = np.arange(num_tbs)
    for j in range(max_transmissions):
        if active.size == 0:
            break
        gain = frequency_response(carrier, tdl, active.size, generator).abs().square().cpu().double().numpy()
        combined[active] += gamma * gain
        per_tx_db[active, j] = 10.0 * np.log10(gamma * gain.mean(axis=1))
        q[active] = np.minimum(q[active], transmission_error_rate(info, combined[active], rate_correction))
        transmissions[active] += 1
        active = active[u[active] < q[active]]
    delivered = np.ones(num_tbs, dtype=bool)
    delivered[active] = False
    return HarqOutcome(transmissions=transmissions, delivered=delivered), per_tx_db
