"""Where an edge replica's layer stack runs: the app's ``device`` checked against the GPUs the replica reserves.

Ray 2.60 does not hide a node's GPUs from an actor that reserves none, so the device has to follow the reservation
(``ray_actor_options.num_gpus`` of the edge deployment), not what the node has: GPUs reserved need device cuda or
auto, device cuda needs GPUs reserved, and auto means cuda exactly when the replica got one
(:func:`edgesplit.models.device.check_gpu_reservation`). :func:`check_edge_gpus` is the static check of a config
(``edgesplit serve``, :func:`serve_deployments.app.compose` with explicit options); :func:`replica_device` runs in
the replica itself, so ``serve run`` and a RayService get the same answer from the reservation they actually have.
"""

from __future__ import annotations

from typing import Any

from edgesplit.models.device import check_gpu_reservation


def check_edge_gpus(device: str, ray_actor_options: dict | None) -> None:
    """ValueError unless the edge deployment's ``ray_actor_options`` (its ``num_gpus``) fit ``device``."""
    check_gpu_reservation(device, float((ray_actor_options or {}).get("num_gpus") or 0))


def replica_device(name: str) -> Any:
    """The torch device of this process: ``name`` resolved against the GPUs Ray reserved for it (ValueError when the
    two disagree, so a replica fails to start with the reason); outside a Ray worker, torch's own view."""
    from edgesplit.models.device import ray_gpus_reserved, resolve_device

    reserved = ray_gpus_reserved()
    if reserved is not None:
        check_gpu_reservation(name, reserved)
    return resolve_device(name, gpus_reserved=reserved)


def place_engine(engine: Any, device: Any) -> None:
    """Move the transformers engine's model to ``device`` (an engine without one, vLLM, places its own weights)."""
    loaded = getattr(engine, "loaded", None)
    if loaded is not None and loaded.model.device != device:
        loaded.model.to(device)


__all__ = ["check_edge_gpus", "place_engine", "replica_device"]
