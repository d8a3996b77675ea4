"""``edgesplit prune``: prune one side of a split and measure what it did, or sweep a grid of prunings.

edgesplit prune --method wanda --ratio 0.5 --side device -k 10 --out runs/prune
edgesplit prune --method sparsegpt --pattern 2:4 --side server -k 20 \\
    --corpus ../shared/data/wikitext-2-raw/wiki.test.raw --out runs/prune
edgesplit prune --sweep --methods magnitude,wanda,sparsegpt,structured --patterns none,2:4 --ratios 0.1:0.7:0.2 \\
    --ks 5,10,15,20 --sides device,server --tokens 1024 --out runs/prune_sweep

One configuration prints the per-layer records (weights removed, ``||ΔW||²`` absolute and relative) and the measured
distortions (perplexity dense → pruned, KL, hidden-state MSE at the split, logits MSE, top-1 agreement) with the
compute and memory saved (nominal for unstructured methods). Both modes write ``cells.parquet``,
``layers.parquet``, ``config.json`` and plots into ``--out`` (see :mod:`edgesplit.pruning.sweep`); rerunning
resumes, and single runs into one directory accumulate rows. Everything is validated before any work (method,
ratio, k, side, pattern, grids, output directory, an existing run's identity, corpus, model, k against its depth);
bad input prints ``error: …`` on stderr and exits with status 2. Ctrl-C keeps every finished cell (exit 130).
Registered by ``edgesplit.cli`` as ``app.command("prune")(prune_command)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgesplit.clierrors import fail, require_writable_dir

DEFAULTS = {"method": "wanda", "ratio": 0.5, "side": "device", "k": 10, "pattern": "none", "seed": 0}
SWEEP_DEFAULTS = {"methods": "magnitude,wanda,sparsegpt,structured", "patterns": "none,2:4", "ratios": "0.1:0.7:0.2",
                  "ks": "5,10,15,20", "sides": "device,server", "seeds": "0"}
PATTERN_NAMES = ("none", "2:4", "4:8")


def _single_grid(single: dict) -> dict:
    from edgesplit.pruning.spec import PruneConfig

    values = {name: DEFAULTS[name] if value is None else value for name, value in single.items()}
    pattern = None if str(values["pattern"]).lower() == "none" else values["pattern"]
    PruneConfig(method=values["method"], ratio=values["ratio"], k=values["k"], side=values["side"], pattern=pattern,
                seed=values["seed"])  # every single-config check, before any work
    return {"methods": (values["method"],), "patterns": (pattern,), "ratios": (float(values["ratio"]),),
            "ks": (values["k"],), "sides": (values["side"],), "seeds": (values["seed"],)}


def _sweep_grid(grid: dict) -> dict:
    from edgesplit.profile.grid import parse_float_grid, parse_int_grid, parse_str_grid
    from edgesplit.pruning.spec import METHODS, SIDES

    spec = {name: SWEEP_DEFAULTS[name] if value is None else value for name, value in grid.items()}
    patterns = parse_str_grid(spec["patterns"], "--patterns", PATTERN_NAMES)
    return {"methods": parse_str_grid(spec["methods"], "--methods", METHODS),
            "patterns": tuple(None if p == "none" else p for p in patterns),
            "ratios": parse_float_grid(spec["ratios"], "--ratios", lambda v: 0 < v <= 0.95, "ratios in (0, 0.95]"),
            "ks": parse_int_grid(spec["ks"], "--ks", low=0), "sides": parse_str_grid(spec["sides"], "--sides", SIDES),
            "seeds": parse_int_grid(spec["seeds"], "--seeds", low=0)}


def _build_config(sweep: bool, single: dict, grid: dict, **settings):
    from edgesplit.pruning.sweep import PruneSweepConfig

    if sweep:
        given = [{"k": "-k"}.get(name, f"--{name}") for name, value in single.items() if value is not None]
        if given:
            fail(f"{', '.join(given)} describe{'s' if len(given) == 1 else ''} one configuration; with --sweep use "
                 f"--methods/--patterns/--ratios/--ks/--sides/--seeds")
    else:
        given = [f"--{name}" for name, value in grid.items() if value is not None]
        if given:
            fail(f"{', '.join(given)} {'is a sweep option' if len(given) == 1 else 'are sweep options'}; add --sweep "
                 f"(one configuration takes --method/--ratio/-k/--side/--pattern/--seed)")
    axes = _sweep_grid(grid) if sweep else _single_grid(single)
    return PruneSweepConfig(**axes, **settings, extra={"argv": list(sys.argv), "mode": "sweep" if sweep else "one"})


def _fmt_flops(row, side: str) -> str:
    dense, pruned = row[f"dense_{side}_flops"], row[f"{side}_flops"]
    saved = 1 - pruned / dense if dense else 0.0
    return f"{side} {pruned / 1e9:.3f} GFLOP of {dense / 1e9:.3f} ({saved:.1%} saved)"


def _report_one(cells, out: Path, key: tuple) -> None:
    from edgesplit.pruning.sweep import SweepStore, row_key

    row = cells[[row_key(r) == key for _, r in cells.iterrows()]].iloc[-1]
    layers = SweepStore(out).layers()
    if len(layers):
        layers = layers[[row_key(r) == key for _, r in layers.iterrows()]]
    typer.echo(f"{row['label']}: {int(row['k'])} device layers of {int(row['num_layers'])}; achieved ratio "
               f"{row['achieved_ratio']:.4f}")
    if len(layers):
        per_layer = layers.groupby("layer")[["numel", "removed", "param_dist_sq", "weight_sq"]].sum()
        typer.echo("layer  matrices   removed/weights   ||dW||^2      relative")
        counts = layers.groupby("layer").size()
        for index, r in per_layer.iterrows():
            typer.echo(f"{index:5d}  {counts[index]:8d}   {int(r['removed']):>8d}/{int(r['numel']):<8d} "
                       f"{r['param_dist_sq']:12.5g}  {r['param_dist_sq'] / r['weight_sq']:.5f}")
    typer.echo(f"parameter distortion ||dW||^2 = {row['param_dist_sq']:.6g} (relative {row['param_dist_rel']:.5f})")
    typer.echo(f"perplexity {row['ppl_dense']:.3f} -> {row['ppl']:.3f}; KL {row['kl']:.5f} nats/token; top-1 "
               f"agreement {row['top1']:.4f}; hidden MSE at k {row['hidden_mse']:.6g} (relative "
               f"{row['hidden_rel']:.3g}); logits MSE {row['logits_mse']:.6g} ({int(row['scored_tokens'])} tokens)")
    nominal = " — nominal: unstructured zeros save nothing without a sparse kernel" if row["nominal"] else ""
    typer.echo(f"prefill of {int(row['flops_tokens'])} tokens: {_fmt_flops(row, 'device')}, "
               f"{_fmt_flops(row, 'server')}{nominal}")
    mb = {name: row[name] / 1e6 for name in ("device_param_bytes", "dense_device_param_bytes", "server_param_bytes",
                                             "dense_server_param_bytes")}
    typer.echo(f"device weights {mb['device_param_bytes']:.2f} MB of {mb['dense_device_param_bytes']:.2f} MB; server "
               f"{mb['server_param_bytes']:.2f} MB of {mb['dense_server_param_bytes']:.2f} MB")
    if row["wall_pruned_s"] == row["wall_pruned_s"]:  # measured (structured)
        typer.echo(f"measured wall time of the pruned layers: {row['wall_pruned_s'] * 1e3:.1f} ms vs "
                   f"{row['wall_dense_s'] * 1e3:.1f} ms dense (side by side)")
    typer.echo(f"calibration {row['calibration_s']:.1f} s, pruning {row['prune_s']:.1f} s")


def _report_sweep(outcome) -> None:
    from edgesplit.pruning.bounds import fit_bound_constant

    cells = outcome.cells
    means = cells[cells["pattern"].isna()].groupby(["method", "side", "ratio"])["ppl"].mean().unstack("ratio")
    typer.echo(f"mean perplexity over k (dense {cells['ppl_dense'].median():.3f}):")
    typer.echo(means.round(3).to_string())
    for column in ("logits_mse", "kl"):
        try:
            fit = fit_bound_constant(cells, column, "param_dist_sq")
        except ValueError:
            continue
        typer.echo(f"{column} <= c * ||dW||^2 with c = {fit.c:.4g} over {fit.rows} cells; slack median "
                   f"{fit.slack_decades_median:.2f}, max {fit.slack_decades_max:.2f} decades")


def prune_command(
    model: str = typer.Option("smollm2-135m", help="Built-in name, local directory or hub id."),
    method: str | None = typer.Option(None, help="magnitude | wanda | sparsegpt | structured (default wanda)."),
    ratio: float | None = typer.Option(None, help="Fraction of the selected layers' weights removed (default 0.5)."),
    side: str | None = typer.Option(None, help="device (layers < k) | server (layers >= k) | both (default device)."),
    k: int | None = typer.Option(None, "-k", "--split", help="Split point 0..L (default 10)."),
    pattern: str | None = typer.Option(None, help="none | 2:4 | 4:8 (N:M needs ratio 1 - N/M; default none)."),
    seed: int | None = typer.Option(None, help="Seed of the calibration draw (default 0)."),
    sweep: bool = typer.Option(False, "--sweep", help="Sweep the grid of --methods × --patterns × --ratios × --ks × "
                               "--sides × --seeds instead of one configuration."),
    methods: str | None = typer.Option(None, help=f"Sweep: methods (default {SWEEP_DEFAULTS['methods']})."),
    patterns: str | None = typer.Option(None, help=f"Sweep: none and/or N:M (default {SWEEP_DEFAULTS['patterns']})."),
    ratios: str | None = typer.Option(None, help=f"Sweep: ratio grid, e.g. 0.1:0.7:0.2 (default "
                                      f"{SWEEP_DEFAULTS['ratios']})."),
    ks: str | None = typer.Option(None, help=f"Sweep: split points (default {SWEEP_DEFAULTS['ks']})."),
    sides: str | None = typer.Option(None, help=f"Sweep: sides (default {SWEEP_DEFAULTS['sides']})."),
    seeds: str | None = typer.Option(None, help="Sweep: seeds, e.g. 0,1 (default 0)."),
    corpus: str = typer.Option("default", help="default | wikitext2 | path to a UTF-8 text file."),
    tokens: int = typer.Option(1024, help="Corpus tokens scored (the first ones)."),
    context: int = typer.Option(512, help="Evaluation window (and prefill length of the FLOPs columns)."),
    calib_tokens: int = typer.Option(4096, help="Calibration range: the tokens right after the scored ones."),
    calib_windows: int = typer.Option(16, help="Calibration windows drawn from that range."),
    calib_length: int = typer.Option(256, help="Tokens per calibration window."),
    batch_size: int = typer.Option(1, help="Windows per forward pass."),
    bytes_per_param: float = typer.Option(2.0, help="Bytes per stored weight in the memory columns."),
    wall_tokens: int = typer.Option(128, help="Tokens of the wall-time check of structured cells (0: skip)."),
    out: Path = typer.Option(..., help="Run directory, e.g. runs/prune (rerun to resume)."),
    threads: int = typer.Option(0, help="torch intra-op threads (0: torch's default; 1 is fastest on a busy "
                                "2-core machine)."),
    progress: bool = typer.Option(True, help="Show a progress bar with ETA."),
    plots: bool = typer.Option(True, help="Write the PNG plots."),
) -> None:
    """Prune one side of a split (or a grid of prunings) and measure parameter and output distortion."""
    from edgesplit.pruning.sweep import SweepStore, cell_key, load_sweep_inputs, run_sweep

    require_writable_dir(out)
    if threads < 0:
        fail(f"--threads must be >= 0, got {threads}")
    single = {"method": method, "ratio": ratio, "side": side, "k": k, "pattern": pattern, "seed": seed}
    grid = {"methods": methods, "patterns": patterns, "ratios": ratios, "ks": ks, "sides": sides, "seeds": seeds}
    try:
        config = _build_config(sweep, single, grid, out=out, model=model, corpus=corpus, eval_tokens=tokens,
                               context=context, calib_tokens=calib_tokens, calib_windows=calib_windows,
                               calib_length=calib_length, batch_size=batch_size, bytes_per_param=bytes_per_param,
                               wall_tokens=wall_tokens)
        SweepStore(out).check_identity(config)
        inputs = load_sweep_inputs(config)
    except ValueError as err:
        fail(str(err))
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        outcome = run_sweep(config, inputs, progress=progress, plots=plots)
    except KeyboardInterrupt:
        typer.secho(f"interrupted: finished cells are saved in {out}; rerun the same command to resume", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(f"{outcome.computed} cells computed, {outcome.skipped} already in {out}; {len(outcome.cells)} rows in "
               f"{out / 'cells.parquet'}")
    if sweep:
        _report_sweep(outcome)
    else:
        _report_one(outcome.cells, out, cell_key(config.prune_configs()[0]))


__all__ = ["prune_command"]
