"""Unstructured and N:M pruning of one ``[out, in]`` weight matrix: magnitude, Wanda and SparseGPT.

    w2 = magnitude_prune(w, 0.5)                          # the 50 % smallest |W| of the whole matrix
    w2 = wanda_prune(w, stats.sq_norm, 0.5, "2:4")        # |W_ij| * ||X_j||, 2 of every 4 consecutive inputs kept
    w2 = sparsegpt_prune(w, stats.hessian, 0.5)           # OBS: prune and update the kept weights to compensate

Each returns a new matrix (the input is not changed) with exactly ``round(ratio * n)`` weights zeroed, where ``n``
is what the method compares within:

- **magnitude** compares over the whole matrix (layer-wise, the baseline of the Wanda and SparseGPT papers);
- **Wanda** (Sun et al., 2023) compares within each output row (its paper's "per output" group), with score
  ``|W_ij| * ||X_j||_2`` from the calibration inputs;
- **SparseGPT** (Frantar & Alistarh, 2023) sweeps the columns in blocks of 128; inside a block it chooses the
  weights with the smallest OBS saliency ``w^2 / [H^-1]_jj^2`` (``H^-1`` as the upper Cholesky factor of the
  damped inverse Hessian, 1 % of its mean diagonal added), zeroes them one column at a time and spreads each
  column's error over the columns not yet visited (lazy batch updates: within the block at once, beyond it once
  per block). The budget is split across blocks so the matrix total is exact. Computed in float64.

With an N:M pattern every group of ``M`` consecutive inputs of every row keeps at most ``N`` weights (exactly
``M - N`` are zeroed), by the same score; SparseGPT chooses each group when its sweep reaches it, on the weights as
updated so far. Ties are broken by position (the first ones are pruned), deterministically.
"""

from __future__ import annotations

import math

import torch

from edgesplit.pruning.spec import PATTERNS

BLOCK_SIZE = 128
"""SparseGPT's column block (the reference implementation's default)."""
DAMP = 0.01
"""SparseGPT's damping, as a fraction of the Hessian's mean diagonal."""


def parse_pattern(pattern: str | None, ratio: float) -> tuple[int, int] | None:
    """``(n, m)`` for ``"n:m"`` (``None`` for unstructured); ``ValueError`` for an unknown pattern or ratio."""
    if not isinstance(ratio, int | float) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}")
    if pattern is None:
        return None
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of none, 2:4, 4:8, got {pattern!r}")
    n, m = (int(v) for v in pattern.split(":"))
    if abs(float(ratio) - (1 - n / m)) > 1e-9:
        raise ValueError(f"pattern {pattern} prunes exactly {1 - n / m:g} of the weights; got ratio {ratio}")
    return n, m


def removal_count(numel: int, ratio: float) -> int:
    """Weights removed from ``numel`` at ``ratio``: ``ratio * numel`` rounded half up."""
    return math.floor(float(ratio) * numel + 0.5)


def lowest_mask(score: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` smallest entries of each row of a 2-D ``score`` (True = prune)."""
    if count <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    # kthvalue + ties is ~3x faster than topk for large counts, and breaks ties by position
    threshold = score.kthvalue(count, dim=1, keepdim=True).values
    mask, ties = score < threshold, score == threshold
    return mask | (ties & (ties.cumsum(1) <= count - mask.sum(1, keepdim=True)))


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Mask pruning the ``m - n`` smallest of every ``m`` consecutive columns of each row."""
    rows, cols = score.shape
    return lowest_mask(score.reshape(-1, m), m - n).reshape(rows, cols)


def score_mask(score: torch.Tensor, ratio: float, pattern: str | None, per_row: bool) -> torch.Tensor:
    """Which weights to prune from their scores: N:M groups, each row (``per_row``) or the whole matrix."""
    nm = parse_pattern(pattern, ratio)
    if nm is not None:
        _check_groups(score.shape[1], nm[1])
        return nm_mask(score, *nm)
    if per_row:
        return lowest_mask(score, removal_count(score.shape[1], ratio))
    return lowest_mask(score.reshape(1, -1), removal_count(score.numel(), ratio)).reshape(score.shape)


def _check_weight(weight: torch.Tensor) -> None:
    if weight.ndim != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a float [out, in] matrix, got {weight.dtype} {tuple(weight.shape)}")


def _check_groups(columns: int, m: int, what: str = "the input width") -> None:
    if columns % m:
        raise ValueError(f"an N:M pattern with M={m} needs {what} to be a multiple of {m}, got {columns}")


def magnitude_prune(weight: torch.Tensor, ratio: float, pattern: str | None = None) -> torch.Tensor:
    """Zero the smallest ``|W|`` of the whole matrix (or of every N:M group)."""
    _check_weight(weight)
    return weight.masked_fill(score_mask(weight.abs(), ratio, pattern, per_row=False), 0.0)


def wanda_prune(weight: torch.Tensor, sq_norm: torch.Tensor, ratio: float, pattern: str | None = None
                ) -> torch.Tensor:
    """Zero the smallest ``|W_ij| * ||X_j||`` of every output row (or of every N:M group); ``sq_norm = ||X_j||^2``."""
    _check_weight(weight)
    if sq_norm.shape != (weight.shape[1],):
        raise ValueError(f"sq_norm must have one entry per input ({weight.shape[1]}), got {tuple(sq_norm.shape)}")
    score = weight.abs().double() * sq_norm.double().clamp_min(0).sqrt()[None, :]
    return weight.masked_fill(score_mask(score, ratio, pattern, per_row=True), 0.0)


def inverse_hessian_factor(hessian: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    """Upper Cholesky factor ``U`` of ``(H + damp * mean(diag H) * I)^-1`` in float64 (``U^T U = H^-1``).

    Inputs never seen in calibration (zero diagonal) get a unit diagonal so the factor exists.
    """
    h = hessian.detach().to(torch.float64, copy=True)
    diag = h.diagonal()
    diag[diag == 0] = 1.0
    diag += damp * diag.mean()
    try:
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.linalg.cholesky(inverse, upper=True)
    except torch.linalg.LinAlgError as err:
        raise ValueError(f"the calibration Hessian is not positive definite even with damping {damp:g}: "
                         f"{err}") from None


def _sweep_block(block: torch.Tensor, factor: torch.Tensor, mask: torch.Tensor, nm: tuple[int, int] | None
                 ) -> torch.Tensor:
    """Prune one block column by column in place, updating the columns to its right; returns the scaled errors."""
    diag = factor.diagonal()
    errors = torch.zeros_like(block)
    for i in range(block.shape[1]):
        if nm is not None and i % nm[1] == 0:
            group = slice(i, i + nm[1])
            mask[:, group] = lowest_mask(block[:, group] ** 2 / diag[group] ** 2, nm[1] - nm[0])
        column = block[:, i]
        kept = column.masked_fill(mask[:, i], 0.0)
        errors[:, i] = (column - kept) / diag[i]
        block[:, i + 1:] -= errors[:, i:i + 1] * factor[i:i + 1, i + 1:]
        block[:, i] = kept
    return errors


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, ratio: float, pattern: str | None = None,
                    block_size: int = BLOCK_SIZE, damp: float = DAMP) -> torch.Tensor:
    """SparseGPT: prune with OBS saliency and update the kept weights so ``W' X`` stays close to ``W X``.

    ``hessian`` is ``X^T X`` over the calibration inputs (any positive scale). The result has ``weight``'s dtype.
    """
    _check_weight(weight)
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian must be [in, in] = [{cols}, {cols}], got {tuple(hessian.shape)}")
    if block_size < 1 or damp <= 0:
        raise ValueError(f"block_size must be >= 1 and damp > 0, got {block_size} and {damp}")
    nm = parse_pattern(pattern, ratio)
    if nm is not None:
        _check_groups(cols, nm[1])
        _check_groups(block_size, nm[1], "SparseGPT's block size")
    factor = inverse_hessian_factor(hessian, damp).to(weight.device)
    w = weight.detach().to(torch.float64, copy=True)
    for start in range(0, cols, block_size):
        stop = min(start + block_size, cols)
        diag = factor.diagonal()[start:stop]
        budget = removal_count(rows * stop, ratio) - removal_count(rows * start, ratio)
        mask = (torch.zeros(rows, stop - start, dtype=torch.bool, device=w.device) if nm is not None else
                lowest_mask((w[:, start:stop] ** 2 / diag ** 2).reshape(1, -1), budget).reshape(rows, -1))
        errors = _sweep_block(w[:, start:stop], factor[start:stop, start:stop], mask, nm)
        w[:, stop:] -= errors @ factor[start:stop, stop:]
    return w.to(weight.dtype)


__all__ = ["BLOCK_SIZE", "DAMP", "inverse_hessian_factor", "lowest_mask", "magnitude_prune", "nm_mask",
           "parse_pattern", "removal_count", "score_mask", "sparsegpt_prune", "wanda_prune"]
