"""Rotary pre-norm decoders with the Llama layout: Llama, Mistral, Qwen2, Qwen3, SmolLM (``model.model.layers``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from edgesplit.models.adapters.base import DecoderAdapter, LayerInputs


class LlamaFamilyAdapter(DecoderAdapter):
    """Llama-layout models: ``embed_tokens`` → layers → ``norm`` → ``lm_head``, one rotary embedding."""

    model_types = ("llama", "mistral", "qwen2", "qwen3", "smollm3")

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.model.layers

    def _sliding_everywhere(self) -> bool:
        # Mistral applies its one sliding window to every layer; Qwen2/3 say which layers slide in ``layer_types``.
        return self.config.model_type == "mistral"

    def embed_tokens(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.model.model.embed_tokens(input_ids)

    def rotary(self, hidden: torch.Tensor, position_ids: torch.Tensor, layer_type: str) -> Any:
        return self.model.model.rotary_emb(hidden, position_ids)

    def call_layer(self, index: int, hidden: torch.Tensor, mask: Any, rotary: Any, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        return self.layers[index](hidden, attention_mask=mask, position_ids=inputs.position_ids,
                                  past_key_values=cache, use_cache=cache is not None, position_embeddings=rotary)

    def final_norm_and_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.model.model.norm(hidden))
