"""Reward sources by spec: how an environment built inside an RLlib env runner finds its source.

RLlib deep-copies ``env_config`` and builds one environment per vector slot, so live objects cannot travel in it.
An environment names its source with a small JSON-able spec instead, and :func:`source_from_spec` builds it once
per process (every environment of that process with the same spec shares the instance — and its counters):

- ``{"kind": "registered", "id": name}``: an object registered in this process with :func:`register_source`
  (in-process training only: ``num_env_runners=0``). Counted real sources live here so one counter sees every
  query.
- ``{"kind": "pushed", "id": name}``: a surrogate source whose model the driver pushes (the model-based loop swaps
  its surrogate between rounds): in the process that registered it (``register_source(..., pushed=True)``) the
  object itself, in any other process (a remote env runner) an empty surrogate source that
  :func:`push_surrogate` fills, called there by the driver after every refit.
- ``{"kind": "surrogate", "checkpoint": dir}``: a saved :class:`~surrogate.model.QualitySurrogate`.
- ``{"kind": "actor", "name": ..., "namespace": ...}``: a running :class:`~surrogate.actor.SurrogateActor`.
- ``{"kind": "table", "path": ...}``: a measured grid (``cells.parquet`` or a directory of them), exact oracle.
- ``{"kind": "real", "model": ..., "corpus": ..., "tokens": ..., "context": ...}``: the real LLM
  (:class:`~surrogate.evaluator.RealEvaluator`, on ``"device"``: cpu by default, auto, cuda), counted; with
  ``"table": path`` instead, a counted replay of
  real evaluations measured earlier (:class:`~surrogate.evaluator.TableOracle`).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_env.sources import RealRewardSource, RewardSource, SurrogateRewardSource, TableRewardSource
from surrogate.dataset import ModelDescriptor, load_cells, model_profile

SOURCE_KINDS = ("registered", "pushed", "surrogate", "actor", "table", "real")
_REGISTERED: dict[str, RewardSource] = {}
_BUILT: dict[str, RewardSource] = {}
_COUNTER = itertools.count()


def describe(model: str) -> ModelDescriptor:
    """The descriptor of a built-in model, a local model directory or the synthetic test model."""
    return ModelDescriptor.from_profile(model, model_profile(model))


def register_source(source: RewardSource, name: str | None = None, pushed: bool = False) -> dict[str, str]:
    """Make ``source`` reachable from environments of this process; returns the spec that names it (``pushed``:
    a surrogate source that other processes get by :func:`push_surrogate`)."""
    name = name or f"{source.name}-{next(_COUNTER)}"
    _REGISTERED[name] = source
    return {"kind": "pushed" if pushed else "registered", "id": name}


def push_surrogate(spec: dict[str, str], model: str, surrogate: Any, known: dict | None = None) -> int:
    """Serve ``surrogate`` (and measured ``known`` cells) from this process's copy of a pushed source; returns the
    process id (runs in each remote env runner, called by the driver)."""
    import os

    source_from_spec(spec, model).set_model(surrogate, known=known)
    return os.getpid()


def unregister_source(spec: dict[str, str]) -> None:
    """Drop a registered source (no error if it is already gone)."""
    _REGISTERED.pop(spec.get("id", ""), None)


def source_from_spec(spec: dict[str, Any], model: str) -> RewardSource:
    """The source a spec names (built once per process and spec; see the module docstring)."""
    if not isinstance(spec, dict) or spec.get("kind") not in SOURCE_KINDS:
        raise ValueError(f"reward source spec must be a dict with kind in {SOURCE_KINDS}, got {spec!r}")
    if spec["kind"] == "pushed" and isinstance(spec.get("id"), str) and spec["id"] not in _REGISTERED:
        # another process (a remote env runner): an empty source, filled by push_surrogate
        _REGISTERED[spec["id"]] = SurrogateRewardSource(None, describe(model))
    if spec["kind"] in ("registered", "pushed"):
        if spec.get("id") not in _REGISTERED:
            raise ValueError(f"no reward source registered as {spec.get('id')!r} in this process; registered "
                             f"sources only reach in-process env runners (num_env_runners=0)")
        return _REGISTERED[spec["id"]]
    key = json.dumps({"model": model, **spec}, sort_keys=True, default=str)
    if key not in _BUILT:
        _BUILT[key] = _build(spec, model)
    return _BUILT[key]


def _build(spec: dict[str, Any], model: str) -> RewardSource:
    kind, descriptor = spec["kind"], describe(model)
    if kind == "surrogate":
        from surrogate.checkpoint import load_surrogate

        return SurrogateRewardSource(load_surrogate(Path(spec["checkpoint"])), descriptor)
    if kind == "actor":
        from surrogate.actor import DEFAULT_NAME, DEFAULT_NAMESPACE, get_surrogate_actor

        handle = get_surrogate_actor(spec.get("name", DEFAULT_NAME), spec.get("namespace", DEFAULT_NAMESPACE))
        return SurrogateRewardSource(handle, descriptor)
    if kind == "table":
        return TableRewardSource(load_cells(Path(spec["path"])), descriptor)
    return RealRewardSource(real_oracle(spec, model), descriptor)


def replay_oracle(table: pd.DataFrame) -> Any:
    """A counted replay (:class:`~surrogate.evaluator.TableOracle`) of measured real evaluations.

    TableOracle keys cells by their printed values, and a parquet round trip turns the ``modulation`` of analog
    rows from None into NaN; the rows are normalised to None, which is what :func:`rllib_env.sources.cell_frame`
    sends.
    """
    from surrogate.evaluator import TableOracle

    table = table.copy()
    if "modulation" in table.columns:
        table["modulation"] = table["modulation"].astype(object).where(table["modulation"].notna(), None)
    return TableOracle(table)


def real_oracle(spec: dict[str, Any], model: str) -> Any:
    """The oracle behind a ``real`` spec: a counted table replay, or the LLM itself."""
    from surrogate.evaluator import RealEvaluator

    if spec.get("table"):
        return replay_oracle(load_cells(Path(spec["table"])))
    from edgesplit.models import load_model
    from edgesplit.quality import load_corpus, tokenize_corpus

    corpus = load_corpus(str(spec.get("corpus", "default")))
    loaded = load_model(spec.get("model", model), device=spec.get("device", "cpu"))  # float32: it measures quality
    ids = tokenize_corpus(corpus, loaded.tokenizer, int(spec.get("tokens", 1024)))
    return RealEvaluator(loaded, ids, context=int(spec.get("context", 256)), batch_size=int(spec.get("batch_size", 4)),
                         corpus_name=corpus.name)


__all__ = ["SOURCE_KINDS", "describe", "push_surrogate", "real_oracle", "register_source", "replay_oracle",
           "source_from_spec", "unregister_source"]
