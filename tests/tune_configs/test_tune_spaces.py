"""Every search space in tune_configs/ against the trainable's parameters; a 2-trial Tune smoke run."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from surrogate.command import tune_surrogate_command
from surrogate.ensemble import EnsembleConfig
from surrogate.fit import fit_surrogate
from surrogate.synthetic import synthetic_cells
from tune_configs.search import TUNABLE, check_space, load_space, to_tune

SPACES = sorted((Path(__file__).resolve().parents[2] / "tune_configs").glob("*.yaml"))


def test_there_are_spaces_to_check():
    assert {p.name for p in SPACES} >= {"surrogate_mlp.yaml", "surrogate_mlp_smoke.yaml"}


def test_tunable_names_are_the_trainables_parameters():
    assert set(TUNABLE) == {f.name for f in fields(EnsembleConfig)} - {"seed"}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_space_matches_the_trainable(path):
    space = load_space(path)
    assert set(space) <= set(TUNABLE)
    domains = to_tune(space)
    for _ in range(20):  # every sampled point must build a valid config
        point = {name: d.sample() if hasattr(d, "sample") else d for name, d in domains.items()}
        config = EnsembleConfig.from_dict(point)
        assert all(getattr(config, name) == value for name, value in point.items())


@pytest.mark.parametrize(("space", "message"), [
    ({"width": 3}, "unknown parameter"),
    ({"seed": 3}, "unknown parameter"),
    ({"lr": {"type": "normal", "low": 0, "high": 1}}, "unknown type"),
    ({"lr": {"type": "loguniform", "low": 0.0, "high": 1.0}}, "low > 0"),
    ({"lr": {"type": "uniform", "low": 1.0, "high": 0.5}}, "low < high"),
    ({"depth": {"type": "randint", "low": 1, "high": 40}}, "rejected by the trainable"),
    ({"activation": {"type": "choice", "values": ["silu", "sigmoid"]}}, "rejected by the trainable"),
    ({"hidden_size": {"type": "choice", "values": []}}, "non-empty list"),
    ({}, "non-empty mapping"),
])
def test_bad_spaces_are_rejected(space, message):
    with pytest.raises(ValueError, match=message):
        check_space(space)


def test_unreadable_space_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_space(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_space(tmp_path / "none.yaml")


@pytest.mark.ray
def test_tune_smoke_run_and_fit_with_the_best_config(ray_session, tmp_path):
    table = synthetic_cells(seed=3)
    data = tmp_path / "data" / "cells.parquet"
    data.parent.mkdir()
    table.to_parquet(data)
    app = typer.Typer()
    app.command("tune-surrogate")(tune_surrogate_command)
    app.command("noop")(lambda: None)
    space = next(p for p in SPACES if p.name == "surrogate_mlp_smoke.yaml")
    result = CliRunner().invoke(app, ["tune-surrogate", "--space", str(space), "--samples", "2", "--data", str(data),
                                      "--out", str(tmp_path / "tune"), "--reports", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    best = json.loads((tmp_path / "tune" / "best_config.json").read_text())
    assert best["trials"] == 2 and best["metric"] == "val_nll" and best["config"]["seed"] == 1
    assert best["config"]["hidden_size"] in (8, 16) and best["config"]["depth"] == 1
    assert set(yaml.safe_load(space.read_text())) <= set(best["config"])
    outcome = fit_surrogate(table, tmp_path / "ckpt", tmp_path / "tune" / "best_config.json", holdout=0.3)
    assert outcome.config.hidden_size == best["config"]["hidden_size"] and outcome.checkpoint.is_dir()
    bad = CliRunner().invoke(app, ["tune-surrogate", "--space", str(space), "--data", str(data), "--objective", "x"])
    assert bad.exit_code == 2 and "unknown objective" in bad.output
