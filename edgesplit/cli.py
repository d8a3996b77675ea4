"""The ``edgesplit`` command: every subcommand is a thin wrapper over the packages (run ``edgesplit --help``).

Bad input exits with status 2 and a one-line message saying what was wrong and what is accepted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgesplit.clierrors import fail

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Split LLM inference between a user device and an edge server, and learn where to split.")


def channel_setting(kind: str, snr_db: float, p: float, bits: int, modulation: str, loss_rate: float = 0.0,
                    erasure: str = "none", encoding: str = "float32"):
    """A validated :class:`~edgesplit.scenario.ChannelSetting` from CLI options (exit 2 on bad values)."""
    from edgesplit.scenario import ChannelSetting

    try:
        return ChannelSetting(kind=kind, snr_db=snr_db, p=p, bits=bits, modulation=modulation, loss_rate=loss_rate,
                              erasure=erasure, encoding=encoding)
    except ValueError as err:
        fail(str(err))


def load(model: str):
    """Load a model, turning a bad name or missing package into a clear exit-2 error."""
    from edgesplit.models import load_model

    try:
        return load_model(model)
    except (ValueError, FileNotFoundError, OSError) as err:
        fail(f"cannot load model {model!r}: {err}")


@app.command()
def models() -> None:
    """List the built-in models and the architectures edgesplit can split."""
    from edgesplit.models import BUILTINS, SUPPORTED_MODEL_TYPES

    for spec in BUILTINS.values():
        typer.echo(f"{spec.name:16s} {spec.description}  (install: {spec.install})")
    typer.echo(f"any Hugging Face causal LM of type: {', '.join(SUPPORTED_MODEL_TYPES)}")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="Text to continue."),
    model: str = typer.Option("smollm2-135m", help="Built-in name, local directory or hub id."),
    split: int = typer.Option(10, "--split", "-k", help="Layers run on the UE (0..L)."),
    channel: str = typer.Option("awgn", help="ideal | dropout | awgn | digital"),
    snr_db: float = typer.Option(20.0, help="Mean received SNR (awgn, digital)."),
    p: float = typer.Option(0.1, help="Dropout probability (dropout)."),
    bits: int = typer.Option(8, help="Quantiser bits (digital)."),
    modulation: str = typer.Option("qpsk", help="bpsk | qpsk | 16qam | 64qam (digital)."),
    max_new_tokens: int = typer.Option(32, min=1, max=4096),
    seed: int = typer.Option(0, help="Seed of the channel's random draws."),
) -> None:
    """Greedy split generation of one prompt through an impaired uplink."""
    from edgesplit.demo import generate_through_channel

    setting = channel_setting(channel, snr_db, p, bits, modulation)
    loaded = load(model)
    if not 0 <= split <= loaded.num_layers:
        fail(f"--split must be in 0..{loaded.num_layers} for {model}, got {split}")
    if loaded.tokenizer is None:
        fail(f"{model} has no tokenizer; generate needs text in and out")
    text, log = generate_through_channel(loaded, prompt, split, setting, max_new_tokens, seed)
    typer.echo(text)
    typer.echo(f"[k={split}, {setting.label}: {log.packets} packets, {log.frame_bytes} bytes on the wire]", err=True)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where the demo writes its results."),
    tokens: int = typer.Option(256, min=64, max=2048, help="Corpus tokens for the profile (one window)."),
    seed: int = typer.Option(0),
) -> None:
    """The main job on the built-in model: exact split, impaired generation, quality and cost tables."""
    from edgesplit.demo import run_demo

    run_demo(out=out, tokens=tokens, seed=seed)


def _register_package_commands() -> None:
    """Commands that live beside the packages they drive (each module keeps its heavy imports inside the command).

    The Ray-facing packages (surrogate, rllib_env) are imported only for their typer signatures; Ray itself is
    imported when one of their commands runs, so the core stays importable without starting Ray.
    """
    from edgesplit.client.command import client_command
    from edgesplit.client.proxy_command import ue_proxy_command
    from edgesplit.profile.command import profile_command
    from edgesplit.pruning.command import co_opt_command
    from edgesplit.pruning.prune_command import prune_command
    from rllib_env.command import evaluate_policy_command, mbrl_command, train_policy_command
    from rllib_env.export_command import export_policy_command
    from serve_deployments.command import serve_command, serve_demo_command
    from surrogate.command import fit_surrogate_command, sensitivity_command, tune_surrogate_command

    app.command("profile")(profile_command)
    app.command("prune")(prune_command)
    app.command("co-opt")(co_opt_command)
    app.command("tune-surrogate")(tune_surrogate_command)
    app.command("fit-surrogate")(fit_surrogate_command)
    app.command("sensitivity")(sensitivity_command)
    app.command("train-policy")(train_policy_command)
    app.command("mbrl")(mbrl_command)
    app.command("evaluate-policy")(evaluate_policy_command)
    app.command("export-policy")(export_policy_command)
    app.command("serve")(serve_command)
    app.command("serve-demo")(serve_demo_command)
    app.command("client")(client_command)
    app.command("ue-proxy")(ue_proxy_command)


_register_package_commands()


def main() -> None:
    """Entry point of the ``edgesplit`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
