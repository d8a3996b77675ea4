"""A channel setting as a user names it (kind + a few numbers), turned into an impairment, a state and a bit width.

This is the unit the CLI, the demo and the profiler sweep over: ``ChannelSetting(kind="awgn", snr_db=10)``,
``ChannelSetting(kind="digital", snr_db=5, bits=4, modulation="16qam")``, ``ChannelSetting(kind="dropout",
p=0.1)``. ``bits_per_element`` is what the cost model charges for the payload: the quantiser's width for
``digital``, the packet encoding's width for the analog channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgesplit.channel import MODULATIONS, ChannelState, Impairment, make_impairment

CHANNEL_KINDS = ("ideal", "dropout", "awgn", "digital")
ENCODING_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4}


@dataclass(frozen=True)
class ChannelSetting:
    """One channel condition for a split: what impairs the activations and how many bits each one costs."""

    kind: str = "ideal"
    """``ideal``, ``dropout`` (reference paper), ``awgn`` (analog) or ``digital`` (quantise + modulate + BER)."""
    snr_db: float = 30.0
    """Mean received SNR in dB (awgn, digital); per token for awgn, Es/N0 per symbol for digital."""
    p: float = 0.0
    """Element dropout probability (dropout only), in [0, 1)."""
    bits: int = 8
    """Quantiser bits per element (digital only), 1..16."""
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

    def __post_init__(self) -> None:
        # Normalise numbers so that equal settings are equal everywhere (``snr_db=10`` and ``10.0`` must hash,
        # serialise and seed identically).
        for name in ("snr_db", "p", "loss_rate", "fading_gain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(f"unknown channel kind {self.kind!r}; accepted: {', '.join(CHANNEL_KINDS)}")
        if self.encoding not in ENCODING_BITS:
            raise ValueError(f"unknown encoding {self.encoding!r}; accepted: {', '.join(ENCODING_BITS)}")
        if self.modulation not in MODULATIONS:
            raise ValueError(f"unknown modulation {self.modulation!r}; accepted: {', '.join(MODULATIONS)}")
        self.state()  # validates snr_db, fading_gain and loss_rate
        self.impairment()  # validates p, bits and erasure

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
        return make_impairment("digital", bits=self.bits, modulation=self.modulation, erasure=self.erasure)

    @property
    def bits_per_element(self) -> int:
        """Bits per activation element on the wire (cost model input)."""
        return self.bits if self.kind == "digital" else ENCODING_BITS[self.encoding]

    @property
    def label(self) -> str:
        """Short human label, e.g. ``awgn 10 dB`` or ``digital 4b 16qam 5 dB``."""
        if self.kind == "ideal":
            return "ideal"
        if self.kind == "dropout":
            return f"dropout p={self.p:g}"
        if self.kind == "awgn":
            return f"awgn {self.snr_db:g} dB"
        return f"digital {self.bits}b {self.modulation} {self.snr_db:g} dB"

    def to_dict(self) -> dict[str, object]:
        """Plain dict for parquet rows and JSON."""
        return asdict(self)
