"""Load any Hugging Face decoder-only causal LM (hub id, local directory, or a built-in name) with its adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from edgesplit.models.adapters import SUPPORTED_MODEL_TYPES, DecoderAdapter, adapter_for
from edgesplit.models.builtin import BUILTINS, builtin_dir

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_MODEL = "smollm2-135m"


@dataclass
class LoadedModel:
    """A causal LM ready to split: the transformers model, its tokenizer (if any) and its adapter."""

    name: str
    """What the user asked for (built-in name, hub id or path)."""
    model: PreTrainedModel
    """The transformers model, in eval mode."""
    adapter: DecoderAdapter
    """Architecture adapter giving embed / layers / head access."""
    tokenizer: Any | None = None
    """The tokenizer, or ``None`` for models built from a config."""

    @property
    def num_layers(self) -> int:
        """Number of decoder layers ``L``; valid splits are ``0..L``."""
        return self.adapter.num_layers

    @property
    def hidden_size(self) -> int:
        """Width of the hidden state that crosses the link."""
        return self.adapter.hidden_size


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}") from None


def _check_architecture(name_or_path: str, local_only: bool) -> None:
    config = AutoConfig.from_pretrained(name_or_path, local_files_only=local_only)
    model_type = config.get_text_config(decoder=True).model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{name_or_path!r} is a {model_type!r} model, which edgesplit cannot split; supported "
                         f"model types: {', '.join(SUPPORTED_MODEL_TYPES)}")


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _load_tokenizer(source: str, local_only: bool) -> Any | None:
    # A bare weights directory has no tokenizer; AutoTokenizer would invent a useless one from the config.
    if local_only and not any((Path(source) / name).is_file() for name in _TOKENIZER_FILES):
        return None
    return AutoTokenizer.from_pretrained(source, local_files_only=local_only)


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str | torch.dtype = "float32",
               attn_implementation: str = "sdpa") -> LoadedModel:
    """Load a decoder-only causal LM by built-in name, local directory or Hugging Face hub id.

    Built-ins (see :data:`edgesplit.models.builtin.BUILTINS`) come from installed packages and are converted once.
    A hub id needs network access on first use (transformers caches it afterwards).
    """
    torch_dtype = _resolve_dtype(dtype)
    source = str(builtin_dir(name_or_path)) if name_or_path in BUILTINS else name_or_path
    local_only = Path(source).is_dir()
    _check_architecture(source, local_only)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_only,
                                                 attn_implementation=attn_implementation)
    model.eval()
    return LoadedModel(name=name_or_path, model=model, adapter=adapter_for(model),
                       tokenizer=_load_tokenizer(source, local_only))


def from_model(model: PreTrainedModel, name: str = "custom", tokenizer: Any | None = None) -> LoadedModel:
    """Wrap an already-built transformers model (e.g. a tiny random config in tests)."""
    model.eval()
    return LoadedModel(name=name, model=model, adapter=adapter_for(model), tokenizer=tokenizer)
