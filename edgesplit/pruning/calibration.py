"""Calibration for activation-aware pruning: token windows, and per-layer input statistics taken layer by layer.

    ids = calibration_windows(tokenize_corpus(corpus, tok), windows=32, length=256, seed=0)   # [32, 256]
    for index, linears, stats in layerwise_stats(loaded, ids, range(0, 10), hessian=True):
        ...  # prune layer ``index`` in place using stats[name].sq_norm / .hessian; the next layer then sees it

What each projection saw is summarised as sums over every calibration token ``x`` (rows of its input ``X``):
``sq_norm[j] = sum x_j^2`` (Wanda's ``||X_j||_2^2``) and, when asked, ``hessian = X^T X`` (SparseGPT's layer-wise
Hessian up to a factor 2/n). Both methods are invariant to that scale (Wanda compares within a row, SparseGPT damps
relative to the mean diagonal), so sums are kept, in float64. The Gram matrix of each batch is formed in float32
(so the cost stays that of one matmul) and accumulated in float64.

As in both papers the pass is **sequential**: layer ``i``'s statistics are measured on the outputs of layers
``< i`` *as already pruned*, so each layer's pruning compensates for the error introduced before it. The generator
hands over a layer, waits while the caller prunes it, then recomputes that layer's outputs with the pruned weights
before moving on. Layers that are not pruned are just run. Nothing here changes the model by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from edgesplit.models import LoadedModel
from edgesplit.pruning.linear import PrunableLinear, prunable_linears


@dataclass
class InputStats:
    """Second moments of what entered one projection during calibration (sums over tokens)."""

    sq_norm: torch.Tensor
    """``[in]`` float64: sum over calibration tokens of each input channel squared (Wanda's ``||X_j||^2``)."""
    hessian: torch.Tensor | None
    """``[in, in]`` float64 ``X^T X`` (SparseGPT), or ``None`` when only the norms were asked for."""
    tokens: int = 0
    """Calibration tokens seen."""


def calibration_windows(token_ids: torch.Tensor, windows: int, length: int, seed: int = 0) -> torch.Tensor:
    """``[windows, length]`` ids cut at seeded random offsets of a 1-D token stream (SparseGPT's sampling).

    Offsets are drawn independently (windows may overlap); the same seed gives the same windows.
    """
    if token_ids.ndim != 1:
        raise ValueError(f"token_ids must be a 1-D token stream, got shape {tuple(token_ids.shape)}")
    if windows < 1 or length < 1:
        raise ValueError(f"need at least one window of at least one token, got windows={windows}, length={length}")
    if token_ids.numel() < length:
        raise ValueError(f"the stream has {token_ids.numel()} tokens, fewer than one window of {length}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, token_ids.numel() - length + 1, (windows,), generator=gen)
    return torch.stack([token_ids[s:s + length] for s in starts.tolist()])


def check_calibration_ids(ids: torch.Tensor | None, vocab_size: int, method: str) -> torch.Tensor:
    """``ids`` as a ``[windows, tokens]`` int64 tensor, or ``ValueError`` saying what is wrong."""
    if ids is None:
        raise ValueError(f"method {method!r} needs calibration_ids ([windows, tokens] token ids, e.g. from "
                         "edgesplit.pruning.calibration.calibration_windows)")
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int32, torch.int64) or ids.ndim not in (1, 2):
        raise ValueError(f"calibration_ids must be an integer tensor [windows, tokens] (or one 1-D window), got "
                         f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
    ids = ids.long().reshape(-1, ids.shape[-1])
    if ids.numel() == 0:
        raise ValueError("calibration_ids is empty")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise ValueError(f"calibration_ids must lie in 0..{vocab_size - 1} (the model's vocabulary), got "
                         f"{int(ids.min())}..{int(ids.max())}")
    return ids


class _StatsHooks:
    """Forward pre-hooks that accumulate :class:`InputStats` for each projection of one layer."""

    def __init__(self, linears: list[PrunableLinear], hessian: bool) -> None:
        self.linears, self.hessian = linears, hessian
        self.stats = {lin.name: self._empty(lin) for lin in linears}
        self._handles: list = []
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    def _empty(self, lin: PrunableLinear) -> InputStats:
        size, device = lin.shape[1], lin.module.weight.device  # accumulate where the layer runs
        hessian = torch.zeros(size, size, dtype=torch.float64, device=device) if self.hessian else None
        return InputStats(torch.zeros(size, dtype=torch.float64, device=device), hessian)

    def __enter__(self) -> _StatsHooks:
        self._handles = [lin.module.register_forward_pre_hook(self._hook(lin.name)) for lin in self.linears]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._last = [], None

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # q/k/v (and gate/up) receive the very same tensor one after the other: compute its moments once.
        if self._last is not None and self._last[0] is x:
            return self._last[1], self._last[2]
        rows = x.detach().reshape(-1, x.shape[-1]).float()
        sq = rows.double().pow(2).sum(0)
        gram = (rows.t() @ rows).double() if self.hessian else None
        self._last = (x, sq, gram)
        return sq, gram

    def _hook(self, name: str):
        def hook(module, args) -> None:
            x = args[0]
            sq, gram = self._moments(x)
            stats = self.stats[name]
            stats.sq_norm += sq
            if gram is not None:
                stats.hessian += gram
            stats.tokens += x.numel() // x.shape[-1]

        return hook


class _Batches:
    """Hidden states of the calibration windows, in batches, moved through the layers one at a time."""

    def __init__(self, loaded: LoadedModel, ids: torch.Tensor, batch_size: int) -> None:
        self.adapter = loaded.adapter
        device = next(loaded.model.parameters()).device
        self.hidden, self.inputs = [], []
        with torch.no_grad():
            for batch in ids.to(device).split(batch_size):
                positions = torch.arange(batch.shape[1], device=device).expand(batch.shape[0], -1)
                hidden = self.adapter.embed_tokens(batch, positions)
                self.hidden.append(hidden)
                self.inputs.append(self.adapter.prepare(hidden, None, positions, None, 0, self.adapter.num_layers))

    def run(self, index: int, keep: bool) -> None:
        """Run layer ``index`` on every batch; keep its outputs as the next layer's inputs when ``keep``."""
        with torch.no_grad():
            out = [self.adapter.run_layers(h, index, index + 1, inp, None) for h, inp in zip(self.hidden,
                                                                                            self.inputs, strict=True)]
        if keep:
            self.hidden = out


def layerwise_stats(loaded: LoadedModel, calibration_ids: torch.Tensor, layers: Iterable[int], hessian: bool,
                    batch_size: int = 8) -> Iterator[tuple[int, list[PrunableLinear], dict[str, InputStats]]]:
    """For each layer of ``layers`` in order: ``(index, its projections, their input statistics)``.

    The caller may prune the projections (in place) before asking for the next item; the outputs passed on to the
    following layers are computed after that. ``calibration_ids`` is ``[windows, tokens]`` (see
    :func:`check_calibration_ids`); windows are run ``batch_size`` at a time, all held in memory as hidden states.
    """
    todo = sorted(set(layers))
    if not todo:
        return
    if todo[0] < 0 or todo[-1] >= loaded.num_layers:
        raise ValueError(f"layers must lie in 0..{loaded.num_layers - 1}, got {todo[0]}..{todo[-1]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batches = _Batches(loaded, calibration_ids, batch_size)
    wanted = set(todo)
    for index in range(todo[-1] + 1):
        if index in wanted:
            linears = prunable_linears(loaded.adapter.layers[index])
            with _StatsHooks(linears, hessian) as hooks:
                batches.run(index, keep=False)
            yield index, linears, hooks.stats
        if index < todo[-1]:
            batches.run(index, keep=True)


__all__ = ["InputStats", "calibration_windows", "check_calibration_ids", "layerwise_stats"]
