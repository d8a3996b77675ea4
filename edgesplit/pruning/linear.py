"""The prunable linear projections of a decoder layer, each seen through one ``[out, in]`` weight view.

    for linear in prunable_linears(loaded.adapter.layers[3]):
        w = linear.weight()                        # float copy, [out_features, in_features]
        linear.set_weight(w * keep)                # written back in the module's own layout and dtype

Every supported family keeps its projections as ``nn.Linear`` (weight ``[out, in]``) except GPT-2, whose
``Conv1D`` stores ``[in, out]``; the view hides the difference, so pruning code sees rows = outputs and columns =
inputs everywhere (what Wanda's per-output comparison and SparseGPT's column sweep assume). The projections are
found by type, not by name: attention q/k/v/o (or fused ``c_attn`` / ``query_key_value``), MLP gate/up/down (or
``fc1``/``fc2``, ``c_fc``/``c_proj``, ``dense_h_to_4h``/``dense_4h_to_h``). Norms, biases, embeddings and the LM
head live outside this list and are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


@dataclass(frozen=True)
class PrunableLinear:
    """One projection inside a decoder layer."""

    name: str
    """Module path inside the layer, e.g. ``self_attn.q_proj`` or ``attn.c_attn``."""
    module: nn.Module
    """The ``nn.Linear`` or GPT-2 ``Conv1D`` itself (its weight is modified in place by :meth:`set_weight`)."""

    @property
    def transposed(self) -> bool:
        """True when the module stores its weight as ``[in, out]`` (GPT-2's ``Conv1D``)."""
        return isinstance(self.module, Conv1D)

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)`` of the uniform view."""
        rows, cols = self.module.weight.shape
        return (cols, rows) if self.transposed else (rows, cols)

    def weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A copy of the weight as ``[out, in]`` in ``dtype`` (changing it does not touch the module)."""
        w = self.module.weight.detach()
        return (w.t() if self.transposed else w).to(dtype=dtype, copy=True)

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor) -> None:
        """Write an ``[out, in]`` weight back into the module, in its own layout, dtype and device."""
        if tuple(weight.shape) != self.shape:
            raise ValueError(f"{self.name}: expected a weight of shape {self.shape} (out, in), got "
                             f"{tuple(weight.shape)}")
        target = self.module.weight
        target.copy_((weight.t() if self.transposed else weight).to(dtype=target.dtype, device=target.device))


def prunable_linears(layer: nn.Module) -> list[PrunableLinear]:
    """The linear projections of one decoder layer, in module order; ``ValueError`` if it has none."""
    found = [PrunableLinear(name, module) for name, module in layer.named_modules()
             if isinstance(module, nn.Linear | Conv1D)]
    if not found:
        raise ValueError(f"decoder layer {type(layer).__name__} has no nn.Linear or Conv1D projection to prune")
    return found


__all__ = ["PrunableLinear", "prunable_linears"]
