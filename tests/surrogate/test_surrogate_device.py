"""The surrogate's torch device (fit-surrogate --torch-device) and the sensitivity command's device and dtype: CPU
paths for real, refusals before any work, CUDA agreement where there is a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from surrogate.ensemble import EnsembleConfig
from surrogate.fit import fit_surrogate
from surrogate.sensitivity import measure_sensitivity
from surrogate.synthetic import synthetic_cells

SMALL = EnsembleConfig(hidden_size=16, depth=1, epochs=60, ensemble_size=3, lr=1e-2, seed=0)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells")
    synthetic_cells(seed=0).to_parquet(path / "cells.parquet")
    return path


def test_explicit_cpu_is_todays_fit(data):
    default = fit_surrogate(data, None, SMALL, calibration_folds=0).surrogate
    cpu = fit_surrogate(data, None, SMALL, calibration_folds=0, device="cpu").surrogate
    assert cpu.ensemble.device == torch.device("cpu")
    frame = synthetic_cells(seed=1)
    assert np.array_equal(default.predict(frame).mean, cpu.predict(frame).mean)


def test_fit_surrogate_command_takes_a_device(data, tmp_path):
    from edgesplit.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["fit-surrogate", "--data", str(data), "--out", str(tmp_path / "ckpt"),
                             "--calibration-folds", "0", "--torch-device", "cpu"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["fit-surrogate", "--data", str(data), "--out", str(tmp_path / "bad"),
                              "--torch-device", "tpu"])
    assert bad.exit_code == 2 and "unknown device 'tpu'" in bad.output and not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--torch-device", "cpu", "--dtype", "float16"], "float16 on CPU is refused"),
    (["--torch-device", "cpu", "--dtype", "int8"], "unknown dtype 'int8'"),
    pytest.param(["--torch-device", "cuda"], "torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")),
])
def test_sensitivity_command_refuses_an_unusable_device_or_dtype(tmp_path, extra, message):
    from edgesplit.cli import app

    result = CliRunner().invoke(app, ["sensitivity", "--out", str(tmp_path / "s.json"), *extra])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "s.json").exists()


def test_sensitivity_in_bf16_on_cpu_when_allowed():
    from tests.conftest import make_tiny

    tiny = make_tiny("llama")
    tiny.model.to(torch.bfloat16)
    ids = torch.randint(2, 128, (64,), generator=torch.Generator().manual_seed(0))
    profile = measure_sensitivity(tiny, ids, context=32, tokens=64)
    assert all(np.isfinite(profile.iso)) and max(profile.iso) > 0


@needs_cuda
def test_surrogate_on_cuda_agrees_with_cpu(data):
    cpu = fit_surrogate(data, None, SMALL, calibration_folds=0, device="cpu").surrogate
    gpu = fit_surrogate(data, None, SMALL, calibration_folds=0, device="cuda").surrogate
    assert gpu.ensemble.device.type == "cuda"
    frame = synthetic_cells(seed=1)
    assert np.allclose(cpu.predict(frame).mean, gpu.predict(frame).mean, atol=1e-3)
    assert all(t.device.type == "cpu" for t in gpu.ensemble.state_dict().values())  # checkpoints hold host tensors


@needs_cuda
def test_sensitivity_on_cuda_agrees_with_cpu():
    from tests.conftest import make_tiny

    ids = torch.randint(2, 128, (64,), generator=torch.Generator().manual_seed(0))
    cpu = measure_sensitivity(make_tiny("llama"), ids, context=32, tokens=64)
    gpu_model = make_tiny("llama")
    gpu_model.model.to("cuda")
    gpu = measure_sensitivity(gpu_model, ids, context=32, tokens=64)
    assert np.allclose(cpu.iso, gpu.iso, rtol=1e-3)
