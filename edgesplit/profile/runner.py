"""Run a profile: validate, plan the missing cells, clean pass, evaluate group by group, save, summarise, plot.

``run_profile(config, inputs)`` is the whole job; the command line (:mod:`edgesplit.profile.command`) and the demo
call it. Evaluation is pluggable: by default cells run in this process; :mod:`cluster.profile_workers` provides a
factory that fans the same groups out to Ray workers sharing one copy of the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import torch
from tqdm.auto import tqdm

from edgesplit.models import LoadedModel
from edgesplit.outdir import check_writable_dir
from edgesplit.profile.cells import ProfileCell, enumerate_cells
from edgesplit.profile.config import ProfileConfig
from edgesplit.profile.engine import CellResult, PreparedWindows, evaluate_group, group_cells, prepare_windows
from edgesplit.profile.plots import write_plots
from edgesplit.profile.rows import CostContext, make_row
from edgesplit.profile.store import RunStore, rows_frame
from edgesplit.profile.summary import summarize

SUMMARY_FILE = "summary.csv"


@dataclass
class ProfileInputs:
    """The loaded model and the token stream a run evaluates."""

    model: LoadedModel
    """The model to split."""
    token_ids: torch.Tensor
    """1-D token stream (the first ``tokens`` of the corpus)."""
    corpus_name: str
    """What the text is, as written into every row."""

    def __post_init__(self) -> None:
        if self.token_ids.ndim != 1 or self.token_ids.numel() < 2:
            raise ValueError(f"token_ids must be a 1-D stream of at least 2 tokens, got {tuple(self.token_ids.shape)}")


def load_inputs(config: ProfileConfig) -> ProfileInputs:
    """Load the model and tokenise the corpus; ValueError with a clear message on any failure."""
    from edgesplit.models import load_model
    from edgesplit.quality import load_corpus, tokenize_corpus

    corpus = load_corpus(config.corpus)  # before the model: a bad corpus fails fast
    try:
        model = load_model(config.model, dtype=config.dtype, device=config.torch_device,
                           allow_cpu_half=config.allow_cpu_half)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot load model {config.model!r}: {err}") from None
    if model.tokenizer is None:
        raise ValueError(f"model {config.model!r} has no tokenizer; profiling needs one to tokenise the corpus")
    return ProfileInputs(model, tokenize_corpus(corpus, model.tokenizer, config.tokens), corpus.name)


class Evaluator(Protocol):
    """Evaluates groups of cells (from :func:`group_cells`), yielding each group's results as it finishes."""

    def __call__(self, groups: list[list[ProfileCell]]) -> Iterator[list[CellResult]]: ...


EvaluatorFactory = Callable[[LoadedModel, PreparedWindows, ProfileConfig], Evaluator]


def local_evaluator(model: LoadedModel, prepared: PreparedWindows, config: ProfileConfig) -> Evaluator:
    """Evaluate every group in this process, in order."""

    def evaluate(groups: list[list[ProfileCell]]) -> Iterator[list[CellResult]]:
        for group in groups:
            yield evaluate_group(model, prepared, group)

    return evaluate


@dataclass
class ProfileOutcome:
    """What a run did."""

    cells: pd.DataFrame
    """The whole saved table (earlier runs' cells included)."""
    computed: int
    """Cells evaluated by this run."""
    skipped: int
    """Cells of the grid already in the output."""
    files: list[Path] = field(default_factory=list)
    """Files written (table, config, summary, plots)."""


def plan(config: ProfileConfig, num_layers: int) -> tuple[RunStore, list[ProfileCell], list[ProfileCell]]:
    """Validate the output and return (store, every cell of the grid, the cells still to compute)."""
    check_writable_dir(config.out)
    store = RunStore(config.out)
    store.check_identity(config)
    cells = enumerate_cells(config.resolve_splits(num_layers), config.settings(), config.seed_list, config.fading)
    done = store.done_keys()
    return store, cells, [cell for cell in cells if cell.key not in done]


def run_profile(config: ProfileConfig, inputs: ProfileInputs, *, progress: bool = True,
                evaluator_factory: EvaluatorFactory = local_evaluator,
                on_group: Callable[[list[CellResult]], None] | None = None, plots: bool = True) -> ProfileOutcome:
    """Evaluate the cells of ``config`` missing from ``config.out`` and write table, config, summary and plots.

    ``on_group`` is called after each group's rows are saved (a hook for progress reporting and tests);
    ``plots=False`` skips the PNGs (a few seconds on a busy machine).
    """
    model = inputs.model
    store, cells, todo = plan(config, model.num_layers)
    store.write_config(config, corpus_name=inputs.corpus_name, num_layers=model.num_layers,
                       splits=list(config.resolve_splits(model.num_layers)), cells_in_grid=len(cells))
    table = store.load()
    if todo:
        table = _evaluate(config, inputs, store, table, todo, progress, evaluator_factory, on_group)
    files = [store.cells_path, store.config_path, *write_outputs(table, config.out, plots)]
    return ProfileOutcome(cells=table, computed=len(todo), skipped=len(cells) - len(todo), files=files)


def _evaluate(config: ProfileConfig, inputs: ProfileInputs, store: RunStore, table: pd.DataFrame,
              todo: list[ProfileCell], progress: bool, evaluator_factory: EvaluatorFactory,
              on_group: Callable[[list[CellResult]], None] | None) -> pd.DataFrame:
    model = inputs.model
    prepared = prepare_windows(model, inputs.token_ids, config.context, config.stride, config.batch_size)
    if progress:
        tqdm.write(f"clean pass: {len(prepared.windows)} windows, {prepared.scored_tokens} scored tokens in "
                   f"{prepared.clean_pass_s:.1f} s")
    costs = CostContext.build(model.model.config, config.device, config.edge, config.link,
                              min(config.context, int(inputs.token_ids.numel())))
    groups = group_cells(todo, model.num_layers, config.batch_size)
    evaluate = evaluator_factory(model, prepared, config)
    with tqdm(total=len(todo), unit="cell", desc="profile", disable=not progress, smoothing=0.1) as bar:
        for results in evaluate(groups):
            rows = [make_row(r, model=config.model, corpus=inputs.corpus_name, num_layers=model.num_layers,
                             costs=costs) for r in results]
            table = rows_frame(rows) if table.empty else pd.concat([table, rows_frame(rows)], ignore_index=True)
            store.save(table)
            bar.update(len(results))
            bar.set_postfix_str(f"k={results[0].cell.k} {results[0].cell.setting.label}")
            if on_group is not None:
                on_group(results)
    return store.load()


def write_outputs(table: pd.DataFrame, out: Path, plots: bool = True) -> list[Path]:
    """``summary.csv`` and (with ``plots``) the PNG plots of a table."""
    if table.empty:
        return []
    summary_path = Path(out) / SUMMARY_FILE
    summarize(table).to_csv(summary_path, index=False)
    return [summary_path, *(write_plots(table, Path(out)) if plots else [])]
