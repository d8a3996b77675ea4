"""``edgesplit profile`` on the command line: bad input exits 2 with a message before any work, a good run writes
its outputs and a rerun resumes. The command runs on a local Typer app registered as edgesplit.cli does (conftest)."""

from __future__ import annotations

import pytest

from tests.profile.conftest import invoke_profile


@pytest.mark.parametrize(("options", "message"), [
    ({"--channel": "fm"}, "unknown channel kind 'fm'"),
    ({"--snr-db": "10:0:5"}, "--snr-db: range '10:0:5' is empty"),
    ({"--snr-db": ""}, "--snr-db: empty grid"),
    ({"--splits": "0,9"}, "split k=9 is out of range: the model has 3 layers"),
    ({"--splits": "x"}, "splits: 'x' is not a number"),
    ({"--corpus": "/no/such/corpus.txt"}, "is neither a known corpus nor an existing file"),
    ({"--tokens": "100000000"}, "tokens, 100000000 requested"),
    ({"--channel": "digital", "--bits": "0"}, "--bits: 0 is out of range"),
    ({"--channel": "digital", "--modulation": "8psk"}, "--modulation: unknown value '8psk'"),
    ({"--channel": "dropout", "--p": "0.5:1.0:0.25"}, "--p: 1 is out of range"),
    ({"--fading": "nakagami"}, "unknown fading 'nakagami'"),
    ({"--link": "carrier-pigeon"}, "unknown link preset 'carrier-pigeon'"),
    ({"--model": "/no/such/model"}, "cannot load model '/no/such/model'"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tiny_dir, tmp_path, options, message):
    out = tmp_path / "run"
    result = invoke_profile(tiny_dir, out, **options)
    assert result.exit_code == 2, result.output
    last_line = result.stderr.strip().splitlines()[-1]  # transformers may print a loading bar before it
    assert last_line.startswith("error: ") and message in last_line
    assert not out.exists()


def test_unwritable_output_is_refused(tiny_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "run"):
        result = invoke_profile(tiny_dir, out)
        assert result.exit_code == 2 and "output" in result.stderr and str(blocker) in result.stderr
    assert blocker.read_text() == "not a directory"


def test_run_then_resume_then_refuse_a_different_run(tiny_dir, tmp_path):
    out = tmp_path / "run"
    first = invoke_profile(tiny_dir, out)
    assert first.exit_code == 0, first.output
    assert "6 cells computed, 0 already in" in first.stdout and "clean perplexity" in first.stdout
    assert {"cells.parquet", "config.json", "summary.csv", "heatmap_perplexity.png"} <= {p.name for p in out.iterdir()}
    again = invoke_profile(tiny_dir, out)
    assert again.exit_code == 0 and "0 cells computed, 6 already in" in again.stdout
    before = (out / "cells.parquet").read_bytes()
    other = invoke_profile(tiny_dir, out, **{"--context": "16"})
    assert other.exit_code == 2
    assert "holds a different run (context: 32 there, 16 now; stride: 32 there, 16 now)" in other.stderr
    assert (out / "cells.parquet").read_bytes() == before
