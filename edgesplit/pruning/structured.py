"""Structured pruning: remove whole attention heads (KV groups respected) and MLP channels, slicing the weights.

    result = prune_structured(loaded, PruneConfig("structured", ratio=0.3, k=10), calibration_ids)
    result.model                      # a new LoadedModel whose layers 0..9 are smaller nn.Linear modules
    result.achieved_ratio             # weights sliced away / dense weights of the selected layers (≈ 0.3)
    pruned_profile(result.model)      # FLOPs / params / KV bytes per layer from the actual module shapes

Supports the Llama module layout (``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``): llama, mistral, qwen2,
qwen3, smollm3. Other families raise ``ValueError``. The hidden size (the residual stream that crosses the link) is
never pruned; only the inner widths of each selected layer shrink, so a pruned model still splits at every ``k``.

Design decisions:

- **Sliced by hand, not with torch-pruning.** torch-pruning 1.6.1 was tried on these transformers 5.19 Llama modules
  (``MetaPruner`` with ``num_heads`` for q/k/v and ``prune_num_heads``): setting up its dependency groups for a
  4-layer tiny Llama had not finished after 8 minutes; its GQA rule only removes query heads inside KV groups (never a
  KV head, so no KV-cache saving); and it leaves the per-module attributes transformers reads
  (``num_key_value_groups``) to the caller. Slicing a Llama layer is a few ``index_select`` calls, done here exactly.
- **Ratio.** ``config.ratio`` is the fraction of the selected layers' prunable weights (q/k/v/o and gate/up/down
  matrices; biases follow their rows) removed, applied to every selected layer alike. Attention and MLP get the ratio
  in proportion to their weight share: the head layout is the one whose removed attention weights are closest to
  ``ratio`` × the attention weights, then MLP channels (3·hidden weights each, a fine grain) make up the rest of
  ``ratio`` × the layer's weights (a head layout removing more than that is never chosen), so the achieved ratio
  misses the request by at most half an MLP channel per layer, unless a floor binds (every layer keeps at least one
  KV group, one query head per group and one channel). ``PruneResult.achieved_ratio`` reports what was removed.
- **Head layout under GQA.** transformers repeats each KV head for a fixed number of query heads, so a layer keeps
  ``G'`` whole KV groups (a KV head and all its query heads) and the same ``n'`` query heads in each kept group; every
  ``(G', n')`` is a candidate. On SmolLM2 (3 KV groups of 3 heads, attention 25 % of a layer) ratio 0.3 removes one
  KV group (1/3 of the attention weights, 1/3 of the KV cache) and ~29 % of the MLP channels.
- **Importance.** With ``calibration_ids`` each unit of a selected layer scores its exact output norm on the
  calibration tokens: a query head's ``||X_h W_o,h^T||_F`` over the calibration tokens (from the Gram matrix of its
  attention output) and an MLP channel's ``||a_j|| · ||W_down[:, j]||`` (``a_j`` its activation): Wanda's
  ``|W|·||x||`` aggregated over the unit. A KV group scores the sum of the squared norms of the query heads it
  would keep. Without calibration the score is the squared L2 norm of the unit's weights (q rows + o columns per
  head, + k/v rows per group; gate/up rows + down column per channel). Units with the highest scores are kept; ties
  go to the lower index. The pass is sequential, as in Wanda/SparseGPT: layer ``i`` is scored on what the already
  pruned layers ``< i`` hand it, then pruned, then its pruned outputs feed layer ``i + 1``.
- **Refit.** With calibration, the kept columns of ``o_proj`` and ``down_proj`` (the matrices that consume the removed
  units) are refit by damped least squares so the layer's output on the calibration tokens stays as close as it can
  to the dense one (``W' = W G[:, k] (G[k, k] + λI)^-1``, ``G`` the Gram matrix of their inputs); the other matrices
  are sliced as they are. It is done only with ≥ :data:`REFIT_TOKENS_PER_INPUT` calibration tokens per input column
  (fewer overfit). Measured on SmolLM2, layers 0..9, WikiText-2, no fine-tuning: with 8,192 calibration tokens,
  perplexity 51.6 → 46.2 at ratio 0.3 and 2,382 → 84 at 0.5 (slice-only → refit); with 2,048 tokens refitting
  ``down_proj`` (1,536 inputs) made 0.3 worse (75 → 84), hence the threshold. Magnitude scores without calibration
  are far worse on this model (ratio 0.3: perplexity ~8,000 against ~60 calibrated; its outlier activations make
  weight norms a poor proxy): pass calibration ids.
- **Per-layer shapes.** Each pruned attention module gets ``num_key_value_groups = n'`` (transformers reshapes with
  ``-1`` and ``self.head_dim``, so nothing else is read from the config at run time); ``config`` keeps the dense
  widths. Hugging Face configs cannot describe per-layer widths, so :func:`save_pruned` / :func:`load_pruned` store
  the weights as safetensors plus ``structured_widths.json`` (see :mod:`edgesplit.pruning.structured_shapes`).
- **Cost model.** ``ModelProfile.from_config`` sees only the dense config; use :func:`pruned_profile` (a
  ``ModelProfile`` whose layers come from the module shapes) wherever a profile of a pruned model is needed, e.g.
  ``split_costs(pruned_profile(result.model), ...)``; :func:`pruned_layer_flops` gives one layer's FLOPs per token.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from edgesplit.models import LoadedModel, from_model
from edgesplit.pruning.spec import LayerRecord, PruneConfig, PruneResult
from edgesplit.pruning.structured_shapes import (
    STRUCTURED_MODEL_TYPES,
    LayerGeometry,
    check_structured_family,
    layer_geometry,
    load_pruned,
    pruned_layer_flops,
    pruned_profile,
    save_pruned,
)

REFIT_TOKENS_PER_INPUT = 3
"""Refit ``o_proj`` / ``down_proj`` only with at least this many calibration tokens per input column (fewer overfit)."""


@dataclass(frozen=True)
class LayerWidths:
    """The kept inner widths of one decoder layer."""

    kv_heads: int
    """KV heads (= KV groups) kept, ``G'``."""
    group_size: int
    """Query heads kept in each KV group, ``n'`` (all groups alike, as transformers' ``repeat_kv`` needs)."""
    channels: int
    """MLP intermediate channels kept."""

    @property
    def heads(self) -> int:
        """Query heads kept, ``G' · n'``."""
        return self.kv_heads * self.group_size


@dataclass
class _Scores:
    """Importance of the units of one layer (higher = keep)."""

    head: torch.Tensor
    """Per query head ``[heads]``."""
    group_extra: torch.Tensor
    """Per KV group ``[kv_heads]``, added to the sum of its kept heads' scores (k/v weights under magnitude)."""
    channel: torch.Tensor
    """Per MLP channel ``[intermediate]``."""
    o_gram: torch.Tensor | None = None
    """``X^T X`` of ``o_proj``'s calibration inputs (float64), for refitting its kept columns; None without data."""
    down_gram: torch.Tensor | None = None
    """``A^T A`` of ``down_proj``'s calibration inputs (float64); None without data."""
    tokens: int = 0
    """Calibration tokens behind the Gram matrices."""


def choose_widths(geom: LayerGeometry, ratio: float) -> LayerWidths:
    """The widths that remove ``ratio`` of the layer's weights, split between attention and MLP by their share."""
    d_hd = geom.hidden * geom.head_dim
    attn_w = lambda g, n: 2 * d_hd * (g * n + g)  # noqa: E731 (q + o per query head, k + v per KV head)
    dense_attn, channel_w = attn_w(geom.kv_heads, geom.group_size), 3 * geom.hidden
    total = dense_attn + channel_w * geom.intermediate
    candidates = [(g, n) for g in range(1, geom.kv_heads + 1) for n in range(1, geom.group_size + 1)
                  if dense_attn - attn_w(g, n) <= ratio * total]  # never more than the whole layer's share
    # closest to the proportional share; ties keep more weights, then more KV heads
    g, n = min(candidates, key=lambda c: (abs(dense_attn - attn_w(*c) - ratio * dense_attn), -attn_w(*c), -c[0]))
    mlp_removed = round((ratio * total - (dense_attn - attn_w(g, n))) / channel_w)
    channels = geom.intermediate - min(max(mlp_removed, 0), geom.intermediate - 1)
    return LayerWidths(kv_heads=g, group_size=n, channels=channels)


# ---- importance ------------------------------------------------------------------------------------------------
def _magnitude_scores(layer: nn.Module, geom: LayerGeometry) -> _Scores:
    attn, mlp = layer.self_attn, layer.mlp
    q_sq = attn.q_proj.weight.detach().float().pow(2).reshape(geom.heads, -1).sum(1)
    o_sq = attn.o_proj.weight.detach().float().pow(2).reshape(geom.hidden, geom.heads, -1).sum((0, 2))
    kv_sq = sum(p.weight.detach().float().pow(2).reshape(geom.kv_heads, -1).sum(1) for p in (attn.k_proj, attn.v_proj))
    channel = (mlp.gate_proj.weight.detach().float().pow(2).sum(1) + mlp.up_proj.weight.detach().float().pow(2).sum(1)
               + mlp.down_proj.weight.detach().float().pow(2).sum(0))
    return _Scores(head=q_sq + o_sq, group_extra=kv_sq, channel=channel)


class _Calibration:
    """Forward pre-hooks on one layer's ``o_proj`` and ``down_proj`` summing the Gram matrices of their inputs."""

    def __init__(self, layer: nn.Module, geom: LayerGeometry) -> None:
        q = geom.heads * geom.head_dim
        self.o_gram = torch.zeros(q, q, dtype=torch.float64)
        self.down_gram = torch.zeros(geom.intermediate, geom.intermediate, dtype=torch.float64)
        self.tokens = 0
        self.handles = [layer.self_attn.o_proj.register_forward_pre_hook(self._hook(self.o_gram, count=True)),
                        layer.mlp.down_proj.register_forward_pre_hook(self._hook(self.down_gram))]

    def _hook(self, gram: torch.Tensor, count: bool = False):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            gram.add_((x.T @ x).double())  # one float32 matmul per batch, summed in float64
            self.tokens += x.shape[0] if count else 0
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def scores(self, layer: nn.Module, geom: LayerGeometry) -> _Scores:
        h, hd = geom.heads, geom.head_dim
        blocks = self.o_gram.reshape(h, hd, h, hd).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # [h, hd, hd]
        w_o = layer.self_attn.o_proj.weight.detach().double().reshape(geom.hidden, h, hd)
        head = (blocks * torch.einsum("ohd,ohe->hde", w_o, w_o)).sum((1, 2))  # ||X_h W_o,h^T||_F^2
        down_sq = layer.mlp.down_proj.weight.detach().double().pow(2).sum(0)
        return _Scores(head=head, group_extra=torch.zeros(geom.kv_heads, dtype=torch.float64),
                       channel=self.down_gram.diagonal() * down_sq, o_gram=self.o_gram, down_gram=self.down_gram,
                       tokens=self.tokens)


def _check_calibration_ids(ids: object, vocab_size: int) -> torch.Tensor:
    ids = torch.as_tensor(ids)
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    if ids.ndim != 2 or ids.numel() == 0 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"calibration_ids must be a non-empty integer tensor [windows, tokens] (or a 1-D stream), "
                         f"got {ids.dtype} {tuple(ids.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise ValueError(f"calibration_ids must lie in [0, {vocab_size}) (the vocabulary), got "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    return ids.long()


class _LayerStream:
    """The calibration windows' hidden states, advanced one decoder layer at a time through the model as pruned."""

    def __init__(self, loaded: LoadedModel, ids: torch.Tensor, stop: int, batch_size: int) -> None:
        self.adapter, self.batches = loaded.adapter, []
        with torch.inference_mode():
            for rows in ids.split(batch_size):
                positions = torch.arange(rows.shape[1]).unsqueeze(0).expand(rows.shape[0], -1)
                hidden = self.adapter.embed_tokens(rows, positions)
                self.batches.append((hidden, self.adapter.prepare(hidden, None, positions, None, 0, stop)))

    @torch.inference_mode()
    def scores(self, index: int, geom: LayerGeometry) -> _Scores:
        """Importance of layer ``index``'s units on what reaches it now (its outputs are not kept)."""
        layer = self.adapter.layers[index]
        calibration = _Calibration(layer, geom)
        try:
            for hidden, inputs in self.batches:
                self.adapter.run_layers(hidden, index, index + 1, inputs, None)
        finally:
            calibration.remove()
        return calibration.scores(layer, geom)

    @torch.inference_mode()
    def advance(self, index: int) -> None:
        """Replace every hidden state by layer ``index``'s output (with its weights as they are now)."""
        self.batches = [(self.adapter.run_layers(h, index, index + 1, inputs, None), inputs)
                        for h, inputs in self.batches]


# ---- slicing ---------------------------------------------------------------------------------------------------
def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` highest scores, ties to the lower index, in ascending order."""
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return torch.tensor(sorted(order[:count]), dtype=torch.long)


def _kept_units(scores: _Scores, geom: LayerGeometry, widths: LayerWidths) -> tuple[torch.Tensor, ...]:
    """(kept KV heads, kept query heads grouped by kept KV head, kept channels), original indices."""
    per_group = scores.head.reshape(geom.kv_heads, geom.group_size)
    in_group = [_top(per_group[g], widths.group_size) for g in range(geom.kv_heads)]
    group_score = torch.stack([per_group[g, in_group[g]].sum() for g in range(geom.kv_heads)])
    kv = _top(group_score + scores.group_extra.to(group_score.dtype), widths.kv_heads)
    heads = torch.cat([in_group[g] + g * geom.group_size for g in kv.tolist()])
    return kv, heads, _top(scores.channel, widths.channels)


def _unit_rows(units: torch.Tensor, width: int) -> torch.Tensor:
    return (units.unsqueeze(1) * width + torch.arange(width)).reshape(-1)


def _refit(weight: torch.Tensor, gram: torch.Tensor, cols: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Kept columns refit by least squares so ``X_kept W'^T`` best matches the dense ``X W^T`` on the calibration
    inputs: ``W' = W G[:, k] (G[k, k] + λI)^-1``, ``λ`` = ``damp`` × the mean kept diagonal (SparseGPT's damping)."""
    g_kk = gram[cols][:, cols]
    g_kk = g_kk + damp * g_kk.diagonal().mean().clamp_min(1e-12) * torch.eye(len(cols), dtype=gram.dtype)
    solution = torch.linalg.solve(g_kk, gram[cols])  # (G_kk + λI)^-1 G[k, :]
    return (weight.double() @ solution.T).to(weight.dtype)


def _sliced(linear: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None,
            weight: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear with ``linear``'s kept rows (or columns), or with ``weight`` for them when given."""
    if weight is None:
        weight = linear.weight.detach()
        weight = weight if rows is None else weight.index_select(0, rows.to(weight.device))
        weight = weight if cols is None else weight.index_select(1, cols.to(weight.device))
    new = torch.nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=linear.bias is not None,
                                   device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            new.bias.copy_(bias if rows is None else bias.index_select(0, rows.to(bias.device)))
    return new


def _record(index: int, name: str, dense: nn.Linear, new: nn.Linear, rows: torch.Tensor | None,
            cols: torch.Tensor | None) -> LayerRecord:
    """Removed weights count as zeros; refit kept weights count by how far they moved."""
    w = dense.weight.detach().double()
    kept = w[rows] if rows is not None else w[:, cols]
    moved = float((kept - new.weight.detach().double()).pow(2).sum())
    total = float(w.pow(2).sum())
    return LayerRecord(layer=index, module=name, numel=w.numel(), removed=w.numel() - kept.numel(),
                       param_dist_sq=total - float(kept.pow(2).sum()) + moved, weight_sq=total)


def _prune_layer(index: int, layer: nn.Module, geom: LayerGeometry, scores: _Scores,
                 widths: LayerWidths) -> list[LayerRecord]:
    kv, heads, channels = _kept_units(scores, geom, widths)
    q_rows, kv_rows = _unit_rows(heads, geom.head_dim), _unit_rows(kv, geom.head_dim)
    plan = {"self_attn.q_proj": (q_rows, None, None), "self_attn.k_proj": (kv_rows, None, None),
            "self_attn.v_proj": (kv_rows, None, None), "self_attn.o_proj": (None, q_rows, scores.o_gram),
            "mlp.gate_proj": (channels, None, None), "mlp.up_proj": (channels, None, None),
            "mlp.down_proj": (None, channels, scores.down_gram)}
    records = []
    for name, (rows, cols, gram) in plan.items():
        parent, attr = name.split(".")
        dense = getattr(getattr(layer, parent), attr)
        enough = (gram is not None and len(cols) < gram.shape[0]  # nothing removed: nothing to compensate
                  and scores.tokens >= REFIT_TOKENS_PER_INPUT * gram.shape[0])
        refit = _refit(dense.weight.detach(), gram, cols) if enough else None
        new = _sliced(dense, rows, cols, refit)
        records.append(_record(index, name, dense, new, rows, cols))
        setattr(getattr(layer, parent), attr, new)
    layer.self_attn.num_key_value_groups = widths.group_size
    if hasattr(layer.mlp, "intermediate_size"):
        layer.mlp.intermediate_size = widths.channels
    return records


# ---- entry -----------------------------------------------------------------------------------------------------
def prune_structured(loaded: LoadedModel, config: PruneConfig, calibration_ids: torch.Tensor | None = None,
                     *, calibration_batch: int = 4) -> PruneResult:
    """A copy of ``loaded`` with ``config.ratio`` of the selected layers' weights removed as heads and channels.

    ``calibration_ids`` (``[windows, tokens]`` unpadded token ids, or a 1-D stream) switch the importance from weight
    magnitude to the activation-aware output norm (see the module docstring). ``loaded`` is never modified. A side
    that selects no layer (``device`` with ``k = 0``, ``server`` with ``k = L``) returns an unpruned copy.
    """
    if config.method != "structured":
        raise ValueError(f"prune_structured runs method 'structured', got {config.method!r}")
    check_structured_family(loaded)
    indices = list(config.layers(loaded.num_layers))
    ids = None if calibration_ids is None else _check_calibration_ids(calibration_ids, loaded.adapter.vocab_size)
    started = time.perf_counter()
    pruned = from_model(copy.deepcopy(loaded.model), name=f"{loaded.name} [{config.label}]", tokenizer=loaded.tokenizer)
    geoms = {i: layer_geometry(pruned.adapter.layers[i]) for i in indices}
    records, calibration_s, ratio = [], 0.0, float(config.ratio)
    if ids is None or not indices:
        for i in indices:
            scores = _magnitude_scores(pruned.adapter.layers[i], geoms[i])
            records += _prune_layer(i, pruned.adapter.layers[i], geoms[i], scores, choose_widths(geoms[i], ratio))
    else:
        calibration_started = time.perf_counter()
        stream = _LayerStream(pruned, ids, max(indices) + 1, calibration_batch)
        for i in range(max(indices) + 1):
            if i in geoms:
                scores = stream.scores(i, geoms[i])
                records += _prune_layer(i, pruned.adapter.layers[i], geoms[i], scores, choose_widths(geoms[i], ratio))
            stream.advance(i)
        calibration_s = time.perf_counter() - calibration_started  # slicing included: it is interleaved, and tiny
    prune_s = time.perf_counter() - started - calibration_s
    return PruneResult(model=pruned, config=config, layers=records, calibration_s=calibration_s, prune_s=prune_s)


__all__ = ["STRUCTURED_MODEL_TYPES", "LayerWidths", "choose_widths", "load_pruned", "prune_structured",
           "pruned_layer_flops", "pruned_profile", "save_pruned"]
