"""RLlib checkpoint → safetensors + JSON export → the same greedy actions in pure torch, loaded without RLlib."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from rllib_env.export import export_policy, load_exported
from rllib_env.export_command import export_policy_command
from rllib_env.policy import Policy
from rllib_env.registry import describe, register_source, unregister_source
from rllib_env.sources import TableRewardSource
from rllib_env.split_env import SplitEnv
from rllib_env.train import build_config, read_overrides, train_policy
from serve_deployments.split_policies import ExportedRLPolicy, PolicySpec, load_policy
from serve_deployments.split_schema import UEState
from surrogate.synthetic import MODEL_NAME, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 16,
        "device": {"f_levels_hz": [1.0e9, 2.0e9, 3.0e9], "load_levels": [0.0]}}  # load 0: what a UE state implies
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1},
        "env_runners": {"num_envs_per_env_runner": 2}}


def source() -> TableRewardSource:
    return TableRewardSource(synthetic_cells(seed=0), describe(MODEL_NAME))


@pytest.fixture(scope="module")
def trained(ray_session, tmp_path_factory):
    """A PPO policy after one tiny iteration, and its export."""
    table = tmp_path_factory.mktemp("grid")
    synthetic_cells(seed=0).to_parquet(table / "cells.parquet")
    run = tmp_path_factory.mktemp("policy")
    outcome = train_policy("table", iterations=1, out=run, table=table, env_config=BASE, overrides=TINY,
                           progress=False)
    return outcome.checkpoint, export_policy(outcome.checkpoint, run / "export")


@pytest.fixture(scope="module")
def trained_switching(ray_session, tmp_path_factory):
    """The same with switching costs: the observation ends with the context fraction."""
    table = tmp_path_factory.mktemp("grid_switching")
    synthetic_cells(seed=0).to_parquet(table / "cells.parquet")
    run = tmp_path_factory.mktemp("policy_switching")
    outcome = train_policy("table", iterations=1, out=run, table=table, env_config={**BASE, "switching": True},
                           overrides=TINY, progress=False)
    return outcome.checkpoint, export_policy(outcome.checkpoint, run / "export")


def random_obs(net, count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-10, 10, (count, net.obs_dim)).astype(np.float32)


def test_exported_ppo_acts_like_the_rllib_module(trained):
    checkpoint, export = trained
    module, net = Policy.from_checkpoint(checkpoint), load_exported(export)
    obs = np.concatenate([random_obs(net, 4000), random_obs(net, 1000, seed=2) / 10])  # wide and typical ranges
    assert (module.act_batch(obs) == net.act_batch(obs)).all()
    spec = json.loads((export / "policy.json").read_text())
    assert spec["format"] == "edgesplit-split-policy" and spec["num_layers"] == 8 and spec["head"] == "pi"
    assert [layer["op"] for layer in spec["layers"]] == ["linear", "tanh", "linear", "tanh", "linear"]
    assert spec["env_config"]["model"] == MODEL_NAME and len(spec["weights_sha256"]) == 64


@pytest.mark.parametrize("fixture", ["trained", "trained_switching"])
def test_serving_policy_rebuilds_splitenvs_observation_and_choice(fixture, request):
    checkpoint, export = request.getfixturevalue(fixture)
    module, policy = Policy.from_checkpoint(checkpoint), load_policy(PolicySpec(kind="rllib", path=str(export)))
    assert isinstance(policy, ExportedRLPolicy) and policy.version.startswith("rllib:")
    env = SplitEnv(policy.net.spec["env_config"], source=source())
    compared = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        for _ in range(16):
            history = [*reversed(env.snr_history), env._state.snr_db]
            if all(-50 <= s <= 80 for s in history):
                ue = UEState(snr_db_history=history, loss_rate=float(env._state.loss_rate),
                             cpu_freq_hz=env.device_state.f_hz, current_k=env.prev_k,
                             context_tokens=env.context_tokens())
                np.testing.assert_allclose(policy.observation(ue), obs, rtol=0, atol=1e-6)
                assert policy.decide(ue).k == module.act(obs)
                compared += 1
            obs, *_ = env.step(module.act(obs))
    assert compared > 30


@pytest.mark.parametrize("algo, env_extra", [
    ("dqn", {}),
    ("ppo", {"channel_kind": "digital", "bits_options": [4, 8]}),
])
def test_dqn_and_multidiscrete_modules_export_the_same_actions(ray_session, tmp_path, algo, env_extra):
    spec = register_source(source())
    env_config = {**BASE, **env_extra, "source": spec}
    sections = read_overrides(algo)
    algo_ = build_config(env_config, algo, sections).build_algo()
    try:
        checkpoint = algo_.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        algo_.stop()
        unregister_source(spec)
    export = export_policy(checkpoint, tmp_path / "export", env_config={**env_config, "source": {"kind": "table",
                                                                                               "path": "-"}})
    module, net = Policy.from_checkpoint(checkpoint), load_exported(export)
    obs = random_obs(net, 3000)
    assert (module.act_batch(obs) == net.act_batch(obs)).all()
    decision = ExportedRLPolicy(export).decide(UEState(snr_db_history=[12.0]))
    assert decision.encoding in (("int4", "int8") if env_extra else ("float32",))


SERVE_WITHOUT_RLLIB = textwrap.dedent("""
    import json, pickle, sys
    import torch
    from serve_deployments.split_policies import PolicySpec, load_policy
    from serve_deployments.split_schema import UEState

    def refuse(*args, **kwargs):
        raise RuntimeError("the serving path tried to unpickle")

    pickle.load = pickle.loads = torch.load = refuse
    policy = load_policy(PolicySpec(kind="rllib", path=sys.argv[1]))
    decision = policy.decide(UEState(snr_db_history=[3.0, 12.3], current_k=4))
    print(json.dumps({"k": decision.k, "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")),
                      "rllib": any(m.startswith("ray.rllib") for m in sys.modules)}))
""")


def test_serving_loader_needs_neither_rllib_nor_pickle(trained):
    _, export = trained
    done = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_RLLIB, str(export)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rllib"] is False and report["ray"] == [] and 0 <= report["k"] <= 8


def test_damaged_exports_are_refused(trained, tmp_path):
    _, export = trained
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    weights = bytearray((copy / "policy.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (copy / "policy.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ValueError, match="sha256"):
        load_exported(copy)
    (copy / "policy.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="unsupported policy export"):
        load_exported(copy)


def test_export_policy_command(trained, tmp_path):
    checkpoint, _ = trained
    app = typer.Typer()
    app.command("export-policy")(export_policy_command)
    app.command("other")(lambda: None)
    ok = CliRunner().invoke(app, ["export-policy", str(checkpoint), "--out", str(tmp_path / "cli"), "--samples",
                                  "64"])
    assert ok.exit_code == 0, ok.output
    assert "exported DefaultPPOTorchRLModule" in ok.output and (tmp_path / "cli" / "policy.json").is_file()
    missing = CliRunner().invoke(app, ["export-policy", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    no_config = tmp_path / "bare"
    shutil.copytree(checkpoint, no_config)
    bare = CliRunner().invoke(app, ["export-policy", str(no_config), "--out", str(tmp_path / "y")])
    assert bare.exit_code == 2 and "env_config.json" in bare.output
