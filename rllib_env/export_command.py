"""``edgesplit export-policy``: an RLlib checkpoint → a safetensors + JSON export that serving loads without RLlib.

edgesplit export-policy runs/policy/checkpoint --out runs/policy_export
edgesplit export-policy runs/mbrl/policy/checkpoint --out runs/mbrl_export --env-config runs/mbrl/policy/env_config.json

Prints the exported shapes and the weights' sha256. RLlib checkpoints are pickles: export only checkpoints you
trust (your own ``train-policy`` / ``mbrl`` output). Bad input prints ``error: …`` on stderr and exits with status
2. Registered by ``edgesplit.cli`` as ``app.command("export-policy")(export_policy_command)``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from edgesplit.clierrors import fail


def export_policy_command(
    checkpoint: Path = typer.Argument(..., help="train-policy's or mbrl's checkpoint/ (or its run directory)."),
    out: Path = typer.Option(..., "--out", help="Writes policy.safetensors and policy.json here."),
    env_config: Path | None = typer.Option(None, help="SplitEnv config (default: env_config.json beside the "
                                                      "checkpoint)."),
    samples: int = typer.Option(512, min=1, help="Random observations the export is checked against the module on."),
) -> None:
    """Export a trained split policy for serving (pure torch; no RLlib or pickle needed to load it)."""
    from rllib_env.export import export_policy, read_spec

    if not checkpoint.exists():
        fail(f"checkpoint {checkpoint} does not exist")
    if env_config is not None and not env_config.is_file():
        fail(f"env config {env_config} does not exist")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    try:
        written = export_policy(checkpoint, out, env_config, samples)
    except ValueError as err:
        fail(str(err))
    spec = read_spec(written)
    space = spec["action_space"]
    actions = space.get("n", space.get("nvec"))
    typer.echo(f"exported {spec['module_class'].rsplit('.', 1)[-1]} (obs {spec['observation_space']['shape'][0]}, "
               f"actions {actions}, L={spec['num_layers']}) to {written}; checked on {samples} observations; "
               f"weights sha256 {spec['weights_sha256'][:16]}…")


__all__ = ["export_policy_command"]
