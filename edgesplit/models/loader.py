"""Load any Hugging Face decoder-only causal LM (hub id, local directory, or a built-in name) with its adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from edgesplit.models.adapters import SUPPORTED_MODEL_TYPES, DecoderAdapter, adapter_for
from edgesplit.models.builtin import BUILTINS, builtin_dir
from edgesplit.models.device import resolve_device, resolve_dtype

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


def _builtins() -> str:
    return f"built-in models: {', '.join(BUILTINS)} (see `edgesplit models`)"


def _resolve_source(name: str) -> tuple[str, bool]:
    """(what transformers loads, whether it is local) for a built-in name, a local directory or a hub id."""
    if name in BUILTINS:
        return str(builtin_dir(name)), True
    if Path(name).is_dir():
        return name, True
    if Path(name).exists():
        raise ValueError(f"{name!r} is a file, not a model directory (one holding config.json); {_builtins()}")
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ValueError(f"{name!r} is neither a built-in model, a local directory nor a valid Hugging Face hub id "
                         f"(owner/name); {_builtins()}") from None
    return name, False


def _check_architecture(name_or_path: str, local_only: bool) -> None:
    try:
        config = AutoConfig.from_pretrained(name_or_path, local_files_only=local_only)
    except OSError as err:
        if local_only:
            raise
        # one line: transformers' hub errors span several
        raise OSError(f"{name_or_path!r} is not a built-in model or a local directory, so it was looked up as a "
                      f"Hugging Face hub id, which failed: {' '.join(str(err).split())}; {_builtins()}") from err
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
               attn_implementation: str = "sdpa", *, device: str | torch.device = "cpu",
               allow_cpu_half: bool = False) -> LoadedModel:
    """Load a decoder-only causal LM by built-in name, local directory or Hugging Face hub id.

    Built-ins (see :data:`edgesplit.models.builtin.BUILTINS`) come from installed packages and are converted once.
    A hub id needs network access on first use (transformers caches it afterwards). A name that is none of the
    three is a ValueError listing the built-ins; a hub id that cannot be fetched is an OSError saying it was one.
    ``device`` and ``dtype`` are resolved by :mod:`edgesplit.models.device` (``auto`` accepted; float16/bfloat16 on
    CPU only with ``allow_cpu_half``); the weights are loaded, then moved to the device.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device, allow_cpu_half=allow_cpu_half)
    source, local_only = _resolve_source(name_or_path)
    _check_architecture(source, local_only)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_only,
                                                 attn_implementation=attn_implementation)
    model.to(torch_device).eval()
    return LoadedModel(name=name_or_path, model=model, adapter=adapter_for(model),
                       tokenizer=_load_tokenizer(source, local_only))


def from_model(model: PreTrainedModel, name: str = "custom", tokenizer: Any | None = None) -> LoadedModel:
    """Wrap an already-built transformers model (e.g. a tiny random config in tests)."""
    model.eval()
    return LoadedModel(name=name, model=model, adapter=adapter_for(model), tokenizer=tokenizer)
