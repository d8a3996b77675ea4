"""GPT-NeoX (Pythia): partial rotary, optional parallel residual, ``gpt_neox.layers``, untied output head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from edgesplit.models.adapters.base import DecoderAdapter, LayerInputs


class GPTNeoXAdapter(DecoderAdapter):
    """``GPTNeoXForCausalLM``."""

    model_types = ("gpt_neox",)

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.gpt_neox.layers

    def embed_tokens(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.model.gpt_neox.emb_dropout(self.model.gpt_neox.embed_in(input_ids))

    def rotary(self, hidden: torch.Tensor, position_ids: torch.Tensor, layer_type: str) -> Any:
        return self.model.gpt_neox.rotary_emb(hidden, position_ids=position_ids)

    def call_layer(self, index: int, hidden: torch.Tensor, mask: Any, rotary: Any, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        return self.layers[index](hidden, attention_mask=mask, position_ids=inputs.position_ids,
                                  use_cache=cache is not None, layer_past=cache, position_embeddings=rotary)

    def final_norm_and_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.get_output_embeddings()(self.model.gpt_neox.final_layer_norm(hidden))
