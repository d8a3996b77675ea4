"""ModelProfile: parameter counts against instantiated transformers models, FLOPs against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModelForCausalLM,
    Gemma3Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Qwen2Config,
    Qwen3Config,
)

from edgesplit.cost import ModelProfile

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 128}


def tiny_llama(**overrides) -> LlamaConfig:
    return LlamaConfig(**{**SMALL, "intermediate_size": 96, "num_key_value_heads": 2, **overrides})


def tiny_gpt2() -> GPT2Config:
    return GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=32, bos_token_id=0, eos_token_id=0)


def tiny_gemma3(**overrides) -> Gemma3TextConfig:
    kwargs = {**SMALL, "num_hidden_layers": 3, "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 96}
    return Gemma3TextConfig(**{**kwargs, "sliding_window": 4, **overrides})


CONFIGS = {
    "llama-biases": lambda: tiny_llama(attention_bias=True, mlp_bias=True, num_hidden_layers=3),
    "llama-tied": lambda: tiny_llama(tie_word_embeddings=True),
    "gpt2": tiny_gpt2,
    "gpt2-inner": lambda: GPT2Config(n_embd=64, n_layer=3, n_head=2, n_inner=80, vocab_size=128, n_positions=16),
    "gpt_neox": lambda: GPTNeoXConfig(**SMALL, intermediate_size=256, rotary_pct=0.5, use_parallel_residual=False),
    "opt-projected": lambda: OPTConfig(**SMALL, ffn_dim=256, word_embed_proj_dim=32, max_position_embeddings=64),
    "opt-untied": lambda: OPTConfig(**SMALL, ffn_dim=200, max_position_embeddings=64, tie_word_embeddings=False),
    "opt-post-ln": lambda: OPTConfig(**SMALL, ffn_dim=128, max_position_embeddings=16, do_layer_norm_before=False),
    "qwen2": lambda: Qwen2Config(**SMALL, num_key_value_heads=2, intermediate_size=96),
    "qwen3": lambda: Qwen3Config(**SMALL, num_key_value_heads=2, intermediate_size=96, head_dim=24),
    "mistral": lambda: MistralConfig(**SMALL, num_key_value_heads=1, intermediate_size=96, sliding_window=8),
    "gemma3_text": tiny_gemma3,
}


def decoder_layers(model: torch.nn.Module, n: int) -> torch.nn.ModuleList:
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    assert len(lists) == 1, "expected exactly one ModuleList of decoder layers"
    return lists[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_params_match_instantiated_model_per_layer_and_total(name: str) -> None:
    config = CONFIGS[name]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    profile = ModelProfile.from_config(config)
    actual_layers = [sum(p.numel() for p in layer.parameters()) for layer in decoder_layers(model, profile.num_layers)]
    assert [layer.params for layer in profile.layers] == actual_layers
    assert profile.total_params == sum(p.numel() for p in model.parameters())


def test_multimodal_gemma3_uses_its_text_config() -> None:
    text = tiny_gemma3()
    assert ModelProfile.from_config(Gemma3Config(text_config=text.to_dict())).total_params == (
        ModelProfile.from_config(text).total_params
    )


def test_smollm2_135m_parameter_count() -> None:
    config = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
    )  # fmt: skip
    profile = ModelProfile.from_config(config)
    assert abs(profile.total_params - 134.5e6) < 0.1e6
    assert profile.tied_embeddings and profile.head_dim == 64 and profile.num_layers == 30
    untied = ModelProfile.from_config(LlamaConfig(**{**config.to_dict(), "tie_word_embeddings": False}))
    assert untied.total_params - profile.total_params == 49152 * 576


def test_tiny_llama_flops_by_hand() -> None:
    profile = ModelProfile.from_config(tiny_llama())
    # hidden 64, 4 heads x 16, 2 KV heads, MLP 96 (gated), vocab 128.
    proj = 2 * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64)
    mlp = 2 * 3 * 64 * 96
    attn = 2 * 2 * 4 * 16
    assert (proj, mlp, attn) == (24576, 36864, 256)
    assert profile.decode_flops(0, 2, context_len=10) == 2 * (proj + mlp + attn * 10)
    # causal prefill of 5 tokens: positions attend 1+2+3+4+5 = 15 in total.
    assert profile.prefill_flops(0, 2, 5) == 2 * (5 * (proj + mlp) + attn * 15) == 622080
    assert profile.prefill_flops(1, 2, 5) == profile.prefill_flops(0, 2, 5) // 2
    assert profile.head_flops(1) == 2 * 64 * 128
    assert profile.layers[0].kv_bytes_per_token(2) == 2 * 2 * 16 * 2
    assert profile.layers[0].params == 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 96 + 2 * 64


def test_tiny_gpt2_flops_and_params_by_hand() -> None:
    profile = ModelProfile.from_config(tiny_gpt2())
    # n_embd 64, 4 heads, n_inner None -> 256, 2-matrix MLP, biases and LayerNorms everywhere.
    dense = 2 * (64 * 192 + 64 * 64) + 2 * 2 * 64 * 256
    assert profile.layers[0].dense_flops_per_token == dense == 98304
    assert profile.decode_flops(0, 2, context_len=7) == 2 * (dense + 256 * 7)
    layer = 2 * 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64)
    assert profile.layers[1].params == layer
    assert profile.embedding_params == 128 * 64 + 32 * 64
    assert profile.total_params == 128 * 64 + 32 * 64 + 2 * layer + 2 * 64


@pytest.mark.parametrize("name", ["llama-biases", "gpt2", "opt-projected", "gemma3_text", "mistral"])
def test_decode_flops_match_torch_flop_counter(name: str) -> None:
    """One cached decode step under eager attention: every matmul torch counts, we count."""
    config = CONFIGS[name]()
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).eval()
    profile = ModelProfile.from_config(config)
    ids = torch.arange(10).unsqueeze(0) % 100 + 1
    with torch.no_grad():
        cache = model(ids[:, :9], use_cache=True).past_key_values
        with FlopCounterMode(display=False) as counter:
            model(ids[:, 9:], past_key_values=cache, use_cache=True)
    ours = profile.decode_flops(0, profile.num_layers, 10) + profile.head_flops(1) + profile.embedding_flops_per_token
    assert counter.get_total_flops() == ours


def test_sliding_window_caps_attention_and_kv_cache() -> None:
    profile = ModelProfile.from_config(
        tiny_gemma3(layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    )
    assert [layer.sliding_window for layer in profile.layers] == [4, None, 4]
    assert [layer.attended(9) for layer in profile.layers] == [4, 9, 4]
    assert profile.head_dim == 32 != profile.hidden_size // profile.num_heads
    sliding, full = profile.layers[0], profile.layers[1]
    for tokens in range(1, 9):
        for past in range(4):
            expected = sum(min(past + t, 4) for t in range(1, tokens + 1))
            assert sliding.causal_attended_sum(tokens, past) == expected
            assert full.causal_attended_sum(tokens, past) == sum(past + t for t in range(1, tokens + 1))
    assert sliding.kv_cache_bytes(100, 4) == 4 * sliding.kv_bytes_per_token(4)
    assert full.kv_cache_bytes(100, 4) == 100 * full.kv_bytes_per_token(4)


def test_prefill_equals_sum_of_decode_steps() -> None:
    profile = ModelProfile.from_config(CONFIGS["mistral"]())
    steps = sum(profile.decode_flops(0, 2, context_len=c) for c in range(4, 4 + 12))
    assert profile.prefill_flops(0, 2, 12, past_len=3) == steps


@pytest.mark.parametrize("tied", [True, False])
def test_device_and_edge_sides_partition_the_model(tied: bool) -> None:
    profile = ModelProfile.from_config(tiny_llama(num_hidden_layers=4, tie_word_embeddings=tied))
    L, shared = profile.num_layers, profile.lm_head_params if tied else 0
    for k in range(L + 1):
        held = profile.device_params(k) + profile.edge_params(k)
        # A tied head is held twice when the embedding (UE) and the head (edge) live apart.
        assert held == profile.total_params + (shared if 0 < k < L else 0)
        flops = profile.device_flops(k, 6) + profile.edge_flops(k, 6)
        assert flops == profile.prefill_flops(0, L, 6) + profile.head_flops(1)
    assert profile.device_flops(0, 6) == 0 and profile.device_params(0) == 0
    assert profile.edge_flops(L, 6) == 0 and profile.edge_params(L) == 0


def test_bad_inputs_raise() -> None:
    profile = ModelProfile.from_config(tiny_llama())
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        profile.device_flops(3, 4)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        profile.check_split(-1)
    with pytest.raises(ValueError, match="tokens"):
        profile.prefill_flops(0, 2, 0)
    with pytest.raises(ValueError, match="k_from <= k_to"):
        profile.prefill_flops(2, 1, 3)
    with pytest.raises(ValueError, match="context_len"):
        profile.decode_flops(0, 2, 0)


def test_unknown_family_without_llama_fields_is_rejected() -> None:
    class Odd:
        model_type = "odd"
        hidden_size = 64

    with pytest.raises(ValueError, match="unsupported config family 'odd'.*gpt2"):
        ModelProfile.from_config(Odd())


def test_unknown_llama_like_family_falls_back_with_a_warning() -> None:
    config = tiny_llama()
    config.model_type = "mystery"  # instance attribute: the class keeps "llama"
    with pytest.warns(UserWarning, match="mystery"):
        profile = ModelProfile.from_config(config)
    assert profile.total_params == ModelProfile.from_config(tiny_llama()).total_params
