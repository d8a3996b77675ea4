"""How a UE fleet reaches its edge workers: in-process (tests) or through Ray actor handles.

A transport submits one ``step_many`` call per edge and tick, yields the outcomes in the order they complete
(an :class:`~cluster.messages.EdgeUnavailable` in place of replies when the edge could not answer), and probes a
failed edge until it is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from cluster.edge_actor import EdgeWorker
from cluster.messages import EdgeReply, EdgeRequest, EdgeUnavailable

Outcome = list[EdgeReply] | EdgeUnavailable
"""What one edge call gives back."""


class LocalTransport:
    """Edge workers in the same process (tests, single-process runs)."""

    def __init__(self, workers: list[EdgeWorker]) -> None:
        self.workers = workers

    def submit(self, edge: int, requests: list[EdgeRequest]) -> tuple[Outcome, float]:
        """Serve the call now; the pending value is (replies, completion time)."""
        return self.workers[edge].step_many(requests), time.perf_counter()

    def gather(self, pending: list[tuple[Outcome, float]]) -> Iterator[tuple[int, Outcome, float]]:
        for index, (outcome, done_s) in enumerate(pending):
            yield index, outcome, done_s

    def probe(self, edge: int) -> int:
        return edge

    def probe_result(self, probe: int) -> bool | None:
        return True


class RayTransport:
    """Edge actors behind Ray handles; replies are taken in the order they complete."""

    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles

    def submit(self, edge: int, requests: list[EdgeRequest]) -> Any:
        return self.handles[edge].step_many.remote(requests)

    def gather(self, pending: list[Any]) -> Iterator[tuple[int, Outcome, float]]:
        import ray

        index = {ref: i for i, ref in enumerate(pending)}
        left = list(pending)
        while left:
            ready, left = ray.wait(left, num_returns=1)
            done_s = time.perf_counter()
            try:
                outcome: Outcome = ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                outcome = EdgeUnavailable(f"{type(err).__name__}: {str(err).splitlines()[0]}")
            yield index[ready[0]], outcome, done_s

    def probe(self, edge: int) -> Any:
        """Ask a (possibly restarting) edge whether it is up."""
        return self.handles[edge].info.remote()

    def probe_result(self, probe: Any) -> bool | None:
        """True: the edge answered; False: the probe failed (ask again later); None: no answer yet."""
        import ray

        ready, _ = ray.wait([probe], timeout=0)
        if not ready:
            return None
        try:
            ray.get(ready[0])
        except ray.exceptions.RayActorError:
            return False
        return True
