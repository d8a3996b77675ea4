"""Load Hugging Face decoder-only causal LMs and expose them through per-architecture adapters."""

from edgesplit.models.adapters import SUPPORTED_MODEL_TYPES, DecoderAdapter, adapter_for
from edgesplit.models.builtin import BUILTINS, builtin_dir, cache_root
from edgesplit.models.device import resolve_device, resolve_dtype
from edgesplit.models.loader import DEFAULT_MODEL, LoadedModel, from_model, load_model

__all__ = [
    "BUILTINS",
    "DEFAULT_MODEL",
    "SUPPORTED_MODEL_TYPES",
    "DecoderAdapter",
    "LoadedModel",
    "adapter_for",
    "builtin_dir",
    "cache_root",
    "from_model",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]
