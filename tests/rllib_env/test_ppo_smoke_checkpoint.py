"""RLlib smoke training (PPO, DQN): a loadable RLModule checkpoint whose policy returns valid actions; commands."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from rllib_env.command import evaluate_policy_command, mbrl_command, train_policy_command
from rllib_env.policy import Policy, module_dir
from rllib_env.registry import describe, register_source, unregister_source
from rllib_env.sources import TableRewardSource
from rllib_env.split_env import SplitEnv
from rllib_env.train import build_config, read_overrides, train_policy
from surrogate.synthetic import MODEL_NAME, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 16}
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1},
        "env_runners": {"num_envs_per_env_runner": 2}}


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid")
    synthetic_cells(seed=0).to_parquet(path / "cells.parquet")
    return path


@pytest.fixture(scope="module")
def trained(ray_session, table_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("policy")
    return train_policy("table", iterations=2, out=out, table=table_dir, env_config=BASE, overrides=TINY,
                        progress=False), out


def test_ppo_smoke_checkpoint_loads_and_acts(trained, table_dir):
    outcome, out = trained
    assert len(outcome.curve) == 2 and outcome.curve["env_steps"].iloc[-1] >= 128
    assert (out / "curve.parquet").is_file() and (out / "curve.png").is_file()
    assert module_dir(outcome.checkpoint).name == "default_policy"
    loaded = Policy.from_checkpoint(outcome.checkpoint)
    env = SplitEnv(outcome.env_config, source=TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME)))
    obs, _ = env.reset(seed=1)
    for _ in range(20):
        action = loaded.act(obs)
        assert env.action_space.contains(action)
        assert action == outcome.policy.act(obs)  # the saved module is the trained one
        obs, *_ = env.step(action)


def test_dqn_builds_from_yaml_and_trains(ray_session):
    sections = read_overrides("dqn")
    sections["reporting"] = {"min_sample_timesteps_per_iteration": 50}
    sections["training"].update(num_steps_sampled_before_learning_starts=20, train_batch_size_per_learner=16)
    source = register_source(TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME)))
    algo = build_config({**BASE, "source": source}, "dqn", sections).build_algo()
    try:
        algo.train()
        policy = Policy(algo.get_module())
        obs = np.stack([SplitEnv(BASE, source=TableRewardSource(synthetic_cells(), describe(MODEL_NAME))).reset(
            seed=s)[0] for s in range(3)])
        actions = policy.act_batch(obs)
        assert actions.shape == (3,) and ((actions >= 0) & (actions <= 8)).all()
    finally:
        algo.stop()
        unregister_source(source)


def test_bad_algorithm_section_is_a_clear_error():
    with pytest.raises(ValueError, match="not an AlgorithmConfig method"):
        build_config({**BASE, "source": {"kind": "table", "path": "-"}}, "ppo", {"no_such_section": {"a": 1}})
    with pytest.raises(ValueError, match="unknown algorithm"):
        build_config(BASE, "a3c")


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    app.command("train-policy")(train_policy_command)
    app.command("mbrl")(mbrl_command)
    app.command("evaluate-policy")(evaluate_policy_command)
    return app


@pytest.mark.parametrize("args, message", [
    (["train-policy", "--reward", "oracle"], "--reward"),
    (["train-policy", "--reward", "surrogate", "--surrogate", "/no/such/dir"], "does not exist"),
    (["train-policy", "--reward", "surrogate"], "surrogate checkpoint"),
    (["train-policy", "--reward", "table", "--table", "/no/such.parquet"], "does not exist"),
    (["train-policy", "--algo", "a3c"], "--algo"),
    (["train-policy", "--reward", "real", "--preset", "nope"], "preset"),
    (["train-policy", "--reward", "real", "--snr-grid", "a,b"], "--snr-grid"),
    (["mbrl", "--budget", "3", "--initial", "8"], "initial"),
    (["mbrl", "--snr-grid", "none"], "snr-grid"),
    (["evaluate-policy", "--checkpoint", "/no/such/ckpt"], "does not exist"),
])
def test_commands_reject_bad_input_with_exit_2(cli, args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_evaluate_policy_command_writes_the_comparison(cli, trained, table_dir, tmp_path):
    outcome, _ = trained
    result = CliRunner().invoke(cli, ["evaluate-policy", "--checkpoint", str(outcome.checkpoint), "--table",
                                      str(table_dir), "--traces", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "greedy-oracle" in result.output
    for name in ("steps.parquet", "summary.csv", "splits.png", "rewards.png"):
        assert (tmp_path / name).is_file()


def test_remote_env_runners_report_their_real_evaluations(ray_session, table_dir, tmp_path):
    """A counted real source built inside a remote env runner: the curve sums the runners' counts (no NaN)."""
    outcome = train_policy("real", iterations=1, out=tmp_path / "remote", real={"table": str(table_dir)},
                           env_config=BASE, overrides=TINY, num_env_runners=1, progress=False)
    row = outcome.curve.iloc[-1]
    lossy = int((synthetic_cells(seed=0)["log_ppl_ratio"] != 0).sum())
    assert row["source_queries"] == row["env_steps"]  # one reward query per environment step
    assert 0 < row["real_evaluations"] <= lossy
