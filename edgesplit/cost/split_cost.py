"""Latency, UE energy and memory of one split point k under one channel state.

One call of :func:`split_costs` prices one of two phases:

- ``"prefill"``: one request of ``tokens`` prompt tokens, after ``context_len - tokens`` cached ones
  (``context_len`` defaults to ``tokens``). The UE runs embedding + layers [0, k), sends one message
  with the ``tokens`` hidden vectors of layer k, the edge runs layers [k, L) + norm + LM head on the
  last ``logits_tokens`` positions (default 1: the next token) and returns their token ids.
- ``"decode"``: ``tokens`` sequential decode steps ending at context length ``context_len``
  (required); every step sends one hidden vector up and gets one token id back, so each step pays a
  packet header. Step costs add up because the steps are serial.

Wire format. Hidden states cost ``hidden_size · bits`` per token; ``bits`` of 16 or 32 are float casts,
any other width is integer quantisation with one float32 scale per token (:data:`SCALE_BITS_PER_TOKEN`).
At ``k = 0`` the UE sends token ids, ``ceil(log2(vocab))`` bits each (the information content of an
id; a wire format may pad it, which the header budget absorbs). At ``k = L`` the UE does everything:
no uplink, no edge compute, no downlink. Messages are cut into packets of at most
``link.max_packet_payload_bits``, each with ``link.header_bits`` of overhead.

Radio. ``R = B · log2(1 + snr_linear · p_w / p_ref_w)`` with ``snr_linear`` the channel state's
instantaneous SNR (fading included) at the link's reference power. Packet loss is repaired by ARQ
with independent per-packet erasures and unlimited retries: the expected number of transmissions per
packet is ``1 / (1 - loss_rate)``, which multiplies uplink time and uplink energy (ACKs are free).
The downlink is treated as reliable at ``link.downlink_rate_bps``.

Coded link. With ``nr_link`` (the :meth:`~edgesplit.scenario.ChannelSetting.nr_link` of a ``coded`` setting) every
uplink message is priced by the 5G NR cost model instead (:mod:`edgesplit.cost.coded_uplink`: TBS per slot of the
MCS link adaptation picks at the received SNR, HARQ retransmissions and round trips, in expectation); the Shannon
time of the same bits stays in ``shannon_uplink_s`` and ``uplink_rate_bps`` stays the Shannon rate. Without it
(every other kind) nothing changes: ``uplink_s = shannon_uplink_s = uplink_airtime_s``.

UE energy: ``t_dev = C / (f · flops_per_cycle · utilisation)``, ``cycles = f · t_dev``,
``e_compute = kappa · cycles · f²``; ``e_tx = p_w · airtime`` (the Shannon link transmits all of ``t_up``; a coded
link is silent during HARQ round trips).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from edgesplit.channel.nr import NrLinkConfig, NrUplinkCost
from edgesplit.channel.state import ChannelState
from edgesplit.cost.coded_uplink import nr_message_cost
from edgesplit.cost.hardware import DeviceProfile, EdgeProfile, LinkProfile
from edgesplit.cost.model_profile import ModelProfile

if TYPE_CHECKING:
    import pandas as pd

Phase = Literal["prefill", "decode"]
PHASES: tuple[str, ...] = ("prefill", "decode")
SCALE_BITS_PER_TOKEN = 32
"""Side information per token for integer-quantised hidden states (one float32 scale)."""
FLOAT_BITS: tuple[int, ...] = (16, 32)
"""Element widths sent as plain floats (no scale)."""


@dataclass(frozen=True)
class SplitCost:
    """Cost of running one request (prefill) or a run of decode steps at split k."""

    k: int
    """Split point: the UE runs layers [0, k)."""
    phase: str
    """``"prefill"`` or ``"decode"``."""
    tokens: int
    """Prompt tokens (prefill) or decode steps (decode)."""
    context_len: int
    """Positions in the KV cache at the end of the call."""
    bits: int
    """Bits per hidden-state element on the uplink."""
    f_hz: float
    """UE clock frequency used."""
    tx_power_w: float
    """UE transmit power used."""
    uplink_rate_bps: float
    """Shannon rate of the uplink for this channel state and power."""
    device_flops: int
    """FLOPs run on the UE."""
    edge_flops: int
    """FLOPs run on the edge."""
    payload_bits: int
    """Uplink bits per attempt: data, quantisation scales and packet headers."""
    downlink_bits: int
    """Downlink bits: result token ids and packet headers."""
    device_compute_s: float
    """UE compute time."""
    uplink_s: float
    """Expected uplink time, ARQ retransmissions included (coded: NR HARQ latency, round trips included)."""
    edge_compute_s: float
    """Edge compute time."""
    downlink_s: float
    """Time to return the result token ids."""
    ue_compute_energy_j: float
    """kappa · cycles · f²."""
    ue_tx_energy_j: float
    """tx_power_w · uplink_airtime_s (= tx_power_w · uplink_s on the Shannon link)."""
    device_memory_bytes: float
    """UE memory: device-side weights + KV cache of device layers + one layer's activations."""
    edge_memory_bytes: float
    """Edge memory: edge-side weights + KV cache of edge layers + activations."""
    feasible: bool
    """False when either side's memory exceeds its profile."""
    infeasible_reason: str | None = None
    """Why the split is infeasible; None when feasible."""
    shannon_uplink_s: float | None = None
    """Shannon uplink time of the same bits, ARQ included (None: ``uplink_s``, the Shannon link itself)."""
    uplink_airtime_s: float | None = None
    """Time the UE transmits on the uplink (None: ``uplink_s``; coded: the HARQ slots, round trips excluded)."""
    nr_uplink: NrUplinkCost | None = None
    """Coded link: the NR cost of one uplink message (MCS, TBs, HARQ); None on the Shannon link or with no uplink."""

    def __post_init__(self) -> None:
        for name in ("shannon_uplink_s", "uplink_airtime_s"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.uplink_s)
        times = (self.device_compute_s, self.uplink_s, self.edge_compute_s, self.downlink_s, self.shannon_uplink_s,
                 self.uplink_airtime_s)
        if any(t < 0 or not math.isfinite(t) for t in times):
            raise ValueError(f"latency components must be finite and >= 0, got {times}")
        if self.feasible != (self.infeasible_reason is None):
            raise ValueError("infeasible_reason must be None exactly when feasible is True")

    @property
    def total_latency_s(self) -> float:
        """Device compute + uplink + edge compute + downlink."""
        return self.device_compute_s + self.uplink_s + self.edge_compute_s + self.downlink_s

    @property
    def ue_energy_j(self) -> float:
        """UE compute energy + UE transmit energy."""
        return self.ue_compute_energy_j + self.ue_tx_energy_j

    def to_dict(self) -> dict[str, Any]:
        """Flat dict with the derived totals (for DataFrames, parquet rows and JSON); a coded link's per-message NR
        cost is flattened as ``nr_*`` keys."""
        data = {key: value for key, value in asdict(self).items() if key != "nr_uplink"}
        if self.nr_uplink is not None:
            data |= {f"nr_{key}": value for key, value in self.nr_uplink.to_dict().items()}
        return {**data, "total_latency_s": self.total_latency_s, "ue_energy_j": self.ue_energy_j}


def hidden_payload_bits(tokens: int, hidden_size: int, bits: int) -> int:
    """Data bits of ``tokens`` hidden vectors at ``bits`` per element, per-token scales included."""
    _check_bits(bits)
    scale = 0 if bits in FLOAT_BITS else SCALE_BITS_PER_TOKEN
    return tokens * (hidden_size * bits + scale)


def uplink_rate_bps(link: LinkProfile, channel_state: ChannelState, tx_power_w: float | None = None) -> float:
    """``B · log2(1 + snr_linear · p_w / p_ref_w)`` for the state's instantaneous SNR."""
    p_w = link.tx_power_w if tx_power_w is None else tx_power_w
    _check_power(p_w)
    return link.bandwidth_hz * math.log2(1.0 + channel_state.snr_linear * p_w / link.tx_power_w)


def expected_transmissions(loss_rate: float) -> float:
    """Mean transmissions per packet under ARQ with unlimited retries: 1 / (1 - loss_rate)."""
    if not 0.0 <= loss_rate < 1.0:
        raise ValueError(f"loss_rate must be in [0, 1), got {loss_rate!r}")
    return 1.0 / (1.0 - loss_rate)


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"bits per element must be an integer in 1..32, got {bits!r}")


def _check_power(p_w: float) -> None:
    if not (math.isfinite(p_w) and p_w > 0):
        raise ValueError(f"tx_power_w must be a finite number > 0, got {p_w!r}")


@dataclass(frozen=True)
class _Request:
    """Validated shape of the work (internal)."""

    tokens: int
    past_len: int
    context_len: int
    messages: int
    tokens_per_message: int
    logits_tokens: int
    results_per_message: int


def _request(model: ModelProfile, phase: str, tokens: int, context_len: int | None, logits: int | None) -> _Request:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens must be an integer >= 1, got {tokens!r}")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if phase == "decode" and context_len is None:
        raise ValueError("phase='decode' needs context_len (positions in the cache after the last step)")
    ctx = tokens if context_len is None else context_len
    if ctx < tokens:
        raise ValueError(f"context_len ({ctx}) must be >= tokens ({tokens}): it includes the new tokens")
    if phase == "decode":
        if logits is not None:
            raise ValueError("logits_tokens applies to prefill only (decode returns one token per step)")
        return _Request(
            tokens,
            ctx - tokens,
            ctx,
            messages=tokens,
            tokens_per_message=1,
            logits_tokens=tokens,
            results_per_message=1,
        )
    n_logits = 1 if logits is None else logits
    if not 1 <= n_logits <= tokens:
        raise ValueError(f"logits_tokens must be in 1..tokens ({tokens}), got {n_logits!r}")
    return _Request(
        tokens,
        ctx - tokens,
        ctx,
        messages=1,
        tokens_per_message=tokens,
        logits_tokens=n_logits,
        results_per_message=n_logits,
    )


def _message_bits(model: ModelProfile, k: int, n_tokens: int, bits: int) -> int:
    if k == 0:
        return n_tokens * model.token_id_bits
    return hidden_payload_bits(n_tokens, model.hidden_size, bits)


def _side_memory(
    model: ModelProfile, layers: tuple[int, int], params: int, req: _Request, side: DeviceProfile | EdgeProfile
) -> float:
    """Weights + KV cache of the side's layers + one layer's activations (+ logits when it runs the head)."""
    act = side.bytes_per_activation
    runs_head = layers[1] == model.num_layers
    logits = model.logits_bytes(req.results_per_message, act) if runs_head else 0.0
    kv = model.kv_cache_bytes(*layers, req.context_len, act)
    return params * side.bytes_per_param + kv + model.activation_bytes(req.tokens_per_message, act) + logits


def _memories(
    model: ModelProfile, k: int, device: DeviceProfile, edge: EdgeProfile, req: _Request
) -> tuple[float, float]:
    """(UE bytes, edge bytes) for split k; a side that runs nothing needs nothing."""
    L = model.num_layers
    device_bytes = _side_memory(model, (0, k), model.device_params(k), req, device) if k > 0 else 0.0
    edge_bytes = _side_memory(model, (k, L), model.edge_params(k), req, edge) if k < L else 0.0
    return device_bytes, edge_bytes


def _memory_problem(device_bytes: float, edge_bytes: float, device: DeviceProfile, edge: EdgeProfile) -> str | None:
    """Human-readable reason when a side runs out of memory, else None."""
    sides = (
        ("device", device.name, device_bytes, device.memory_bytes),
        ("edge", edge.name, edge_bytes, edge.memory_bytes),
    )
    reasons = [
        f"{side} memory {need / 1e9:.4g} GB exceeds {name!r} ({have / 1e9:.4g} GB)"
        for side, name, need, have in sides
        if need > have
    ]
    return "; ".join(reasons) or None


def _link_bits(model: ModelProfile, k: int, link: LinkProfile, req: _Request, bits: int) -> tuple[int, int]:
    """(uplink, downlink) on-air bits; at k = L nothing crosses the link."""
    if k == model.num_layers:
        return 0, 0
    up = req.messages * link.on_air_bits(_message_bits(model, k, req.tokens_per_message, bits))
    down = req.messages * link.on_air_bits(req.results_per_message * model.token_id_bits)
    return up, down


@dataclass(frozen=True)
class _Uplink:
    """Uplink time, airtime and the NR cost of one message (internal)."""

    uplink_s: float
    airtime_s: float
    nr: NrUplinkCost | None


def _uplink(link: LinkProfile, state: ChannelState, p_w: float, rate: float, up_bits: int, messages: int,
            nr_link: NrLinkConfig | None) -> _Uplink:
    """Shannon (``nr_link`` None) or NR pricing of ``messages`` equal messages totalling ``up_bits``."""
    arq = expected_transmissions(state.loss_rate)
    if nr_link is None or up_bits == 0:
        return _Uplink(up_bits / rate * arq, up_bits / rate * arq, None)
    nr = nr_message_cost(link, state, p_w, up_bits // messages, nr_link)
    return _Uplink(messages * nr.latency_s * arq, messages * nr.airtime_s * arq, nr)


def split_costs(
    model_profile: ModelProfile,
    k: int,
    device: DeviceProfile,
    edge: EdgeProfile,
    link: LinkProfile,
    channel_state: ChannelState,
    tokens: int,
    bits: int,
    *,
    context_len: int | None = None,
    phase: Phase = "prefill",
    tx_power_w: float | None = None,
    f_hz: float | None = None,
    logits_tokens: int | None = None,
    nr_link: NrLinkConfig | None = None,
) -> SplitCost:
    """Latency, UE energy and memory of split ``k`` (see the module docstring for every convention).

    ``tx_power_w`` defaults to the link's reference power, ``f_hz`` to the device's default frequency,
    ``logits_tokens`` (prefill only) to 1. ``nr_link`` prices the uplink on the coded 5G NR link (its carrier must
    have ``link.bandwidth_hz``); None keeps the Shannon rate.
    """
    model = model_profile
    model.check_split(k)
    _check_bits(bits)
    req = _request(model, phase, tokens, context_len, logits_tokens)
    f = device.f_hz if f_hz is None else f_hz
    device.check_frequency(f)
    p_w = link.tx_power_w if tx_power_w is None else tx_power_w
    rate = uplink_rate_bps(link, channel_state, p_w)
    flops_kw = {"past_len": req.past_len, "logits_tokens": req.logits_tokens}
    device_flops = model.device_flops(k, tokens, **flops_kw)
    edge_flops = model.edge_flops(k, tokens, **flops_kw)
    up_bits, down_bits = _link_bits(model, k, link, req, bits)
    device_s = device_flops / device.effective_flops(f)
    uplink = _uplink(link, channel_state, p_w, rate, up_bits, req.messages, nr_link)
    cycles = f * device_s
    device_mem, edge_mem = _memories(model, k, device, edge, req)
    reason = _memory_problem(device_mem, edge_mem, device, edge)
    return SplitCost(
        k=k,
        phase=phase,
        tokens=tokens,
        context_len=req.context_len,
        bits=bits,
        f_hz=f,
        tx_power_w=p_w,
        uplink_rate_bps=rate,
        device_flops=device_flops,
        edge_flops=edge_flops,
        payload_bits=up_bits,
        downlink_bits=down_bits,
        device_compute_s=device_s,
        uplink_s=uplink.uplink_s,
        edge_compute_s=edge_flops / edge.effective_flops,
        downlink_s=down_bits / link.downlink_rate_bps,
        ue_compute_energy_j=device.kappa * cycles * f**2,
        ue_tx_energy_j=p_w * uplink.airtime_s,
        device_memory_bytes=device_mem,
        edge_memory_bytes=edge_mem,
        feasible=reason is None,
        infeasible_reason=reason,
        shannon_uplink_s=up_bits / rate * expected_transmissions(channel_state.loss_rate),
        uplink_airtime_s=uplink.airtime_s,
        nr_uplink=uplink.nr,
    )


def sweep_split_costs(
    model_profile: ModelProfile,
    device: DeviceProfile,
    edge: EdgeProfile,
    link: LinkProfile,
    channel_state: ChannelState,
    tokens: int,
    bits: int,
    *,
    as_dataframe: bool = False,
    **kwargs: Any,
) -> list[SplitCost] | pd.DataFrame:
    """:func:`split_costs` for every k in 0..L (keyword options are passed through).

    Returns a list of :class:`SplitCost`, or a pandas DataFrame with one row per k when ``as_dataframe``.
    """
    costs = [
        split_costs(model_profile, k, device, edge, link, channel_state, tokens, bits, **kwargs)
        for k in range(model_profile.num_layers + 1)
    ]
    if not as_dataframe:
        return costs
    import pandas as pd  # optional at import time: only DataFrame output needs it

    return pd.DataFrame([cost.to_dict() for cost in costs])
