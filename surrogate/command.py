"""``edgesplit tune-surrogate`` and ``edgesplit fit-surrogate`` (typer command functions; the CLI registers them).

edgesplit tune-surrogate --space tune_configs/surrogate_mlp.yaml --samples 16 --data runs/surrogate_truth \\
    --out runs/surrogate_tune
edgesplit sensitivity --model smollm2-135m --corpus wikitext2 --out runs/surrogate_truth/sensitivity.json
edgesplit fit-surrogate --data runs/surrogate_truth --config runs/surrogate_tune/best_config.json \\
    --out runs/surrogate_ckpt --holdout 0.2 --sensitivity auto
edgesplit tune-surrogate --data runs/surrogate_truth --cpus-per-trial 1 --gpus-per-trial 0.25   # 4 trials per GPU
edgesplit sensitivity --torch-device cuda --dtype float32 --out runs/surrogate_truth/sensitivity.json

``--data`` is a ``cells.parquet`` (profiler output, or real evaluations) or a directory searched for them.
``--sensitivity`` adds the first-order KL feature (:mod:`surrogate.sensitivity`): JSON profiles made by
``edgesplit sensitivity``, or ``auto`` for every ``sensitivity.json`` under ``--data``.
Bad input prints ``error: …`` on stderr and exits with status 2. Registered by ``edgesplit.cli`` as
``app.command("tune-surrogate")(tune_surrogate_command)``, ``app.command("fit-surrogate")(fit_surrogate_command)`` and
``app.command("sensitivity")(sensitivity_command)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgesplit.clidevice import ALLOW_CPU_HALF, DTYPE, TORCH_DEVICE, device_and_dtype
from edgesplit.clierrors import fail as _fail
from edgesplit.clierrors import require_writable_dir

SURROGATE_DEVICE = typer.Option("cpu", "--torch-device", help="Where the ensemble trains: cpu (default: the nets are "
                                "tiny, CPU is as fast and bit-reproducible), cuda, cuda:N or auto. Always float32.")


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
    cpus_per_trial: float = typer.Option(1.0, min=0.01, help="Ray CPUs reserved per trial."),
    gpus_per_trial: float = typer.Option(0.0, min=0.0, help="Ray GPUs reserved per trial (fractions share a GPU); "
                                         "> 0 trains each trial's ensemble on its GPU, 0 on CPU."),
) -> None:
    """Search the surrogate's hyper-parameters with Ray Tune (Optuna + ASHA); save the best config."""
    from tune_configs.search import tune_surrogate

    require_writable_dir(out)
    try:
        outcome = tune_surrogate(space, samples, data, out, seed, objective=objective, reward=reward,
                                 train_fraction=train_fraction, reports=reports, max_concurrent=max_concurrent,
                                 cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
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
    sensitivity: list[str] = typer.Option([], help="Sensitivity profile JSON (repeatable), or 'auto': every "
                                                   "sensitivity.json under --data. Default: none."),
    calibration_folds: int = typer.Option(5, min=0, help="Cross-validation folds calibrating the intervals (0: off)."),
    torch_device: str = SURROGATE_DEVICE,
) -> None:
    """Train the deep-ensemble surrogate on real quality measurements and save a checkpoint."""
    from surrogate.fit import fit_surrogate
    from surrogate.sensitivity import find_profiles

    require_writable_dir(out)
    device, _ = device_and_dtype(torch_device, "float32")
    try:
        profiles = find_profiles(sensitivity, data)
        outcome = fit_surrogate(data, out, config, seed=seed, holdout=holdout, reward=reward, sensitivity=profiles,
                                calibration_folds=calibration_folds, device=str(device))
    except ValueError as err:
        _fail(str(err))
    scope = f"{outcome.report['cells']} held-out cells" if holdout > 0 else f"{outcome.report['cells']} training cells"
    typer.echo(f"{scope}: {_summary(outcome.report)}")
    typer.echo(f"saved {outcome.checkpoint}")


def sensitivity_command(
    model: str = typer.Option("smollm2-135m", help="Built-in name, local directory or hub id."),
    corpus: str = typer.Option("default", help="default (offline), wikitext2, or a text file."),
    tokens: int = typer.Option(512, min=2, help="Tokens the sums are taken over."),
    context: int = typer.Option(256, min=2, help="Window length."),
    samples: int = typer.Option(1, min=1, help="Label draws per window."),
    seed: int = typer.Option(0, help="Seed of the label draws."),
    out: Path = typer.Option(..., help="JSON file to write."),
    torch_device: str = TORCH_DEVICE, dtype: str = DTYPE, allow_cpu_half: bool = ALLOW_CPU_HALF,
) -> None:
    """Measure a model's first-order sensitivity at every split (one forward + backward per window)."""
    import torch

    from edgesplit.models import load_model
    from edgesplit.quality import load_corpus, tokenize_corpus
    from surrogate.sensitivity import measure_sensitivity

    if out.suffix != ".json" or out.is_dir():
        _fail(f"--out must be a .json file path, got {out}")
    require_writable_dir(out.parent, option=f"the folder of --out {out}:")
    device, torch_dtype = device_and_dtype(torch_device, dtype, allow_cpu_half)
    try:
        text = load_corpus(corpus)
        loaded = load_model(model, dtype=torch_dtype, device=device, allow_cpu_half=allow_cpu_half)
        if loaded.tokenizer is None:
            raise ValueError(f"model {model!r} has no tokenizer")
        ids = tokenize_corpus(text, loaded.tokenizer, tokens)
        profile = measure_sensitivity(loaded, torch.as_tensor(ids), context=context, tokens=tokens, samples=samples,
                                      seed=seed, corpus=text.name, progress=True)
        profile.save(out)
    except (ValueError, OSError) as err:
        _fail(str(err))
    typer.echo(f"{profile.model}: {profile.tokens} tokens x {profile.samples} draw(s), {profile.passes} passes in "
               f"{profile.wall_s:.1f} s on {device} ({str(torch_dtype).removeprefix('torch.')}) -> {out}")


__all__ = ["fit_surrogate_command", "sensitivity_command", "tune_surrogate_command"]
