"""What ``edgesplit co-opt`` does besides parsing options: the quality table, the model profile, building and
measuring the chosen design, and the printed summaries.

Quality table. ``--table`` names a pruning sweep's ``cells.parquet`` (:mod:`edgesplit.pruning.sweep`). Without it the
command uses a **cached** sweep at ``$EDGESPLIT_CACHE/co_opt/<model>-<method>-<side>-1024tok/cells.parquet`` and, when
that does not exist yet, **measures a small one on the fly** there (the chosen method and side at four splits and
ratios 0.1 .. 0.6 and 0.8 — 28 cells, :data:`SMALL_TABLE_TOKENS` scored tokens of the default corpus; a few minutes on
a quiet CPU, longer on a busy one; the sweep resumes if interrupted, and the command says which table it used).

Measured quality. The chosen design is really built: :func:`edgesplit.pruning.prune.prune` with the chosen method,
ratio, split and side, then :func:`edgesplit.quality.evaluate_split` at the chosen k with the wire width applied to
what crosses the link (16 bits: float16 cast; 2..8 bits: per-token absmax quantisation). The text is the table's
own corpus when its sweep's ``config.json`` sits next to it (else ``--corpus``): calibration windows come from the
sweep's calibration range and the scored tokens are **held out** from both the calibration and the tokens the curves
were fitted on (they follow them). The dense model is scored on the same tokens, so the measured
log(ppl / ppl_dense) is directly comparable with the prediction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from edgesplit.pruning.co_opt import CoOptProblem, CoOptResult
from edgesplit.pruning.curves import CurveObjective

SMALL_TABLE_TOKENS = 1024
"""Scored tokens per cell of the table measured on the fly (4 windows of 256). The text-sampling error of a cell's
log(ppl / ppl_dense) is the window-to-window spread / sqrt(windows): measured on SmolLM2 magnitude k = 8, that spread
is 0.036 at ratio 0.3 and 0.12 at 0.5 (benchmarks/co_opt_measured.py prints it per design), so 512 tokens left
±7 % (1 s.e.) on a ratio-0.5 cell and 1,024 leave ±6 %; the first co-opt run measures 28 cells (a few minutes)."""

SMALL_TABLE_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
"""Ratios of the table measured on the fly (dense where perplexity turns up: with 0.2 / 0.4 / 0.6 / 0.8 only, the
curve between 0.4 and 0.6 over-predicted a chosen design by 24 %, benchmarks/co_opt_measured.py)."""


def load_profile(model: str):
    """ModelProfile of a built-in name, a local model directory or a hub id (config only, no weights)."""
    from transformers import AutoConfig

    from edgesplit.cost import ModelProfile
    from edgesplit.models import BUILTINS, builtin_dir

    try:
        source = builtin_dir(model) if model in BUILTINS else model
        return ModelProfile.from_config(AutoConfig.from_pretrained(source))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the config of model {model!r}: {' '.join(str(err).split())}") from None


def parse_bits(spec: str) -> tuple[tuple[int, ...], dict[int, float]]:
    """``"16"`` or ``"8=0.02,16"``: wire widths, each with its quality penalty (log ppl; 16 and 32 default to 0)."""
    choices, penalty = [], {16: 0.0, 32: 0.0}
    for item in (part.strip() for part in spec.split(",")):
        match = re.fullmatch(r"(\d+)(?:=([-+0-9.eE]+))?", item)
        if not match or not 1 <= int(match.group(1)) <= 32:
            raise ValueError(f"--bits: {item!r} is not a width in 1..32 with an optional penalty (e.g. 8=0.02)")
        bits = int(match.group(1))
        if match.group(2) is not None:
            penalty[bits] = float(match.group(2))
        elif bits not in penalty:
            raise ValueError(f"--bits: width {bits} needs its measured quality penalty, e.g. {bits}=0.02 (log ppl)")
        choices.append(bits)
    return tuple(dict.fromkeys(choices)), penalty


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def cached_table_dir(model: str, method: str, side: str) -> Path:
    """Where the on-the-fly table of (model, method, side) is cached."""
    from edgesplit.models import cache_root

    return cache_root() / "co_opt" / f"{_slug(model)}-{method}-{side}-{SMALL_TABLE_TOKENS}tok"


def _small_sweep(model: str, method: str, side: str, num_layers: int, out: Path, progress: bool) -> pd.DataFrame:
    from edgesplit.pruning.sweep import PruneSweepConfig, load_sweep_inputs, run_sweep

    quarters = {max(1, round(num_layers * i / 4)) for i in range(1, 5)}
    ks = tuple(sorted(quarters - ({num_layers} if side == "server" else set())) or (max(0, num_layers - 1),))
    config = PruneSweepConfig(out=out, model=model, methods=(method,), ratios=SMALL_TABLE_RATIOS, ks=ks,
                              sides=(side,), eval_tokens=SMALL_TABLE_TOKENS, context=256, calib_tokens=2048,
                              calib_windows=8, calib_length=128, wall_tokens=0)
    return run_sweep(config, load_sweep_inputs(config), progress=progress, plots=False).cells


def resolve_table(table: Path | None, model: str, method: str, side: str, num_layers: int,
                  progress: bool = True) -> tuple[pd.DataFrame, str, Path]:
    """(table, where it came from, its file) as described in the module docstring; ValueError when unusable."""
    if table is not None:
        if not Path(table).is_file():
            raise ValueError(f"--table {table}: no such file (a pruning sweep's cells.parquet)")
        try:
            return pd.read_parquet(table), f"file {table}", Path(table)
        except Exception as err:  # pyarrow raises several types for a file that is not parquet
            raise ValueError(f"--table {table} is not a readable parquet file: {err}") from None
    out = cached_table_dir(model, method, side)
    path = out / "cells.parquet"
    if path.is_file():
        return pd.read_parquet(path), f"cached table {path}", path
    try:
        frame = _small_sweep(model, method, side, num_layers, out, progress)
    except ImportError as err:
        raise ValueError(f"no --table given and a {method} table cannot be measured here ({err}); pass --table") \
            from None
    return frame, f"measured now, cached at {out}", path


@dataclass(frozen=True)
class TextPlan:
    """Which tokens calibrate the pruning and which are scored."""

    corpus: str
    """Corpus spec for :func:`edgesplit.quality.load_corpus`."""
    calib_range: tuple[int, int]
    """Token range the calibration windows are drawn from."""
    eval_range: tuple[int, int]
    """Token range scored (after everything the table used)."""
    context: int
    """Evaluation window."""


def text_plan(table_path: Path | None, corpus: str | None, eval_tokens: int, context: int | None) -> TextPlan:
    """The table sweep's corpus and ranges when its config.json is next to it, else ``corpus`` from token 0."""
    import json

    config_file = None if table_path is None else Path(table_path).parent / "config.json"
    sweep = json.loads(config_file.read_text()).get("config", {}) if config_file and config_file.is_file() else {}
    if corpus is None and sweep.get("corpus"):
        calib = (int(sweep["eval_tokens"]), int(sweep["eval_tokens"]) + int(sweep["calib_tokens"]))
        return TextPlan(corpus=str(sweep["corpus"]), calib_range=calib,
                        eval_range=(calib[1], calib[1] + eval_tokens), context=context or int(sweep["context"]))
    return TextPlan(corpus=corpus or "default", calib_range=(0, 2048), eval_range=(2048, 2048 + eval_tokens),
                    context=context or 256)


@dataclass(frozen=True)
class MeasuredQuality:
    """Perplexity of the built design and of the dense model on the same held-out tokens."""

    ppl: float
    """Perplexity of the pruned split model (wire width applied)."""
    ppl_dense: float
    """Perplexity of the dense model at the same split and wire width."""
    scored_tokens: int
    """Targets scored."""
    achieved_ratio: float
    """Fraction of the pruned layers' prunable weights actually removed."""
    corpus: str
    """What the text was."""
    window_losses: tuple[float, ...] = ()
    """Per evaluation window: mean over its targets of NLL(pruned) − NLL(dense), paired on the same tokens."""

    @property
    def loss(self) -> float:
        """Measured log(ppl / ppl_dense)."""
        return math.log(self.ppl / self.ppl_dense)

    @property
    def window_sd(self) -> float:
        """Spread of the paired loss from one evaluation window to the next (nan with fewer than 2 windows)."""
        n = len(self.window_losses)
        if n < 2:
            return math.nan
        mean = sum(self.window_losses) / n
        return math.sqrt(sum((v - mean) ** 2 for v in self.window_losses) / (n - 1))

    @property
    def loss_se(self) -> float:
        """Standard error of :attr:`loss` from text sampling alone (window sd / sqrt(windows))."""
        return self.window_sd / math.sqrt(len(self.window_losses)) if self.window_losses else math.nan


def wire_link(bits: int):
    """What the wire does to the hidden state at ``bits`` per element (None: lossless)."""
    if bits == 32:
        return None
    if bits == 16:
        return lambda x: x.half().to(x.dtype)
    from edgesplit.packet.quantize import dequantize_absmax, quantize_absmax

    return lambda x: dequantize_absmax(*quantize_absmax(x, bits)).to(x.dtype)


def measure_design(model: str, problem: CoOptProblem, k: int, rho: float, bits: int, text: TextPlan
                   ) -> MeasuredQuality:
    """Build the chosen pruned split model and evaluate it (module docstring)."""
    from edgesplit.models import load_model
    from edgesplit.pruning.calibration import calibration_windows
    from edgesplit.pruning.prune import prune
    from edgesplit.pruning.spec import PruneConfig
    from edgesplit.quality import evaluate_split, load_corpus, tokenize_corpus

    corpus = load_corpus(text.corpus)
    dense = load_model(model)
    if dense.tokenizer is None:
        raise ValueError(f"model {model!r} has no tokenizer; --measure needs one (or pass --no-measure)")
    ids = tokenize_corpus(corpus, dense.tokenizer, text.eval_range[1])
    eval_ids, calib_ids = ids[slice(*text.eval_range)], ids[slice(*text.calib_range)]
    link = wire_link(bits) if 0 < k < dense.num_layers else None
    config = PruneConfig(method=problem.method, ratio=round(float(rho), 6), k=k, side=problem.side)
    pruned, achieved = dense, 0.0
    if rho > 0 and len(config.layers(dense.num_layers)):
        result = prune(dense, config, calibration_windows(calib_ids, 8, min(128, calib_ids.numel()), seed=0))
        pruned, achieved = result.model, result.achieved_ratio
    # One evaluation window at a time (the windows do not overlap, so the pooled perplexity is the one evaluate_split
    # gives over the whole range) to keep each window's paired loss: its spread is the text-sampling error.
    nll = dense_nll = 0.0
    scored, window_losses = 0, []
    for begin in range(0, int(eval_ids.numel()), text.context):
        chunk = eval_ids[begin:begin + text.context]
        if chunk.numel() < 2:
            continue
        measured = evaluate_split(pruned, chunk, k, link, context=text.context)
        reference = evaluate_split(dense, chunk, k, link, context=text.context) if pruned is not dense else measured
        nll, dense_nll, scored = nll + measured.nll_sum, dense_nll + reference.nll_sum, scored + measured.scored_tokens
        window_losses.append((measured.nll_sum - reference.nll_sum) / measured.scored_tokens)
    return MeasuredQuality(ppl=math.exp(nll / scored), ppl_dense=math.exp(dense_nll / scored), scored_tokens=scored,
                           achieved_ratio=achieved,
                           corpus=f"{corpus.name} tokens {text.eval_range[0]}..{text.eval_range[1]}",
                           window_losses=tuple(window_losses))


def describe(result: CoOptResult, objective: CurveObjective, problem: CoOptProblem) -> list[str]:
    """Lines describing the chosen design: decision, quality, latency and energy against the budgets."""
    d = result.design
    c = d.cost
    L = problem.model.num_layers
    where = "fully on-server" if d.k == 0 else "fully on-device" if d.k == L else f"UE runs layers 0..{d.k - 1}"
    wire = "token ids" if d.k == 0 else "nothing" if d.k == L else f"{d.bits}-bit hidden states"
    lines = [f"chosen: k={d.k} ({where}), {problem.method} {problem.side} rho={d.rho:.4f}, p={d.tx_power_w:.4g} W, "
             f"f={d.f_hz / 1e9:.4g} GHz, wire {wire}",
             f"predicted: log(ppl/ppl_dense) {d.loss:.4f}, ppl {objective.ppl_dense * math.exp(d.loss):.3f} "
             f"(dense {objective.ppl_dense:.3f})" + (" [k beyond the measured splits]"
                                                     if objective.extrapolated(d.k) else ""),
             f"latency {c.latency_s * 1e3:.4g} of {problem.latency_budget_s * 1e3:.4g} ms (UE "
             f"{c.device_compute_s * 1e3:.4g}, uplink {c.uplink_s * 1e3:.4g}, edge {c.edge_compute_s * 1e3:.4g}, "
             f"downlink {c.downlink_s * 1e3:.4g})",
             f"UE energy {c.energy_j * 1e3:.4g} of {problem.energy_budget_j * 1e3:.4g} mJ (compute "
             f"{c.compute_energy_j * 1e3:.4g}, transmit {c.tx_energy_j * 1e3:.4g}); UE memory "
             f"{c.device_memory_bytes / 1e9:.4g} of {problem.device_memory_bytes / 1e9:.4g} GB; solved in "
             f"{result.solve_s * 1e3:.3g} ms"]
    return lines


def baseline_lines(results: dict[str, CoOptResult], ppl_dense: float) -> list[str]:
    """One line per scheme: design and predicted perplexity, or infeasible."""
    lines = []
    for name, result in results.items():
        d = result.design
        if d is None:
            lines.append(f"  {name:12s} infeasible")
            continue
        lines.append(f"  {name:12s} k={d.k:3d} rho={d.rho:.3f} p={d.tx_power_w:.3g} W f={d.f_hz / 1e9:.3g} GHz  "
                     f"ppl {ppl_dense * math.exp(d.loss):.3f}")
    return lines


def design_record(result: CoOptResult, problem: CoOptProblem, measured: MeasuredQuality | None,
                  source: str) -> dict[str, Any]:
    """JSON-ready record of one run."""
    from dataclasses import asdict

    record: dict[str, Any] = {"table": source, "method": problem.method, "side": problem.side,
                              "latency_budget_s": problem.latency_budget_s, "energy_budget_j": problem.energy_budget_j,
                              "snr_db": problem.channel.snr_db, "design": result.design.to_dict()}
    if measured is not None:
        record["measured"] = {**asdict(measured), "loss": measured.loss, "loss_se": measured.loss_se,
                              "window_sd": measured.window_sd}
    return record


def run_single(problem: CoOptProblem, objective: CurveObjective, bound, *, model: str, text: TextPlan | None,
               out: Path | None, source: str, fixed_ratio: float, echo) -> int:
    """Solve, print the design, the baselines and (optionally) the measured quality; 1 when infeasible."""
    import json

    from edgesplit.pruning.co_opt_baselines import compare
    from edgesplit.pruning.co_opt_report import explain

    results = compare(problem, objective, bound=bound, fixed_ratio=fixed_ratio)
    joint = results["joint"]
    echo(f"quality table: {source}; objective {objective.name} (measured splits {objective.measured_splits})")
    if not joint.feasible:
        echo(explain(problem, objective).message())
        return 1
    for line in describe(joint, objective, problem):
        echo(line)
    echo("baselines (same solver, restricted):")
    for line in baseline_lines(results, objective.ppl_dense):
        echo(line)
    measured = None
    if text is not None:
        d = joint.design
        try:
            measured = measure_design(model, problem, d.k, d.rho, d.bits, text)
        except ImportError as err:
            raise ValueError(f"--measure cannot build {problem.method} pruning here ({err}); pass --no-measure") \
                from None
        echo(f"measured ({measured.scored_tokens} held-out targets, {measured.corpus}): ppl {measured.ppl:.3f} "
             f"(dense {measured.ppl_dense:.3f}), log(ppl/ppl_dense) {measured.loss:.4f} ± {measured.loss_se:.4f} "
             f"(text-sampling s.e. over {len(measured.window_losses)} windows) vs predicted {d.loss:.4f}; "
             f"achieved ratio {measured.achieved_ratio:.4f}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "design.json"
        path.write_text(json.dumps(design_record(joint, problem, measured, source), indent=2, default=str))
        echo(f"wrote {path}")
    return 0


def run_budget_sweep(problem: CoOptProblem, objective: CurveObjective, bound, *, latency_grid_s, energy_grid_j,
                     out: Path, fixed_ratio: float, echo) -> list[Path]:
    """Sweep the budgets; write sweep.parquet, baselines.csv and the plots; print the verdicts."""
    from edgesplit.pruning.co_opt_sweep import budget_sweep, plot_sweep, versus_baselines

    frame = budget_sweep(problem, objective, latency_grid_s, energy_grid_j, bound=bound, fixed_ratio=fixed_ratio)
    verdicts = versus_baselines(frame)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "sweep.parquet", index=False)
    verdicts.to_csv(out / "baselines.csv", index=False)
    files = [out / "sweep.parquet", out / "baselines.csv", *plot_sweep(frame, out, title=objective.name)]
    joint = frame[frame["scheme"] == "joint"]
    echo(f"{len(joint)} budget points, joint design feasible at {int(joint['feasible'].sum())}")
    echo(verdicts.to_string(index=False))
    echo("wrote " + ", ".join(str(path) for path in files))
    return files
