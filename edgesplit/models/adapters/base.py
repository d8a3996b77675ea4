"""The interface every architecture adapter implements, and the logic they share.

An adapter wraps a loaded Hugging Face causal LM and exposes the pieces a split needs: the token (and, for
absolute-position families, position) embedding, a run over decoder layers ``[start, stop)`` with positions,
attention mask and KV cache, and the final norm + LM head. It reuses transformers' own decoder layers, rotary
embeddings, mask builders and cache classes; it never re-implements a model's forward maths.

A side of a split owns its own :class:`~transformers.DynamicCache` sized for the whole model; only the layers the
side runs are ever filled, so masks are sized against the first cached layer *of that side* (``layer_idx``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

FULL = "full_attention"
SLIDING = "sliding_attention"


@dataclass
class LayerInputs:
    """Everything a run over layers ``[start, stop)`` needs besides the hidden state, built once per forward."""

    position_ids: torch.Tensor
    """Positions of the current tokens, shape ``[batch, tokens]``."""
    masks: dict[str, Any] = field(default_factory=dict)
    """Attention mask per layer type (``full_attention`` / ``sliding_attention``); ``None`` lets SDPA be causal."""
    position_embeddings: dict[str, Any] = field(default_factory=dict)
    """Rotary (cos, sin) per layer type; empty for absolute-position families."""


class DecoderAdapter:
    """Base adapter: subclasses name their ``model_types`` and fill in the family-specific hooks."""

    model_types: ClassVar[tuple[str, ...]] = ()
    """Hugging Face ``config.model_type`` values this adapter handles."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.config = model.config.get_text_config(decoder=True)

    # ---- family hooks -------------------------------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers, in order."""
        raise NotImplementedError

    def embed_tokens(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids → the hidden state entering layer 0."""
        raise NotImplementedError

    def final_norm_and_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden state after the last layer → logits."""
        raise NotImplementedError

    def rotary(self, hidden: torch.Tensor, position_ids: torch.Tensor, layer_type: str) -> Any:
        """Rotary (cos, sin) for a layer type, or ``None`` for absolute-position families."""
        return None

    def call_layer(self, index: int, hidden: torch.Tensor, mask: Any, rotary: Any, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        """Run decoder layer ``index`` with the family's calling convention."""
        raise NotImplementedError

    # ---- shared logic -------------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Number of decoder layers ``L``."""
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        """Width of the hidden state that crosses the link."""
        return int(self.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Size of the output vocabulary."""
        return int(self.config.vocab_size)

    def layer_type(self, index: int) -> str:
        """``full_attention`` or ``sliding_attention`` for layer ``index``."""
        layer_types = getattr(self.config, "layer_types", None)
        if layer_types:
            return layer_types[index]
        return SLIDING if getattr(self.config, "sliding_window", None) and self._sliding_everywhere() else FULL

    def _sliding_everywhere(self) -> bool:
        """Families (Mistral) whose single ``sliding_window`` applies to every layer when set."""
        return False

    def new_cache(self) -> DynamicCache:
        """An empty KV cache laid out for this model (one slot per layer, sliding where the model slides)."""
        return DynamicCache(config=self.model.config)

    def prepare(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor,
                cache: DynamicCache | None, start: int, stop: int) -> LayerInputs:
        """Build masks and rotary embeddings for layers ``[start, stop)`` before any of them updates the cache."""
        inputs = LayerInputs(position_ids=position_ids)
        for index in range(start, stop):
            kind = self.layer_type(index)
            if kind in inputs.masks:
                continue
            build = create_sliding_window_causal_mask if kind == SLIDING else create_causal_mask
            inputs.masks[kind] = build(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask,
                                       past_key_values=cache, position_ids=position_ids, layer_idx=index)
            inputs.position_embeddings[kind] = self.rotary(hidden, position_ids, kind)
        return inputs

    def run_layers(self, hidden: torch.Tensor, start: int, stop: int, inputs: LayerInputs,
                   cache: DynamicCache | None) -> torch.Tensor:
        """Run decoder layers ``[start, stop)`` on ``hidden``; updates ``cache`` for those layers when given."""
        for index in range(start, stop):
            kind = self.layer_type(index)
            hidden = self.call_layer(index, hidden, inputs.masks[kind], inputs.position_embeddings[kind],
                                     inputs, cache)
        return hidden
