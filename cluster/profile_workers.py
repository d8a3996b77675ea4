"""Fan a profile's cells out over Ray workers that share one copy of the weights and of the clean pass.

``edgesplit profile --workers N`` uses :func:`ray_evaluator_factory`: the driver loads the model and runs the clean
pass once, puts the packed weights (:func:`cluster.weights.pack_model`, zero-copy numpy arrays) and the prepared
windows (boundary states and clean log-probabilities as numpy arrays) into the object store **once**, and starts
``N`` :class:`ProfileWorker` actors that rebuild the model around those shared arrays without copying. Groups of
cells (:func:`edgesplit.profile.group_cells`) are dealt to idle workers; each returns the same
:class:`~edgesplit.profile.CellResult` objects the local engine yields, and the per-window seeding makes the numbers
identical to a local run whatever worker evaluates which cell.

Ray is initialised on first use: ``ray.init(address="auto")`` when ``RAY_ADDRESS`` is set (a cluster), a local
instance otherwise; an already initialised Ray (a test fixture, a job's driver) is reused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch

from cluster.weights import build_model, pack_model
from edgesplit.models import LoadedModel
from edgesplit.profile import CellResult, PreparedWindows, ProfileCell, ProfileConfig, evaluate_group
from edgesplit.profile.runner import Evaluator, EvaluatorFactory


class ProfileWorker:
    """Holds the shared model and clean pass; evaluates groups of cells (plain class; Ray wraps it)."""

    def __init__(self, shared_model: Any, shared_windows: dict[str, list], threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.model: LoadedModel = build_model(shared_model)
        self.prepared = PreparedWindows.from_numpy(shared_windows)

    def evaluate(self, group: list[ProfileCell]) -> list[CellResult]:
        """The results of one group, exactly as :func:`edgesplit.profile.evaluate_group` computes them."""
        return evaluate_group(self.model, self.prepared, group)

    def pid(self) -> int:
        """The worker's process id (to check that work really spread)."""
        return os.getpid()


def ensure_ray() -> bool:
    """Initialise Ray if needed (``RAY_ADDRESS`` → the cluster, else local); True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


def start_workers(model: LoadedModel, prepared: PreparedWindows, workers: int) -> list[Any]:
    """Put weights and clean pass in the object store once and start ``workers`` actors sharing them."""
    import ray

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    model_ref = ray.put(pack_model(model))
    windows_ref = ray.put(prepared.to_numpy())
    # More workers than CPUs would leave actors pending forever: share the CPUs out instead (one thread each).
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    remote = ray.remote(num_cpus=min(1.0, cpus / workers))(ProfileWorker)
    return [remote.remote(model_ref, windows_ref, 1) for _ in range(workers)]


def _deal(actors: list[Any], groups: list[list[ProfileCell]]) -> Iterator[list[CellResult]]:
    """Keep every actor busy with one group; yield results as they finish (any order)."""
    import ray

    pending, queue = {}, list(reversed(groups))
    for actor in actors:
        if queue:
            pending[actor.evaluate.remote(queue.pop())] = actor
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        actor = pending.pop(done[0])
        if queue:
            pending[actor.evaluate.remote(queue.pop())] = actor
        yield ray.get(done[0])


class RayEvaluatorFactory:
    """An :data:`~edgesplit.profile.runner.EvaluatorFactory` that evaluates groups on ``workers`` Ray actors.

    Lossless groups (no compute) stay in the driver; every other group goes to the next idle actor. The actors are
    killed when the evaluation ends (also on error or interruption). ``worker_pids`` records the processes used.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.worker_pids: set[int] = set()

    def __call__(self, model: LoadedModel, prepared: PreparedWindows, config: ProfileConfig) -> Evaluator:
        import ray

        ensure_ray()
        actors = start_workers(model, prepared, self.workers)
        self.worker_pids |= set(ray.get([actor.pid.remote() for actor in actors]))

        def evaluate(groups: list[list[ProfileCell]]) -> Iterator[list[CellResult]]:
            lossless = [g for g in groups if g[0].lossless(model.num_layers)]
            try:
                for group in lossless:  # no compute: not worth a round trip
                    yield evaluate_group(model, prepared, group)
                yield from _deal(actors, [g for g in groups if not g[0].lossless(model.num_layers)])
            finally:
                for actor in actors:
                    ray.kill(actor)

        return evaluate


def ray_evaluator_factory(workers: int) -> EvaluatorFactory:
    """The factory ``edgesplit profile --workers N`` uses (see :class:`RayEvaluatorFactory`)."""
    return RayEvaluatorFactory(workers)
