"""Share one model's weights between many Ray actors through the object store, never reloading from disk.

:func:`pack_model` turns a loaded model into a :class:`SharedModel`: the HF config as a plain dict, every
parameter and buffer as a numpy array (tied weights stored once, with aliases), and the tokenizer's files as
bytes. :func:`put_model` puts it in the Ray object store once; an actor that receives the ``ObjectRef`` gets the
arrays as zero-copy, read-only views of shared memory, and :func:`build_model` wraps them as torch tensors
without copying (the module tree is built on the ``meta`` device, so no weight memory is ever allocated twice).
The weights are read-only from then on, which inference never violates.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from edgesplit.models import LoadedModel, from_model

_VIEW_DTYPES = {torch.bfloat16: np.int16}
"""torch dtypes numpy cannot hold, shipped as same-width integers and reinterpreted on arrival."""
_TORCH_DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (torch.float32, torch.float16, torch.bfloat16,
                                                                        torch.float64, torch.int64, torch.int32,
                                                                        torch.bool)}


@dataclass
class SharedModel:
    """A model in a form that pickles with out-of-band numpy buffers (Ray's zero-copy path)."""

    name: str
    """What the user asked for (built-in name, path or hub id)."""
    model_type: str
    """``config.model_type``, to rebuild the config class."""
    config: dict[str, Any]
    """``config.to_dict()`` of the Hugging Face model."""
    arrays: dict[str, np.ndarray]
    """One array per distinct tensor (parameters and buffers, persistent or not), keyed by its first name."""
    dtypes: dict[str, str]
    """The torch dtype of each array (bfloat16 travels as int16)."""
    aliases: dict[str, str]
    """Every parameter/buffer name → the key of its array in ``arrays`` (tied weights share one)."""
    buffers: frozenset[str]
    """Names that are buffers rather than parameters."""
    tokenizer_files: dict[str, bytes] | None = field(default=None, repr=False)
    """The tokenizer's saved files (a few MB), or ``None`` for a model without one."""

    @property
    def nbytes(self) -> int:
        """Bytes of weight data (each tied tensor counted once)."""
        return sum(a.nbytes for a in self.arrays.values())


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype in _VIEW_DTYPES:
        return tensor.view(torch.int16).numpy()
    return tensor.numpy()


def _named_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], frozenset[str]]:
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    return {**params, **buffers}, frozenset(buffers)


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes] | None:
    if tokenizer is None:
        return None
    with tempfile.TemporaryDirectory(prefix="edgesplit-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def pack_model(loaded: LoadedModel) -> SharedModel:
    """The model's config, weights (as numpy arrays sharing the tensors' memory) and tokenizer files."""
    tensors, buffer_names = _named_tensors(loaded.model)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    aliases: dict[str, str] = {}
    by_storage: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    for name, tensor in tensors.items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if key not in by_storage:  # tied weights (embedding = LM head) travel once
            by_storage[key] = name
            arrays[name] = _to_numpy(tensor)
            dtypes[name] = str(tensor.dtype).removeprefix("torch.")
        aliases[name] = by_storage[key]
    config = loaded.model.config
    return SharedModel(name=loaded.name, model_type=config.model_type, config=config.to_dict(), arrays=arrays,
                       dtypes=dtypes, aliases=aliases, buffers=buffer_names,
                       tokenizer_files=_tokenizer_files(loaded.tokenizer))


def _from_numpy(array: np.ndarray, dtype: str) -> torch.Tensor:
    with warnings.catch_warnings():
        # Arrays from the object store are read-only views; torch warns because it cannot mark tensors read-only.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        tensor = torch.from_numpy(array)
    target = _TORCH_DTYPES[dtype]
    return tensor.view(target) if target in _VIEW_DTYPES else tensor


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor | nn.Parameter, is_buffer: bool) -> None:
    module_path, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    if is_buffer:
        module._buffers[leaf] = value
    else:
        module._parameters[leaf] = value


def _load_tokenizer(files: dict[str, bytes] | None) -> Any | None:
    if files is None:
        return None
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="edgesplit-tok-") as tmp:
        for file_name, data in files.items():
            (Path(tmp) / Path(file_name).name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True)


def build_model(shared: SharedModel, *, with_tokenizer: bool = False,
                attn_implementation: str = "sdpa") -> LoadedModel:
    """A :class:`LoadedModel` whose tensors are views of ``shared``'s arrays (no weight copy, no disk read)."""
    config_dict = {key: value for key, value in shared.config.items() if key != "model_type"}
    config = AutoConfig.for_model(shared.model_type, **config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    shared_values: dict[str, torch.Tensor | nn.Parameter] = {}
    for name, key in shared.aliases.items():
        if key not in shared_values:
            tensor = _from_numpy(shared.arrays[key], shared.dtypes[key])
            shared_values[key] = tensor if key in shared.buffers else nn.Parameter(tensor, requires_grad=False)
        _set_tensor(model, name, shared_values[key], name in shared.buffers)
    left_on_meta = [n for n, t in _named_tensors(model)[0].items() if t.is_meta]
    if left_on_meta:
        raise ValueError(f"shared model {shared.name!r} lacks tensors {left_on_meta[:5]}; was it packed from a "
                         f"different architecture?")
    tokenizer = _load_tokenizer(shared.tokenizer_files) if with_tokenizer else None
    return from_model(model, name=shared.name, tokenizer=tokenizer)


def put_model(loaded: LoadedModel) -> Any:
    """Put the packed model into the Ray object store once; pass the returned ``ObjectRef`` to every actor."""
    import ray

    return ray.put(pack_model(loaded))
