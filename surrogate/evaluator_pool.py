"""Several :class:`~surrogate.evaluator.RealEvaluator` replicas as Ray actors, behind the evaluator's interface.

pool = EvaluatorPool(workers=2, model="smollm2-135m", token_ids=ids, context=256)
rows = pool.evaluate_frame(cells)          # split by k across the actors, cached by cell in the driver
pool.stats                                 # the actors' evaluations and wall time added up; cache hits here
pool.close()

Each actor loads the model itself (a name) or receives it through the object store (a loaded model), runs its own
clean pass on first use, and evaluates the cells dealt to it; the per-window seeding makes the rows identical to a
single evaluator's whichever actor computes a cell. Cells are dealt by ``k`` (a whole ``k`` goes to one actor, so
its batched tail calls stay batched), largest groups first, to the actor with the least work so far.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from edgesplit.models import LoadedModel
from surrogate.evaluator import EvaluatorStats, RealEvaluator
from surrogate.features import CODED_COLUMNS, row_keys

_KEY = ("model", "k", "channel", "snr_db", "p", "bits_per_element", "modulation", "encoding", "fading_gain",
        "loss_rate", "seed", *CODED_COLUMNS)


class EvaluatorPool:
    """A pool of real evaluators on Ray actors (see the module docstring)."""

    def __init__(self, workers: int, model: LoadedModel | str, token_ids: torch.Tensor, *, num_cpus: float = 1.0,
                 **evaluator_kwargs: Any) -> None:
        import ray

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not ray.is_initialized():
            raise ValueError("Ray is not initialised: call ray.init() (or use a cluster) before building a pool")
        remote = ray.remote(num_cpus=num_cpus)(RealEvaluator)
        shared = model if isinstance(model, str) else ray.put(model)
        ids = ray.put(token_ids)
        self.actors = [remote.remote(shared, ids, threads=1, **evaluator_kwargs) for _ in range(workers)]
        self._cache: dict[str, dict] = {}
        self._hits = 0

    def _deal(self, frame: pd.DataFrame) -> list[pd.DataFrame]:
        loads = [0] * len(self.actors)
        parts: list[list[pd.DataFrame]] = [[] for _ in self.actors]
        groups = sorted(frame.groupby("k"), key=lambda item: -len(item[1]))
        for _, group in groups:
            target = loads.index(min(loads))
            parts[target].append(group)
            loads[target] += len(group)
        return [pd.concat(p) if p else frame.iloc[:0] for p in parts]

    def evaluate_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Quality rows for the cells of ``frame``, in order (see :meth:`RealEvaluator.evaluate_frame`)."""
        import ray

        frame = frame.reset_index(drop=True)
        keys = row_keys(_filled(frame), [c for c in _KEY if c in frame.columns])
        todo = frame[~keys.isin(list(self._cache))].drop_duplicates()
        self._hits += len(frame) - len(todo)
        work = [(actor, part) for actor, part in zip(self.actors, self._deal(todo), strict=True) if len(part)]
        futures = [actor.evaluate_frame.remote(part) for actor, part in work]
        done = [part for _, part in work]
        for part, rows in zip(done, ray.get(futures), strict=True):
            part_keys = row_keys(_filled(part), [c for c in _KEY if c in part.columns])
            self._cache.update(zip(part_keys, rows.to_dict("records"), strict=True))
        return pd.DataFrame([self._cache[k] for k in keys])

    @property
    def stats(self) -> EvaluatorStats:
        """The actors' counters added up, with this pool's cache hits."""
        import ray

        total = EvaluatorStats()
        for stats in ray.get([actor.get_stats.remote() for actor in self.actors]):
            total = total + stats
        total.cache_hits += self._hits
        return total

    def close(self) -> None:
        """Stop the actors."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _filled(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    if "p" in out.columns:
        out["p"] = out["p"].fillna(0.0)
    return out


__all__ = ["EvaluatorPool"]
