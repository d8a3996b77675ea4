"""How every ``edgesplit`` command reports bad input: one line on stderr, exit status 2.

A module of its own so the package commands (profile, surrogate, rllib_env) share it without importing
:mod:`edgesplit.cli`, which registers them.
"""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 2 (bad input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


__all__ = ["fail"]
