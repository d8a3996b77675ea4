"""``edgesplit profile --torch-device/--dtype``: refusals before any work, a real CPU run in bfloat16 (allowed
explicitly), the dtype in the run's identity (older float32 runs still resume), and the engine on a GPU where
there is one."""

from __future__ import annotations

import json

import pytest
import torch

from edgesplit.profile import ProfileConfig, evaluate_cells, prepare_windows
from edgesplit.profile.cells import enumerate_cells
from edgesplit.profile.command import _torch_options
from tests.profile.conftest import invoke_profile

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(("extra", "message"), [
    (["--torch-device", "tpu"], "unknown device 'tpu'"),
    (["--torch-device", "cpu", "--dtype", "bfloat16"], "bfloat16 on CPU is refused"),
    (["--torch-device", "cpu", "--dtype", "float8"], "unknown dtype 'float8'"),
    pytest.param(["--torch-device", "cuda"], "torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")),
])
def test_unusable_device_or_dtype_exits_2_before_any_work(tiny_dir, tmp_path, extra, message):
    out = tmp_path / "run"
    result = invoke_profile(tiny_dir, out, *extra)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --torch-device/--dtype:") and message in result.stderr
    assert not out.exists()


def test_bf16_on_cpu_when_allowed_and_dtype_is_part_of_the_identity(tiny_dir, tmp_path):
    out = tmp_path / "run"
    first = invoke_profile(tiny_dir, out, "--torch-device", "cpu", "--dtype", "bfloat16", "--allow-cpu-half")
    assert first.exit_code == 0, first.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["torch_device"] == "cpu" and saved["identity"]["dtype"] == "bfloat16"
    other = invoke_profile(tiny_dir, out, "--torch-device", "cpu", "--dtype", "float32")
    assert other.exit_code == 2 and "dtype: 'bfloat16' there, 'float32' now" in other.stderr


def test_a_run_written_before_the_dtype_joined_the_identity_resumes(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert invoke_profile(tiny_dir, out, "--torch-device", "cpu").exit_code == 0
    saved = json.loads((out / "config.json").read_text())
    del saved["identity"]["dtype"]
    (out / "config.json").write_text(json.dumps(saved))
    again = invoke_profile(tiny_dir, out, "--torch-device", "auto" if not torch.cuda.is_available() else "cpu")
    assert again.exit_code == 0, again.output
    assert "0 cells computed, 6 already in" in again.stdout


def test_ray_workers_evaluate_on_cpu(tmp_path):
    assert _torch_options("auto", "auto", False, workers=2) == {"torch_device": "cpu", "dtype": "float32",
                                                                 "allow_cpu_half": False}
    with pytest.raises(ValueError, match="workers=2 evaluates on Ray CPU workers"):
        ProfileConfig(out=tmp_path, workers=2, torch_device="cuda")
    with pytest.raises(ValueError, match="must be resolved"):
        ProfileConfig(out=tmp_path, torch_device="auto")
    with pytest.raises(ValueError, match="float16 on CPU is refused"):
        ProfileConfig(out=tmp_path, dtype="float16")
    assert ProfileConfig(out=tmp_path, dtype="float16", allow_cpu_half=True).identity()["dtype"] == "float16"


@needs_cuda
def test_profile_engine_on_cuda_agrees_with_cpu(tiny_dir, tmp_path):
    from edgesplit.profile.runner import load_inputs

    results = {}
    for device in ("cpu", "cuda"):
        config = ProfileConfig(out=tmp_path / device, model=str(tiny_dir), snr_db=(5.0, 20.0), splits=(1, 2), seeds=2,
                               tokens=64, context=32, torch_device=device)
        inputs = load_inputs(config)
        prepared = prepare_windows(inputs.model, inputs.token_ids, config.context)
        cells = enumerate_cells((1, 2), config.settings(), config.seed_list, config.fading)
        results[device] = [r.quality.perplexity for group in evaluate_cells(inputs.model, prepared, cells)
                           for r in group]
    assert results["cpu"] == pytest.approx(results["cuda"], rel=1e-3)
