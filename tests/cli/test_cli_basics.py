"""The command line: listing, and bad input exits 2 with a clear message before any work."""

from __future__ import annotations

from typer.testing import CliRunner

from edgesplit.cli import app

runner = CliRunner()


def test_models_lists_builtin_and_families():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "smollm2-135m" in result.output and "gpt_neox" in result.output


def test_generate_rejects_unknown_channel():
    result = runner.invoke(app, ["generate", "hello", "--channel", "rician"])
    assert result.exit_code == 2
    assert "unknown channel kind 'rician'" in result.output


def test_generate_rejects_unknown_model(tmp_path):
    result = runner.invoke(app, ["generate", "hello", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "cannot load model" in result.output


def test_generate_names_the_accepted_models_for_a_missing_path():
    result = runner.invoke(app, ["generate", "hi", "--model", "/nonexistent"])
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "neither a built-in model, a local directory nor a valid Hugging Face hub id" in line
    assert "smollm2-135m" in line and "Repo id" not in line


def test_generate_rejects_split_out_of_range(tmp_path):
    from tests.conftest import make_tiny

    make_tiny("llama").model.save_pretrained(tmp_path)
    result = runner.invoke(app, ["generate", "hi", "--model", str(tmp_path), "--split", "9"])
    assert result.exit_code == 2
    assert "--split must be in 0..4" in result.output
