"""Architecture adapters: one small module per model family, all with the :class:`DecoderAdapter` interface."""

from __future__ import annotations

from transformers import PreTrainedModel

from edgesplit.models.adapters.base import DecoderAdapter, LayerInputs
from edgesplit.models.adapters.gemma3 import Gemma3TextAdapter
from edgesplit.models.adapters.gpt2 import GPT2Adapter
from edgesplit.models.adapters.gpt_neox import GPTNeoXAdapter
from edgesplit.models.adapters.llama import LlamaFamilyAdapter
from edgesplit.models.adapters.opt import OPTAdapter

_ADAPTERS: tuple[type[DecoderAdapter], ...] = (
    LlamaFamilyAdapter, Gemma3TextAdapter, GPT2Adapter, GPTNeoXAdapter, OPTAdapter,
)
ADAPTER_BY_MODEL_TYPE: dict[str, type[DecoderAdapter]] = {t: a for a in _ADAPTERS for t in a.model_types}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(ADAPTER_BY_MODEL_TYPE))


def adapter_for(model: PreTrainedModel) -> DecoderAdapter:
    """The adapter for ``model``'s architecture; ``ValueError`` naming the supported ones otherwise."""
    model_type = model.config.get_text_config(decoder=True).model_type
    try:
        adapter_cls = ADAPTER_BY_MODEL_TYPE[model_type]
    except KeyError:
        raise ValueError(
            f"unsupported architecture {model_type!r}; supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        ) from None
    return adapter_cls(model)


__all__ = ["ADAPTER_BY_MODEL_TYPE", "SUPPORTED_MODEL_TYPES", "DecoderAdapter", "LayerInputs", "adapter_for"]
