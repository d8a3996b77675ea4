"""A pruning sweep: method × pattern × ratio × split k × side × seed, measured on real text (core; no Ray).

    config = PruneSweepConfig(out=Path("runs/prune_sweep"), corpus="../shared/data/wikitext-2-raw/wiki.test.raw",
                              methods=("magnitude", "wanda"), ratios=(0.1, 0.3, 0.5), ks=(5, 10), sides=("device",))
    outcome = run_sweep(config, load_sweep_inputs(config))       # resumable: rerun to fill in missing cells

**Text.** The corpus is tokenised once. Evaluation uses tokens ``[0, eval_tokens)`` in non-overlapping windows of
``context``; calibration (Wanda, SparseGPT, structured) draws ``calib_windows`` seeded windows of ``calib_length``
from tokens ``[eval_tokens, eval_tokens + calib_tokens)`` — disjoint from what is scored. Both ranges are written
into ``config.json``.

**Cells.** Every method runs at every ratio with no pattern; unstructured methods also run each N:M pattern of
``patterns`` (at its fixed ratio ``1 - N/M``). A cell whose side selects no layer (device at ``k = 0``, server at
``k = L``) is the dense model: recorded with zero distortion, nothing pruned. The dense model runs once
(:class:`~edgesplit.pruning.distortion.DenseReference`); each pruned model runs once, from the first pruned layer.

**Cost columns.** ``device_*`` / ``server_*`` are, per side, the FLOPs of one causal prefill of ``context`` tokens,
the parameter bytes and the KV-cache bytes of that prefill (both at ``bytes_per_param``), with ``dense_*``
beside them. For unstructured methods the savings are **nominal** (``nominal`` is true): every zeroed weight is
counted as saving its 2 FLOPs per token and its bytes, which only a sparse kernel / format would realise (dense
kernels still do the work; the KV cache is unchanged). For ``structured`` the matrices are really smaller: the
figures come from the pruned modules' shapes (:func:`~edgesplit.pruning.structured_shapes.pruned_profile`, so
attention over the context and the KV cache shrink with the heads removed), and the wall time of the pruned layers
is measured against the dense ones side by side (``wall_*`` columns; NaN for unstructured cells).

Outputs in ``out``: ``cells.parquet`` (one row per cell, written atomically after each), ``layers.parquet`` (the
per-matrix records of every cell), ``config.json`` (config, identity, text ranges, seeds, versions) and the plots of
:mod:`edgesplit.pruning.sweep_plots`. A rerun with the same identity skips finished cells; another identity is
refused.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from edgesplit.pruning.distortion import DenseReference, param_distortion
from edgesplit.pruning.spec import METHODS, PATTERNS, SIDES, UNSTRUCTURED_METHODS, PruneConfig

CELLS_FILE, LAYERS_FILE, CONFIG_FILE = "cells.parquet", "layers.parquet", "config.json"
KEY_COLUMNS = ("method", "pattern", "side", "k", "ratio", "seed")
IDENTITY_FIELDS = ("model", "corpus", "eval_tokens", "context", "calib_tokens", "calib_windows", "calib_length",
                   "bytes_per_param")
"""Fields two runs must share to write into one directory (the grid and seeds may grow)."""


@dataclass(frozen=True)
class PruneSweepConfig:
    """Everything that defines a pruning sweep (validated on construction; the model depth is checked later)."""

    out: Path
    """Output directory (``cells.parquet``, ``layers.parquet``, ``config.json``, plots)."""
    model: str = "smollm2-135m"
    """Built-in model name, local directory or hub id."""
    corpus: str = "default"
    """Corpus spec for :func:`edgesplit.quality.load_corpus` (default, wikitext2 or a text file)."""
    methods: tuple[str, ...] = ("magnitude", "wanda", "sparsegpt", "structured")
    """Pruning methods (:data:`~edgesplit.pruning.spec.METHODS`)."""
    patterns: tuple[str | None, ...] = (None,)
    """``None`` sweeps the ratios; ``"2:4"`` / ``"4:8"`` add one cell per unstructured method at ratio ``1 - N/M``."""
    ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
    """Pruning ratios of the unpatterned cells, each in (0, 0.95]."""
    ks: tuple[int, ...] = (10,)
    """Split points."""
    sides: tuple[str, ...] = ("device",)
    """Which side of each split is pruned (:data:`~edgesplit.pruning.spec.SIDES`)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds (calibration window draw and any tie break)."""
    eval_tokens: int = 1024
    """Tokens scored: the first ``eval_tokens`` of the corpus."""
    context: int = 512
    """Evaluation window length (non-overlapping windows); also the prefill length of the FLOPs columns."""
    calib_tokens: int = 4096
    """Tokens of the calibration range, right after the evaluation range."""
    calib_windows: int = 16
    """Calibration windows drawn per seed."""
    calib_length: int = 256
    """Tokens per calibration window."""
    batch_size: int = 1
    """Windows per forward pass."""
    bytes_per_param: float = 2.0
    """Bytes of one stored weight in the memory columns (2: fp16 deployment)."""
    wall_tokens: int = 128
    """Tokens of the side-by-side wall-time measurement of structured cells (0: skip it)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form facts recorded in ``config.json`` (e.g. the command line)."""

    def __post_init__(self) -> None:
        _check_names("method", self.methods, METHODS)
        _check_names("side", self.sides, SIDES)
        _check_names("pattern", self.patterns, PATTERNS, none_ok=True)
        for name, values in (("ratios", self.ratios), ("ks", self.ks), ("seeds", self.seeds)):
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be a non-empty list without repeats, got {values!r}")
        if any(not isinstance(r, int | float) or not 0.0 < float(r) <= 0.95 for r in self.ratios):
            raise ValueError(f"ratios must lie in (0, 0.95], got {self.ratios!r}")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in self.ks):
            raise ValueError(f"ks must be non-negative integers, got {self.ks!r}")
        for name in ("eval_tokens", "context", "calib_tokens", "calib_windows", "calib_length", "batch_size"):
            if getattr(self, name) < (2 if name in ("eval_tokens", "context") else 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.calib_length > self.calib_tokens:
            raise ValueError(f"calib_length ({self.calib_length}) exceeds calib_tokens ({self.calib_tokens})")
        if not self.bytes_per_param > 0 or self.wall_tokens < 0:
            raise ValueError("bytes_per_param must be > 0 and wall_tokens >= 0")

    def prune_configs(self) -> list[PruneConfig]:
        """Every cell of the grid as a validated :class:`PruneConfig`, in run order."""
        cells = []
        for method in self.methods:
            for pattern in self.patterns:
                if pattern is not None and method not in UNSTRUCTURED_METHODS:
                    continue
                ratios = self.ratios if pattern is None else (_pattern_ratio(pattern),)
                cells += [PruneConfig(method, float(r), k, side, pattern, seed) for r in ratios for k in self.ks
                          for side in self.sides for seed in self.seeds]
        return cells

    def check_depth(self, num_layers: int) -> None:
        """ValueError when a split is beyond the model's depth."""
        bad = [k for k in self.ks if k > num_layers]
        if bad:
            raise ValueError(f"split k={bad[0]} is out of range: the model has {num_layers} layers (k in "
                             f"0..{num_layers})")

    def identity(self) -> dict[str, Any]:
        """What must match for a rerun to share the output directory."""
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready config."""
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def _check_names(name: str, values, accepted, none_ok: bool = False) -> None:
    if not values:
        raise ValueError(f"{name}s: empty list; accepted: {', '.join(str(a) for a in accepted)}")
    bad = [v for v in values if v not in accepted or (v is None and not none_ok)]
    if bad:
        shown = ", ".join("none" if a is None else str(a) for a in accepted)
        raise ValueError(f"unknown {name} {bad[0]!r}; accepted: {shown}")


def _pattern_ratio(pattern: str) -> float:
    n, m = (int(v) for v in pattern.split(":"))
    return 1 - n / m


def cell_key(config: PruneConfig) -> tuple:
    """The key of a cell in the table (pattern ``None`` spelled ``"none"`` so keys compare)."""
    return (config.method, config.pattern or "none", config.side, config.k, round(float(config.ratio), 10),
            config.seed)


def row_key(row: dict | pd.Series) -> tuple:
    """:func:`cell_key` of a saved row (cells or layers table)."""
    pattern = row["pattern"] if isinstance(row["pattern"], str) else "none"
    return (row["method"], pattern, row["side"], int(row["k"]), round(float(row["ratio"]), 10), int(row["seed"]))


# ---- inputs --------------------------------------------------------------------------------------------------------
@dataclass
class SweepInputs:
    """The dense model and the two disjoint token ranges of a sweep."""

    model: Any
    """The dense :class:`~edgesplit.models.LoadedModel` (never modified)."""
    eval_ids: torch.Tensor
    """1-D tokens scored (``[0, eval_tokens)`` of the corpus)."""
    calib_ids: torch.Tensor
    """1-D tokens calibration windows are drawn from (``[eval_tokens, eval_tokens + calib_tokens)``)."""
    corpus_name: str
    """What the text is, as written into every row."""


def load_sweep_inputs(config: PruneSweepConfig) -> SweepInputs:
    """Load corpus (first, so a bad one fails fast) and model, tokenise, check the depth; ValueError on failure."""
    from edgesplit.models import load_model
    from edgesplit.quality import load_corpus, tokenize_corpus

    corpus = load_corpus(config.corpus)
    try:
        model = load_model(config.model)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot load model {config.model!r}: {err}") from None
    if model.tokenizer is None:
        raise ValueError(f"model {config.model!r} has no tokenizer; the sweep needs one to tokenise the corpus")
    config.check_depth(model.num_layers)
    ids = tokenize_corpus(corpus, model.tokenizer, config.eval_tokens + config.calib_tokens)
    return SweepInputs(model, ids[:config.eval_tokens], ids[config.eval_tokens:], corpus.name)


# ---- cost columns --------------------------------------------------------------------------------------------------
def side_costs(dense, pruned, records, k: int, tokens: int, bytes_per_param: float,
               structured: bool = False) -> dict[str, float]:
    """FLOPs of a ``tokens``-token prefill, parameter and KV-cache bytes per side, dense and pruned.

    Structured: from the pruned modules' shapes (:func:`~edgesplit.pruning.structured_shapes.pruned_profile`).
    Unstructured (nominal): the dense figures minus 2 FLOPs per token and ``bytes_per_param`` per removed weight.
    """
    from edgesplit.cost import ModelProfile

    profile = ModelProfile.from_config(dense.model.config)
    after = profile
    if structured:
        from edgesplit.pruning.structured_shapes import pruned_profile

        after = pruned_profile(pruned)
    removed: dict[int, int] = {}
    for r in records:
        removed[r.layer] = removed.get(r.layer, 0) + (0 if structured else r.removed)
    row = {}
    for side, lo, hi in (("device", 0, k), ("server", k, profile.num_layers)):
        gone = sum(removed.get(i, 0) for i in range(lo, hi))
        (dense_flops, dense_params), (flops, params) = (_side(p, side, k, tokens) for p in (profile, after))
        row[f"dense_{side}_flops"] = float(dense_flops)
        row[f"{side}_flops"] = float(flops - 2 * gone * tokens)
        row[f"dense_{side}_param_bytes"] = dense_params * bytes_per_param
        row[f"{side}_param_bytes"] = (params - gone) * bytes_per_param
        row[f"dense_{side}_kv_bytes"] = profile.kv_cache_bytes(lo, hi, tokens, bytes_per_param)
        row[f"{side}_kv_bytes"] = after.kv_cache_bytes(lo, hi, tokens, bytes_per_param)
    return row


def _side(profile, side: str, k: int, tokens: int) -> tuple[int, int]:
    """(prefill FLOPs, parameters) of one side of split ``k``."""
    if side == "device":
        return profile.device_flops(k, tokens), profile.device_params(k)
    return profile.edge_flops(k, tokens), profile.edge_params(k)


@torch.inference_mode()
def measure_wall(dense, pruned, layers: range, tokens: int, repeats: int = 3) -> tuple[float, float]:
    """Median wall time (s) of running ``layers`` of the dense and the pruned model on one input, interleaved."""
    hidden = torch.randn(1, tokens, dense.hidden_size, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(tokens).unsqueeze(0)
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    for _ in range(repeats):
        for name, model in (("dense", dense), ("pruned", pruned)):
            inputs = model.adapter.prepare(hidden, None, positions, None, layers.start, layers.stop)
            started = time.perf_counter()
            model.adapter.run_layers(hidden, layers.start, layers.stop, inputs, None)
            times[name].append(time.perf_counter() - started)
    return statistics.median(times["dense"]), statistics.median(times["pruned"])


# ---- one cell ------------------------------------------------------------------------------------------------------
def evaluate_cell(config: PruneConfig, inputs: SweepInputs, reference: DenseReference,
                  sweep: PruneSweepConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Prune, measure, cost one cell: its table row and its per-matrix records."""
    from edgesplit.pruning.calibration import calibration_windows
    from edgesplit.pruning.prune import prune

    dense = inputs.model
    layers = config.layers(dense.num_layers)
    started = time.perf_counter()
    if len(layers) == 0:
        pruned, records, calib_s, prune_s = dense, [], 0.0, 0.0
    else:
        calib = calibration_windows(inputs.calib_ids, sweep.calib_windows, sweep.calib_length, seed=config.seed)
        result = prune(dense, config, calib)
        pruned, records, calib_s, prune_s = result.model, result.layers, result.calibration_s, result.prune_s
    params = param_distortion(records)
    start = layers.start if layers.start in reference.splits else 0
    measured = reference.compare(pruned, config.k, start_layer=min(start, config.k))
    wall_dense = wall_pruned = float("nan")
    if config.method not in UNSTRUCTURED_METHODS and len(layers) and sweep.wall_tokens:
        wall_dense, wall_pruned = measure_wall(dense, pruned, layers, sweep.wall_tokens)
    row = {
        "model": sweep.model, "corpus": inputs.corpus_name, "num_layers": dense.num_layers,
        "method": config.method, "pattern": config.pattern, "side": config.side, "k": config.k,
        "ratio": float(config.ratio), "seed": config.seed, "label": config.label,
        "achieved_ratio": params.achieved_ratio, "param_dist_sq": params.total_sq,
        "param_weight_sq": params.weight_sq, "param_dist_rel": params.relative,
        "ppl": measured.perplexity, "ppl_dense": measured.dense_perplexity, "kl": measured.kl_nats,
        "hidden_mse": measured.hidden_mse, "hidden_rel": measured.hidden_rel, "logits_mse": measured.logits_mse,
        "top1": measured.top1_agreement, "scored_tokens": measured.scored_tokens,
        "nominal": config.method in UNSTRUCTURED_METHODS, "flops_tokens": sweep.context,
        **side_costs(dense, pruned, records, config.k, sweep.context, sweep.bytes_per_param,
                     structured=config.method not in UNSTRUCTURED_METHODS),
        "wall_dense_s": wall_dense, "wall_pruned_s": wall_pruned,
        "calibration_s": calib_s, "prune_s": prune_s, "cell_s": time.perf_counter() - started,
    }
    layer_rows = [{**{c: row[c] for c in KEY_COLUMNS}, **asdict(r)} for r in records]
    return row, layer_rows


# ---- the run -------------------------------------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    """What a sweep run did."""

    cells: pd.DataFrame
    """The whole saved table (earlier runs' cells included)."""
    computed: int
    """Cells evaluated by this run."""
    skipped: int
    """Cells of the grid already in the output."""
    files: list[Path] = field(default_factory=list)
    """Files written."""


class SweepStore:
    """Reads and writes one sweep directory (atomic replaces; identity checked before any work)."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)

    def _read(self, name: str) -> pd.DataFrame:
        path = self.out / name
        return pd.read_parquet(path) if path.is_file() else pd.DataFrame()

    def cells(self) -> pd.DataFrame:
        """The saved cell table (empty when none)."""
        return self._read(CELLS_FILE)

    def layers(self) -> pd.DataFrame:
        """The saved per-matrix records (empty when none)."""
        return self._read(LAYERS_FILE)

    def check_identity(self, config: PruneSweepConfig) -> None:
        """ValueError when the directory holds a run with another identity."""
        path = self.out / CONFIG_FILE
        if not path.is_file():
            if (self.out / CELLS_FILE).exists():
                raise ValueError(f"{self.out / CELLS_FILE} exists without {CONFIG_FILE}; use another --out")
            return
        before, now = json.loads(path.read_text()).get("identity", {}), json.loads(json.dumps(config.identity()))
        diffs = [f"{key}: {before.get(key)!r} there, {now[key]!r} now" for key in now if before.get(key) != now[key]]
        if diffs:
            raise ValueError(f"{self.out} holds a different sweep ({'; '.join(diffs)}); use another --out or the "
                             f"same settings to resume")

    def write_config(self, config: PruneSweepConfig, **facts: Any) -> None:
        """``config.json``: config, identity, facts, package versions, earlier invocations under ``history``."""
        from edgesplit.profile.store import package_versions

        path = self.out / CONFIG_FILE
        before = json.loads(path.read_text()) if path.is_file() else None
        history = [] if before is None else [*before.get("history", []), before.get("config")]
        data = {"config": config.to_dict(), "identity": config.identity(), **facts, "versions": package_versions(),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "history": history}
        self._atomic(CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))

    def save(self, cells: pd.DataFrame, layers: pd.DataFrame) -> None:
        """Atomically replace both tables."""
        self._atomic(LAYERS_FILE, lambda tmp: layers.to_parquet(tmp, index=False))
        self._atomic(CELLS_FILE, lambda tmp: cells.to_parquet(tmp, index=False))

    def _atomic(self, name: str, write) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{name}.{os.getpid()}.tmp"
        write(tmp)
        os.replace(tmp, self.out / name)


def run_sweep(config: PruneSweepConfig, inputs: SweepInputs, *, progress: bool = True,
              plots: bool = True) -> SweepOutcome:
    """Evaluate the cells of ``config`` missing from ``config.out``; write tables, config and plots."""
    store = SweepStore(config.out)
    store.check_identity(config)
    config.check_depth(inputs.model.num_layers)
    grid = config.prune_configs()
    cells, layer_table = store.cells(), store.layers()
    done = {row_key(row) for _, row in cells.iterrows()}
    todo = [c for c in grid if cell_key(c) not in done]
    store.write_config(config, corpus_name=inputs.corpus_name, num_layers=inputs.model.num_layers,
                       eval_range=[0, config.eval_tokens],
                       calib_range=[config.eval_tokens, config.eval_tokens + int(inputs.calib_ids.numel())],
                       cells_in_grid=len(grid), seeds=list(config.seeds))
    if todo:
        cells, layer_table = _evaluate(config, inputs, store, cells, layer_table, todo, progress)
    files = [store.out / CELLS_FILE, store.out / LAYERS_FILE, store.out / CONFIG_FILE]
    if plots and not cells.empty:
        from edgesplit.pruning.sweep_plots import write_plots

        files += write_plots(cells, store.out)
    return SweepOutcome(cells=cells, computed=len(todo), skipped=len(grid) - len(todo), files=files)


def _evaluate(config: PruneSweepConfig, inputs: SweepInputs, store: SweepStore, cells: pd.DataFrame,
              layer_table: pd.DataFrame, todo: list[PruneConfig], progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    started = time.perf_counter()
    rows, layer_rows = cells.to_dict("records"), layer_table.to_dict("records")
    reference = DenseReference(inputs.model, inputs.eval_ids, {c.k for c in todo}, context=config.context,
                               batch_size=config.batch_size)
    if progress:
        tqdm.write(f"dense pass: {reference.scored_tokens} scored tokens in {time.perf_counter() - started:.1f} s")
    with tqdm(total=len(todo), unit="cell", desc="prune sweep", disable=not progress, smoothing=0.2) as bar:
        for cell in todo:
            bar.set_postfix_str(cell.label)
            row, records = evaluate_cell(cell, inputs, reference, config)
            rows.append(row)
            layer_rows += records
            cells, layer_table = pd.DataFrame(rows), pd.DataFrame(layer_rows)
            store.save(cells, layer_table)
            bar.update(1)
    return cells, layer_table


__all__ = ["KEY_COLUMNS", "PruneSweepConfig", "SweepInputs", "SweepOutcome", "SweepStore", "cell_key",
           "evaluate_cell", "load_sweep_inputs", "measure_wall", "row_key", "run_sweep", "side_costs"]
