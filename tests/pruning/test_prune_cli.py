"""``edgesplit prune`` on the command line, with a tiny local model directory: bad input exits 2 before any work, one
configuration and a sweep write their tables, a rerun resumes. Registered on a local Typer app as edgesplit.cli does."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from edgesplit.pruning.prune_command import prune_command

app = typer.Typer(add_completion=False)


@app.callback()
def _root() -> None:
    """Test app with one subcommand."""


app.command("prune")(prune_command)
runner = CliRunner()

REQUIRED = ["method", "pattern", "side", "k", "ratio", "achieved_ratio", "param_dist_sq", "param_dist_rel", "ppl",
            "ppl_dense", "kl", "hidden_mse", "logits_mse", "top1", "nominal", "device_flops", "device_param_bytes",
            "seed"]


SMALL = ["--tokens", "64", "--context", "32", "--calib-tokens", "128", "--calib-windows", "2", "--calib-length", "32",
         "--no-progress", "--no-plots"]


def _invoke(model, out, *args: str):
    return runner.invoke(app, ["prune", "--model", str(model), "--out", str(out), *SMALL, *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "optimal-brain-damage"], "method must be one of magnitude, wanda, sparsegpt, structured"),
    (["--ratio", "1.5"], "ratio must be a number in [0, 0.95]"),
    (["--ratio", "0"], "ratios must lie in (0, 0.95]"),
    (["-k", "-1"], "k must be a non-negative integer"),
    (["-k", "9"], "split k=9 is out of range: the model has 3 layers"),
    (["--side", "middle"], "side must be one of device, server, both"),
    (["--pattern", "3:4"], "pattern must be one of none, 2:4, 4:8"),
    (["--pattern", "2:4", "--ratio", "0.3"], "pattern 2:4 prunes exactly 0.5 of the weights"),
    (["--pattern", "2:4", "--method", "structured"], "an N:M pattern applies to magnitude, wanda, sparsegpt"),
    (["--methods", "wanda"], "--methods is a sweep option; add --sweep"),
    (["--sweep", "--method", "wanda", "--ratio", "0.5"], "--method, --ratio describe one configuration"),
    (["--sweep", "--methods", "magnitude,foo"], "--methods: unknown value 'foo'"),
    (["--sweep", "--ratios", "0.5:1:0.25"], "--ratios: 1 is out of range"),
    (["--sweep", "--ks", "1,x"], "--ks: 'x' is not a number"),
    (["--sweep", "--sides", "edge"], "--sides: unknown value 'edge'"),
    (["--sweep", "--patterns", "1:2"], "--patterns: unknown value '1:2'"),
    (["--sweep", "--ks", "2,7"], "split k=7 is out of range"),
    (["-k", "2", "--corpus", "/no/such/corpus.txt"], "is neither a known corpus nor an existing file"),
    (["-k", "2", "--tokens", "100000000"], "tokens, 100000128 requested"),
    (["--calib-length", "999"], "calib_length (999) exceeds calib_tokens (128)"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tiny_dir, tmp_path, args, message):
    out = tmp_path / "run"
    result = _invoke(tiny_dir, out, *args)
    assert result.exit_code == 2, result.output
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line
    assert not out.exists()


def test_unknown_model_and_unwritable_output_exit_2(tiny_dir, tmp_path):
    result = _invoke(tmp_path / "no-model", tmp_path / "run")
    assert result.exit_code == 2 and "cannot load model" in result.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _invoke(tiny_dir, blocker / "run", "-k", "2")
    assert result.exit_code == 2 and "--out" in result.stderr


def test_one_configuration_prints_records_and_distortions_and_resumes(tiny_dir, tmp_path):
    out = tmp_path / "one"
    result = _invoke(tiny_dir, out, "--method", "magnitude", "--ratio", "0.5", "-k", "2", "--plots")
    assert result.exit_code == 0, result.output
    assert "magnitude 0.5 device k=2" in result.stdout and "perplexity" in result.stdout
    assert "nominal" in result.stdout and "||dW||^2" in result.stdout
    cells = pd.read_parquet(out / "cells.parquet")
    assert set(REQUIRED) <= set(cells.columns) and len(cells) == 1
    row = cells.iloc[0]
    assert row["achieved_ratio"] == pytest.approx(0.5, abs=1e-3) and row["nominal"] and pd.isna(row["pattern"])
    assert row["param_dist_sq"] > 0 and row["hidden_mse"] > 0 and row["device_flops"] < row["dense_device_flops"]
    assert row["server_flops"] == row["dense_server_flops"] and row["device_kv_bytes"] == row["dense_device_kv_bytes"]
    layers = pd.read_parquet(out / "layers.parquet")
    assert sorted(layers["layer"].unique()) == [0, 1] and len(layers) == 14
    assert layers["param_dist_sq"].sum() == pytest.approx(row["param_dist_sq"])
    # nominal savings: 2 FLOPs per token and 2 bytes per removed weight, over a 32-token prefill
    assert row["dense_device_flops"] - row["device_flops"] == 2 * layers["removed"].sum() * 32
    assert row["dense_device_param_bytes"] - row["device_param_bytes"] == 2.0 * layers["removed"].sum()
    config = json.loads((out / "config.json").read_text())
    assert config["eval_range"] == [0, 64] and config["calib_range"] == [64, 192]
    assert (out / "ppl_vs_ratio.png").is_file() and (out / "output_vs_param.png").is_file()
    again = _invoke(tiny_dir, out, "--method", "magnitude", "--ratio", "0.5", "-k", "2")
    assert again.exit_code == 0 and "0 cells computed, 1 already" in again.stdout
    wanda = _invoke(tiny_dir, out, "--method", "wanda", "--pattern", "2:4", "--side", "server", "-k", "1")
    assert wanda.exit_code == 0, wanda.output
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 2 and cells.iloc[1]["pattern"] == "2:4" and cells.iloc[1]["hidden_mse"] == 0
    different = _invoke(tiny_dir, out, "--method", "magnitude", "-k", "2", "--tokens", "96")
    assert different.exit_code == 2 and "holds a different sweep" in different.stderr


def test_sweep_writes_every_cell_and_the_dense_corners(tiny_dir, tmp_path):
    out = tmp_path / "sweep"
    args = ["--sweep", "--methods", "magnitude,structured", "--patterns", "none,2:4", "--ratios", "0.25,0.5", "--ks",
            "0,2", "--sides", "device,server"]
    result = _invoke(tiny_dir, out, *args)
    assert result.exit_code == 0, result.output
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 12 + 8 and "logits_mse <= c * ||dW||^2" in result.stdout  # no 2:4 for structured
    dense = cells[(cells["side"] == "device") & (cells["k"] == 0)]
    assert len(dense) == 5 and (dense["param_dist_sq"] == 0).all() and (dense["kl"] == 0).all()
    assert (dense["ppl"] == dense["ppl_dense"]).all()
    pruned = cells[cells["param_dist_sq"] > 0]
    assert len(pruned) == 15 and (pruned["kl"] > 0).all()
    assert (cells[cells["side"] == "server"]["hidden_mse"] == 0).all()
    structured = pruned[pruned["method"] == "structured"]
    assert not structured["nominal"].any() and structured["wall_pruned_s"].notna().all()
    device = structured[structured["side"] == "device"]
    assert (device["device_flops"] < device["dense_device_flops"]).all()
    assert (device["device_param_bytes"] < device["dense_device_param_bytes"]).all()
    assert pruned[pruned["method"] == "magnitude"]["wall_pruned_s"].isna().all()
    rerun = _invoke(tiny_dir, out, *args)
    assert rerun.exit_code == 0 and "0 cells computed, 20 already" in rerun.stdout
