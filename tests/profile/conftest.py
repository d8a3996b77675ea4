"""Shared by the profile tests: ``edgesplit profile`` on a local Typer app (the tiny model on disk, ``tiny_dir``, is
in tests/conftest.py)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from edgesplit.profile.command import profile_command

app = typer.Typer(add_completion=False)


@app.callback()
def _root() -> None:
    """Test app with one subcommand, registered exactly as edgesplit.cli does."""


app.command("profile")(profile_command)
_runner = CliRunner()


def invoke_profile(model, out, *extra: str, **options: str):
    """Run ``edgesplit profile`` on ``model`` into ``out`` (awgn, 0/10 dB, k = 0, 1, 3, one seed, 64 tokens):
    ``options`` replace or add ``--flag value`` pairs, ``extra`` are appended as they are."""
    base = {"--model": str(model), "--channel": "awgn", "--snr-db": "0,10", "--splits": "0,1,3", "--seeds": "1",
            "--tokens": "64", "--context": "32", "--out": str(out)}
    args = [item for key, value in {**base, **options}.items() for item in (key, value)]
    return _runner.invoke(app, ["profile", *args, "--no-progress", *extra])
