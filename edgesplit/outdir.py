"""Is an output directory usable? Checked before any work, so a bad ``--out`` fails in a second, not after a run.

from edgesplit.outdir import check_writable_dir
check_writable_dir(Path("runs/awgn"))   # ValueError with what was wrong and what is accepted

``os.access`` is not enough: root passes it everywhere, and some directories (``/proc``, read-only mounts) refuse
new files whatever the mode bits say. So the check creates and removes a probe file in the directory itself, or in
its nearest existing ancestor when it does not exist yet. It never creates the output directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ACCEPTED = "an existing writable directory, or a new path whose nearest existing parent is a writable directory"


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe(directory: Path) -> None:
    """Create and remove a file in ``directory``; OSError when that is refused."""
    handle, name = tempfile.mkstemp(prefix=".edgesplit-write-probe-", dir=directory)
    os.close(handle)
    os.unlink(name)


def check_writable_dir(out: str | Path, what: str = "output") -> None:
    """ValueError unless ``out`` is, or can be created as, a writable directory; leaves nothing behind.

    ``what`` names the output in the message (``"--out"`` on the command line).
    """
    out = Path(out)
    parent = _nearest_existing(out)
    if out.exists() and not out.is_dir():
        reason = "it exists and is not a directory"
    elif not parent.is_dir():
        reason = f"{parent} is a file, not a directory"
    else:
        try:
            _probe(parent)
            return
        except OSError as err:
            reason = f"creating a file in {parent} failed ({err.strerror or err})"
    raise ValueError(f"{what} {out} is not a usable output directory: {reason}; accepted: {ACCEPTED}")


__all__ = ["ACCEPTED", "check_writable_dir"]
