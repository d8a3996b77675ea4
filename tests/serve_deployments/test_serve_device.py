"""The edge replicas' device: the app's ``device`` against ``ray_actor_options.num_gpus`` (static checks of the
app args, compose options and the Serve YAML), the replica's own check against what Ray reserved, a real
replica on CPU, and sampling from GPU logits where there is a GPU."""

from __future__ import annotations

import pydantic
import pytest
import torch
import typer
import yaml

from edgesplit.split.sampling import Sampler
from serve_deployments.app import EdgeAppArgs, compose
from serve_deployments.command import DEFAULT_CONFIG, load_config
from serve_deployments.edge_device import check_edge_gpus, place_engine, replica_device
from tests.conftest import make_tiny

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_device_field_defaults_to_auto_and_rejects_unknown_names():
    assert EdgeAppArgs().device == "auto"
    assert EdgeAppArgs(device="CUDA:1").device == "cuda:1"
    with pytest.raises(pydantic.ValidationError, match="unknown device 'tpu'"):
        EdgeAppArgs(device="tpu")


@pytest.mark.parametrize(("device", "options", "message"), [
    ("cpu", {"num_cpus": 1, "num_gpus": 1}, "would leave idle"),
    ("cuda", {"num_cpus": 1}, "needs num_gpus > 0"),
    ("cuda", None, "needs num_gpus > 0"),
])
def test_gpu_reservation_must_fit_the_device(device, options, message):
    with pytest.raises(ValueError, match=message):
        check_edge_gpus(device, options)
    with pytest.raises(ValueError, match=message):
        compose(EdgeAppArgs(device=device), {"ray_actor_options": options or {}})


def test_fitting_reservations_compose():
    for device, gpus in (("auto", 1), ("cuda", 0.5), ("auto", 0), ("cpu", 0)):
        compose(EdgeAppArgs(device=device), {"ray_actor_options": {"num_cpus": 1, "num_gpus": gpus}})
    compose(EdgeAppArgs(device="cuda"))  # no options: the YAML's deployments block decides, the replica checks


def test_serve_yaml_is_checked_before_deploying(tmp_path):
    load_config(DEFAULT_CONFIG)  # the packaged config: auto on CPU
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["applications"][0]["args"]["device"] = "cpu"
    edge = next(d for d in raw["applications"][0]["deployments"] if d["name"] == "EdgeTailDeployment")
    edge["ray_actor_options"]["num_gpus"] = 1
    bad = tmp_path / "gpu.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(typer.Exit) as info:
        load_config(bad)
    assert info.value.exit_code == 2
    raw["applications"][0]["args"]["device"] = "auto"
    bad.write_text(yaml.safe_dump(raw))
    assert load_config(bad).applications[0].args["device"] == "auto"


def test_a_replica_checks_its_own_reservation(ray_session):
    ray = ray_session

    @ray.remote(num_cpus=0)
    def resolve(name):
        try:
            return str(replica_device(name))
        except ValueError as err:
            return f"error: {err}"

    assert ray.get(resolve.remote("auto")) == "cpu"
    assert ray.get(resolve.remote("cpu")) == "cpu"
    assert ray.get(resolve.remote("cuda")).startswith("error: device 'cuda' needs num_gpus > 0")
    assert str(replica_device("cpu")) == "cpu"  # outside Ray: torch's own view


def test_place_engine_moves_only_a_transformers_engine():
    class Engine:
        loaded = make_tiny("llama")

    place_engine(Engine(), torch.device("cpu"))
    assert Engine.loaded.model.device.type == "cpu"
    place_engine(object(), torch.device("cpu"))  # an engine without a transformers model: left alone


@pytest.mark.ray
def test_a_real_replica_starts_on_the_device_auto_picks(ray_session, tmp_path):
    from ray import serve

    from serve_deployments.loopback import start_serve

    tiny = make_tiny("llama")
    tiny.model.save_pretrained(tmp_path / "tiny")
    start_serve()
    try:
        app = compose(EdgeAppArgs(edge={"model": str(tmp_path / "tiny"), "torch_threads": 1}),
                      {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.5}})
        serve.run(app, name="device-test", route_prefix="/device-test")
        info = serve.get_deployment_handle("EdgeTailDeployment", "device-test").info.remote().result(timeout_s=120)
        assert info["num_layers"] == 4
    finally:
        serve.shutdown()


@needs_cuda
def test_sampling_from_gpu_logits_draws_what_cpu_logits_draw():
    logits = torch.randn(128, generator=torch.Generator().manual_seed(0))
    for position in range(5):
        on_cpu = Sampler(temperature=0.8, top_p=0.9, seed=3).choose(logits, position)
        on_gpu = Sampler(temperature=0.8, top_p=0.9, seed=3).choose(logits.cuda(), position)
        assert on_cpu == on_gpu
