"""Normalise the config field names of each decoder-only family into one set of numbers.

Each family names the same things differently (GPT-2 ``n_embd``/``n_inner``, OPT ``ffn_dim`` and
``word_embed_proj_dim``, Gemma3 a ``head_dim`` unrelated to ``hidden_size / heads`` ...) and places
biases and norms differently; the rules below mirror the transformers modeling code so that the
parameter count of :class:`edgesplit.cost.ModelProfile` equals the instantiated model's exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

_LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")
_QK_NORM_FAMILIES = ("qwen3", "gemma3_text")
SUPPORTED_FAMILIES = (*_LLAMA_LIKE, "gpt2", "gpt_neox", "opt")


@dataclass(frozen=True)
class ConfigArch:
    """Family-independent numbers read from a config (input of ModelProfile)."""

    family: str
    """transformers ``model_type`` of the text config."""
    hidden: int
    """Residual-stream width."""
    num_layers: int
    """Decoder layers."""
    heads: int
    """Query heads."""
    kv_heads: int
    """Key/value heads (GQA)."""
    head_dim: int
    """Width of one head."""
    intermediate: int
    """MLP inner width."""
    vocab: int
    """Vocabulary size."""
    gated: bool
    """3-matrix gate/up/down MLP (True) or 2-matrix MLP (False)."""
    qkv_bias: bool
    """Whether q, k and v projections carry biases."""
    o_bias: bool
    """Whether the output projection carries a bias."""
    mlp_bias: bool
    """Whether the MLP matrices carry biases."""
    layer_norm_params: int
    """Parameters of the per-layer norms over the hidden size (all of them together)."""
    qk_norm_params: int
    """Parameters of per-head q/k norms (Qwen3, Gemma3), 0 elsewhere."""
    embedding_params: int
    """Token + positional embeddings + input projection."""
    embedding_flops: int
    """Matmul FLOPs per token of the embedding stage (OPT's project_in)."""
    final_params: int
    """Final norm + output projection before the LM head."""
    final_flops: int
    """Matmul FLOPs per token of the output projection."""
    head_in: int
    """Input width of the LM head."""
    tied: bool
    """LM head shares the token embedding weight."""
    windows: tuple[int | None, ...]
    """Sliding window per layer (None: full attention)."""

    def __post_init__(self) -> None:
        if len(self.windows) != self.num_layers:
            raise ValueError(f"windows has {len(self.windows)} entries for {self.num_layers} layers")
        for name in ("hidden", "num_layers", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "head_in"):
            if getattr(self, name) < 1:
                raise ValueError(f"config field {name} must be >= 1, got {getattr(self, name)!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")


def arch_from_config(config: Any) -> ConfigArch:
    """Normalise a transformers config (the text part of a multimodal one) into a :class:`ConfigArch`."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    family = getattr(cfg, "model_type", "")
    if family == "gpt2":
        return _gpt2_arch(cfg)
    if family == "gpt_neox":
        return _neox_arch(cfg)
    if family == "opt":
        return _opt_arch(cfg)
    if family not in _LLAMA_LIKE:
        if not all(hasattr(cfg, f) for f in ("hidden_size", "num_attention_heads", "intermediate_size")):
            raise ValueError(
                f"unsupported config family {family!r}: supported are {', '.join(SUPPORTED_FAMILIES)} "
                "(or any config with Llama field names)"
            )
        warnings.warn(f"model_type {family!r} is not known; assuming the Llama layout", stacklevel=3)
    return _llama_like_arch(cfg, family)


def _windows(cfg: Any, num_layers: int) -> tuple[int | None, ...]:
    """Per-layer sliding window, the way the modeling code decides it."""
    window = getattr(cfg, "sliding_window", None)
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types is not None:
        return tuple(window if t == "sliding_attention" else None for t in layer_types[:num_layers])
    # Mistral has no layer_types: a set sliding_window applies to every layer.
    use = getattr(cfg, "use_sliding_window", True)
    return tuple(window if (window and use) else None for _ in range(num_layers))


def _llama_like_arch(cfg: Any, family: str) -> ConfigArch:
    h, heads, n = cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers
    attention_bias = bool(getattr(cfg, "attention_bias", False))
    norms_per_layer = 4 if family == "gemma3_text" else 2
    head_dim = getattr(cfg, "head_dim", None) or h // heads
    return ConfigArch(
        family=family or "llama-like",
        hidden=h,
        num_layers=n,
        heads=heads,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        intermediate=cfg.intermediate_size,
        vocab=cfg.vocab_size,
        gated=True,
        # Qwen2 hard-codes bias on q/k/v only.
        qkv_bias=attention_bias or family == "qwen2",
        o_bias=attention_bias,
        mlp_bias=bool(getattr(cfg, "mlp_bias", False)),
        layer_norm_params=norms_per_layer * h,
        qk_norm_params=2 * head_dim if family in _QK_NORM_FAMILIES else 0,
        embedding_params=cfg.vocab_size * h,
        embedding_flops=0,
        final_params=h,
        final_flops=0,
        head_in=h,
        tied=bool(getattr(cfg, "tie_word_embeddings", False)),
        windows=_windows(cfg, n),
    )


def _gpt2_arch(cfg: Any) -> ConfigArch:
    h, heads, n = cfg.n_embd, cfg.n_head, cfg.n_layer
    return ConfigArch(
        family="gpt2",
        hidden=h,
        num_layers=n,
        heads=heads,
        kv_heads=heads,
        head_dim=h // heads,
        intermediate=cfg.n_inner or 4 * h,
        vocab=cfg.vocab_size,
        gated=False,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        layer_norm_params=2 * 2 * h,
        qk_norm_params=0,
        embedding_params=(cfg.vocab_size + cfg.n_positions) * h,
        embedding_flops=0,
        final_params=2 * h,
        final_flops=0,
        head_in=h,
        tied=bool(cfg.tie_word_embeddings),
        windows=(None,) * n,
    )


def _neox_arch(cfg: Any) -> ConfigArch:
    # rotary_pct and use_parallel_residual change neither parameters nor matmul FLOPs.
    h, heads, n = cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers
    bias = bool(getattr(cfg, "attention_bias", True))
    return ConfigArch(
        family="gpt_neox",
        hidden=h,
        num_layers=n,
        heads=heads,
        kv_heads=heads,
        head_dim=h // heads,
        intermediate=cfg.intermediate_size,
        vocab=cfg.vocab_size,
        gated=False,
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=True,
        layer_norm_params=2 * 2 * h,
        qk_norm_params=0,
        embedding_params=cfg.vocab_size * h,
        embedding_flops=0,
        final_params=2 * h,
        final_flops=0,
        head_in=h,
        tied=bool(cfg.tie_word_embeddings),
        windows=(None,) * n,
    )


def _opt_arch(cfg: Any) -> ConfigArch:
    h, heads, n = cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers
    proj_dim = cfg.word_embed_proj_dim or h
    projected = proj_dim != h
    ln = 2 * h if getattr(cfg, "layer_norm_elementwise_affine", True) else 0
    has_final_ln = cfg.do_layer_norm_before and not getattr(cfg, "_remove_final_layer_norm", False)
    bias = bool(getattr(cfg, "enable_bias", True))
    # OPT's learned positions carry an offset of 2 extra rows.
    positions = (cfg.max_position_embeddings + 2) * h
    return ConfigArch(
        family="opt",
        hidden=h,
        num_layers=n,
        heads=heads,
        kv_heads=heads,
        head_dim=h // heads,
        intermediate=cfg.ffn_dim,
        vocab=cfg.vocab_size,
        gated=False,
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=bias,
        layer_norm_params=2 * ln,
        qk_norm_params=0,
        embedding_params=cfg.vocab_size * proj_dim + positions + (proj_dim * h if projected else 0),
        embedding_flops=2 * proj_dim * h if projected else 0,
        final_params=(ln if has_final_ln else 0) + (h * proj_dim if projected else 0),
        final_flops=2 * h * proj_dim if projected else 0,
        head_in=proj_dim,
        tied=bool(cfg.tie_word_embeddings),
        windows=(None,) * n,
    )
