"""GPT-2: learned absolute positions added at the embedding, ``transformer.h`` blocks, ``ln_f``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from edgesplit.models.adapters.base import DecoderAdapter, LayerInputs


class GPT2Adapter(DecoderAdapter):
    """``GPT2LMHeadModel``."""

    model_types = ("gpt2",)

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.transformer.h

    def embed_tokens(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        transformer = self.model.transformer
        return transformer.drop(transformer.wte(input_ids) + transformer.wpe(position_ids))

    def call_layer(self, index: int, hidden: torch.Tensor, mask: Any, rotary: Any, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        return self.layers[index](hidden, cache, mask, None, use_cache=cache is not None,
                                  position_ids=inputs.position_ids)

    def final_norm_and_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.model.transformer.ln_f(hidden))
