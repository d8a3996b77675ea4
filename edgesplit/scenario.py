"""A channel setting as a user names it (kind + a few numbers), turned into an impairment, a state and a bit width.

This is the unit the CLI, the demo and the profiler sweep over: ``ChannelSetting(kind="awgn", snr_db=10)``,
``ChannelSetting(kind="digital", snr_db=5, bits=4, modulation="16qam")``, ``ChannelSetting(kind="dropout",
p=0.1)``, ``ChannelSetting(kind="coded", snr_db=12, bits=8)``. ``bits_per_element`` is what the cost model charges
for the payload: the quantiser's width for ``digital`` and ``coded``, the packet encoding's width for the analog
channels.

The ``coded`` kind is the 5G NR uplink of :mod:`edgesplit.channel.nr` (quantisation as ``digital``, LDPC transport
blocks, TS 38.214 MCS link adaptation at ``target_bler``, HARQ chase combining over ``harq_transmissions``; the
``abstracted`` or ``bit_true`` path). Its carrier is ``carrier_bandwidth_hz`` at 30 kHz SCS (TS 38.101-1 N_RB),
and it must be the bandwidth the cost model charges: the builders of settings (the profiler's
:meth:`~edgesplit.profile.config.ProfileConfig.settings`, :meth:`rllib_env.split_env.SplitEnv.setting`) take it
from the run's link preset (``5g-nr-20mhz`` → 20 MHz, the default), and :func:`edgesplit.cost.split_costs` refuses
a coded setting whose carrier differs from its ``link.bandwidth_hz``. The carrier belongs to the setting (not to the
call that applies it) because it changes the transport blocks and so the impairment itself: equal settings give
equal draws. The coded-only fields must keep their defaults for the other kinds (so equal settings stay equal), and
:meth:`ChannelSetting.to_dict` lists them for ``coded`` settings only (so other kinds serialise, and seed the
profiler, exactly as before). As for ``awgn``, ``loss_rate`` is not applied to the activations of a coded setting
(the NR link erases TBs by itself); the cost model still charges its ARQ above the PHY.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from edgesplit.channel import MODULATIONS, ChannelState, Impairment, make_impairment

if TYPE_CHECKING:
    from edgesplit.channel.nr import NrLinkConfig

CHANNEL_KINDS = ("ideal", "dropout", "awgn", "digital", "coded")
ENCODING_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4}
CODED_PATHS = ("abstracted", "bit_true")
"""Paths of the coded link: block errors from BLER tables (fast) or Sionna's LDPC chain end to end (slow)."""
CODED_CHANNELS = ("awgn", "rayleigh", "tdl")
"""Per-transmission channels of the coded link (:data:`edgesplit.channel.nr.CHANNELS`)."""
CODED_DEFAULTS = {"mcs_table": 1, "target_bler": 0.1, "harq_transmissions": 4, "coded_path": "abstracted",
                  "carrier_bandwidth_hz": 20e6, "coded_channel": "awgn"}
"""The coded-only fields and their defaults (the other kinds must leave them so)."""
NR_SUBCARRIER_SPACING_HZ = 30_000
"""Subcarrier spacing of a coded setting's NR carrier (numerology 1: 0.5 ms slots)."""


@dataclass(frozen=True)
class ChannelSetting:
    """One channel condition for a split: what impairs the activations and how many bits each one costs."""

    kind: str = "ideal"
    """``ideal``, ``dropout`` (reference paper), ``awgn`` (analog), ``digital`` (quantise + modulate + BER) or
    ``coded`` (quantise + 5G NR LDPC / MCS / HARQ)."""
    snr_db: float = 30.0
    """Mean received SNR in dB (awgn, digital, coded); per token for awgn, Es/N0 per symbol for digital and per
    data resource element for coded."""
    p: float = 0.0
    """Element dropout probability (dropout only), in [0, 1)."""
    bits: int = 8
    """Quantiser bits per element (digital and coded), 1..16."""
    modulation: str = "qpsk"
    """Digital modulation: bpsk, qpsk, 16qam or 64qam."""
    loss_rate: float = 0.0
    """Fragment loss rate for digital erasures, in [0, 1)."""
    erasure: str = "none"
    """Digital erasure handling: none, zero (lost elements become 0) or arq (retransmitted)."""
    fading_gain: float = 1.0
    """Small-scale power gain |h|² of the block (1: no fading)."""
    encoding: str = "float32"
    """Packet encoding for the analog kinds (ideal, dropout, awgn)."""
    mcs_table: int = 1
    """Coded only: TS 38.214 MCS table, 1 (Table 5.1.3.1-1, up to 64QAM) or 2 (Table 5.1.3.1-2, up to 256QAM)."""
    target_bler: float = 0.1
    """Coded only: link adaptation's first-transmission TB error rate target, in (0, 1)."""
    harq_transmissions: int = 4
    """Coded only: HARQ transmissions per TB at most, 1..16 (chase combining; 1 = no HARQ)."""
    coded_path: str = "abstracted"
    """Coded only: ``abstracted`` (TB errors from Sionna's BLER tables) or ``bit_true`` (Sionna's LDPC chain)."""
    carrier_bandwidth_hz: float = 20e6
    """Coded only: NR carrier channel bandwidth at 30 kHz SCS; must be the cost model's ``link.bandwidth_hz``."""
    coded_channel: str = "awgn"
    """Coded only: what each transport block transmission sees around ``snr_db`` — ``awgn`` (the block's SNR,
    ``fading_gain`` included), ``rayleigh`` (flat |h|² ~ Exp(1) per slot) or ``tdl`` (TR 38.901 TDL, frequency
    selective per resource element, :class:`edgesplit.channel.nr.TdlConfig` defaults). With rayleigh / tdl, link
    adaptation works on the mean SNR and the fading-averaged error rate."""

    def __post_init__(self) -> None:
        # Normalise numbers so that equal settings are equal everywhere (``snr_db=10`` and ``10.0`` must hash,
        # serialise and seed identically).
        for name in ("snr_db", "p", "loss_rate", "fading_gain", "target_bler", "carrier_bandwidth_hz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(f"unknown channel kind {self.kind!r}; accepted: {', '.join(CHANNEL_KINDS)}")
        self._check_coded_fields()
        if self.encoding not in ENCODING_BITS:
            raise ValueError(f"unknown encoding {self.encoding!r}; accepted: {', '.join(ENCODING_BITS)}")
        if self.modulation not in MODULATIONS:
            raise ValueError(f"unknown modulation {self.modulation!r}; accepted: {', '.join(MODULATIONS)}")
        self.state()  # validates snr_db, fading_gain and loss_rate
        self.impairment()  # validates p, bits and erasure

    def _check_coded_fields(self) -> None:
        for name in ("mcs_table", "harq_transmissions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if not 1 <= self.harq_transmissions <= 16:
            raise ValueError(f"harq_transmissions must be in 1..16 (1 = no HARQ), got {self.harq_transmissions}")
        if not 0.0 < self.target_bler < 1.0:
            raise ValueError(f"target_bler must be in (0, 1), got {self.target_bler!r}")
        if self.coded_path not in CODED_PATHS:
            raise ValueError(f"unknown coded_path {self.coded_path!r}; accepted: {', '.join(CODED_PATHS)}")
        if self.coded_channel not in CODED_CHANNELS:
            raise ValueError(f"unknown coded_channel {self.coded_channel!r}; accepted: {', '.join(CODED_CHANNELS)}")
        if self.kind != "coded":
            changed = [name for name, default in CODED_DEFAULTS.items() if getattr(self, name) != default]
            if changed:
                raise ValueError(f"{', '.join(changed)} applies to kind 'coded' only; leave the default for kind "
                                 f"{self.kind!r}")
            return
        try:
            self.impairment()  # the carrier (bandwidth in TS 38.101-1 at 30 kHz) and the MCS table
        except ValueError as err:
            raise ValueError(f"coded setting: {err} (carrier_bandwidth_hz={self.carrier_bandwidth_hz:g}, "
                             f"mcs_table={self.mcs_table!r})") from None

    def state(self) -> ChannelState:
        """The channel block this setting describes."""
        return ChannelState(mean_snr_db=float(self.snr_db), fading_gain=float(self.fading_gain),
                            loss_rate=float(self.loss_rate))

    def impairment(self) -> Impairment:
        """The impairment applied to activations crossing the link."""
        if self.kind == "ideal":
            return make_impairment("none")
        if self.kind == "dropout":
            return make_impairment("dropout", p=self.p)
        if self.kind == "awgn":
            return make_impairment("awgn")
        if self.kind == "coded":
            return make_impairment("coded", bits=self.bits, path=self.coded_path, channel=self.coded_channel,
                                   carrier={"bandwidth_hz": self.carrier_bandwidth_hz,
                                            "subcarrier_spacing_hz": NR_SUBCARRIER_SPACING_HZ},
                                   mcs_table=self.mcs_table, mcs=None, target_bler=self.target_bler,
                                   max_transmissions=self.harq_transmissions)
        return make_impairment("digital", bits=self.bits, modulation=self.modulation, erasure=self.erasure)

    def nr_link(self) -> NrLinkConfig | None:
        """The coded link's configuration for :func:`edgesplit.cost.split_costs` (None for the other kinds)."""
        return self.impairment().link if self.kind == "coded" else None

    @property
    def bits_per_element(self) -> int:
        """Bits per activation element on the wire (cost model input)."""
        return self.bits if self.kind in ("digital", "coded") else ENCODING_BITS[self.encoding]

    @property
    def label(self) -> str:
        """Short human label, e.g. ``awgn 10 dB`` or ``digital 4b 16qam 5 dB``."""
        if self.kind == "ideal":
            return "ideal"
        if self.kind == "dropout":
            return f"dropout p={self.p:g}"
        if self.kind == "awgn":
            return f"awgn {self.snr_db:g} dB"
        if self.kind == "coded":
            return " ".join([f"coded {self.bits}b {self.snr_db:g} dB", *self._coded_label_parts()])
        return f"digital {self.bits}b {self.modulation} {self.snr_db:g} dB"

    def _coded_label_parts(self) -> list[str]:
        """What a coded label adds for options off their defaults (e.g. ``table2``, ``bler0.01``, ``harq1``)."""
        spelt = {"mcs_table": f"table{self.mcs_table}", "target_bler": f"bler{self.target_bler:g}",
                 "harq_transmissions": f"harq{self.harq_transmissions}", "coded_path": "bit-true",
                 "carrier_bandwidth_hz": f"{self.carrier_bandwidth_hz / 1e6:g}MHz", "coded_channel": self.coded_channel}
        return [text for name, text in spelt.items() if getattr(self, name) != CODED_DEFAULTS[name]]

    def to_dict(self) -> dict[str, object]:
        """Plain dict for parquet rows and JSON (the coded-only fields for ``coded`` settings only)."""
        data = asdict(self)
        if self.kind != "coded":
            for name in CODED_DEFAULTS:
                data.pop(name)
        return data
