"""Build channel processes and impairments by name: ``make_process("rayleigh", mean_snr_db=5, seed=0)``.

Unknown kinds and unknown parameter names raise ValueError listing what is accepted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgesplit.channel.awgn import AwgnImpairment
from edgesplit.channel.digital import DigitalImpairment
from edgesplit.channel.dropout import DropoutImpairment
from edgesplit.channel.erasure import ErasureImpairment
from edgesplit.channel.fading import NakagamiConfig, NakagamiProcess, RayleighConfig, RayleighProcess
from edgesplit.channel.gauss_markov import GaussMarkovConfig, GaussMarkovProcess
from edgesplit.channel.impairment import Compose, Impairment, NoImpairment
from edgesplit.channel.nr.coded import CodedImpairment
from edgesplit.channel.path_loss import PathLossConfig, PathLossProcess
from edgesplit.channel.process import ChannelProcess
from edgesplit.channel.static import StaticConfig, StaticProcess
from edgesplit.channel.trace import TraceConfig, TraceProcess
from edgesplit.channel.uep import ProtectedImpairment

PROCESSES: dict[str, tuple[type, type[ChannelProcess]]] = {
    "static": (StaticConfig, StaticProcess),
    "path_loss": (PathLossConfig, PathLossProcess),
    "rayleigh": (RayleighConfig, RayleighProcess),
    "nakagami": (NakagamiConfig, NakagamiProcess),
    "gauss_markov": (GaussMarkovConfig, GaussMarkovProcess),
    "trace": (TraceConfig, TraceProcess),
}
"""Process kinds: config class and process class."""

IMPAIRMENTS: dict[str, type[Impairment]] = {
    cls.kind: cls
    for cls in (NoImpairment, DropoutImpairment, AwgnImpairment, DigitalImpairment, ErasureImpairment)
}
"""Impairment kinds (besides 'compose', built from a list)."""
IMPAIRMENTS[CodedImpairment.kind] = CodedImpairment  # coded 5G NR uplink (edgesplit.channel.nr; Sionna lazily)
IMPAIRMENTS[ProtectedImpairment.kind] = ProtectedImpairment  # unequal error protection (edgesplit.channel.uep)


def _build(what: str, kind: str, cls: type, params: dict[str, Any]) -> Any:
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {what} {kind!r}; valid: {names}")
    return cls(**params)


def make_config(kind: str, **params: Any) -> Any:
    """The ``*Config`` of process ``kind`` built from keyword parameters."""
    if kind not in PROCESSES:
        raise ValueError(f"unknown channel process kind {kind!r}; valid: {sorted(PROCESSES)}")
    return _build("channel process", kind, PROCESSES[kind][0], params)


def make_process(kind: str, seed: int | None = None, **params: Any) -> ChannelProcess:
    """A process of ``kind`` (one of ``PROCESSES``) from its config's fields, reset with ``seed``."""
    config = make_config(kind, **params)
    return PROCESSES[kind][1](config, seed=seed)


def make_impairment(kind: str, **params: Any) -> Impairment:
    """An impairment of ``kind`` (one of ``IMPAIRMENTS`` or 'compose') from its fields.

    ``compose`` takes ``impairments``: a list of Impairment objects or ``{"kind": ..., **params}`` dicts.
    """
    if kind == "compose":
        unknown = sorted(set(params) - {"impairments"})
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for impairment 'compose'; valid: ['impairments']")
        parts = [_from_spec(spec) for spec in params.get("impairments", [])]
        return Compose(impairments=parts)
    if kind not in IMPAIRMENTS:
        raise ValueError(f"unknown impairment kind {kind!r}; valid: {sorted([*IMPAIRMENTS, 'compose'])}")
    return _build("impairment", kind, IMPAIRMENTS[kind], params)


def _from_spec(spec: Impairment | dict[str, Any]) -> Impairment:
    if isinstance(spec, Impairment):
        return spec
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"compose parts must be Impairment objects or dicts with a 'kind' key, got {spec!r}")
    params = {key: value for key, value in spec.items() if key != "kind"}
    return make_impairment(spec["kind"], **params)
