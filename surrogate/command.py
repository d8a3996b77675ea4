"""``edgesplit tune-surrogate`` and ``edgesplit fit-surrogate`` (typer command functions; the CLI registers them).

edgesplit tune-surrogate --space tune_configs/surrogate_mlp.yaml --samples 16 --data runs/surrogate_truth \\
    --out runs/surrogate_tune
edgesplit fit-surrogate --data runs/surrogate_truth --config runs/surrogate_tune/best_config.json \\
    --out runs/surrogate_ckpt --holdout 0.2

``--data`` is a ``cells.parquet`` (profiler output, or real evaluations) or a directory searched for them.
Bad input prints ``error: …`` on stderr and exits with status 2. Registered by ``edgesplit.cli`` as
``app.command("tune-surrogate")(tune_surrogate_command)`` and ``app.command("fit-surrogate")(fit_surrogate_command)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _summary(report: dict) -> str:
    target, regret = report["log_ppl_ratio"], report["regret"]
    return (f"log_ppl_ratio R²={target['r2']:.4f} Spearman={target['spearman']:.4f} "
            f"coverage90={target['coverage90']:.3f}; regret {regret['pct_of_range']:.3f}% of range, "
            f"{regret['pct_per_state']:.2f}% per state over {regret['states']} states")


def tune_surrogate_command(
    space: Path = typer.Option(Path("tune_configs/surrogate_mlp.yaml"), help="Search-space YAML."),
    samples: int = typer.Option(16, min=1, help="Trials to run."),
    data: Path = typer.Option(..., help="cells.parquet or a directory of them (real quality measurements)."),
    out: Path = typer.Option(Path("runs/surrogate_tune"), help="Writes best_config.json, trials.csv, Tune logs."),
    seed: int = typer.Option(0, help="Seed of the search, the data split and the ensembles."),
    objective: str = typer.Option("val_nll", help="val_nll or regret."),
    reward: str = typer.Option("paper", help="Reward preset for the regret metric: paper or latency-energy."),
    train_fraction: float = typer.Option(0.3, min=0.01, max=0.99, help="Share of the cells each trial trains on."),
    reports: int = typer.Option(4, min=1, help="Reports per trial (ASHA milestones)."),
    max_concurrent: int = typer.Option(2, min=1, help="Trials run at once."),
) -> None:
    """Search the surrogate's hyper-parameters with Ray Tune (Optuna + ASHA); save the best config."""
    from tune_configs.search import tune_surrogate

    try:
        outcome = tune_surrogate(space, samples, data, out, seed, objective=objective, reward=reward,
                                 train_fraction=train_fraction, reports=reports, max_concurrent=max_concurrent)
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"{len(outcome.trials)} trials; best {outcome.metric}={outcome.value:.4f}")
    typer.echo(json.dumps(outcome.best.to_dict(), sort_keys=True))
    typer.echo(f"saved {outcome.path}")


def fit_surrogate_command(
    data: Path = typer.Option(..., help="cells.parquet or a directory of them (real quality measurements)."),
    out: Path = typer.Option(Path("runs/surrogate_ckpt"), help="Checkpoint directory (safetensors + JSON)."),
    config: Path | None = typer.Option(None, help="best_config.json from tune-surrogate (default: built-in)."),
    seed: int | None = typer.Option(None, help="Override the config's seed."),
    holdout: float = typer.Option(0.0, min=0.0, max=0.9, help="Share of cells held out for the report."),
    reward: str = typer.Option("paper", help="Reward preset for the regret metric: paper or latency-energy."),
) -> None:
    """Train the deep-ensemble surrogate on real quality measurements and save a checkpoint."""
    from surrogate.fit import fit_surrogate

    try:
        outcome = fit_surrogate(data, out, config, seed=seed, holdout=holdout, reward=reward)
    except ValueError as err:
        _fail(str(err))
    scope = f"{outcome.report['cells']} held-out cells" if holdout > 0 else f"{outcome.report['cells']} training cells"
    typer.echo(f"{scope}: {_summary(outcome.report)}")
    typer.echo(f"saved {outcome.checkpoint}")


__all__ = ["fit_surrogate_command", "tune_surrogate_command"]
