"""An unusable ``--out`` is refused with exit 2 and a clear message before any work, by every command that writes.

``/proc`` is the case a new user met: root passes ``os.access`` there, yet no file can be created in it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgesplit import outdir
from edgesplit.cli import app
from edgesplit.outdir import check_writable_dir

runner = CliRunner()
needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")


def test_writable_directories_pass_and_nothing_is_left_behind(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    check_writable_dir(existing)
    check_writable_dir(tmp_path / "new" / "nested")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no probe file, nothing created
    assert not any(existing.iterdir())


@pytest.mark.parametrize(("relative", "reason"), [
    ("a-file", "it exists and is not a directory"),
    ("a-file/run", "a-file is a file, not a directory"),
])
def test_files_in_the_way_are_refused(tmp_path, relative, reason):
    (tmp_path / "a-file").write_text("keep me")
    with pytest.raises(ValueError, match="is not a usable output directory") as info:
        check_writable_dir(tmp_path / relative)
    assert reason in str(info.value) and "accepted: an existing writable directory" in str(info.value)
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_a_directory_that_refuses_files_is_refused(tmp_path, monkeypatch):
    """A read-only mount passes os.access for root; only the probe tells."""
    def read_only(prefix, dir):  # noqa: A002 (tempfile's own keyword)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(outdir.tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match=f"creating a file in {tmp_path} failed .Read-only file system."):
        check_writable_dir(tmp_path / "run", what="--out")


@needs_proc
def test_proc_is_refused():
    with pytest.raises(ValueError, match="creating a file in /proc failed"):
        check_writable_dir("/proc/x")


@needs_proc
@pytest.mark.parametrize("args", [
    # a model that does not exist: the output is checked first, so its error is the one reported
    ["profile", "--model", "/no/such/model", "--out", "/proc/x"],
    ["demo", "--out", "/proc/x"],
    ["train-policy", "--out", "/proc/x"],
    ["mbrl", "--out", "/proc/x"],
    ["evaluate-policy", "--checkpoint", ".", "--out", "/proc/x"],
    ["fit-surrogate", "--data", "/no/such/data", "--out", "/proc/x"],
    ["tune-surrogate", "--data", "/no/such/data", "--out", "/proc/x"],
    ["sensitivity", "--model", "/no/such/model", "--out", "/proc/x.json"],
])
def test_commands_refuse_an_unwritable_out_before_any_work(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "/proc/x" in line and "is not a usable output directory" in line
    assert "accepted: an existing writable directory" in line and "model" not in line
    assert result.exception is None or isinstance(result.exception, SystemExit)
