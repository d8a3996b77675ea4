"""Ray-facing jobs and actors: fleets of UEs and edge workers doing real split inference, profiler workers.

Modules (plain classes first; ``ray.remote`` is applied where a fleet is built, so each class is tested without
Ray):

- :mod:`cluster.weights` — put a model in the object store once; actors rebuild it from zero-copy arrays.
- :mod:`cluster.policies` — split policies (``fixed:K``, ``snr:T=K,...``, any ``choose(observation)`` object).
- :mod:`cluster.ue_device` / :mod:`cluster.ue_actor` — simulated UEs (device, channel, head) and the fleet actor.
- :mod:`cluster.edge_actor` — edge workers (tails per split, KV cache per session, batched steps, restartable).
- :mod:`cluster.fleet` — :class:`~cluster.fleet.FleetConfig` and :class:`~cluster.fleet.RayFleet`.
- ``python -m cluster.run_fleet`` — the fleet job (per-request parquet log, summary, config).
"""
