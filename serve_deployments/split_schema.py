"""What crosses the HTTP boundary of the split controller: a UE's state in, a split decision out (pydantic v2).

state = UEState(snr_db_history=[11.0, 12.3], battery=0.8, latency_budget_s=0.5)
decision = SplitDecision(k=15, encoding="float32", bits=32, policy="rule", policy_version="rule:builtin-v1",
                         reason="snr 12.3 dB >= 10 dB threshold -> k=15", num_layers=30)

Both models are strict (no string-to-number coercion, no float-to-int truncation), forbid unknown fields and bound
every list and number, so a malformed or hostile request fails validation (a ``ValueError``) before any policy
runs. Nothing in a :class:`UEState` names a file or a policy: what the controller loads comes only from the
server's own configuration.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgesplit.cost.hardware import DEVICE_PRESETS, get_device
from edgesplit.reward import RewardConfig

DEFAULT_DEVICE: str = next(f.default for f in fields(RewardConfig) if f.name == "device")
"""The UE preset a state names when it names none (the cost model's default, ``phone-soc``)."""
ENCODING_WIDTHS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4, "token_ids": None}
"""ActivationPacket encodings (:data:`edgesplit.packet.ENCODINGS`) and their bits per element."""
POLICY_KINDS = ("rllib", "surrogate_greedy", "rule", "co_opt")
"""What can decide: an exported RLlib policy, the surrogate's greedy choice, the rule fallback, or the joint
split / pruning optimiser (:mod:`serve_deployments.co_opt_policy`)."""
MAX_HISTORY = 256
"""Most SNR reports one state may carry."""

SnrDb = Annotated[float, Field(ge=-50.0, le=80.0, allow_inf_nan=False)]


class UEState(BaseModel):
    """A UE's report to the split controller (newest SNR last)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    snr_db_history: list[SnrDb] = Field(min_length=1, max_length=MAX_HISTORY)
    """Instantaneous uplink SNRs in dB (fading included), oldest first, newest last; 1..256 entries in [-50, 80]."""
    loss_rate: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Packet (fragment) loss rate the UE currently sees, in [0, 1]."""
    device: str = DEFAULT_DEVICE
    """Device preset of the UE (:data:`edgesplit.cost.DEVICE_PRESETS`)."""
    cpu_freq_hz: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    """Current CPU clock; within the preset's DVFS range. None: the preset's default clock."""
    battery: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    """State of charge in [0, 1]. None: not reported (no battery pressure)."""
    latency_budget_s: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    """Largest acceptable latency of the priced request. None: no budget."""
    context_tokens: int = Field(0, ge=0, le=1_000_000)
    """Tokens of the request to price (prompt + context). 0: the reward config's default request size."""
    current_k: int | None = Field(None, ge=0)
    """The split the UE runs now (relative policies move from it). None: unknown."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in DEVICE_PRESETS:
            raise ValueError(f"unknown device preset {value!r}; valid names: {', '.join(sorted(DEVICE_PRESETS))}")
        return value

    @model_validator(mode="after")
    def _frequency_in_range(self) -> UEState:
        if self.cpu_freq_hz is not None:
            get_device(self.device).check_frequency(self.cpu_freq_hz)
        return self

    @property
    def snr_db(self) -> float:
        """The newest SNR report."""
        return self.snr_db_history[-1]

    @property
    def f_hz(self) -> float:
        """The UE's clock: the reported one, or the preset's default."""
        return self.cpu_freq_hz if self.cpu_freq_hz is not None else get_device(self.device).f_hz


class SplitDecision(BaseModel):
    """The controller's answer: where to split, how to encode what crosses the link, who decided and why."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    k: int = Field(ge=0)
    """Layers the UE runs (0: token ids go to the edge; ``num_layers``: nothing crosses)."""
    encoding: Literal["float32", "float16", "bfloat16", "int8", "int4", "token_ids"]
    """ActivationPacket encoding of the layer-``k`` hidden states (``token_ids`` exactly when ``k = 0``)."""
    bits: int | None = Field(ge=1, le=32)
    """Bits per element the UE quantises to (at most the encoding's width); None with ``token_ids``."""
    policy: Literal["rllib", "surrogate_greedy", "rule", "co_opt"]
    """Kind of policy that decided."""
    policy_version: str = Field(min_length=1, max_length=128)
    """Version of that policy (content hash of its files unless configured)."""
    reason: str = Field(min_length=1, max_length=240)
    """Short human-readable why, e.g. ``snr 12.3 dB >= 10 dB threshold -> k=15``."""
    num_layers: int = Field(ge=1)
    """Decoder layers L of the served model."""

    @model_validator(mode="after")
    def _consistent(self) -> SplitDecision:
        if self.k > self.num_layers:
            raise ValueError(f"k={self.k} exceeds the model's {self.num_layers} layers")
        if (self.encoding == "token_ids") != (self.k == 0):
            raise ValueError(f"encoding 'token_ids' goes with k=0 and only with it (k={self.k}, {self.encoding!r})")
        width = ENCODING_WIDTHS[self.encoding]
        if (width is None) != (self.bits is None) or (width is not None and self.bits > width):
            raise ValueError(f"bits={self.bits} do not fit encoding {self.encoding!r} (width {width})")
        return self


__all__ = ["DEFAULT_DEVICE", "ENCODING_WIDTHS", "MAX_HISTORY", "POLICY_KINDS", "SplitDecision", "UEState"]
