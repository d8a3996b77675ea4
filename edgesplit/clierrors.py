"""How every ``edgesplit`` command reports bad input: one line on stderr, exit status 2.

Commands that write under ``--out`` call :func:`require_writable_dir` first, so an unusable output fails before
any work (model loading, Ray) instead of in a traceback at the first write.

A module of its own so the package commands (profile, surrogate, rllib_env) share it without importing
:mod:`edgesplit.cli`, which registers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from edgesplit.outdir import check_writable_dir


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 2 (bad input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def require_writable_dir(out: str | Path, option: str = "--out") -> None:
    """Exit 2 with what was wrong and what is accepted unless ``out`` is (or can become) a writable directory."""
    try:
        check_writable_dir(out, what=option)
    except ValueError as err:
        fail(str(err))


__all__ = ["fail", "require_writable_dir"]
