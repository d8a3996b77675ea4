"""Distortion of a pruned model against its dense original: in the parameters and in the outputs (core; no Ray).

    params = param_distortion(result)                     # from a PruneResult's records (structured included)
    params = param_distortion(compare_weights(dense, pruned))       # or from two models with equal shapes
    params.total_sq, params.relative, params.per_layer()            # ||ΔW||_F^2 summed, / ||W||_F^2, by layer
    out = output_distortion(dense, pruned, token_ids, k=10)         # one pass over the windows with both models
    out.hidden_mse, out.logits_mse, out.kl_nats, out.perplexity, out.dense_perplexity, out.top1_agreement

**Parameter distortion** is the squared Frobenius norm of the weight change of every prunable projection
(:mod:`edgesplit.pruning.linear`), per matrix, per layer, in total, and relative to ``||W||_F^2`` of the matrices
that were pruned. A structured pruning slices whole rows/columns away; they count as zeros, so its distortion is
read from the :class:`~edgesplit.pruning.spec.PruneResult` records (two models of different shapes are refused).

**Output distortion** is measured on the scored positions of strided token windows
(:mod:`edgesplit.quality.windows`), the same positions for every quantity:

- ``hidden_mse``: mean over positions and channels of ``(h_k - h'_k)^2``, where ``h_k`` is the state entering
  decoder layer ``k`` (after layer ``k-1``; the embedding output at ``k = 0``) — for ``side="device"`` exactly what
  crosses the link. ``hidden_rel`` is ``sum ||Δh||^2 / sum ||h||^2`` (the built-in model's hidden states carry a
  few huge outlier channels, so the relative figure is the one to compare across k);
- ``logits_mse``: mean over positions and vocabulary of the squared logit change;
- ``kl_nats``: mean over positions of ``KL(dense ‖ pruned)`` of the next-token distributions;
- perplexity of both models, and top-1 agreement of their argmax.

:class:`DenseReference` runs the dense model once and keeps its outputs, so a sweep pays one pass per pruned model;
a pruned model whose first pruned layer is ``f`` can start from the dense state entering ``f`` (``start_layer``),
since everything before it is the dense model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from edgesplit.models import LoadedModel
from edgesplit.pruning.linear import prunable_linears
from edgesplit.pruning.spec import LayerRecord, PruneResult
from edgesplit.quality.windows import Window, batch_windows, make_windows, scored_slice


# ---- parameter distortion -----------------------------------------------------------------------------------------
@dataclass
class ParamDistortion:
    """Parameter distortion of one pruning, per matrix and in total."""

    records: list[LayerRecord] = field(default_factory=list)
    """One record per pruned projection (layer, module, numel, removed, ||ΔW||^2, ||W||^2)."""

    @property
    def total_sq(self) -> float:
        """``sum ||W - W'||_F^2`` over the pruned matrices."""
        return float(sum(r.param_dist_sq for r in self.records))

    @property
    def weight_sq(self) -> float:
        """``sum ||W||_F^2`` of the dense matrices that were pruned."""
        return float(sum(r.weight_sq for r in self.records))

    @property
    def relative(self) -> float:
        """``total_sq / weight_sq`` (0 when nothing was pruned)."""
        return self.total_sq / self.weight_sq if self.weight_sq else 0.0

    @property
    def achieved_ratio(self) -> float:
        """Weights removed / weights of the pruned matrices."""
        numel = sum(r.numel for r in self.records)
        return sum(r.removed for r in self.records) / numel if numel else 0.0

    def table(self) -> pd.DataFrame:
        """One row per matrix, with its relative distortion."""
        frame = pd.DataFrame([asdict(r) for r in self.records],
                             columns=["layer", "module", "numel", "removed", "param_dist_sq", "weight_sq"])
        frame["param_dist_rel"] = frame["param_dist_sq"] / frame["weight_sq"].where(frame["weight_sq"] > 0)
        return frame

    def per_layer(self) -> pd.DataFrame:
        """One row per decoder layer: summed numel, removed, ``||ΔW||^2``, ``||W||^2`` and their ratio."""
        sums = self.table().groupby("layer")[["numel", "removed", "param_dist_sq", "weight_sq"]].sum()
        sums["param_dist_rel"] = sums["param_dist_sq"] / sums["weight_sq"].where(sums["weight_sq"] > 0)
        return sums.reset_index()


def param_distortion(source: PruneResult | Iterable[LayerRecord]) -> ParamDistortion:
    """Parameter distortion from a :class:`PruneResult` or from records (e.g. :func:`compare_weights`)."""
    records = source.layers if isinstance(source, PruneResult) else source
    return ParamDistortion(records=list(records))


def _model_of(model: LoadedModel | PruneResult) -> LoadedModel:
    return model.model if isinstance(model, PruneResult) else model


@torch.no_grad()
def compare_weights(dense: LoadedModel, pruned: LoadedModel, layers: Iterable[int] | None = None,
                    tol: float = 0.0) -> list[LayerRecord]:
    """Records of every projection of ``layers`` (default: all) whose weights differ between two models.

    ``removed`` counts weights non-zero in ``dense`` and zero in ``pruned``. Matrices with ``max|ΔW| <= tol`` are
    left out (untouched). ``ValueError`` for different depths or shapes (use the records of a structured pruning).
    """
    if dense.num_layers != pruned.num_layers:
        raise ValueError(f"the models have {dense.num_layers} and {pruned.num_layers} layers; they must match")
    records = []
    for index in range(dense.num_layers) if layers is None else layers:
        theirs = {lin.name: lin for lin in prunable_linears(pruned.adapter.layers[index])}
        for lin in prunable_linears(dense.adapter.layers[index]):
            other = theirs.get(lin.name)
            if other is None or other.shape != lin.shape:
                got = None if other is None else other.shape
                raise ValueError(f"layer {index} {lin.name}: shape {lin.shape} in the dense model, {got} in the "
                                 f"pruned one; compare structured prunings through their PruneResult records")
            w, w2 = lin.weight(torch.float64), other.weight(torch.float64)
            delta = w - w2
            if delta.abs().max().item() <= tol:
                continue
            records.append(LayerRecord(layer=index, module=lin.name, numel=w.numel(),
                                       removed=int(((w != 0) & (w2 == 0)).sum()),
                                       param_dist_sq=float(delta.pow(2).sum()), weight_sq=float(w.pow(2).sum())))
    return records


# ---- output distortion --------------------------------------------------------------------------------------------
@dataclass
class OutputDistortion:
    """How far a pruned model's outputs moved from the dense model's, on the same scored positions."""

    k: int
    """Split point whose entering hidden state ``hidden_*`` compares (state after layer ``k - 1``)."""
    hidden_mse: float
    """Mean over positions and channels of the squared change of the hidden state entering layer ``k``."""
    hidden_rel: float
    """``sum ||Δh_k||^2 / sum ||h_k||^2`` over the scored positions."""
    logits_mse: float
    """Mean over positions and vocabulary of the squared logit change."""
    kl_nats: float
    """Mean over positions of KL(dense ‖ pruned) of the next-token distributions, in nats."""
    perplexity: float
    """exp(mean NLL) of the pruned model on the scored targets."""
    dense_perplexity: float
    """exp(mean NLL) of the dense model on the same targets."""
    top1_agreement: float
    """Fraction of positions where the two models' argmax agree."""
    scored_tokens: int
    """Number of positions (targets) compared."""

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for parquet rows and JSON."""
        return asdict(self)


@dataclass
class _Accumulator:
    """Sums over scored positions, pooled exactly across batches."""

    hidden_sq: float = 0.0
    """Sum of squared hidden-state changes."""
    hidden_ref_sq: float = 0.0
    """Sum of squared dense hidden states."""
    hidden_elems: int = 0
    """Hidden-state elements compared."""
    logits_sq: float = 0.0
    """Sum of squared logit changes."""
    logits_elems: int = 0
    """Logits compared."""
    kl: float = 0.0
    """Sum over positions of KL(dense ‖ pruned), nats."""
    nll: float = 0.0
    """Sum of the pruned model's NLLs, nats."""
    dense_nll: float = 0.0
    """Sum of the dense model's NLLs, nats."""
    agree: int = 0
    """Positions whose argmax agree."""
    count: int = 0
    """Positions compared."""

    def add(self, dense_h: torch.Tensor, pruned_h: torch.Tensor, dense_logits: torch.Tensor,
            pruned_logits: torch.Tensor, targets: torch.Tensor, dense_logp: torch.Tensor | None = None) -> None:
        """Pool one batch of scored positions (``dense_logp``: the dense log-probabilities, if already known)."""
        self.hidden_sq += (dense_h.float() - pruned_h.float()).square().sum(dtype=torch.float64).item()
        self.hidden_ref_sq += dense_h.float().square().sum(dtype=torch.float64).item()
        self.hidden_elems += dense_h.numel()
        self.logits_sq += (dense_logits.float() - pruned_logits.float()).square().sum(dtype=torch.float64).item()
        self.logits_elems += dense_logits.numel()
        if dense_logp is None:
            dense_logp = F.log_softmax(dense_logits.float(), dim=-1)
        pruned_logp = F.log_softmax(pruned_logits.float(), dim=-1)
        self.kl += F.kl_div(pruned_logp, dense_logp, log_target=True, reduction="sum").item()
        self.dense_nll -= dense_logp.gather(-1, targets[:, None]).sum().item()
        self.nll -= pruned_logp.gather(-1, targets[:, None]).sum().item()
        self.agree += int((dense_logits.argmax(-1) == pruned_logits.argmax(-1)).sum())
        self.count += int(targets.numel())

    def result(self, k: int) -> OutputDistortion:
        n = self.count
        return OutputDistortion(
            k=k, hidden_mse=self.hidden_sq / self.hidden_elems,
            hidden_rel=self.hidden_sq / self.hidden_ref_sq if self.hidden_ref_sq else 0.0,
            logits_mse=self.logits_sq / self.logits_elems, kl_nats=max(self.kl / n, 0.0),
            perplexity=math.exp(self.nll / n), dense_perplexity=math.exp(self.dense_nll / n),
            top1_agreement=self.agree / n, scored_tokens=n)


def _scored(x: torch.Tensor, batch: list[Window]) -> torch.Tensor:
    """Rows of ``[batch, tokens, ...]`` at each window's scored positions, flattened to ``[positions, ...]``."""
    return torch.cat([x[row, scored_slice(w)] for row, w in enumerate(batch)])


def _targets(token_ids: torch.Tensor, batch: list[Window]) -> torch.Tensor:
    return torch.cat([token_ids[w.first_target:w.end] for w in batch])


def _run(model: LoadedModel, ids: torch.Tensor, stops: Sequence[int], start_layer: int = 0,
         start_hidden: torch.Tensor | None = None) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Hidden states entering each layer of ``stops`` (all positions) and the logits, from ``start_layer`` on.

    ``start_hidden`` is the state entering ``start_layer`` (required when it is > 0).
    """
    adapter = model.adapter
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand(ids.shape[0], -1)
    hidden = adapter.embed_tokens(ids, positions) if start_layer == 0 else start_hidden
    inputs = adapter.prepare(hidden, None, positions, None, start_layer, adapter.num_layers)
    states, at = {}, start_layer
    for stop in sorted(set(stops) | {adapter.num_layers}):
        if stop < start_layer:
            raise ValueError(f"cannot read the state entering layer {stop} when starting at layer {start_layer}")
        hidden = adapter.run_layers(hidden, at, stop, inputs, None)
        states[stop], at = hidden, stop
    return states, adapter.final_norm_and_head(hidden)


def _check_pair(dense: LoadedModel, pruned: LoadedModel, k: int) -> None:
    if dense.num_layers != pruned.num_layers:
        raise ValueError(f"the models have {dense.num_layers} and {pruned.num_layers} layers; they must match")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= dense.num_layers:
        raise ValueError(f"k must be an integer in 0..{dense.num_layers}, got {k!r}")


def _check_stream(token_ids: torch.Tensor) -> None:
    if not isinstance(token_ids, torch.Tensor) or token_ids.ndim != 1:
        raise ValueError(f"token_ids must be a 1-D tensor of token ids, got {getattr(token_ids, 'shape', None)}")


@torch.inference_mode()
def output_distortion(dense: LoadedModel, pruned: LoadedModel | PruneResult, token_ids: torch.Tensor, k: int, *,
                      context: int = 512, stride: int | None = None, batch_size: int = 1) -> OutputDistortion:
    """Output distortion of ``pruned`` against ``dense`` at split ``k``: one pass over the windows with both models.

    Windows: :func:`edgesplit.quality.windows.make_windows` (``context``, ``stride``), ``batch_size`` per forward.
    """
    pruned = _model_of(pruned)
    _check_pair(dense, pruned, k)
    _check_stream(token_ids)
    acc = _Accumulator()
    for batch in batch_windows(make_windows(int(token_ids.numel()), context, stride), batch_size):
        ids = torch.stack([token_ids[w.begin:w.end] for w in batch])
        dense_states, dense_logits = _run(dense, ids, [k])
        pruned_states, pruned_logits = _run(pruned, ids, [k])
        acc.add(_scored(dense_states[k], batch), _scored(pruned_states[k], batch), _scored(dense_logits, batch),
                _scored(pruned_logits, batch), _targets(token_ids, batch))
    return acc.result(k)


@dataclass
class _DenseBatch:
    """The dense model's outputs on one batch of windows."""

    windows: list[Window]
    """The windows of the batch."""
    ids: torch.Tensor
    """``[batch, tokens]`` input ids."""
    states: dict[int, torch.Tensor]
    """Full ``[batch, tokens, hidden]`` state entering each layer of the reference's splits."""
    logits: torch.Tensor
    """``[positions, vocab]`` logits at the scored positions (float32)."""
    logp: torch.Tensor
    """Their log-softmax."""
    targets: torch.Tensor
    """``[positions]`` target ids."""


class DenseReference:
    """The dense model's outputs on a token stream, computed once, for comparing many pruned models.

    Keeps, per batch of windows, the full hidden states entering every layer of ``splits`` (what a pruned model
    may start from), the scored logits and their log-softmax (``2 × positions × vocab`` floats: ~400 kB a token for
    a 49 k vocabulary).
    """

    def __init__(self, dense: LoadedModel, token_ids: torch.Tensor, splits: Iterable[int], *, context: int = 512,
                 stride: int | None = None, batch_size: int = 1) -> None:
        _check_stream(token_ids)
        self.dense, self.token_ids, self.context = dense, token_ids, context
        self.splits = sorted(set(splits) | {0})
        for k in self.splits:
            _check_pair(dense, dense, k)
        self.batches: list[_DenseBatch] = []
        with torch.inference_mode():
            for batch in batch_windows(make_windows(int(token_ids.numel()), context, stride), batch_size):
                ids = torch.stack([token_ids[w.begin:w.end] for w in batch])
                states, logits = _run(dense, ids, self.splits)
                scored = _scored(logits, batch).float()
                self.batches.append(_DenseBatch(batch, ids, {k: states[k] for k in self.splits}, scored,
                                                F.log_softmax(scored, dim=-1), _targets(token_ids, batch)))

    @property
    def scored_tokens(self) -> int:
        """Positions compared per pruned model."""
        return sum(int(b.targets.numel()) for b in self.batches)

    @torch.inference_mode()
    def compare(self, pruned: LoadedModel | PruneResult, k: int, start_layer: int = 0) -> OutputDistortion:
        """Output distortion of ``pruned`` at split ``k``; its pass starts at ``start_layer`` from the dense state.

        ``k`` and ``start_layer`` must be among :attr:`splits` (0 always is), ``start_layer`` no later than ``k``;
        the result is exact only when layers ``< start_layer`` equal the dense model's (``side="server"`` at ``k``).
        """
        pruned = _model_of(pruned)
        _check_pair(self.dense, pruned, k)
        for needed in (k, start_layer):
            if needed not in self.splits:
                raise ValueError(f"layer {needed} is not among the reference's splits {self.splits}")
        if start_layer > k:
            raise ValueError(f"start_layer={start_layer} is after k={k}")
        acc = _Accumulator()
        for b in self.batches:
            start = b.states[start_layer] if start_layer else None
            states, logits = _run(pruned, b.ids, [k], start_layer, start)
            acc.add(_scored(b.states[k], b.windows), _scored(states[k], b.windows), b.logits,
                    _scored(logits, b.windows), b.targets, b.logp)
        return acc.result(k)


__all__ = ["DenseReference", "OutputDistortion", "ParamDistortion", "compare_weights", "output_distortion",
           "param_distortion"]
