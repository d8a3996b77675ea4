"""Device and dtype resolution (edgesplit.models.device): the CPU paths for real, the CUDA decisions with torch's
CUDA queries patched, and the split engine on a real GPU where there is one."""

from __future__ import annotations

import pytest
import torch

from edgesplit.models import device as device_module
from edgesplit.models import load_model
from edgesplit.models.device import check_gpu_reservation, ray_gpus_reserved, resolve_device, resolve_dtype
from edgesplit.split import DeviceHead, EdgeTail
from tests.conftest import make_tiny

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch reports two bf16-capable GPUs (nothing is put on them: only the decisions are tested)."""
    monkeypatch.setattr(device_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_module.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(device_module.torch.cuda, "is_bf16_supported", lambda: True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-qwen2")
    make_tiny("qwen2").model.save_pretrained(path)
    return path


def test_cpu_and_auto_without_a_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="torch sees no CUDA device.*use cpu or auto"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "cuda:-1", ""])
def test_unknown_device_names_list_the_accepted_ones(name):
    with pytest.raises(ValueError, match="auto, cpu, cuda|GPU index"):
        resolve_device(name)


def test_cuda_decisions(fake_cuda):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="sees 2 CUDA device"):
        resolve_device("cuda:2")
    # a Ray actor that reserved no GPU: auto stays on CPU, cuda is refused
    assert resolve_device("auto", gpus_reserved=0) == torch.device("cpu")
    assert resolve_device("auto", gpus_reserved=1) == torch.device("cuda")
    with pytest.raises(ValueError, match="reserved no GPU: give it num_gpus > 0"):
        resolve_device("cuda", gpus_reserved=0)


def test_dtype_auto_is_bf16_on_cuda_only_where_supported(fake_cuda, monkeypatch):
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("float16", "cuda") == torch.float16
    monkeypatch.setattr(device_module.torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto", "cuda") == torch.float32


def test_dtype_on_cpu():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    for name in ("bfloat16", "float16", torch.bfloat16):
        with pytest.raises(ValueError, match="on CPU is refused.*--allow-cpu-half"):
            resolve_dtype(name, "cpu")
    assert resolve_dtype("bfloat16", "cpu", allow_cpu_half=True) == torch.bfloat16
    with pytest.raises(ValueError, match="accepted: auto, float32, float16, bfloat16"):
        resolve_dtype("float8", "cpu")


@pytest.mark.parametrize(("device", "gpus", "message"), [
    ("cpu", 1, "reserves a GPU that device 'cpu' would leave idle"),
    ("cuda", 0, "needs num_gpus > 0"),
    ("cuda:0", 0, "needs num_gpus > 0"),
    ("auto", -1, "num_gpus must be >= 0"),
    ("tpu", 1, "unknown device"),
])
def test_bad_gpu_reservations(device, gpus, message):
    with pytest.raises(ValueError, match=message):
        check_gpu_reservation(device, gpus)


@pytest.mark.parametrize(("device", "gpus"), [("auto", 0), ("auto", 1), ("cuda", 0.5), ("cpu", 0)])
def test_good_gpu_reservations(device, gpus):
    check_gpu_reservation(device, gpus)


def test_a_ray_actor_without_gpus_resolves_auto_to_cpu(ray_session):
    ray = ray_session

    @ray.remote(num_cpus=0)
    def probe():
        return ray_gpus_reserved(), str(resolve_device("auto"))

    assert ray_gpus_reserved() is None  # the driver is no Ray worker
    assert ray.get(probe.remote()) == (0, "cpu")


def test_load_model_on_cpu_with_each_dtype_rule(tiny_dir):
    assert load_model(str(tiny_dir), dtype="auto", device="cpu").model.dtype == torch.float32
    with pytest.raises(ValueError, match="--allow-cpu-half"):
        load_model(str(tiny_dir), dtype="bfloat16")
    half = load_model(str(tiny_dir), dtype="bfloat16", allow_cpu_half=True)
    assert half.model.dtype == torch.bfloat16 and half.model.device.type == "cpu"
    ids = torch.randint(2, 128, (1, 6))
    hidden = DeviceHead(half, 2)(ids)
    assert hidden.dtype == torch.bfloat16 and EdgeTail(half, 2)(hidden).shape == (1, 6, 128)


@needs_cuda
def test_split_engine_on_cuda_matches_cpu(tiny_dir):
    cpu = load_model(str(tiny_dir), dtype="float32", device="cpu")
    gpu = load_model(str(tiny_dir), dtype="float32", device="cuda")
    assert gpu.model.device.type == "cuda"
    ids = torch.randint(2, 128, (2, 7))  # host tensors in: the engine moves them to the weights
    for k in (0, 2, 4):
        head_cpu, head_gpu = DeviceHead(cpu, k)(ids), DeviceHead(gpu, k)(ids)
        logits_cpu = EdgeTail(cpu, k)(head_cpu)
        logits_gpu = EdgeTail(gpu, k)(head_gpu.cpu())  # what crossed the link arrives in host memory
        assert logits_gpu.device.type == "cuda"
        assert torch.allclose(logits_cpu, logits_gpu.cpu(), atol=1e-4)


@needs_cuda
def test_auto_dtype_on_cuda_loads_bf16_where_supported(tiny_dir):
    loaded = load_model(str(tiny_dir), dtype="auto", device="auto")
    assert loaded.model.device.type == "cuda"
    assert loaded.model.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
