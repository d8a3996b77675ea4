"""``edgesplit profile``: sweep split × channel × seed on a real corpus and write table, summary and plots.

edgesplit profile --model smollm2-135m --channel awgn --snr-db 0:30:5 --splits all --corpus default \\
    --tokens 2048 --context 512 --seeds 3 --out runs/awgn
edgesplit profile --channel dropout --p 0.02:0.30:0.04 --tokens 1024 --context 256 --out runs/dropout
edgesplit profile --channel digital --bits 4,8 --modulation qpsk,16qam --snr-db 0:20:5 --out runs/digital
edgesplit profile --channel coded --snr-db 0:30:2 --bits 8 --mcs-table 1 --target-bler 0.1 --harq-transmissions 4 \
    --coded-path abstracted --out runs/coded          # 5G NR uplink: LDPC, MCS link adaptation, HARQ (needs Sionna)
edgesplit profile --torch-device cuda --dtype float32 --out runs/awgn_gpu     # the GPU (default auto: cuda if seen)

Everything is validated before any work starts (grids, presets, output directory, an existing run's identity,
model, corpus, splits against the model's depth); bad input prints ``error: …`` on stderr and exits with status 2.
Rerunning a command resumes it: cells already in ``--out`` are skipped. Ctrl-C keeps every finished cell (exit 130).
Registered by ``edgesplit.cli`` as ``app.command("profile")(profile_command)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgesplit.clidevice import ALLOW_CPU_HALF, DTYPE, TORCH_DEVICE, device_and_dtype
from edgesplit.clierrors import fail as _fail
from edgesplit.clierrors import require_writable_dir

if TYPE_CHECKING:  # the heavy imports (torch, transformers) wait until the command runs
    from edgesplit.profile.config import ProfileConfig


def _coded_options(channel: str, mcs_table: int | None, target_bler: float | None, harq_transmissions: int | None,
                   coded_path: str | None, coded_channel: str | None = None) -> dict:
    """The coded link's options given on the command line (ValueError when given for another channel)."""
    given = {"mcs_table": mcs_table, "target_bler": target_bler, "harq_transmissions": harq_transmissions,
             "coded_path": coded_path, "coded_channel": coded_channel}
    given = {name: value for name, value in given.items() if value is not None}
    if given and channel.lower() != "coded":
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ValueError(f"{flags} applies to --channel coded only (got --channel {channel})")
    if "coded_path" in given:
        given["coded_path"] = given["coded_path"].lower().replace("-", "_")
    if "coded_channel" in given:
        given["coded_channel"] = given["coded_channel"].lower()
    return given


def _build_config(out: Path, model: str, channel: str, snr_db: str | None, p: str, bits: str, modulation: str,
                  fading: str, splits: str, corpus: str, tokens: int, context: int, stride: int | None, seeds: int,
                  first_seed: int, encoding: str, device: str, edge: str, link: str, batch_size: int,
                  workers: int, torch_fields: dict, coded: dict) -> ProfileConfig:
    from edgesplit.channel import MODULATIONS
    from edgesplit.profile.config import ProfileConfig
    from edgesplit.profile.grid import parse_float_grid, parse_int_grid, parse_splits, parse_str_grid

    snr = None if snr_db is None else parse_float_grid(snr_db, "--snr-db")
    return ProfileConfig(
        out=out, model=model, channel=channel.lower(), snr_db=snr,
        p=parse_float_grid(p, "--p", lambda v: 0.0 <= v < 1.0, "probabilities in [0, 1)"),
        bits=parse_int_grid(bits, "--bits", low=1, high=16), modulations=parse_str_grid(modulation, "--modulation",
                                                                                         MODULATIONS),
        fading=fading, splits=parse_splits(splits), corpus=corpus, tokens=tokens, context=context, stride=stride,
        seeds=seeds, first_seed=first_seed, encoding=encoding, device=device, edge=edge, link=link,
        batch_size=batch_size, workers=workers, **torch_fields, **coded, extra={"argv": list(sys.argv)})


def _prepare(config: ProfileConfig):
    """Every check that needs the model or the corpus; returns the inputs of the run."""
    from edgesplit.profile.runner import load_inputs, plan
    from edgesplit.profile.store import RunStore

    RunStore(config.out).check_identity(config)
    if config.channel == "coded":  # the NR link's tables come from Sionna: fail now, not at the first cell
        from edgesplit.channel.nr import load_sionna

        try:
            load_sionna()
        except ImportError as err:
            raise ValueError(str(err)) from None
    inputs = load_inputs(config)
    plan(config, inputs.model.num_layers)  # splits against the model's depth
    return inputs


def _torch_options(torch_device: str, dtype: str, allow_cpu_half: bool, workers: int) -> dict:
    """Resolved ``torch_device`` / ``dtype`` fields (exit 2 on a bad value); ``auto`` means cpu with Ray workers."""
    from edgesplit.models.device import dtype_name

    if workers > 0 and torch_device == "auto":
        torch_device = "cpu"
    device, torch_dtype = device_and_dtype(torch_device, dtype, allow_cpu_half)
    return {"torch_device": str(device), "dtype": dtype_name(torch_dtype), "allow_cpu_half": allow_cpu_half}


def _evaluator_factory(workers: int):
    from edgesplit.profile.runner import local_evaluator

    if workers == 0:
        return local_evaluator
    try:
        from cluster.profile_workers import ray_evaluator_factory
    except ImportError as err:
        _fail(f"--workers needs Ray and the cluster package ({err}); use --workers 0 to run in this process")
    return ray_evaluator_factory(workers)


def _report(outcome, out: Path) -> None:
    cells = outcome.cells
    typer.echo(f"{outcome.computed} cells computed, {outcome.skipped} already in {out}; {len(cells)} rows in "
               f"{out / 'cells.parquet'}")
    if cells.empty:
        return
    typer.echo(f"clean perplexity {cells['clean_perplexity'].iloc[0]:.3f}; per setting (mean over seeds):")
    means = cells.groupby(["setting", "k"], sort=False)[["perplexity", "prefill_latency_s"]].mean().reset_index()
    for setting, rows in means.groupby("setting", sort=False):
        worst = rows.loc[rows["perplexity"].idxmax()]
        fastest = rows.loc[rows["prefill_latency_s"].idxmin()]
        typer.echo(f"  {setting:28s} worst k={int(worst['k']):3d} ppl {worst['perplexity']:10.3f}   fastest k="
                   f"{int(fastest['k']):3d} ({fastest['prefill_latency_s'] * 1e3:.2f} ms, ppl "
                   f"{fastest['perplexity']:.3f})")
    plots = ", ".join(path.name for path in outcome.files if path.suffix == ".png")
    typer.echo(f"summary: {out / 'summary.csv'}; plots: {plots}")


def profile_command(
    model: str = typer.Option("smollm2-135m", help="Built-in name, local directory or hub id."),
    channel: str = typer.Option("awgn", help="ideal | dropout | awgn | digital | coded"),
    snr_db: str | None = typer.Option(None, "--snr-db", help="SNR grid in dB, e.g. 0:30:5 or 0,10,20 (awgn, "
                                      "digital, coded; default 0:30:5 / 0:20:5 / 0:30:2). One value prices the link "
                                      "for dropout."),
    p: str = typer.Option("0.02:0.30:0.04", "--p", help="Dropout probability grid (dropout)."),
    bits: str = typer.Option("8", help="Quantiser bits grid, e.g. 2,4,8 (digital, coded)."),
    modulation: str = typer.Option("qpsk", help="Modulation list: bpsk,qpsk,16qam,64qam (digital)."),
    mcs_table: int | None = typer.Option(None, "--mcs-table", help="Coded: TS 38.214 MCS table 1 (up to 64QAM) "
                                         "or 2 (up to 256QAM); default 1."),
    target_bler: float | None = typer.Option(None, "--target-bler", help="Coded: link adaptation's first-"
                                             "transmission TB error rate target in (0, 1); default 0.1."),
    harq_transmissions: int | None = typer.Option(None, "--harq-transmissions", help="Coded: HARQ transmissions "
                                                  "per TB at most, 1..16 (1 = no HARQ); default 4."),
    coded_path: str | None = typer.Option(None, "--coded-path", help="Coded: abstracted (BLER tables, fast) or "
                                          "bit_true (Sionna's LDPC chain, slow); default abstracted."),
    coded_channel: str | None = typer.Option(None, "--coded-channel", help="Coded: what each transport block "
                                             "sees: awgn, rayleigh (flat per slot) or tdl (TR 38.901 TDL-C, "
                                             "frequency selective); default awgn."),
    fading: str = typer.Option("none", help="none | rayleigh (one block gain |h|^2 ~ Exp(1) per seed)."),
    splits: str = typer.Option("all", help="Split points: all, a list (1,5,10) or a range (0:30:2)."),
    corpus: str = typer.Option("default", help="default | wikitext2 | path to a UTF-8 text file."),
    tokens: int = typer.Option(2048, help="Corpus tokens to evaluate."),
    context: int = typer.Option(512, help="Evaluation window in tokens."),
    stride: int | None = typer.Option(None, help="Window stride (default: context, no overlap)."),
    seeds: int = typer.Option(3, help="Seeds per split and setting."),
    first_seed: int = typer.Option(0, help="First seed (seeds are first_seed .. first_seed + seeds - 1)."),
    encoding: str = typer.Option("float32", help="Packet encoding of hidden states (analog channels)."),
    device: str = typer.Option("phone-soc", help="UE preset for the cost columns."),
    edge: str = typer.Option("a100", help="Edge preset for the cost columns."),
    link: str = typer.Option("5g-nr-20mhz", help="Link preset for the cost columns."),
    workers: int = typer.Option(0, help="Ray workers (0: run in this process; RAY_ADDRESS picks a cluster). They "
                                "evaluate on CPU: --torch-device auto then means cpu."),
    batch_size: int = typer.Option(4, help="Rows per forward call (windows, or noisy copies of one window)."),
    out: Path = typer.Option(..., help="Run directory, e.g. runs/awgn (rerun to resume)."),
    progress: bool = typer.Option(True, help="Show a progress bar with ETA."),
    torch_device: str = TORCH_DEVICE, dtype: str = DTYPE, allow_cpu_half: bool = ALLOW_CPU_HALF,
) -> None:
    """Profile quality and cost of every split × channel setting × seed."""
    from edgesplit.profile.runner import run_profile

    require_writable_dir(out)
    torch_options = _torch_options(torch_device, dtype, allow_cpu_half, workers)
    try:
        coded = _coded_options(channel, mcs_table, target_bler, harq_transmissions, coded_path, coded_channel)
        config = _build_config(out, model, channel, snr_db, p, bits, modulation, fading, splits, corpus, tokens,
                               context, stride, seeds, first_seed, encoding, device, edge, link, batch_size, workers,
                               torch_options, coded)
        inputs = _prepare(config)
    except ValueError as err:
        _fail(str(err))
    factory = _evaluator_factory(workers)
    try:
        outcome = run_profile(config, inputs, progress=progress, evaluator_factory=factory)
    except KeyboardInterrupt:
        typer.secho(f"interrupted: finished cells are saved in {out}; rerun the same command to resume", err=True)
        raise typer.Exit(code=130) from None
    _report(outcome, out)
