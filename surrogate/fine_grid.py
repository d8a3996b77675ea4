"""A fine SNR grid from a measured one: the truth of the continuous-channel benchmark, interpolated by a stated rule.

from surrogate.fine_grid import refine_snr, leave_one_out
fine = refine_snr(pool_seeds(load_cells("runs/surrogate_truth_awgn3")), step_db=0.5)   # every k × 0, 0.5, … 30 dB
errors = leave_one_out(pooled)                                                          # how good the rule is

Why. In the continuous-channel mode (:mod:`rllib_env.split_env` with ``snr_grid_db`` = this fine grid) every block
is scored at its own SNR rounded to ``step_db``, so every distinct (split, SNR) is a new real evaluation for a
learner without a model. Scoring policies needs the quality of every such cell; the measured grid holds every split
at 5-dB steps, and the cells in between are interpolated.

The rule. Per split and per channel kind, between the two measured SNRs around ``s`` (none outside the measured
range: the fine grid spans it), each quality *excess* — ``log_ppl_ratio``, ``kl_nats`` and ``1 − top1_agreement``,
all 0 for a clean cell — is interpolated **geometrically** (linearly in its logarithm against SNR in dB) where both
knots are > 0, and linearly otherwise. Geometric because an additive-noise excess is first order in the noise
power, ``∝ σ² ∝ 10^(−SNR/10)``: its logarithm is then exactly linear in SNR in dB (the rule
:mod:`edgesplit.pruning.curves` uses for the convex pruning curves, for the same reason). Measured rows are kept
exactly (``interpolated = False``); interpolated rows copy the lower knot's descriptors, carry
``interpolated = True`` and perplexity / NLL sums consistent with the interpolated ``log_ppl_ratio``.
:func:`leave_one_out` measures the rule: each interior measured SNR predicted from its neighbours (10 dB apart,
twice the spacing the fine grid interpolates over, so a pessimistic check).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from surrogate.dataset import TARGETS, add_targets

EXCESS = {"log_ppl_ratio": lambda v: v, "kl_nats": lambda v: v, "top1_agreement": lambda v: 1.0 - v}
"""Each target as an excess over the clean cell (0 when clean); the map is its own inverse."""
RULES = ("geometric", "linear")
GROUP_COLUMNS = ("model", "channel", "k", "p", "bits_per_element", "modulation", "encoding", "loss_rate")


def interpolate_excess(snr_lo: float, lo: np.ndarray, snr_hi: float, hi: np.ndarray, snr: float,
                       rule: str = "geometric") -> np.ndarray:
    """The rule of the module docstring for excess values ``lo`` at ``snr_lo`` and ``hi`` at ``snr_hi``
    (``rule="linear"``: plain linear interpolation, the alternative :func:`leave_one_out` compares with)."""
    if rule not in RULES:
        raise ValueError(f"unknown interpolation rule {rule!r}; accepted: {', '.join(RULES)}")
    if not snr_lo <= snr <= snr_hi or snr_hi <= snr_lo:
        raise ValueError(f"need snr_lo < snr_hi and snr in between, got {snr_lo}, {snr_hi}, {snr}")
    w = (snr - snr_lo) / (snr_hi - snr_lo)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    linear = (1 - w) * lo + w * hi
    positive = (lo > 0) & (hi > 0) & (rule == "geometric")
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.exp((1 - w) * np.log(np.where(positive, lo, 1.0)) + w * np.log(np.where(positive, hi, 1.0)))
    return np.where(positive, geometric, linear)


def _groups(frame: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    keys = [c for c in GROUP_COLUMNS if c in frame.columns]
    work = frame.copy()
    for column in keys:  # None/NaN descriptors would drop out of a groupby
        work[column] = work[column].astype(object).where(work[column].notna(), "∅")
    return [(name, frame.loc[part.index]) for name, part in work.groupby(keys, sort=False)]


def _row_at(lo: pd.Series, hi: pd.Series, snr: float, rule: str = "geometric") -> dict:
    excess = interpolate_excess(float(lo["snr_db"]), np.array([EXCESS[t](float(lo[t])) for t in TARGETS]),
                                float(hi["snr_db"]), np.array([EXCESS[t](float(hi[t])) for t in TARGETS]), snr, rule)
    row = lo.to_dict() | {t: EXCESS[t](float(v)) for t, v in zip(TARGETS, excess, strict=True)}
    row |= {"snr_db": float(snr), "interpolated": True}
    if "clean_perplexity" in row:
        row["perplexity"] = float(row["clean_perplexity"]) * float(np.exp(row["log_ppl_ratio"]))
    if {"nll_sum", "clean_nll_sum", "scored_tokens"} <= row.keys():
        row["nll_sum"] = float(row["clean_nll_sum"]) + row["log_ppl_ratio"] * float(row["scored_tokens"])
    return row


def refine_snr(frame: pd.DataFrame, step_db: float = 0.5) -> pd.DataFrame:
    """Every measured cell, plus one interpolated cell per split and every multiple of ``step_db`` strictly between
    two measured SNRs of the same split and channel (see the module docstring). Rows without an SNR axis (dropout)
    are kept as they are."""
    if not step_db > 0:
        raise ValueError(f"step_db must be > 0, got {step_db!r}")
    frame = add_targets(frame).reset_index(drop=True)
    if frame.duplicated([*(c for c in GROUP_COLUMNS if c in frame.columns), "snr_db"]).any():
        raise ValueError("refine_snr needs one row per cell: pool the seeds first (surrogate.dataset.pool_seeds)")
    rows = [frame.assign(interpolated=False)]
    for _, part in _groups(frame[frame["channel"].isin(("awgn", "digital"))]):
        part = part.sort_values("snr_db")
        snrs = part["snr_db"].to_numpy(float)
        for (_, lo), (_, hi) in zip(part.iloc[:-1].iterrows(), part.iloc[1:].iterrows(), strict=True):
            first = np.floor(lo["snr_db"] / step_db + 1e-9) + 1
            points = [round(i * step_db, 6) for i in range(int(first), int(np.ceil(hi["snr_db"] / step_db - 1e-9)))]
            new = [_row_at(lo, hi, s) for s in points if not np.isclose(snrs, s).any()]
            if new:
                rows.append(pd.DataFrame(new))
    out = pd.concat(rows, ignore_index=True)
    return out.sort_values([c for c in ("channel", "k", "snr_db") if c in out.columns]).reset_index(drop=True)


def leave_one_out(frame: pd.DataFrame, rule: str = "geometric") -> pd.DataFrame:
    """Each interior measured SNR of every split predicted from its two neighbours by ``rule``: one row per
    (split, SNR) with the measured and predicted ``log_ppl_ratio`` and the error."""
    frame = add_targets(frame)
    rows = []
    for _, part in _groups(frame[frame["channel"].isin(("awgn", "digital"))]):
        part = part.sort_values("snr_db").reset_index(drop=True)
        for i in range(1, len(part) - 1):
            lo, mid, hi = part.iloc[i - 1], part.iloc[i], part.iloc[i + 1]
            predicted = _row_at(lo, hi, float(mid["snr_db"]), rule)["log_ppl_ratio"]
            rows.append({"k": int(mid["k"]), "snr_db": float(mid["snr_db"]), "measured": float(mid["log_ppl_ratio"]),
                         "predicted": predicted, "error": predicted - float(mid["log_ppl_ratio"])})
    return pd.DataFrame(rows)


__all__ = ["EXCESS", "RULES", "interpolate_excess", "leave_one_out", "refine_snr"]
