"""Gemma 3 text decoders: scaled embeddings, interleaved sliding/full attention, per-type rotary, logit softcap."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from edgesplit.models.adapters.base import DecoderAdapter, LayerInputs


class Gemma3TextAdapter(DecoderAdapter):
    """``Gemma3ForCausalLM`` (text-only Gemma 3)."""

    model_types = ("gemma3_text",)

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.model.layers

    def embed_tokens(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.model.model.embed_tokens(input_ids)  # Gemma3TextScaledWordEmbedding scales by sqrt(hidden)

    def rotary(self, hidden: torch.Tensor, position_ids: torch.Tensor, layer_type: str) -> Any:
        return self.model.model.rotary_emb(hidden, position_ids, layer_type)

    def call_layer(self, index: int, hidden: torch.Tensor, mask: Any, rotary: Any, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        return self.layers[index](hidden, position_embeddings=rotary, attention_mask=mask,
                                  position_ids=inputs.position_ids, past_key_values=cache)

    def final_norm_and_head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.lm_head(self.model.model.norm(hidden))
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits
