"""Quality tables for the surrogate: loading profiler output, model descriptors, learning targets.

``load_cells(path)`` reads one ``cells.parquet``, or every ``cells.parquet`` under a directory (so the separate
runs of a sweep — awgn, dropout, digital — form one table), adds the model descriptors and the
``log_ppl_ratio = log(perplexity / clean_perplexity)`` column. The surrogate's targets are :data:`TARGETS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from edgesplit.cost import ModelProfile

TARGETS = ("log_ppl_ratio", "kl_nats", "top1_agreement")
"""What the surrogate predicts per cell: log(PPL/PPL0), KL(clean ‖ split) in nats, top-1 agreement."""
CELLS_FILE = "cells.parquet"


@dataclass(frozen=True)
class ModelDescriptor:
    """What the surrogate knows about a model (so one surrogate can cover several)."""

    name: str
    """Model name as written in the tables."""
    num_layers: int
    """Decoder layers L."""
    hidden_size: int
    """Width of the hidden state."""
    num_params: int
    """Total parameters (tied head counted once)."""

    def __post_init__(self) -> None:
        if min(self.num_layers, self.hidden_size, self.num_params) < 1:
            raise ValueError(f"model descriptor values must be >= 1, got {self}")

    @classmethod
    def from_profile(cls, name: str, profile: ModelProfile) -> ModelDescriptor:
        """From a cost-model profile."""
        return cls(name, profile.num_layers, profile.hidden_size, profile.total_params)


def model_profile(name: str) -> ModelProfile:
    """The cost profile of a built-in model, a local directory (config alone, no weights loaded) or the synthetic
    model of :mod:`surrogate.synthetic`."""
    return _profile(name)


@lru_cache(maxsize=16)
def _profile(name: str) -> ModelProfile:
    from transformers import AutoConfig

    from edgesplit.models.builtin import BUILTINS, builtin_dir
    from surrogate import synthetic

    if name == synthetic.MODEL_NAME:  # the fictitious model of synthetic tables (tests, smoke runs)
        return synthetic.synthetic_profile()
    source = str(builtin_dir(name)) if name in BUILTINS else name
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=Path(source).is_dir())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the config of model {name!r} to describe it: {err}") from None
    return ModelProfile.from_config(config)


def add_descriptors(frame: pd.DataFrame, descriptors: dict[str, ModelDescriptor] | None = None) -> pd.DataFrame:
    """``frame`` with ``hidden_size`` and ``num_params`` filled in per model (from ``descriptors`` or the config)."""
    if {"hidden_size", "num_params"} <= set(frame.columns) and frame[["hidden_size", "num_params"]].notna().all().all():
        return frame
    out = frame.copy()
    known = dict(descriptors or {})
    for name in out["model"].unique():
        if name not in known:
            known[name] = ModelDescriptor.from_profile(name, model_profile(name))
    out["hidden_size"] = out["model"].map(lambda n: known[n].hidden_size)
    out["num_params"] = out["model"].map(lambda n: known[n].num_params)
    return out


def add_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ``log_ppl_ratio`` column (from perplexity and clean_perplexity, or nll sums)."""
    out = frame.copy()
    if "log_ppl_ratio" not in out.columns:
        missing = [c for c in ("perplexity", "clean_perplexity") if c not in out.columns]
        if missing:
            raise ValueError(f"quality table lacks {missing}; it needs perplexity and clean_perplexity")
        if "nll_sum" in out.columns and "scored_tokens" in out.columns:
            # exact even where exp overflowed: (nll - clean_nll) / tokens
            out["log_ppl_ratio"] = (out["nll_sum"] - out["clean_nll_sum"]) / out["scored_tokens"]
        else:
            out["log_ppl_ratio"] = np.log(out["perplexity"] / out["clean_perplexity"])
    bad = [t for t in TARGETS if t not in out.columns or not np.isfinite(out[t].to_numpy(dtype=float)).all()]
    if bad:
        raise ValueError(f"quality table has missing or non-finite target column(s) {bad}")
    return out


POOLED_SUMS = ("nll_sum", "clean_nll_sum", "scored_tokens")
"""Columns that add up over the seeds of a cell."""
POOLED_MEANS = ("kl_nats", "top1_agreement", "link_mse", "link_ber", "wall_s")
"""Columns averaged over the seeds of a cell, weighted by scored tokens."""
POOLED_CODED = ("nr_mean_mcs", "nr_code_rate", "nr_erased_tb_fraction", "nr_transmissions_per_tb", "nr_erased_fraction")
"""The coded link's measured columns: token-weighted means over the seeds too, null where every seed's is."""


def pool_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the rows of its seeds (independent channel-noise draws on the same text) pooled exactly.

    Perplexities come from the summed NLLs (``exp(Σ nll / Σ tokens)``), so the pooled cell is what one evaluation of
    ``seeds × tokens`` targets would give; KL, top-1 agreement (and the link statistics) are token-weighted means.
    A measured table has one noise draw per seed: averaging them estimates the *expected* quality of a cell rather
    than one draw's luck (on SmolLM2 at 25–30 dB the draw-to-draw spread of log(PPL/PPL0) is as large as the
    differences between the best splits, see ``benchmarks/mbrl_vs_modelfree.py``). ``seed`` becomes the number of
    seeds pooled (``pooled_seeds``) and is set to 0. Rows with fading (each seed draws its own block gain) are not
    pooled: ValueError.
    """
    if "fading" in frame.columns and (frame["fading"].fillna("none") != "none").any():
        raise ValueError("pool_seeds: rows with fading draw a block gain per seed; pool only fading='none' tables")
    missing = [c for c in POOLED_SUMS if c not in frame.columns]
    if missing:
        raise ValueError(f"pool_seeds needs the columns {missing} (a profiler cells table)")
    measured = {*POOLED_SUMS, *POOLED_MEANS, "seed", "perplexity", "clean_perplexity", "log_ppl_ratio"}
    keys = [c for c in frame.columns if c not in measured and not c.startswith("prefill_")
            and c not in ("uplink_rate_bps", "device_memory_bytes", "feasible", "payload_bits_per_token")]
    keys = [c for c in keys if c not in POOLED_CODED]
    work = frame.copy()
    weight = work["scored_tokens"].astype(float)
    means = [c for c in POOLED_MEANS if c in work.columns]
    coded = [c for c in POOLED_CODED if c in work.columns]
    for column in (*means, *coded):
        work[column] = work[column].astype(float) * weight
    grouped = work.groupby(keys, dropna=False, sort=False)
    first = grouped.first()
    sums = grouped[[*POOLED_SUMS, *means]].sum().join(grouped[coded].sum(min_count=1))
    out = first.drop(columns=[c for c in (*POOLED_SUMS, *means, *coded) if c in first.columns]).join(sums)
    for column in (*means, *coded):
        out[column] = out[column] / out["scored_tokens"]
    out["pooled_seeds"] = grouped.size()
    out["seed"] = 0
    out["perplexity"] = np.exp(out["nll_sum"] / out["scored_tokens"])
    out["clean_perplexity"] = np.exp(out["clean_nll_sum"] / out["scored_tokens"])
    out = out.drop(columns=["log_ppl_ratio"], errors="ignore").reset_index()
    return out[[c for c in frame.columns if c in out.columns] + ["pooled_seeds"]]


def cells_files(path: Path) -> list[Path]:
    """The ``cells.parquet`` files named by ``path`` (a file, or a directory searched recursively)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.rglob(CELLS_FILE))
        if files:
            return files
        raise ValueError(f"no {CELLS_FILE} under {path}")
    raise ValueError(f"quality data {path} does not exist; give a {CELLS_FILE} file or a directory holding some")


def load_cells(path: Path, descriptors: dict[str, ModelDescriptor] | None = None) -> pd.DataFrame:
    """Every cell under ``path`` with descriptors and targets, one row per (model, k, setting, seed)."""
    frames = [pd.read_parquet(f) for f in cells_files(path)]
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    keys = [c for c in ("model", "k", "setting", "fading", "seed") if c in table.columns]
    table = table.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)
    return add_targets(add_descriptors(table, descriptors))


def split_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` rows into (first ``round(fraction·n)`` indices, the rest), both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    count = min(n - 1, max(1, math.floor(fraction * n + 0.5)))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:count]), np.sort(order[count:])


__all__ = ["CELLS_FILE", "TARGETS", "ModelDescriptor", "add_descriptors", "add_targets", "cells_files", "load_cells",
           "model_profile", "split_rows"]
