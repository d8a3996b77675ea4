"""Per-layer widths of a structured-pruned model: read from the modules, priced, saved and loaded.

    profile = pruned_profile(result.model)                 # a ModelProfile whose layers match the module shapes
    split_costs(profile, ...)                              # the cost model then prices the pruned layers
    pruned_layer_flops(result.model, layer=3, context_len=128)
    save_pruned(result.model, "runs/pruned"); load_pruned("runs/pruned")   # safetensors + structured_widths.json

Hugging Face configs hold one ``num_attention_heads`` / ``num_key_value_heads`` / ``intermediate_size`` for all
layers, so ``from_pretrained`` cannot rebuild a model whose layers differ. :func:`save_pruned` writes the dense
``config.json``, the weights as ``structured_model.safetensors`` (a name ``from_pretrained`` does not pick up, so it
cannot half-load them) and ``structured_widths.json`` with every layer's widths; :func:`load_pruned` builds the dense
skeleton from the config, resizes each layer to its widths and loads the weights strictly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from edgesplit.cost.model_profile import LayerProfile, ModelProfile
from edgesplit.models import LoadedModel, from_model

STRUCTURED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
"""Families with the Llama module layout that structured pruning slices."""
WIDTHS_FILE = "structured_widths.json"
WEIGHTS_FILE = "structured_model.safetensors"
_FORMAT = "edgesplit-structured-v1"


@dataclass(frozen=True)
class LayerGeometry:
    """The current inner widths of one decoder layer, read from its modules."""

    hidden: int
    """Residual width (never pruned)."""
    head_dim: int
    """Width of one attention head (never pruned)."""
    kv_heads: int
    """KV heads (= KV groups)."""
    group_size: int
    """Query heads per KV group."""
    intermediate: int
    """MLP intermediate channels."""

    def __post_init__(self) -> None:
        for name in ("hidden", "head_dim", "kv_heads", "group_size", "intermediate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def heads(self) -> int:
        """Query heads."""
        return self.kv_heads * self.group_size


def check_structured_family(loaded: LoadedModel) -> None:
    """``ValueError`` unless ``loaded`` is a family whose layers structured pruning can slice."""
    model_type = loaded.adapter.config.model_type
    if model_type not in STRUCTURED_MODEL_TYPES:
        raise ValueError(f"structured pruning supports: {', '.join(STRUCTURED_MODEL_TYPES)} (the Llama module "
                         f"layout); got a {model_type!r} model")


def layer_geometry(layer: nn.Module) -> LayerGeometry:
    """Widths of a Llama-layout decoder layer from its projection shapes."""
    attn, mlp = layer.self_attn, layer.mlp
    head_dim = int(attn.head_dim)
    heads, kv_heads = attn.q_proj.out_features // head_dim, attn.k_proj.out_features // head_dim
    if heads * head_dim != attn.q_proj.out_features or kv_heads < 1 or heads % kv_heads:
        raise ValueError(f"layer {attn.layer_idx}: q_proj {attn.q_proj.out_features} / k_proj "
                         f"{attn.k_proj.out_features} outputs do not form whole heads of {head_dim} in equal groups")
    return LayerGeometry(hidden=attn.q_proj.in_features, head_dim=head_dim, kv_heads=kv_heads,
                         group_size=heads // kv_heads, intermediate=mlp.gate_proj.out_features)


def model_geometry(loaded: LoadedModel) -> list[LayerGeometry]:
    """:func:`layer_geometry` of every decoder layer, in order."""
    check_structured_family(loaded)
    return [layer_geometry(layer) for layer in loaded.adapter.layers]


# ---- cost ------------------------------------------------------------------------------------------------------
def _module_params(modules: list[nn.Linear]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def layer_profile_from_modules(layer: nn.Module, dense: LayerProfile) -> LayerProfile:
    """``dense`` (the config's profile of this layer) with params and FLOPs recounted from the module shapes."""
    attn, mlp = layer.self_attn, layer.mlp
    proj = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
    mats = [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    return replace(dense, attn_proj_params=_module_params(proj), mlp_params=_module_params(mats),
                   proj_flops_per_token=2 * sum(m.weight.numel() for m in proj),
                   mlp_flops_per_token=2 * sum(m.weight.numel() for m in mats),
                   attn_flops_per_position=4 * attn.q_proj.out_features,  # 2·2·heads·head_dim
                   kv_elements_per_token=2 * attn.k_proj.out_features)


def pruned_profile(loaded: LoadedModel) -> ModelProfile:
    """The model's :class:`ModelProfile` with every layer recounted from its modules (equal to the config's when
    dense). The model-level widths (``num_heads``, ``intermediate_size``) stay the dense ones, an upper bound."""
    check_structured_family(loaded)
    dense = ModelProfile.from_config(loaded.model.config)
    layers = tuple(layer_profile_from_modules(layer, dense.layers[i]) for i, layer in enumerate(loaded.adapter.layers))
    return replace(dense, layers=layers)


def pruned_layer_flops(loaded: LoadedModel, layer: int, context_len: int) -> int:
    """FLOPs to run one token through decoder ``layer`` at ``context_len`` attended positions, from its shapes."""
    if not 0 <= layer < loaded.num_layers:
        raise ValueError(f"layer must be in 0..{loaded.num_layers - 1}, got {layer}")
    if context_len < 1:
        raise ValueError(f"context_len must be >= 1, got {context_len}")
    dense = ModelProfile.from_config(loaded.model.config).layers[layer]
    return layer_profile_from_modules(loaded.adapter.layers[layer], dense).flops_per_token(context_len)


# ---- save / load -----------------------------------------------------------------------------------------------
def save_pruned(loaded: LoadedModel, directory: str | Path) -> Path:
    """Write config, weights (safetensors), per-layer widths (JSON) and the tokenizer if any; returns the folder."""
    geoms = model_geometry(loaded)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    loaded.model.config.save_pretrained(out)
    save_safetensors(loaded.model, str(out / WEIGHTS_FILE))
    meta = {"format": _FORMAT, "name": loaded.name, "dtype": str(loaded.model.dtype).removeprefix("torch."),
            "layers": [asdict(g) for g in geoms]}
    (out / WIDTHS_FILE).write_text(json.dumps(meta, indent=1))
    if loaded.tokenizer is not None:
        loaded.tokenizer.save_pretrained(out)
    return out


def _resized(linear: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    if (linear.in_features, linear.out_features) == (in_features, out_features):
        return linear
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, bias=linear.bias is not None,
                                    device=linear.weight.device, dtype=linear.weight.dtype)


def resize_layer(layer: nn.Module, geom: LayerGeometry) -> None:
    """Give a dense Llama-layout layer uninitialised projections of ``geom``'s widths (weights loaded after)."""
    attn, mlp = layer.self_attn, layer.mlp
    q, kv, h = geom.heads * geom.head_dim, geom.kv_heads * geom.head_dim, geom.hidden
    for parent, name, shape in ((attn, "q_proj", (h, q)), (attn, "k_proj", (h, kv)), (attn, "v_proj", (h, kv)),
                                (attn, "o_proj", (q, h)), (mlp, "gate_proj", (h, geom.intermediate)),
                                (mlp, "up_proj", (h, geom.intermediate)), (mlp, "down_proj", (geom.intermediate, h))):
        setattr(parent, name, _resized(getattr(parent, name), *shape))
    attn.num_key_value_groups = geom.group_size
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = geom.intermediate


def _read_meta(folder: Path) -> dict:
    path = folder / WIDTHS_FILE
    if not path.is_file():
        raise ValueError(f"{folder} is not a structured-pruned model folder (no {WIDTHS_FILE}); save one with "
                         f"save_pruned, or load a dense model with edgesplit.models.load_model")
    meta = json.loads(path.read_text())
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {_FORMAT!r}")
    return meta


def load_pruned(directory: str | Path, attn_implementation: str = "sdpa") -> LoadedModel:
    """Rebuild a model written by :func:`save_pruned` (weights loaded strictly: every shape must match)."""
    from edgesplit.models.loader import _load_tokenizer

    folder = Path(directory)
    meta = _read_meta(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation,
                                             dtype=getattr(torch, meta["dtype"]))
    loaded = from_model(model, name=meta["name"])
    check_structured_family(loaded)
    if len(meta["layers"]) != loaded.num_layers:
        raise ValueError(f"{folder}: {WIDTHS_FILE} lists {len(meta['layers'])} layers, the config has "
                         f"{loaded.num_layers}")
    for layer, geom in zip(loaded.adapter.layers, meta["layers"], strict=True):
        resize_layer(layer, LayerGeometry(**geom))
    load_safetensors(model, str(folder / WEIGHTS_FILE), strict=True)
    model.eval()
    return from_model(model, name=meta["name"], tokenizer=_load_tokenizer(str(folder), True))
