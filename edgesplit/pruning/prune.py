"""The one entry point of pruning: a config in, a pruned copy of the model and its per-matrix records out.

    result = prune(loaded, PruneConfig(method="sparsegpt", ratio=0.5, k=10, side="device"), calibration_ids)
    head, tail = DeviceHead(result.model, 10), EdgeTail(result.model, 10)       # splits like any model
    result.achieved_ratio, result.param_dist_rel, result.calibration_s, result.prune_s

The input model is deep-copied first and never modified; the copy is wrapped with a fresh adapter, so it loads,
splits and generates like the dense one (the split stays exact: nothing but weight values changes). Unstructured
methods (``magnitude``, ``wanda``, ``sparsegpt``) zero weights in place, shapes unchanged; Wanda and SparseGPT
measure their calibration statistics layer by layer on the partly pruned copy (see
:mod:`edgesplit.pruning.calibration`). ``structured`` is delegated to :mod:`edgesplit.pruning.structured`.
"""

from __future__ import annotations

import copy
import time

import torch

from edgesplit.models import LoadedModel, from_model
from edgesplit.pruning.calibration import InputStats, check_calibration_ids, layerwise_stats
from edgesplit.pruning.linear import PrunableLinear, prunable_linears
from edgesplit.pruning.spec import LayerRecord, PruneConfig, PruneResult
from edgesplit.pruning.unstructured import magnitude_prune, sparsegpt_prune, wanda_prune


def prune(loaded: LoadedModel, config: PruneConfig, calibration_ids: torch.Tensor | None = None) -> PruneResult:
    """Prune a copy of ``loaded`` as ``config`` says; ``calibration_ids`` ([windows, tokens]) for wanda/sparsegpt.

    Magnitude ignores ``calibration_ids``; Wanda and SparseGPT raise ``ValueError`` without them. The result's
    records hold, per pruned matrix, the weights zeroed (non-zero before, zero after), ``||W - W'||^2`` and ``||W||^2``.
    """
    if not isinstance(config, PruneConfig):
        raise ValueError(f"config must be a PruneConfig, got {type(config).__name__}")
    layers = config.layers(loaded.num_layers)
    if config.method == "structured":
        from edgesplit.pruning.structured import prune_structured  # written separately; imported only when used

        return prune_structured(loaded, config, calibration_ids)
    if config.method != "magnitude":
        calibration_ids = check_calibration_ids(calibration_ids, loaded.adapter.vocab_size, config.method)
    pruned = from_model(copy.deepcopy(loaded.model), name=f"{loaded.name} ({config.label})",
                        tokenizer=loaded.tokenizer)
    result = PruneResult(model=pruned, config=config)
    started = time.perf_counter()
    if config.method == "magnitude":
        for index in layers:
            for linear in prunable_linears(pruned.adapter.layers[index]):
                _prune_linear(result, index, linear, None)
    else:
        for index, linears, stats in layerwise_stats(pruned, calibration_ids, layers,
                                                     hessian=config.method == "sparsegpt"):
            for linear in linears:
                _prune_linear(result, index, linear, stats[linear.name])
        result.calibration_s = time.perf_counter() - started - result.prune_s
    return result


def _pruned_weight(config: PruneConfig, weight: torch.Tensor, stats: InputStats | None) -> torch.Tensor:
    if config.method == "magnitude":
        return magnitude_prune(weight, config.ratio, config.pattern)
    if config.method == "wanda":
        return wanda_prune(weight, stats.sq_norm, config.ratio, config.pattern)
    return sparsegpt_prune(weight, stats.hessian, config.ratio, config.pattern)


def _prune_linear(result: PruneResult, index: int, linear: PrunableLinear, stats: InputStats | None) -> None:
    """Prune one projection in place and append its record; the time spent goes to ``result.prune_s``."""
    started = time.perf_counter()
    dense = linear.weight(torch.float64)
    linear.set_weight(_pruned_weight(result.config, linear.weight(), stats))
    after = linear.weight(torch.float64)  # as stored: the model's dtype may round the update
    result.layers.append(LayerRecord(
        layer=index, module=linear.name, numel=dense.numel(),
        removed=int(((dense != 0) & (after == 0)).sum()),
        param_dist_sq=float((dense - after).pow(2).sum()), weight_sq=float(dense.pow(2).sum())))
    result.prune_s += time.perf_counter() - started


__all__ = ["prune"]
