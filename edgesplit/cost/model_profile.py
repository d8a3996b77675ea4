"""Parameters, FLOPs and bytes of a decoder-only LM, derived from its Hugging Face config.

``ModelProfile.from_config(config)`` reads any supported ``PretrainedConfig`` (Llama, Mistral, Qwen2,
Qwen3, Gemma3 text or multimodal, GPT-2, GPT-NeoX/Pythia, OPT; other Llama-like configs fall back to
the Llama layout with a warning) and describes every decoder layer: parameters (weights, biases and
norms, so the count equals ``sum(p.numel())`` of the instantiated model), FLOPs per token and KV-cache
elements per token.

Counting conventions:

- A multiply-add is 2 FLOPs; a ``[in → out]`` matmul costs ``2·in·out`` FLOPs per token. Only matmuls
  are counted (projections, MLP, attention, LM head): norms, activations, softmax, rotary and bias adds
  are < 1 % of the total and are left out.
- Attention over ``c`` attended positions costs ``2·2·c·heads·head_dim`` per token (scores + values;
  GQA shares K/V but every query head still does its own products). A sliding-window layer attends to
  at most ``window`` positions (the token itself included, as transformers' mask does).
- Causal prefill of ``T`` tokens after ``past_len`` cached ones: position ``t`` attends ``past_len + t``
  positions, ``t = 1..T``. Decoding one token at context length ``c`` equals a prefill of 1 token after
  ``c - 1`` cached ones, so prefill and decode share one formula.
- The embedding lookup costs 0 FLOPs (OPT's ``project_in`` matmul is counted); the "head" is the final
  norm, any output projection and the LM head (``2·hidden·vocab`` per token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgesplit.cost.config_arch import ConfigArch, arch_from_config


@dataclass(frozen=True)
class LayerProfile:
    """Static cost description of one decoder layer."""

    index: int
    """Position of the layer in the stack, 0-based."""
    attn_proj_params: int
    """Parameters of the q, k, v and output projections, biases included."""
    mlp_params: int
    """Parameters of the MLP (gate/up/down or fc1/fc2), biases included."""
    norm_params: int
    """Parameters of the layer's norms (LayerNorm weight+bias, RMSNorm weight, q/k norms)."""
    proj_flops_per_token: int
    """FLOPs per token of the q, k, v and output projections."""
    mlp_flops_per_token: int
    """FLOPs per token of the MLP matmuls."""
    attn_flops_per_position: int
    """Attention FLOPs per token per attended position: 2·2·heads·head_dim."""
    kv_elements_per_token: int
    """KV-cache elements stored per token: 2·kv_heads·head_dim."""
    sliding_window: int | None = None
    """Most positions a token attends to in this layer; None means the whole context."""

    def __post_init__(self) -> None:
        for name in (
            "attn_proj_params",
            "mlp_params",
            "norm_params",
            "proj_flops_per_token",
            "mlp_flops_per_token",
            "attn_flops_per_position",
            "kv_elements_per_token",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window must be None or >= 1, got {self.sliding_window}")

    @property
    def params(self) -> int:
        """All parameters of the layer."""
        return self.attn_proj_params + self.mlp_params + self.norm_params

    @property
    def dense_flops_per_token(self) -> int:
        """FLOPs per token that do not depend on the context (projections + MLP)."""
        return self.proj_flops_per_token + self.mlp_flops_per_token

    def param_bytes(self, bytes_per_param: float) -> float:
        """Bytes of the layer's weights at ``bytes_per_param`` (0.5 for 4-bit, 2 for fp16 ...)."""
        return self.params * bytes_per_param

    def attended(self, context_len: int) -> int:
        """Positions one token attends to when the context holds ``context_len`` positions."""
        return context_len if self.sliding_window is None else min(context_len, self.sliding_window)

    def flops_per_token(self, context_len: int) -> int:
        """FLOPs to run one token through this layer at context length ``context_len``."""
        return self.dense_flops_per_token + self.attn_flops_per_position * self.attended(context_len)

    def causal_attended_sum(self, tokens: int, past_len: int = 0) -> int:
        """Sum over ``t = 1..tokens`` of the positions attended by token ``past_len + t``."""
        return _capped_prefix_sum(past_len + tokens, self.sliding_window) - _capped_prefix_sum(
            past_len, self.sliding_window
        )

    def prefill_flops(self, tokens: int, past_len: int = 0) -> int:
        """FLOPs of a causal pass of ``tokens`` new tokens after ``past_len`` cached ones."""
        return self.dense_flops_per_token * tokens + self.attn_flops_per_position * self.causal_attended_sum(
            tokens, past_len
        )

    def kv_bytes_per_token(self, bytes_per_element: float) -> float:
        """KV-cache bytes this layer stores per token: 2·kv_heads·head_dim·bytes."""
        return self.kv_elements_per_token * bytes_per_element

    def kv_cache_bytes(self, context_len: int, bytes_per_element: float) -> float:
        """KV-cache bytes held for a context (a sliding-window layer keeps only its window)."""
        return self.attended(context_len) * self.kv_bytes_per_token(bytes_per_element)


def _capped_prefix_sum(n: int, window: int | None) -> int:
    """``sum_{t=1..n} min(t, window)`` in closed form."""
    if window is None or n <= window:
        return n * (n + 1) // 2
    return window * (window + 1) // 2 + (n - window) * window


@dataclass(frozen=True)
class ModelProfile:
    """Parameters and FLOPs of a decoder-only LM, split into embedding, layers and head."""

    family: str
    """transformers ``model_type`` of the (text) config, e.g. ``"llama"``."""
    hidden_size: int
    """Width of the residual stream: what crosses the link at a split."""
    vocab_size: int
    """Vocabulary size."""
    num_heads: int
    """Query heads per layer."""
    num_kv_heads: int
    """Key/value heads per layer (< num_heads with GQA)."""
    head_dim: int
    """Width of one attention head (Gemma3 may differ from hidden_size / num_heads)."""
    intermediate_size: int
    """MLP inner width."""
    gated_mlp: bool
    """True for the 3-matrix gate/up/down MLP (Llama, Qwen, Gemma); False for the 2-matrix one."""
    layers: tuple[LayerProfile, ...]
    """One profile per decoder layer, in order."""
    embedding_params: int
    """Token (and learned positional) embeddings plus any input projection."""
    embedding_flops_per_token: int
    """Matmul FLOPs of the embedding stage (0 unless there is an input projection, as in OPT)."""
    final_params: int
    """Final norm plus any output projection before the LM head."""
    final_flops_per_token: int
    """Matmul FLOPs of the output projection (0 for most families)."""
    lm_head_in_features: int
    """Input width of the LM head matrix (hidden_size, or OPT's word_embed_proj_dim)."""
    tied_embeddings: bool
    """True when the LM head shares its weight with the token embedding (counted once)."""

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a model needs at least one decoder layer")
        for name in ("hidden_size", "vocab_size", "num_heads", "num_kv_heads", "head_dim", "lm_head_in_features"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, config: Any) -> ModelProfile:
        """Build the profile from a transformers config (multimodal configs: the text part is used)."""
        return _profile_from_config(config)

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Number of decoder layers L (valid splits are 0..L)."""
        return len(self.layers)

    @property
    def lm_head_params(self) -> int:
        """Elements of the LM head matrix (shared with the embedding when tied)."""
        return self.vocab_size * self.lm_head_in_features

    @property
    def total_params(self) -> int:
        """Parameters of the whole model, a tied LM head counted once."""
        head = 0 if self.tied_embeddings else self.lm_head_params
        return self.embedding_params + sum(layer.params for layer in self.layers) + self.final_params + head

    @property
    def head_flops_per_token(self) -> int:
        """FLOPs per token of the output projection and the LM head (2·hidden·vocab)."""
        return self.final_flops_per_token + 2 * self.lm_head_params

    @property
    def token_id_bits(self) -> int:
        """Bits to send one token id losslessly: ceil(log2(vocab_size))."""
        return max(1, math.ceil(math.log2(self.vocab_size)))

    def check_split(self, k: int) -> None:
        """Raise ValueError unless ``k`` is a valid split point in [0, L]."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= self.num_layers:
            raise ValueError(f"split k must be an integer in [0, {self.num_layers}] for this model, got {k!r}")

    def _check_range(self, k_from: int, k_to: int) -> None:
        self.check_split(k_from)
        self.check_split(k_to)
        if k_from > k_to:
            raise ValueError(f"layer range needs k_from <= k_to, got [{k_from}, {k_to})")

    def layer_params(self, k_from: int, k_to: int) -> int:
        """Parameters of decoder layers [k_from, k_to)."""
        self._check_range(k_from, k_to)
        return sum(layer.params for layer in self.layers[k_from:k_to])

    def device_params(self, k: int) -> int:
        """Parameters the UE holds for split k: embedding + layers [0, k) (+ head when k = L).

        At k = 0 the UE sends token ids and holds nothing.
        """
        self.check_split(k)
        if k == 0:
            return 0
        params = self.embedding_params + self.layer_params(0, k)
        if k == self.num_layers:
            params += self.final_params + (0 if self.tied_embeddings else self.lm_head_params)
        return params

    def edge_params(self, k: int) -> int:
        """Parameters the edge holds for split k: layers [k, L) + head (+ embedding when k = 0)."""
        self.check_split(k)
        if k == self.num_layers:
            return 0
        params = self.layer_params(k, self.num_layers) + self.final_params + self.lm_head_params
        if k == 0:
            params += self.embedding_params - (self.lm_head_params if self.tied_embeddings else 0)
        return params

    # ---- FLOPs -------------------------------------------------------------------------------------
    def prefill_flops(self, k_from: int, k_to: int, tokens: int, *, past_len: int = 0) -> int:
        """FLOPs of layers [k_from, k_to) on a causal pass of ``tokens`` tokens after ``past_len`` cached."""
        self._check_range(k_from, k_to)
        _check_tokens(tokens, past_len)
        return sum(layer.prefill_flops(tokens, past_len) for layer in self.layers[k_from:k_to])

    def decode_flops(self, k_from: int, k_to: int, context_len: int) -> int:
        """FLOPs of layers [k_from, k_to) for one decoded token at ``context_len`` (itself included)."""
        if context_len < 1:
            raise ValueError(f"context_len must be >= 1 (it includes the decoded token), got {context_len}")
        return self.prefill_flops(k_from, k_to, 1, past_len=context_len - 1)

    def head_flops(self, logits_tokens: int) -> int:
        """FLOPs of final projection + LM head for ``logits_tokens`` positions."""
        if logits_tokens < 0:
            raise ValueError(f"logits_tokens must be >= 0, got {logits_tokens}")
        return self.head_flops_per_token * logits_tokens

    def device_flops(self, k: int, tokens: int, *, past_len: int = 0, logits_tokens: int = 1) -> int:
        """UE FLOPs for split k: embedding (~0) + layers [0, k), plus the head when k = L."""
        self.check_split(k)
        if k == 0:
            return 0
        flops = self.embedding_flops_per_token * tokens + self.prefill_flops(0, k, tokens, past_len=past_len)
        return flops + (self.head_flops(logits_tokens) if k == self.num_layers else 0)

    def edge_flops(self, k: int, tokens: int, *, past_len: int = 0, logits_tokens: int = 1) -> int:
        """Edge FLOPs for split k: layers [k, L) + final norm + LM head (+ embedding when k = 0)."""
        self.check_split(k)
        if k == self.num_layers:
            return 0
        flops = self.prefill_flops(k, self.num_layers, tokens, past_len=past_len) + self.head_flops(logits_tokens)
        return flops + (self.embedding_flops_per_token * tokens if k == 0 else 0)

    # ---- bytes -------------------------------------------------------------------------------------
    def kv_cache_bytes(self, k_from: int, k_to: int, context_len: int, bytes_per_element: float) -> float:
        """KV-cache bytes of layers [k_from, k_to) holding ``context_len`` positions."""
        self._check_range(k_from, k_to)
        return sum(layer.kv_cache_bytes(context_len, bytes_per_element) for layer in self.layers[k_from:k_to])

    def activation_bytes(self, tokens: int, bytes_per_element: float) -> float:
        """Working set of one layer's forward: residual + normed input + the wider of qkv or MLP inner."""
        qkv = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        mlp = self.intermediate_size * (2 if self.gated_mlp else 1)
        return tokens * (2 * self.hidden_size + max(qkv, mlp)) * bytes_per_element

    def logits_bytes(self, logits_tokens: int, bytes_per_element: float) -> float:
        """Bytes of the logits tensor for ``logits_tokens`` positions."""
        return logits_tokens * self.vocab_size * bytes_per_element


def _check_tokens(tokens: int, past_len: int) -> None:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens must be an integer >= 1, got {tokens!r}")
    if past_len < 0:
        raise ValueError(f"past_len must be >= 0, got {past_len}")


def _layer_from_arch(a: ConfigArch, index: int) -> LayerProfile:
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    proj_weights = a.hidden * (q + 2 * kv) + q * a.hidden
    proj_bias = (q + 2 * kv if a.qkv_bias else 0) + (a.hidden if a.o_bias else 0)
    mlp_mats = 3 if a.gated else 2
    mlp_bias = ((mlp_mats - 1) * a.intermediate + a.hidden) if a.mlp_bias else 0
    return LayerProfile(
        index=index,
        attn_proj_params=proj_weights + proj_bias,
        mlp_params=mlp_mats * a.hidden * a.intermediate + mlp_bias,
        norm_params=a.layer_norm_params + a.qk_norm_params,
        proj_flops_per_token=2 * proj_weights,
        mlp_flops_per_token=2 * mlp_mats * a.hidden * a.intermediate,
        attn_flops_per_position=4 * a.heads * a.head_dim,
        kv_elements_per_token=2 * kv,
        sliding_window=a.windows[index],
    )


def _profile_from_config(config: Any) -> ModelProfile:
    a = arch_from_config(config)
    return ModelProfile(
        family=a.family,
        hidden_size=a.hidden,
        vocab_size=a.vocab,
        num_heads=a.heads,
        num_kv_heads=a.kv_heads,
        head_dim=a.head_dim,
        intermediate_size=a.intermediate,
        gated_mlp=a.gated,
        layers=tuple(_layer_from_arch(a, i) for i in range(a.num_layers)),
        embedding_params=a.embedding_params,
        embedding_flops_per_token=a.embedding_flops,
        final_params=a.final_params,
        final_flops_per_token=a.final_flops,
        lm_head_in_features=a.head_in,
        tied_embeddings=a.tied,
    )
