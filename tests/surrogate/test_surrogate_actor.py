"""SurrogateActor in-process and as a named Ray actor; fit/tune commands through a Typer app."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from edgesplit.reward import SplitReward, reward_preset
from surrogate.actor import SurrogateActor, get_surrogate_actor, start_surrogate_actor
from surrogate.checkpoint import save_surrogate
from surrogate.command import fit_surrogate_command
from surrogate.ensemble import EnsembleConfig
from surrogate.features import settings_of
from surrogate.model import QualitySurrogate
from surrogate.synthetic import MODEL_NAME, synthetic_cells, synthetic_profile

SMALL = EnsembleConfig(hidden_size=16, depth=1, epochs=100, ensemble_size=4, lr=1e-2, seed=0)
QUERY_COLUMNS = ["model", "num_layers", "hidden_size", "num_params", "k", "channel", "snr_db", "p"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_cells(seed=2)


@pytest.fixture(scope="module")
def surrogate(table) -> QualitySurrogate:
    return QualitySurrogate(SMALL).fit(table)


def test_in_process_actor_serves_batches(table, surrogate):
    actor = SurrogateActor(surrogate=surrogate, reward=reward_preset("paper").to_dict(),
                           profiles={MODEL_NAME: synthetic_profile()})
    rows = table[QUERY_COLUMNS].head(12).to_dict("records")
    out = actor.predict(rows)
    expected = surrogate.predict(table.head(12))
    np.testing.assert_array_equal(out["log_ppl_ratio"], expected.column("log_ppl_ratio"))
    assert (out["kl_nats_low"] <= out["kl_nats_high"]).all() and out["top1_agreement_std"].shape == (12,)
    rewards = actor.predict_rewards(table[QUERY_COLUMNS].head(12))
    direct, feasible = SplitReward(reward_preset("paper"), synthetic_profile()).rewards(
        table["k"].head(12).to_numpy(), settings_of(table.head(12)), expected.column("log_ppl_ratio"))
    np.testing.assert_allclose(rewards["reward"], direct)
    np.testing.assert_array_equal(rewards["feasible"], feasible)
    assert actor.info()["calls"] == 2 and actor.info()["cells_served"] == 24


def test_actor_bad_inputs(surrogate):
    with pytest.raises(ValueError, match="exactly one"):
        SurrogateActor()
    actor = SurrogateActor(surrogate=surrogate)
    with pytest.raises(ValueError, match="no cells"):
        actor.predict([])
    with pytest.raises(ValueError, match="no reward config"):
        actor.predict_rewards([{"model": MODEL_NAME, "num_layers": 8, "hidden_size": 64, "num_params": 10, "k": 2,
                                "channel": "awgn", "snr_db": 10.0}])
    with pytest.raises(ValueError, match="snr_db=99"):
        actor.predict([{"num_layers": 8, "hidden_size": 64, "num_params": 10, "k": 2, "channel": "awgn",
                        "snr_db": 99.0}])


@pytest.mark.ray
def test_named_ray_actor_round_trip(ray_session, table, surrogate, tmp_path):
    path = save_surrogate(surrogate, tmp_path / "ckpt")
    handle = start_surrogate_actor(path, name="test-surrogate", detached=False)
    try:
        found = get_surrogate_actor("test-surrogate")
        out = ray_session.get(found.predict.remote(table[QUERY_COLUMNS]))
        np.testing.assert_array_equal(out["log_ppl_ratio"], surrogate.predict(table).column("log_ppl_ratio"))
        assert ray_session.get(handle.info.remote())["cells_served"] == len(table)
    finally:
        ray_session.kill(handle)
    with pytest.raises(ValueError, match="no surrogate actor"):
        get_surrogate_actor("no-such-surrogate")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("fit-surrogate")(fit_surrogate_command)
    app.command("noop")(lambda: None)  # a second command keeps typer in multi-command mode
    return app


def test_fit_command_trains_and_saves(table, tmp_path):
    data = tmp_path / "cells.parquet"
    table.to_parquet(data)
    config = tmp_path / "best_config.json"
    config.write_text('{"config": {"hidden_size": 16, "depth": 1, "epochs": 100, "ensemble_size": 4, "lr": 0.01}}')
    result = CliRunner().invoke(_app(), ["fit-surrogate", "--data", str(tmp_path), "--out", str(tmp_path / "ckpt"),
                                         "--config", str(config), "--holdout", "0.3"])
    assert result.exit_code == 0, result.output
    assert "held-out cells" in result.output and "R²=" in result.output
    assert (tmp_path / "ckpt" / "weights.safetensors").is_file()
    bad = CliRunner().invoke(_app(), ["fit-surrogate", "--data", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "error:" in bad.output and "does not exist" in bad.output
