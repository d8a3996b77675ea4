"""Device (UE), edge-server and radio-link profiles, with named presets.

The profiles are plain data for the standard system model (DESIGN.md §1):

- UE compute: ``t_dev = C / (f_hz · flops_per_cycle · utilisation)``, ``cycles = f_hz · t_dev`` and
  ``e_dev = kappa · cycles · f_hz²`` (so compute power is ``kappa · f_hz³``).
- Edge compute: ``t_edge = C / (peak_flops · utilisation)``.
- Uplink: ``R = B · log2(1 + snr · p_w / p_ref_w)`` where ``snr`` is the channel state's instantaneous
  SNR at the link's reference power ``tx_power_w``; the mean SNR itself is
  ``p_ref / (N0 · B · path_loss)`` (:meth:`LinkProfile.mean_snr_db`).

Preset numbers are order-of-magnitude figures from public data sheets (sources next to each preset);
``kappa`` values are chosen so that ``kappa · f_max³`` matches the published power envelope of the
compute block. Use :func:`dataclasses.replace` to derive variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _require_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


def _require_fraction(owner: str, name: str, value: float) -> None:
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{owner}.{name} must be in (0, 1], got {value!r}")


@dataclass(frozen=True)
class DeviceProfile:
    """Compute block of the user device that runs the first k layers."""

    name: str
    """Preset name or free label."""
    flops_per_cycle: float
    """Peak FLOPs per clock cycle over all cores/lanes used (e.g. 8 cores · 16 FP32 FMA-FLOPs)."""
    f_min_hz: float
    """Lowest clock frequency the DVFS governor allows."""
    f_max_hz: float
    """Highest clock frequency."""
    f_hz: float
    """Default operating frequency (within [f_min_hz, f_max_hz])."""
    utilisation: float
    """Fraction of peak FLOPs actually reached on transformer layers, in (0, 1]."""
    kappa: float
    """Effective switched capacitance in J/cycle³ (W/Hz³): energy = kappa · cycles · f_hz²."""
    memory_bytes: float
    """Memory available to the model (weights, KV cache, activations)."""
    bytes_per_param: float = 2.0
    """Storage of one weight on the device (4 fp32, 2 fp16, 1 int8, 0.5 int4)."""
    bytes_per_activation: float = 4.0
    """Storage of one activation / KV-cache element (the split path runs float32)."""

    def __post_init__(self) -> None:
        owner = f"DeviceProfile({self.name!r})"
        _require_positive(
            owner,
            flops_per_cycle=self.flops_per_cycle,
            f_min_hz=self.f_min_hz,
            f_max_hz=self.f_max_hz,
            kappa=self.kappa,
            memory_bytes=self.memory_bytes,
            bytes_per_param=self.bytes_per_param,
            bytes_per_activation=self.bytes_per_activation,
        )
        _require_fraction(owner, "utilisation", self.utilisation)
        if self.f_min_hz > self.f_max_hz:
            raise ValueError(f"{owner}: f_min_hz ({self.f_min_hz}) must be <= f_max_hz ({self.f_max_hz})")
        self.check_frequency(self.f_hz)

    def check_frequency(self, f_hz: float) -> None:
        """Raise ValueError unless ``f_hz`` lies in [f_min_hz, f_max_hz]."""
        if not (math.isfinite(f_hz) and self.f_min_hz <= f_hz <= self.f_max_hz):
            raise ValueError(
                f"f_hz must be in [{self.f_min_hz:g}, {self.f_max_hz:g}] Hz for device {self.name!r}, got {f_hz!r}"
            )

    def effective_flops(self, f_hz: float | None = None) -> float:
        """Sustained FLOP/s at ``f_hz`` (default: the profile's f_hz)."""
        f = self.f_hz if f_hz is None else f_hz
        self.check_frequency(f)
        return f * self.flops_per_cycle * self.utilisation

    def power_w(self, f_hz: float | None = None) -> float:
        """Compute power kappa · f³ while busy at ``f_hz``."""
        f = self.f_hz if f_hz is None else f_hz
        self.check_frequency(f)
        return self.kappa * f**3


@dataclass(frozen=True)
class EdgeProfile:
    """Accelerator of the edge server that runs layers k..L-1 and the LM head."""

    name: str
    """Preset name or free label."""
    peak_flops: float
    """Dense peak FLOP/s at the serving dtype."""
    utilisation: float
    """Fraction of peak reached (model FLOPs utilisation), in (0, 1]."""
    memory_bytes: float
    """Accelerator memory available to the model."""
    bytes_per_param: float = 2.0
    """Storage of one weight on the edge (2 for bf16 serving)."""
    bytes_per_activation: float = 4.0
    """Storage of one activation / KV-cache element."""

    def __post_init__(self) -> None:
        owner = f"EdgeProfile({self.name!r})"
        _require_positive(
            owner,
            peak_flops=self.peak_flops,
            memory_bytes=self.memory_bytes,
            bytes_per_param=self.bytes_per_param,
            bytes_per_activation=self.bytes_per_activation,
        )
        _require_fraction(owner, "utilisation", self.utilisation)

    @property
    def effective_flops(self) -> float:
        """Sustained FLOP/s."""
        return self.peak_flops * self.utilisation


@dataclass(frozen=True)
class LinkProfile:
    """Radio link between UE and edge: uplink carries hidden states, downlink the result tokens."""

    name: str
    """Preset name or free label."""
    bandwidth_hz: float
    """Uplink bandwidth B."""
    tx_power_w: float
    """Reference UE transmit power p_ref (the power at which ChannelState.mean_snr_db holds)."""
    noise_psd_w_per_hz: float
    """Noise power spectral density N0 at the receiver, noise figure included."""
    downlink_rate_bps: float
    """Rate at which the result returns to the UE (assumed reliable)."""
    header_bits: int = 320
    """Overhead bits per packet (transport + link-layer headers)."""
    max_packet_payload_bits: int = 12_000
    """Payload bits per packet before fragmentation (1500-byte MTU); each fragment carries a header."""

    def __post_init__(self) -> None:
        owner = f"LinkProfile({self.name!r})"
        _require_positive(
            owner,
            bandwidth_hz=self.bandwidth_hz,
            tx_power_w=self.tx_power_w,
            noise_psd_w_per_hz=self.noise_psd_w_per_hz,
            downlink_rate_bps=self.downlink_rate_bps,
            max_packet_payload_bits=self.max_packet_payload_bits,
        )
        if self.header_bits < 0:
            raise ValueError(f"{owner}.header_bits must be >= 0, got {self.header_bits!r}")

    @property
    def noise_power_w(self) -> float:
        """Noise power in the uplink band: N0 · B."""
        return self.noise_psd_w_per_hz * self.bandwidth_hz

    def mean_snr_db(self, path_loss_db: float) -> float:
        """Mean received SNR at p_ref over a path loss: 10·log10(p_ref / (N0·B)) − PL."""
        return 10.0 * math.log10(self.tx_power_w / self.noise_power_w) - path_loss_db

    def packets(self, payload_bits: int) -> int:
        """Fragments needed for ``payload_bits`` (at least one)."""
        return max(1, math.ceil(payload_bits / self.max_packet_payload_bits))

    def on_air_bits(self, payload_bits: int) -> int:
        """Payload plus one header per fragment."""
        return payload_bits + self.packets(payload_bits) * self.header_bits


def _noise_psd(noise_figure_db: float) -> float:
    """Thermal noise −174 dBm/Hz at 290 K plus the receiver noise figure, in W/Hz."""
    return 10.0 ** ((-174.0 + noise_figure_db - 30.0) / 10.0)


_GB = 1e9

DEVICE_PRESETS: dict[str, DeviceProfile] = {
    # Snapdragon 8 Gen 2-class phone CPU: 8 Arm cores, 128-bit NEON, ~16 FP32 FLOPs/cycle/core on average;
    # up to ~3.2 GHz; CPU cluster ~1–3 W under load -> kappa 1e-28 (literature range 1e-28..1e-27).
    # About 8 GB of the phone's 12 GB left to one app; fp16 weights.
    "phone-soc": DeviceProfile(
        name="phone-soc",
        flops_per_cycle=128,
        f_min_hz=0.3e9,
        f_max_hz=3.2e9,
        f_hz=2.0e9,
        utilisation=0.3,
        kappa=1e-28,
        memory_bytes=8 * _GB,
        bytes_per_param=2.0,
    ),
    # Jetson Orin Nano 8 GB (Super): 1024 CUDA cores at up to 1.02 GHz, 2 FP32 FLOPs/cycle/core;
    # 7–25 W module envelope -> kappa ~1e-26 (≈10 W GPU at 1 GHz). 8 GB shared LPDDR5.
    "jetson-orin-nano": DeviceProfile(
        name="jetson-orin-nano",
        flops_per_cycle=2048,
        f_min_hz=0.306e9,
        f_max_hz=1.02e9,
        f_hz=1.02e9,
        utilisation=0.4,
        kappa=1e-26,
        memory_bytes=8 * _GB,
        bytes_per_param=2.0,
    ),
    # Jetson AGX Orin 64 GB: 2048 CUDA cores at up to 1.3 GHz; 15–60 W envelope -> kappa ~1.8e-26 (≈40 W GPU).
    "jetson-agx-orin": DeviceProfile(
        name="jetson-agx-orin",
        flops_per_cycle=4096,
        f_min_hz=0.306e9,
        f_max_hz=1.3e9,
        f_hz=1.3e9,
        utilisation=0.4,
        kappa=1.8e-26,
        memory_bytes=64 * _GB,
        bytes_per_param=2.0,
    ),
    # Laptop x86 CPU, 8 cores with AVX2: 2 FMA units · 8 FP32 lanes · 2 = 32 FLOPs/cycle/core;
    # 0.8–4.5 GHz; ~45 W package at 4 GHz -> kappa ~7e-28. 16 GB RAM, fp32 weights.
    "laptop-cpu": DeviceProfile(
        name="laptop-cpu",
        flops_per_cycle=256,
        f_min_hz=0.8e9,
        f_max_hz=4.5e9,
        f_hz=3.0e9,
        utilisation=0.3,
        kappa=7e-28,
        memory_bytes=16 * _GB,
        bytes_per_param=4.0,
    ),
}

EDGE_PRESETS: dict[str, EdgeProfile] = {
    # NVIDIA A100 SXM 80 GB data sheet: 312 TFLOP/s dense BF16 tensor core.
    "a100": EdgeProfile(name="a100", peak_flops=312e12, utilisation=0.4, memory_bytes=80 * _GB),
    # NVIDIA H100 SXM 80 GB data sheet: ~989 TFLOP/s dense BF16 tensor core.
    "h100": EdgeProfile(name="h100", peak_flops=989e12, utilisation=0.4, memory_bytes=80 * _GB),
    # NVIDIA L4 24 GB (a typical MEC-site card) data sheet: ~121 TFLOP/s dense BF16.
    "l4": EdgeProfile(name="l4", peak_flops=121e12, utilisation=0.4, memory_bytes=24 * _GB),
}

LINK_PRESETS: dict[str, LinkProfile] = {
    # 5G NR uplink, 20 MHz carrier, UE power class 3 (23 dBm = 0.2 W), gNB noise figure 5 dB;
    # downlink ~100 Mbit/s; ~40 bytes of IP/UDP + PDCP/RLC/MAC headers per 1500-byte packet.
    "5g-nr-20mhz": LinkProfile(
        name="5g-nr-20mhz",
        bandwidth_hz=20e6,
        tx_power_w=0.2,
        noise_psd_w_per_hz=_noise_psd(5.0),
        downlink_rate_bps=100e6,
        header_bits=320,
    ),
    # 5G NR uplink, 100 MHz carrier (FR1 n78), same UE power class; downlink ~500 Mbit/s.
    "5g-nr-100mhz": LinkProfile(
        name="5g-nr-100mhz",
        bandwidth_hz=100e6,
        tx_power_w=0.2,
        noise_psd_w_per_hz=_noise_psd(5.0),
        downlink_rate_bps=500e6,
        header_bits=320,
    ),
    # Wi-Fi 6 (802.11ax) 80 MHz channel, client at 20 dBm (0.1 W), AP noise figure 7 dB; downlink ~600 Mbit/s;
    # ~68 bytes of 802.11 MAC + LLC + IP/UDP headers per packet.
    "wifi6-80mhz": LinkProfile(
        name="wifi6-80mhz",
        bandwidth_hz=80e6,
        tx_power_w=0.1,
        noise_psd_w_per_hz=_noise_psd(7.0),
        downlink_rate_bps=600e6,
        header_bits=544,
    ),
    # LTE uplink, 10 MHz, 23 dBm UE, noise figure 5 dB; downlink ~50 Mbit/s.
    "lte-10mhz": LinkProfile(
        name="lte-10mhz",
        bandwidth_hz=10e6,
        tx_power_w=0.2,
        noise_psd_w_per_hz=_noise_psd(5.0),
        downlink_rate_bps=50e6,
        header_bits=320,
    ),
}


def _lookup(kind: str, presets: dict, name: str):
    if name not in presets:
        raise ValueError(f"unknown {kind} preset {name!r}; valid names: {', '.join(sorted(presets))}")
    return presets[name]


def get_device(name: str) -> DeviceProfile:
    """The device preset called ``name`` (see :data:`DEVICE_PRESETS`)."""
    return _lookup("device", DEVICE_PRESETS, name)


def get_edge(name: str) -> EdgeProfile:
    """The edge preset called ``name`` (see :data:`EDGE_PRESETS`)."""
    return _lookup("edge", EDGE_PRESETS, name)


def get_link(name: str) -> LinkProfile:
    """The link preset called ``name`` (see :data:`LINK_PRESETS`)."""
    return _lookup("link", LINK_PRESETS, name)
