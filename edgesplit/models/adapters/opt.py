"""OPT: learned positions (offset 2) added at the embedding, optional project_in/out, ``model.decoder.layers``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from edgesplit.models.adapters.base import DecoderAdapter, LayerInputs


class OPTAdapter(DecoderAdapter):
    """``OPTForCausalLM``."""

    model_types = ("opt",)

    @property
    def _decoder(self) -> nn.Module:
        return self.model.model.decoder

    @property
    def layers(self) -> nn.ModuleList:
        return self._decoder.layers

    def embed_tokens(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        decoder = self._decoder
        embeds = decoder.embed_tokens(input_ids)
        if decoder.project_in is not None:
            embeds = decoder.project_in(embeds)
        # The positional table is looked up with explicit ids, so no mask is needed here.
        return embeds + decoder.embed_positions(None, 0, position_ids=position_ids)

    def call_layer(self, index: int, hidden: torch.Tensor, mask: Any, rotary: Any, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        return self.layers[index](hidden, attention_mask=mask, past_key_values=cache, use_cache=cache is not None,
                                  position_ids=inputs.position_ids)

    def final_norm_and_head(self, hidden: torch.Tensor) -> torch.Tensor:
        decoder = self._decoder
        if decoder.final_layer_norm is not None:
            hidden = decoder.final_layer_norm(hidden)
        if decoder.project_out is not None:
            hidden = decoder.project_out(hidden)
        return self.model.lm_head(hidden)
