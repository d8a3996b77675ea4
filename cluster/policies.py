"""Split policies: how a UE picks the split point ``k`` for a request from what it observes.

A policy is any object with ``choose(observation) -> int``. Strings name the built-in ones (``--policy``):

- ``fixed:K`` — always split at ``K``.
- ``snr:T1=K1,T2=K2,...`` — thresholds in dB: the UE takes the split of the highest threshold its measured SNR
  reaches, and the split of the lowest threshold below all of them. ``snr:0=30,10=15,20=4`` keeps every layer on
  the device (k = 30, nothing crosses the link) on a poor link and offloads more as the link improves.
- ``import:package.module:Name`` — any importable policy; a class is instantiated without arguments.
"""

from __future__ import annotations

import importlib
import operator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edgesplit.channel import ChannelState


@dataclass(frozen=True)
class Observation:
    """What a UE knows when it picks a split for one request."""

    ue_id: int
    """The deciding UE."""
    request_id: int
    """The request being started."""
    attempt: int
    """0 for the first try, then 1, 2, ... after an edge failure."""
    channel: ChannelState
    """The channel block measured at the start of the request."""
    prompt_tokens: int
    """Length of the prompt."""
    max_new_tokens: int
    """Tokens to generate."""
    num_layers: int
    """``L``: valid splits are ``0..L``."""
    device: str
    """The UE's device profile name."""

    @property
    def snr_db(self) -> float:
        """Instantaneous SNR of the measured block (mean SNR plus fading), in dB."""
        return self.channel.snr_db


@runtime_checkable
class SplitPolicy(Protocol):
    """Anything that picks a split point."""

    def choose(self, observation: Observation) -> int:
        """The split ``k`` in ``0..observation.num_layers`` for this request."""
        ...


def _check_k(k: int, num_layers: int, where: str) -> None:
    if not 0 <= k <= num_layers:
        raise ValueError(f"{where}: split {k} is outside 0..{num_layers} (the model's layer count)")


@dataclass(frozen=True)
class FixedPolicy:
    """Always the same split."""

    k: int
    """The split point."""

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"fixed split must be an integer >= 0, got {self.k!r}")

    def check(self, num_layers: int) -> None:
        """Raise ``ValueError`` when the split does not fit a ``num_layers``-layer model."""
        _check_k(self.k, num_layers, f"policy fixed:{self.k}")

    def choose(self, observation: Observation) -> int:
        return self.k


@dataclass(frozen=True)
class SnrThresholdPolicy:
    """Piecewise-constant rule on the measured SNR."""

    thresholds_db: tuple[float, ...]
    """Increasing SNR thresholds in dB."""
    splits: tuple[int, ...]
    """The split used from each threshold up (same length as ``thresholds_db``)."""

    def __post_init__(self) -> None:
        if not self.thresholds_db or len(self.thresholds_db) != len(self.splits):
            raise ValueError("snr policy needs one split per threshold and at least one threshold")
        if list(self.thresholds_db) != sorted(set(self.thresholds_db)):
            raise ValueError(f"snr thresholds must be strictly increasing, got {list(self.thresholds_db)}")
        if any(k < 0 for k in self.splits):
            raise ValueError(f"snr policy splits must be >= 0, got {list(self.splits)}")

    def check(self, num_layers: int) -> None:
        """Raise ``ValueError`` when a split does not fit a ``num_layers``-layer model."""
        for k in self.splits:
            _check_k(k, num_layers, "snr policy")

    def choose(self, observation: Observation) -> int:
        chosen = self.splits[0]
        for threshold, k in zip(self.thresholds_db, self.splits, strict=True):
            if observation.snr_db >= threshold:
                chosen = k
        return chosen


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None


def _parse_snr(body: str) -> SnrThresholdPolicy:
    pairs = []
    for item in body.split(","):
        threshold, sep, k = item.partition("=")
        if not sep:
            raise ValueError(f"snr policy items look like THRESHOLD_DB=K, got {item!r}")
        try:
            pairs.append((float(threshold), _parse_int(k, "snr policy split")))
        except ValueError as err:
            raise ValueError(f"bad snr policy item {item!r}: {err}") from None
    pairs.sort()
    return SnrThresholdPolicy(tuple(t for t, _ in pairs), tuple(k for _, k in pairs))


def _import_policy(target: str) -> SplitPolicy:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"import policy must look like import:package.module:Name, got {target!r}")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import policy {target!r}: {err}") from None
    policy = obj() if isinstance(obj, type) else obj
    if not isinstance(policy, SplitPolicy):
        raise ValueError(f"{target!r} has no choose(observation) method")
    return policy


POLICY_FORMS = "fixed:K, snr:T1=K1,T2=K2,... or import:package.module:Name"


def parse_policy(spec: str | SplitPolicy) -> SplitPolicy:
    """A policy from its ``--policy`` string (see the module docstring); policy objects pass through."""
    if not isinstance(spec, str):
        if not isinstance(spec, SplitPolicy):
            raise ValueError(f"a policy needs a choose(observation) method, got {type(spec).__name__}")
        return spec
    kind, sep, body = spec.partition(":")
    if not sep or not body:
        raise ValueError(f"unknown policy {spec!r}; accepted: {POLICY_FORMS}")
    if kind == "fixed":
        return FixedPolicy(_parse_int(body, "fixed split"))
    if kind == "snr":
        return _parse_snr(body)
    if kind == "import":
        return _import_policy(body)
    raise ValueError(f"unknown policy kind {kind!r}; accepted: {POLICY_FORMS}")


def check_policy(policy: SplitPolicy, num_layers: int) -> None:
    """Validate a built-in policy's splits against the model (custom policies are checked per request)."""
    check = getattr(policy, "check", None)
    if callable(check):
        check(num_layers)


def choose_split(policy: SplitPolicy, observation: Observation) -> int:
    """``policy.choose(observation)``, checked to be an integer split of the model."""
    raw = policy.choose(observation)
    try:
        if isinstance(raw, bool):
            raise TypeError
        k = operator.index(raw)  # accepts numpy integers, rejects floats
    except TypeError:
        raise ValueError(f"policy {policy!r} returned {raw!r}, not an integer split") from None
    _check_k(k, observation.num_layers, f"policy {policy!r}")
    return k
