"""The fleet's edge device and dtype (``--torch-device``, ``--dtype``, ``--allow-cpu-half``, ``--edge-gpus``): bad
combinations exit 2 before anything is written, an edge converts its shared weights only when it must, and a
smoke run with bfloat16 CPU edges on Ray (allowed explicitly) serves every request."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cluster import run_fleet
from cluster.edge_actor import place_model
from cluster.fleet import FleetConfig
from tests.conftest import make_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny("llama").model.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--torch-device", "cuda"], "needs num_gpus > 0"),
    (["--torch-device", "cpu", "--edge-gpus", "1"], "would leave idle"),
    (["--torch-device", "tpu"], "unknown device 'tpu'"),
    (["--edge-gpus", "-1"], "num_gpus must be >= 0"),
    (["--dtype", "bfloat16"], "refused unless allowed (--allow-cpu-half)"),
    (["--dtype", "int8"], "unknown edge dtype 'int8'"),
    (["--edge", "serve", "--dtype", "float16", "--allow-cpu-half"], "serve backend's replicas load float32"),
])
def test_bad_edge_device_exits_2_and_writes_nothing(tiny_dir, tmp_path, capsys, args, message) -> None:
    out = tmp_path / "out"
    assert run_fleet.main(["--model", tiny_dir, *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_gpus_the_cluster_lacks_are_refused(ray_session, tiny_dir, tmp_path, capsys) -> None:
    if ray_session.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this Ray cluster has GPUs")
    out = tmp_path / "out"
    argv = ["--model", tiny_dir, "--smoke-test", "--policy", "fixed:2", "--edge-gpus", "1", "--out", str(out)]
    assert run_fleet.main(argv) == 2
    assert "needs 1 Ray GPUs (1 edges x 1, --edge-gpus) but the cluster has 0" in capsys.readouterr().err
    assert not out.exists()


def test_edge_options_follow_the_config() -> None:
    config = FleetConfig(edge_device="auto", edge_dtype="bfloat16", allow_cpu_half=True)
    assert config.edge_options() == {"device": "auto", "dtype": "bfloat16", "allow_cpu_half": True}
    assert FleetConfig(edge_device="cuda", edge_num_gpus=0.5).edge_num_gpus == 0.5


def test_place_model_keeps_the_shared_view_when_nothing_changes() -> None:
    loaded = make_tiny("llama")
    pointer = loaded.model.lm_head.weight.data_ptr()
    assert place_model(loaded, "auto" if not torch.cuda.is_available() else "cpu", "auto") is loaded
    assert loaded.model.lm_head.weight.data_ptr() == pointer  # CPU float32: no copy
    with pytest.raises(ValueError, match="--allow-cpu-half"):
        place_model(loaded, "cpu", "bfloat16")
    assert place_model(loaded, "cpu", "bfloat16", allow_cpu_half=True).model.dtype == torch.bfloat16


@pytest.mark.ray
def test_bf16_cpu_edges_on_ray_serve_every_request(ray_session, tiny_dir, tmp_path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path / "run"
    try:
        status = run_fleet.main(["--model", tiny_dir, "--smoke-test", "--policy", "fixed:2", "--dtype", "bfloat16",
                                 "--allow-cpu-half", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    rows = pd.read_parquet(out / "requests.parquet")
    assert len(rows) == 4 and (rows["status"] == "ok").all(), rows["error"].tolist()
