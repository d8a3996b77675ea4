"""Per-trial resources of the surrogate search (--cpus-per-trial, --gpus-per-trial): validation, and a GPU request
the connected Ray cannot place refused (local Ray) or warned about (a joined, maybe autoscaling cluster)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from surrogate.command import tune_surrogate_command
from surrogate.synthetic import synthetic_cells
from tune_configs.search import check_trial_gpus, trial_resources


def test_trial_resources():
    assert trial_resources() == {"cpu": 1.0, "gpu": 0.0}
    assert trial_resources(0.5, 0.25) == {"cpu": 0.5, "gpu": 0.25}
    for cpus, gpus, message in ((0, 0, "cpus_per_trial must be > 0"), (1, -1, "gpus_per_trial must be >= 0"),
                                (1, 1.5, "whole number")):
        with pytest.raises(ValueError, match=message):
            trial_resources(cpus, gpus)


def test_gpu_trials_on_a_cluster_without_gpus(ray_session, monkeypatch, capsys):
    if ray_session.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this Ray cluster has GPUs")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    check_trial_gpus(0.0)
    with pytest.raises(ValueError, match="reports 0 GPU.*would wait forever"):
        check_trial_gpus(0.5)
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # joined: an autoscaler may still add GPU nodes
    check_trial_gpus(1.0)
    assert "trials wait until an autoscaler adds GPU nodes" in capsys.readouterr().out


def test_tune_command_refuses_gpu_trials_here(ray_session, monkeypatch, tmp_path):
    if ray_session.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this Ray cluster has GPUs")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    synthetic_cells(seed=0).to_parquet(tmp_path / "cells.parquet")
    app = typer.Typer()
    app.command("tune-surrogate")(tune_surrogate_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["tune-surrogate", "--data", str(tmp_path / "cells.parquet"), "--out",
                                      str(tmp_path / "tune"), "--gpus-per-trial", "1", "--cpus-per-trial", "0.5"])
    assert result.exit_code == 2 and "gpus_per_trial=1 but the Ray cluster reports 0 GPU(s)" in result.output
    assert not (tmp_path / "tune" / "tune").exists()
