"""A coded 5G NR PUSCH-like uplink: LDPC, TS 38.214 MCS link adaptation and HARQ, bit-true or abstracted.

Needs NVIDIA Sionna (``pip install 'edgesplit[nr]'``), imported lazily on first use and without touching
torch's global RNG (:mod:`edgesplit.channel.nr._sionna`); importing this package does not import Sionna.

Impairment (kind ``"coded"`` of :func:`edgesplit.channel.make_impairment`)::

    from edgesplit.channel import ChannelState, make_impairment
    imp = make_impairment("coded", bits=8, path="abstracted", channel="awgn",
                          carrier={"bandwidth_hz": 20e6, "subcarrier_spacing_hz": 30_000},
                          mcs_table=1, mcs=None, target_bler=0.1, max_transmissions=4)
    result = imp.apply(hidden, ChannelState(mean_snr_db=12.0), generator)  # x, stats (mcs, tbs_bits, ...)

``path="bit_true"`` runs Sionna's TB encoder / QAM / APP demapper / LDPC decoder with chase combining (slow:
~20-60 kbit/s of decoded TBs per CPU core; tests and calibration); ``"abstracted"`` draws TB errors from
Sionna's AWGN BLER tables (fast; profiler, RL). Same generator, same numbers, on every call. Chase combining
is symbol-level (MRC) by default, which the abstraction's SNR-sum rule models exactly; ``combining="llr"``
(bit-true only) adds LLRs as HARQ soft buffers do and loses up to ~0.6 dB at 16QAM and up.

Channels (``channel=``): ``"awgn"`` (every transmission at the state's ``snr_db``), ``"rayleigh"`` (flat block
fading, |h|² ~ Exp(1) per TB transmission around ``mean_snr_db``) and ``"tdl"``: a 3GPP TR 38.901 TDL profile
(Sionna's ``tr38901.TDL``; ``tdl={"profile": "C", "delay_spread_s": 300e-9, "ue_speed_kmh": 3.0,
"carrier_frequency_hz": 3.5e9}``, the defaults), one independent realisation per TB transmission, frequency
response per data RE (frequency first, then symbol), unit average power, drawn from the impairment's generator.
Bit-true: per-RE equalisation, per-RE noise variance in the demapper, per-RE MRC; abstracted: Sionna's EESM
(its shipped beta per MCS) onto the AWGN tables, per-RE SNRs summed across transmissions first; link adaptation
and the cost model average over a fixed seeded set of realisations (:mod:`edgesplit.channel.nr.tdl`).

Cost (pure, cached; for ``split_costs``, the profiler, the RL env)::

    from edgesplit.channel.nr import NrLinkConfig, nr_uplink_cost, nr_throughput_bps
    link = NrLinkConfig(carrier=CarrierConfig(), mcs_table=1, mcs=None, max_transmissions=4, channel="awgn")
    cost = nr_uplink_cost(payload_bits=9_216, snr_db=12.0, link=link, tx_power_w=0.2)
    cost.mcs, cost.num_tbs, cost.latency_s, cost.airtime_s, cost.tx_energy_j, cost.latency_over_shannon
    nr_throughput_bps(12.0, link)  # saturated goodput with HARQ

Pieces: :class:`CarrierConfig` (bandwidth, SCS, PRBs from TS 38.101-1 Table 5.3.2-1, DMRS, slot, HARQ RTT),
:func:`transport_block` / :class:`TransportBlockInfo` (Qm, R, TBS, code blocks, G via Sionna),
:func:`tb_error_rate` / :func:`failure_probabilities` (BLER tables, chase combining, Rayleigh / TDL average),
:class:`TdlConfig` / :func:`frequency_response` / :func:`effective_snr` (the TDL channel and its EESM),
:meth:`NrLinkConfig.select_mcs` (ideal-CQI link adaptation), :class:`HarqOutcome` (accounting, latency rule).

Limitations: one layer, one UE, one receive antenna, no CQI error or delay; perfect CSI; TDL realisations are
independent per transmission (no time correlation across HARQ rounds), with no inter-symbol interference from taps
beyond the cyclic prefix and no Doppler inter-carrier interference; the EESM's beta values are Sionna's, whose
calibration provenance Sionna does not record; chase combining only (no incremental redundancy), and the
abstraction has no model of LLR combining's loss; the shipped BLER tables stop at code blocks of 2000 bits
(clamped beyond; measured by ``benchmarks/coded_link_check.py``) and lack MCS 0..2 (table 1) / 0..1 (table 2),
which Sionna's LDPC chain cannot code either (effective rate below 1/5 needs repetition).
"""

from edgesplit.channel.nr._sionna import INSTALL_HINT, load_sionna, preserve_global_rng
from edgesplit.channel.nr.bler import CHANNELS, available_mcs, failure_probabilities, rate_shift_db, tb_error_rate
from edgesplit.channel.nr.carrier import MAX_PRBS, SYMBOLS_PER_SLOT, CarrierConfig
from edgesplit.channel.nr.coded import PATHS, CodedImpairment
from edgesplit.channel.nr.cost import NrUplinkCost, nr_throughput_bps, nr_uplink_cost
from edgesplit.channel.nr.harq import HarqOutcome, expected_latency_slots
from edgesplit.channel.nr.link import NrLinkConfig
from edgesplit.channel.nr.mcs import MAX_MCS, MCS_TABLES, TransportBlockInfo, mcs_parameters, transport_block
from edgesplit.channel.nr.tdl import PROFILES, TdlConfig, effective_snr, frequency_response

__all__ = [
    "CHANNELS",
    "INSTALL_HINT",
    "MAX_MCS",
    "MAX_PRBS",
    "MCS_TABLES",
    "PATHS",
    "PROFILES",
    "SYMBOLS_PER_SLOT",
    "TdlConfig",
    "CarrierConfig",
    "CodedImpairment",
    "HarqOutcome",
    "NrLinkConfig",
    "NrUplinkCost",
    "TransportBlockInfo",
    "available_mcs",
    "effective_snr",
    "expected_latency_slots",
    "failure_probabilities",
    "frequency_response",
    "load_sionna",
    "mcs_parameters",
    "nr_throughput_bps",
    "nr_uplink_cost",
    "preserve_global_rng",
    "rate_shift_db",
    "tb_error_rate",
    "transport_block",
]
