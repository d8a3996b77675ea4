"""Real evaluations of cells: the LLM through the profiler engine, counted, timed and cached by cell.

:class:`RealEvaluator` holds a model and a token stream; the clean pass (:func:`edgesplit.profile.prepare_windows`)
runs once, on first use, and each new cell then costs one batched tail run from ``k`` (cells of one ``k`` share a
call; lossless cells — ``k = 0``, ``k = L``, an ideal float32 link — cost none). Results come back as rows with the
columns of the profiler's ``cells.parquet`` plus the model descriptors and ``log_ppl_ratio``, so a table of real
evaluations and a profiler run are interchangeable. Numbers are bit-identical to the profiler's (same per-window
seeding), whatever order or process evaluates them.

:class:`TableOracle` answers the same calls from a table measured earlier (a full ground-truth grid), counting
queries the same way: benchmarks use it to replay many selection strategies against one set of real evaluations.
:mod:`surrogate.evaluator_pool` runs several :class:`RealEvaluator` replicas as Ray actors.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import pandas as pd
import torch

from edgesplit.models import LoadedModel
from edgesplit.profile import CostContext, PreparedWindows, ProfileCell, evaluate_group, group_cells, prepare_windows
from edgesplit.profile.rows import make_row
from surrogate.dataset import ModelDescriptor, add_targets
from surrogate.features import CODED_COLUMNS, row_keys, setting_of, validate_cells
from surrogate.sensitivity import SensitivityProfile, measure_sensitivity


@dataclass
class EvaluatorStats:
    """What an evaluator has spent."""

    evaluations: int = 0
    """Cells evaluated with the LLM (each distinct cell counts once; cache hits do not count)."""
    tail_runs: int = 0
    """Of those, cells that needed compute (lossless cells are priced without running the model)."""
    cache_hits: int = 0
    """Requests answered from the cache."""
    wall_s: float = 0.0
    """Wall time spent evaluating (clean pass included)."""
    clean_pass_s: float = 0.0
    """Wall time of the clean pass."""
    sensitivity_s: float = 0.0
    """Wall time of sensitivity profiles measured (:meth:`RealEvaluator.sensitivity`; in ``wall_s`` too)."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict."""
        return asdict(self)

    def __add__(self, other: EvaluatorStats) -> EvaluatorStats:
        return EvaluatorStats(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


class Oracle(Protocol):
    """Anything that returns the quality of cells: a real evaluator, a pool of them, or a measured table."""

    stats: EvaluatorStats

    def evaluate_frame(self, frame: pd.DataFrame) -> pd.DataFrame: ...


def cell_of(row: dict, fading: str = "none") -> ProfileCell:
    """The profiler cell a table row describes (its seed draws the fading gain under ``rayleigh``)."""
    setting = setting_of(row)
    fading = str(row.get("fading", fading) or fading)
    if fading == "none" and setting.fading_gain != 1.0:
        raise ValueError(f"fading_gain {setting.fading_gain:g} without fading: a gain other than 1 comes from "
                         f"fading='rayleigh' and the seed")
    return ProfileCell(k=int(row["k"]), setting=replace(setting, fading_gain=1.0), seed=int(row.get("seed", 0)),
                       fading=fading)


class RealEvaluator:
    """The real LLM quality of cells (see the module docstring); plain class, wrapped by Ray in the pool."""

    def __init__(self, model: LoadedModel | str, token_ids: torch.Tensor, *, context: int = 256,
                 stride: int | None = None, batch_size: int = 4, corpus_name: str = "custom",
                 device: str = "phone-soc", edge: str = "a100", link: str = "5g-nr-20mhz",
                 threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        if isinstance(model, str):
            from edgesplit.models import load_model

            model = load_model(model)
        if token_ids.ndim != 1 or token_ids.numel() < 2:
            raise ValueError(f"token_ids must be a 1-D stream of at least 2 tokens, got {tuple(token_ids.shape)}")
        self.model, self.token_ids = model, token_ids
        self.context, self.stride, self.batch_size, self.corpus_name = context, stride, batch_size, corpus_name
        self.costs = CostContext.build(model.model.config, device, edge, link, min(context, int(token_ids.numel())))
        self.descriptor = ModelDescriptor.from_profile(model.name, self.costs.profile)
        self.stats = EvaluatorStats()
        self._prepared: PreparedWindows | None = None
        self._cache: dict[ProfileCell, dict] = {}
        self._sensitivity: dict[tuple[int, int, int], SensitivityProfile] = {}

    @property
    def prepared(self) -> PreparedWindows:
        """The clean pass (run on first use)."""
        if self._prepared is None:
            self._prepared = prepare_windows(self.model, self.token_ids, self.context, self.stride, self.batch_size)
            self.stats.clean_pass_s += self._prepared.clean_pass_s
            self.stats.wall_s += self._prepared.clean_pass_s
        return self._prepared

    def evaluate_cells(self, cells: list[ProfileCell]) -> list[dict]:
        """One row per cell (in order), evaluating only the cells not seen before."""
        for cell in cells:
            self.model_k_check(cell.k)
        todo = sorted({c for c in cells if c not in self._cache}, key=lambda c: (c.k, c.setting.label, c.seed))
        self.stats.cache_hits += len(cells) - len(todo)
        if todo:
            prepared = self.prepared
            start = time.perf_counter()
            for group in group_cells(todo, self.model.num_layers, self.batch_size):
                for result in evaluate_group(self.model, prepared, group):
                    self._cache[result.cell] = self._row(result)
                    self.stats.tail_runs += not result.cell.lossless(self.model.num_layers)
            self.stats.evaluations += len(todo)
            self.stats.wall_s += time.perf_counter() - start
        return [self._cache[c] for c in cells]

    def sensitivity(self, tokens: int = 512, samples: int = 1, seed: int = 0) -> SensitivityProfile:
        """The model's first-order sensitivity profile on this evaluator's tokens (measured once per arguments,
        its wall time counted in :attr:`stats`)."""
        key = (tokens, samples, seed)
        if key not in self._sensitivity:
            profile = measure_sensitivity(self.model, self.token_ids, context=self.context, tokens=tokens,
                                          samples=samples, seed=seed, corpus=self.corpus_name)
            self.stats.sensitivity_s += profile.wall_s
            self.stats.wall_s += profile.wall_s
            self._sensitivity[key] = profile
        return self._sensitivity[key]

    def get_stats(self) -> EvaluatorStats:
        """The counters (a method, so a Ray actor can return them)."""
        return self.stats

    def model_k_check(self, k: int) -> None:
        """ValueError unless ``k`` is a split of this model."""
        if not 0 <= k <= self.model.num_layers:
            raise ValueError(f"split k={k} is out of range for {self.model.name} (0..{self.model.num_layers})")

    def _row(self, result) -> dict:
        row = make_row(result, model=self.model.name, corpus=self.corpus_name, num_layers=self.model.num_layers,
                       costs=self.costs)
        row.update(hidden_size=self.descriptor.hidden_size, num_params=self.descriptor.num_params,
                   loss_rate=float(result.cell.setting.loss_rate))
        return row

    def evaluate_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Quality rows for the cells of ``frame`` (same order; its other columns are not kept)."""
        cells = [cell_of(row) for row in frame.to_dict("records")]
        return add_targets(pd.DataFrame(self.evaluate_cells(cells)))


def _key_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in ("model", "k", "channel", "snr_db", "p", "bits_per_element", "modulation", "encoding",
                        "fading_gain", "loss_rate", "seed", *CODED_COLUMNS) if c in frame.columns]


class TableOracle:
    """Answers quality queries from a measured table, counting distinct cells like :class:`RealEvaluator`."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = add_targets(validate_cells(table)).reset_index(drop=True)
        self.columns = _key_columns(self.table)
        keys = self._keys(self.table)
        if keys.duplicated().any():
            raise ValueError("the table holds the same cell twice; deduplicate it first")
        self._index = pd.Series(range(len(keys)), index=keys)
        self._seen: set[str] = set()
        self.stats = EvaluatorStats()

    def _keys(self, frame: pd.DataFrame) -> pd.Index:
        return row_keys(validate_cells(frame), self.columns)

    def evaluate_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The table's rows for the cells of ``frame``; ValueError for a cell the table does not hold."""
        keys = self._keys(frame)
        missing = [k for k in keys if k not in self._index.index]
        if missing:
            raise ValueError(f"cell {missing[0]!r} is not in the table")
        new = set(keys) - self._seen
        self.stats.evaluations += len(new)
        self.stats.cache_hits += len(keys) - len(new)
        self.stats.wall_s += float(self.table.loc[self._index[list(new)], "wall_s"].sum()) if (
            new and "wall_s" in self.table.columns) else 0.0
        self._seen |= new
        return self.table.iloc[self._index[keys].to_numpy()].reset_index(drop=True)


__all__ = ["EvaluatorStats", "Oracle", "RealEvaluator", "TableOracle", "cell_of"]
