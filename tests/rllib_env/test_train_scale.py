"""Training at scale (rllib_env.scale): the flags' validation, ``auto`` GPUs per learner, the AlgorithmConfig a GPU
run would get (built, not started), placement refused on a cluster that cannot hold it, and for real on CPU: two
remote env runners whose real evaluations the curve sums, and the model-based loop pushing its surrogate to them."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from rllib_env import train as train_module
from rllib_env.command import mbrl_command, train_policy_command
from rllib_env.mbrl import MbrlConfig, MbrlLoop
from rllib_env.registry import describe, source_from_spec
from rllib_env.scale import TrainScale, check_placement
from rllib_env.sources import RealRewardSource
from rllib_env.train import _runner_counts, build_config, read_overrides
from surrogate.evaluator import TableOracle
from surrogate.synthetic import MODEL_NAME, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 16,
        "source": {"kind": "table", "path": "-"}}
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1}}
TINY_YAML = """training: {train_batch_size_per_learner: 64, minibatch_size: 32, num_epochs: 1, gamma: 0.0}
env_runners: {num_envs_per_env_runner: 8}
env_config: {reward_floor: -10.0}
"""
SMALL_SURROGATE = {"hidden_size": 16, "ensemble_size": 2, "epochs": 100}


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid")
    synthetic_cells(seed=0).to_parquet(path / "cells.parquet")
    return path


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    app.command("train-policy")(train_policy_command)
    app.command("mbrl")(mbrl_command)
    return app


@pytest.mark.parametrize(("fields", "message"), [
    ({"num_env_runners": -1}, "num_env_runners must be an integer >= 0"),
    ({"num_envs_per_env_runner": 0}, "num_envs_per_env_runner must be an integer >= 1"),
    ({"num_learners": 1.5}, "num_learners must be an integer"),
    ({"num_gpus_per_learner": "many"}, "'auto' or a number of GPUs"),
    ({"num_gpus_per_learner": -1}, "must be >= 0"),
    ({"num_gpus_per_learner": 0.5, "num_learners": 2}, "works with one learner at most"),
    ({"num_gpus_per_learner": 1.5}, "whole number of GPUs"),
])
def test_invalid_scales_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainScale(**fields)


@pytest.mark.parametrize(("learners", "cluster_gpus", "local_cuda", "expected"), [
    (0, 0, False, 0.0), (0, 1, True, 1.0), (0, 1, False, 0.0),  # the local learner runs here: it needs CUDA here
    (1, 0, False, 0.0), (1, 1, False, 1.0), (2, 1, False, 0.0), (2, 2, False, 1.0),
])
def test_auto_gpus_per_learner(learners, cluster_gpus, local_cuda, expected):
    assert TrainScale(num_learners=learners).gpus_per_learner(cluster_gpus, local_cuda) == expected
    assert TrainScale(num_learners=learners, num_gpus_per_learner=0.5 if learners < 2 else 2).gpus_per_learner(
        cluster_gpus, local_cuda) == (0.5 if learners < 2 else 2.0)  # explicit values are kept


def test_a_gpu_learner_config_builds_without_a_gpu():
    scale = TrainScale(num_env_runners=2, num_envs_per_env_runner=3, num_learners=1, num_gpus_per_learner=1)
    config = build_config(BASE, "ppo", read_overrides("ppo"), scale=scale)  # ppo.yaml says 8 envs: the flag wins
    assert (config.num_learners, config.num_gpus_per_learner) == (1, 1)
    assert (config.num_env_runners, config.num_envs_per_env_runner) == (2, 3)
    assert config.num_cpus_per_learner == "auto"  # RLlib: a GPU learner takes no CPU of its own
    default = build_config(BASE, "dqn", read_overrides("dqn"))
    assert (default.num_env_runners, default.num_learners, default.num_gpus_per_learner) == (0, 0, 0)
    assert default.num_envs_per_env_runner == 1  # dqn.yaml's
    with pytest.raises(ValueError, match="resolve 'auto'"):
        build_config(BASE, scale=TrainScale())


def test_placement_is_refused_where_it_can_never_happen(capsys):
    gpu_learner = build_config(BASE, scale=TrainScale(num_learners=1, num_gpus_per_learner=1))
    with pytest.raises(ValueError, match="needs 1 Ray GPUs.*would wait forever"):
        check_placement(gpu_learner, {"CPU": 2.0}, local_cuda=False)
    check_placement(gpu_learner, {"CPU": 2.0}, local_cuda=False, joined=True)  # an autoscaler may add a GPU node
    assert "waits until an autoscaler adds nodes" in capsys.readouterr().out
    check_placement(gpu_learner, {"CPU": 2.0, "GPU": 1.0}, local_cuda=False)
    local_gpu = build_config(BASE, scale=TrainScale(num_gpus_per_learner=1))
    with pytest.raises(ValueError, match="the local learner runs in this process, which sees no CUDA"):
        check_placement(local_gpu, {"CPU": 2.0, "GPU": 4.0}, local_cuda=False, joined=True)
    runners = build_config(BASE, scale=TrainScale(num_env_runners=3, num_gpus_per_learner=0))
    with pytest.raises(ValueError, match="needs 3 Ray CPUs"):
        check_placement(runners, {"CPU": 2.0}, local_cuda=False)
    cpu_learners = build_config(BASE, scale=TrainScale(num_env_runners=1, num_learners=1, num_gpus_per_learner=0))
    with pytest.raises(ValueError, match="needs 2 Ray CPUs"):
        check_placement(cpu_learners, {"CPU": 1.0}, local_cuda=False)


@pytest.mark.parametrize("args, message", [
    (["train-policy", "--num-gpus-per-learner", "lots"], "'auto' or a number of GPUs"),
    (["train-policy", "--num-learners", "2", "--num-gpus-per-learner", "0.5"], "one learner at most"),
    (["train-policy", "--num-envs-per-env-runner", "0"], "num-envs-per-env-runner"),
    (["mbrl", "--num-env-runners", "-1"], "num-env-runners"),
    (["train-policy", "--reward", "real", "--num-env-runners", "1", "--torch-device", "cuda"], "reserves no GPU"),
    (["train-policy", "--reward", "real", "--num-env-runners", "1", "--torch-device", "tpu"], "unknown device"),
    (["mbrl", "--torch-device", "tpu"], "unknown device 'tpu'"),
    pytest.param(["train-policy", "--reward", "real", "--torch-device", "cuda"], "torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")),
])
def test_commands_reject_bad_scales_with_exit_2(cli, args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_commands_refuse_gpus_the_cluster_lacks_before_any_work(ray_session, cli, table_dir, tmp_path, monkeypatch):
    if ray_session.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this Ray cluster has GPUs")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    common = ["--model", MODEL_NAME, "--snr-grid", "0,5,10,15,20,25", "--table", str(table_dir), "--num-learners", "1",
              "--num-gpus-per-learner", "1"]
    train = CliRunner().invoke(cli, ["train-policy", "--reward", "real", "--out", str(tmp_path / "p"), *common])
    assert train.exit_code == 2 and "needs 1 Ray GPUs" in train.output
    mbrl = CliRunner().invoke(cli, ["mbrl", "--out", str(tmp_path / "m"), *common])
    assert mbrl.exit_code == 2 and "needs 1 Ray GPUs" in mbrl.output
    assert "real_evaluations" not in mbrl.output  # refused before the design spent anything


@pytest.mark.ray
def test_two_env_runners_train_and_the_curve_sums_their_real_evaluations(ray_session, cli, table_dir, tmp_path,
                                                                        monkeypatch):
    seen = {}
    stop = train_module.PolicyTrainer.stop

    def record_then_stop(trainer):
        seen["counts"] = trainer.algo.env_runner_group.foreach_env_runner(_runner_counts, local_env_runner=False)
        seen["config"] = trainer.algo.config
        stop(trainer)

    monkeypatch.setattr(train_module.PolicyTrainer, "stop", record_then_stop)
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    result = CliRunner().invoke(cli, ["train-policy", "--reward", "real", "--table", str(table_dir), "--iterations",
                                      "1", "--model", MODEL_NAME, "--snr-grid", "0,5,10,15,20,25", "--steps", "16",
                                      "--config", str(tmp_path / "tiny.yaml"), "--num-env-runners", "2",
                                      "--num-envs-per-env-runner", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.num_env_runners, config.num_envs_per_env_runner, config.num_gpus_per_learner) == (2, 2, 0)
    counts = seen["counts"]
    assert len(counts) == 2 and all(evaluations > 0 for _, evaluations in counts)  # both runners sampled for real
    import pandas as pd

    row = pd.read_parquet(tmp_path / "run" / "curve.parquet").iloc[-1]
    assert row["real_evaluations"] == sum(evaluations for _, evaluations in counts)
    assert row["source_queries"] == sum(queries for queries, _ in counts) == row["env_steps"]


@pytest.mark.ray
def test_mbrl_pushes_each_refit_surrogate_to_the_remote_runners(ray_session):
    real = RealRewardSource(TableOracle(synthetic_cells(seed=0)), describe(MODEL_NAME))
    config = MbrlConfig(budget=8, initial=4, surrogate_config=SMALL_SURROGATE, seed=0)
    loop = MbrlLoop(real, BASE, config, TINY, TrainScale(num_env_runners=2, num_envs_per_env_runner=1))
    spec = loop.spec
    try:
        loop.design()
        loop.train(1, "round0")
        assert loop.trainer.curve[-1]["source_queries"] > 0  # the runners trained on their pushed copies
        setting = next(s for _, s in real.measured())
        ks = list(range(1, 8))

        def remote():
            return loop.trainer.algo.env_runner_group.foreach_env_runner(
                lambda _r: source_from_spec(spec, MODEL_NAME).quality(ks, [setting] * len(ks)),
                local_env_runner=False)

        before = loop.source.quality(ks, [setting] * len(ks))
        assert len(remote()) == 2 and all((p == before).all() for p in remote())
        new = next(k for k in ks if (k, setting) not in real.measured())
        real.quality([new], [setting])  # one more real evaluation, then a refit pushes the new surrogate
        loop.refit()
        after = loop.source.quality(ks, [setting] * len(ks))
        assert not (after == before).all()
        assert all((p == after).all() for p in remote())
    finally:
        loop.close()
