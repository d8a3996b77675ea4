"""Where the quality part of a split's reward comes from: the surrogate, the counted real LLM, or a measured table.

Every source answers ``quality(ks, settings) -> [n, 3]`` (log PPL ratio, KL nats, top-1 agreement, the columns of
:data:`QUALITY_COLUMNS`) for cells ``(k, ChannelSetting)`` and keeps :class:`SourceStats`. The analytic cost part is
added by the environment (:class:`~rllib_env.device_state.DeviceAwareReward`), so sources are interchangeable.

- :class:`SurrogateRewardSource` (model-based): a fitted :class:`~surrogate.model.QualitySurrogate` (or any model
  with ``predict(frame) -> Prediction``, e.g. the reference paper's MLP) in-process, or a
  :class:`~surrogate.actor.SurrogateActor` handle. Batched: the first query of a channel setting predicts every
  split of that setting in one call and caches them. Takes any SNR (the surrogate interpolates).
- :class:`RealRewardSource` (model-free): an oracle with ``evaluate_frame`` — a
  :class:`~surrogate.evaluator.RealEvaluator` (the LLM through the profiler engine) or a
  :class:`~surrogate.evaluator.TableOracle` replaying real evaluations measured earlier. Every query is counted;
  ``llm_evaluations`` counts the first query of each lossy cell (the calls that need the LLM: cache misses), and
  every such evaluation is logged (:meth:`RealRewardSource.log_frame`). Settings are evaluated exactly as given.
- :class:`TableRewardSource` (oracle, evaluation only): exact lookup in a measured grid; a setting the grid does
  not hold raises ValueError (the environment snaps SNR to the grid first, see :mod:`rllib_env.split_env`).

Lossless cells (``k = 0``, ``k = L``, an ideal float32 link) have the clean model's quality by construction; no
source spends an LLM evaluation on them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from edgesplit.scenario import CODED_DEFAULTS, ChannelSetting
from surrogate.dataset import TARGETS, ModelDescriptor, add_targets
from surrogate.features import setting_columns, setting_of
from surrogate.model import EXACT

QUALITY_COLUMNS = TARGETS
"""Columns of :meth:`RewardSource.quality`: the surrogate's targets."""
CLEAN_QUALITY = tuple(EXACT[name] for name in QUALITY_COLUMNS)
"""Quality of a lossless cell."""
CLEAN_QUALITY_ARRAY = np.array(CLEAN_QUALITY)

Cell = tuple[int, ChannelSetting]


@dataclass
class SourceStats:
    """What a source was asked and what it spent."""

    calls: int = 0
    """``quality`` calls."""
    queries: int = 0
    """Cells asked for over all calls (cache hits included)."""
    distinct_cells: int = 0
    """Different cells asked for."""
    llm_evaluations: int = 0
    """Cells that needed the LLM: first queries of lossy cells (0 for surrogate and table sources)."""
    predictions: int = 0
    """Cells predicted by a surrogate (whole settings at a time)."""
    wall_s: float = 0.0
    """Wall time spent inside the source."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict."""
        return asdict(self)


class RewardSource(Protocol):
    """The quality half of the reward (see the module docstring)."""

    name: str
    descriptor: ModelDescriptor
    stats: SourceStats

    def quality(self, ks: Sequence[int], settings: Sequence[ChannelSetting]) -> np.ndarray: ...


def lossless(k: int, setting: ChannelSetting, num_layers: int) -> bool:
    """True when quality equals the clean model's without running it."""
    return k in (0, num_layers) or (setting.kind == "ideal" and setting.encoding == "float32")


def cell_frame(descriptor: ModelDescriptor, cells: Sequence[Cell]) -> pd.DataFrame:
    """Cells as rows with the columns of the profiler's tables (seed 0, no fading: the gain is in ``snr_db``)."""
    base = {"model": descriptor.name, "num_layers": descriptor.num_layers, "hidden_size": descriptor.hidden_size,
            "num_params": descriptor.num_params, "fading": "none", "seed": 0}
    return pd.DataFrame([{**base, "k": int(k), **setting_columns(s)} for k, s in cells])


def quality_matrix(values: dict[str, Any], n: int) -> np.ndarray:
    """``[n, 3]`` quality from per-target arrays; targets a model lacks take their clean value."""
    return np.stack([np.broadcast_to(np.asarray(values.get(name, default), dtype=float), (n,))
                     for name, default in zip(QUALITY_COLUMNS, CLEAN_QUALITY, strict=True)], axis=1)


class _CachedSource:
    """Shared bookkeeping: a per-cell cache and the counters."""

    name = "source"

    def __init__(self, descriptor: ModelDescriptor) -> None:
        self.descriptor = descriptor
        self.stats = SourceStats()
        self._cache: dict[Cell, np.ndarray] = {}

    def quality(self, ks: Sequence[int], settings: Sequence[ChannelSetting]) -> np.ndarray:
        """``[n, 3]`` quality of the cells (see :data:`QUALITY_COLUMNS`)."""
        start = time.perf_counter()
        cells = [(int(k), s) for k, s in zip(ks, settings, strict=True)]
        for k, _ in cells:
            if not 0 <= k <= self.descriptor.num_layers:
                raise ValueError(f"split k={k} is out of range 0..{self.descriptor.num_layers}")
        new = list(dict.fromkeys(c for c in cells if c not in self._cache))
        if new:
            self._fill(new)
            self.stats.distinct_cells += len(new)
        self.stats.calls += 1
        self.stats.queries += len(cells)
        self.stats.wall_s += time.perf_counter() - start
        return np.stack([self._cache[c] for c in cells]) if cells else np.zeros((0, 3))

    def _fill(self, cells: list[Cell]) -> None:
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Forget every cached answer (counters are kept)."""
        self._cache.clear()


class SurrogateRewardSource(_CachedSource):
    """Quality predicted by a surrogate, every split of a setting at once (see the module docstring).

    ``known`` maps cells to measured quality that overrides the prediction (the model-based loop passes its real
    evaluations, so a policy trained here sees exactly what was measured where something was).
    """

    name = "surrogate"

    def __init__(self, model: Any, descriptor: ModelDescriptor, known: dict[Cell, np.ndarray] | None = None) -> None:
        super().__init__(descriptor)
        self.model = model
        self.known = dict(known or {})

    def set_model(self, model: Any, known: dict[Cell, np.ndarray] | None = None) -> None:
        """Serve a new (refitted) surrogate (and measured cells) from now on; cached predictions are dropped."""
        self.model = model
        self.known = dict(known or {})
        self.clear_cache()

    def _fill(self, cells: list[Cell]) -> None:
        settings = list(dict.fromkeys(s for _, s in cells))
        ks = range(self.descriptor.num_layers + 1)
        batch = [(k, s) for s in settings for k in ks]
        predicted = self.predict(batch)
        self.stats.predictions += len(batch)
        for cell, row in zip(batch, predicted, strict=True):
            exact = CLEAN_QUALITY_ARRAY if lossless(*cell, self.descriptor.num_layers) else None
            self._cache[cell] = exact if exact is not None else self.known.get(cell, row)

    def predict(self, cells: Sequence[Cell]) -> np.ndarray:
        """``[n, 3]`` predicted quality (no caching, no counting)."""
        if self.model is None:
            raise ValueError("this surrogate source has no model yet (a pushed source is filled by push_surrogate)")
        frame = cell_frame(self.descriptor, cells)
        if hasattr(self.model, "predict_rewards"):  # an in-process SurrogateActor
            values = self.model.predict(frame)
        elif hasattr(self.model, "predict") and hasattr(self.model.predict, "remote"):  # a Ray actor handle
            import ray

            values = ray.get(self.model.predict.remote(frame))
        else:
            prediction = self.model.predict(frame)
            values = {name: prediction.column(name) for name in prediction.targets}
        return quality_matrix(values, len(frame))


class RealRewardSource(_CachedSource):
    """Quality from a counted real oracle (see the module docstring); every LLM evaluation is logged."""

    name = "real"

    def __init__(self, oracle: Any, descriptor: ModelDescriptor) -> None:
        super().__init__(descriptor)
        self.oracle = oracle
        self.log: list[dict[str, Any]] = []
        self.tag = ""

    def _fill(self, cells: list[Cell]) -> None:
        lossy = [c for c in cells if not lossless(*c, self.descriptor.num_layers)]
        for cell in cells:
            if cell not in lossy:
                self._cache[cell] = CLEAN_QUALITY_ARRAY
        if not lossy:
            return
        start = time.perf_counter()
        rows = add_targets(self.oracle.evaluate_frame(cell_frame(self.descriptor, lossy)))
        wall = (time.perf_counter() - start) / len(lossy)
        values = rows[list(QUALITY_COLUMNS)].to_numpy(dtype=float)
        for (k, setting), row in zip(lossy, values, strict=True):
            self._cache[(k, setting)] = row
            self.stats.llm_evaluations += 1
            self.log.append({"evaluation": self.stats.llm_evaluations, "tag": self.tag, "k": k,
                             **setting_columns(setting), **dict(zip(QUALITY_COLUMNS, row.tolist(), strict=True)),
                             "wall_s": wall, "queries_so_far": self.stats.queries})

    def would_evaluate(self, k: int, setting: ChannelSetting) -> bool:
        """True when querying this cell would cost an LLM evaluation (a lossy cell not asked before)."""
        return (int(k), setting) not in self._cache and not lossless(int(k), setting, self.descriptor.num_layers)

    def peek(self, k: int, setting: ChannelSetting) -> np.ndarray | None:
        """The quality of a cell if it is known without an LLM call (measured before, or lossless); not counted."""
        if lossless(int(k), setting, self.descriptor.num_layers):
            return CLEAN_QUALITY_ARRAY
        return self._cache.get((int(k), setting))

    def measured(self) -> dict[Cell, np.ndarray]:
        """Every cell answered so far (lossless ones included) with its quality."""
        return dict(self._cache)

    def log_frame(self) -> pd.DataFrame:
        """One row per LLM evaluation, in order (cell, quality, wall time, tag of the phase that asked)."""
        return pd.DataFrame(self.log)

    def labelled(self) -> pd.DataFrame:
        """The real evaluations so far as a cell table a surrogate can be fitted on."""
        cells = [(int(r["k"]), setting_of(r)) for r in self.log]
        frame = cell_frame(self.descriptor, cells)
        for name in QUALITY_COLUMNS:
            frame[name] = [r[name] for r in self.log]
        return frame


def _table_key(k: int, setting: ChannelSetting) -> tuple:
    """What identifies a cell's quality in a measured grid (nominal SNR, p, bits, modulation and the coded link's
    options as they apply; a coded cell's loss rate is ARQ'd above the PHY, a cost, so it is not part of it)."""
    kind = setting.kind
    snr = round(float(setting.snr_db) + 10 * math.log10(setting.fading_gain), 3) if kind in (
        "awgn", "digital", "coded") else None
    coded = tuple(getattr(setting, name) for name in CODED_DEFAULTS) if kind == "coded" else None
    return (int(k), kind, snr, round(float(setting.p), 4) if kind == "dropout" else None,
            setting.bits if kind in ("digital", "coded") else None, setting.modulation if kind == "digital" else None,
            round(float(setting.loss_rate), 4) if kind == "digital" else None, setting.encoding, coded)


class TableRewardSource(_CachedSource):
    """Exact quality from a measured grid (an oracle for evaluation; see the module docstring)."""

    name = "table"

    def __init__(self, table: pd.DataFrame, descriptor: ModelDescriptor) -> None:
        super().__init__(descriptor)
        table = add_targets(table)
        if "model" in table.columns and set(table["model"]) != {descriptor.name}:
            raise ValueError(f"table holds models {sorted(set(table['model']))}, expected only {descriptor.name!r}")
        self._rows: dict[tuple, np.ndarray] = {}
        for row, values in zip(table.to_dict("records"), table[list(QUALITY_COLUMNS)].to_numpy(float), strict=True):
            self._rows[_table_key(int(row["k"]), setting_of(row))] = values
        self.snr_grid_db = tuple(sorted({key[2] for key in self._rows if key[2] is not None}))
        self.p_grid = tuple(sorted({key[3] for key in self._rows if key[3] is not None}))

    def _fill(self, cells: list[Cell]) -> None:
        for k, setting in cells:
            key = _table_key(k, setting)
            if lossless(k, setting, self.descriptor.num_layers):
                self._cache[(k, setting)] = CLEAN_QUALITY_ARRAY
            elif key in self._rows:
                self._cache[(k, setting)] = self._rows[key]
            else:
                raise ValueError(f"the table holds no cell k={k}, {setting.label}; snap the environment to the "
                                 f"table's grid: snr_grid_db from {list(self.snr_grid_db)}, p_values from "
                                 f"{list(self.p_grid)}")


__all__ = ["CLEAN_QUALITY", "QUALITY_COLUMNS", "RealRewardSource", "RewardSource", "SourceStats",
           "SurrogateRewardSource", "TableRewardSource", "cell_frame", "lossless", "quality_matrix"]
