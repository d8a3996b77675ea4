"""Shared fixtures: tiny random-weight models of every supported family (mechanics) and the real built-in model."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Qwen2Config,
    Qwen3Config,
)

from edgesplit.models import LoadedModel, from_model

# One thread: tiny-model tests run ~50x slower with 2 threads on a loaded 2-core machine.
torch.set_num_threads(1)

_COMMON = {"vocab_size": 128, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": None}
_ROTARY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2}

TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(**_ROTARY, **_COMMON),
    "mistral": lambda: MistralConfig(**_ROTARY, sliding_window=8, **_COMMON),
    "qwen2": lambda: Qwen2Config(**_ROTARY, **_COMMON),
    "qwen3": lambda: Qwen3Config(**_ROTARY, head_dim=16, **_COMMON),
    "gemma3_text": lambda: Gemma3TextConfig(**_ROTARY, head_dim=16, sliding_window=8, **_COMMON),
    "gpt2": lambda: GPT2Config(n_embd=64, n_layer=4, n_head=4, n_positions=128, **_COMMON),
    "gpt_neox": lambda: GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                      num_attention_heads=4, **_COMMON),
    "opt": lambda: OPTConfig(hidden_size=64, ffn_dim=128, num_hidden_layers=4, num_attention_heads=4,
                             word_embed_proj_dim=64, max_position_embeddings=128, **_COMMON),
}


def make_tiny(family: str, seed: int = 0) -> LoadedModel:
    """A tiny random-weight model of ``family`` wrapped for splitting (mechanics only, no meaning)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(TINY_CONFIGS[family](), attn_implementation="sdpa")
    return from_model(model, name=f"tiny-{family}")


@pytest.fixture(scope="session", params=sorted(TINY_CONFIGS))
def tiny_model(request) -> LoadedModel:
    """Each supported family in turn, tiny and random."""
    return make_tiny(request.param)


@pytest.fixture(scope="session")
def tiny_llama() -> LoadedModel:
    """A tiny random Llama (the built-in's family) for fast mechanics tests."""
    return make_tiny("llama")


@pytest.fixture(scope="session")
def real_model() -> LoadedModel:
    """The built-in SmolLM2-135M (converted once into the edgesplit cache)."""
    from edgesplit.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray instance for the whole test session (2 CPUs, no dashboard, small object store)."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False,
                 runtime_env={"env_vars": {"RAY_DISABLE_USAGE_STATS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A 3-layer random Llama saved with the built-in model's tokenizer, loadable by path like any HF model (the profile
    and prune CLI tests; modules with their own ``tiny_dir`` override it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from edgesplit.models import builtin_dir

    try:
        tokenizer = AutoTokenizer.from_pretrained(builtin_dir("smollm2-135m"))
    except (FileNotFoundError, KeyError, OSError) as err:
        pytest.skip(f"built-in tokenizer unavailable: {err}")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
