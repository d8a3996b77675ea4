"""``--workers 2``: cells fanned out over Ray actors sharing one copy of the weights give the local run's table."""

from __future__ import annotations

import pytest
import torch

from edgesplit.profile import ProfileConfig, ProfileInputs, run_profile

pytestmark = pytest.mark.ray


def test_two_ray_workers_reproduce_the_local_table(ray_session, tiny_llama, tmp_path):
    import os

    from cluster.profile_workers import RayEvaluatorFactory

    ids = torch.randint(2, 128, (48,), generator=torch.Generator().manual_seed(5))
    inputs = ProfileInputs(tiny_llama, ids, "synthetic")

    def config(name: str, workers: int) -> ProfileConfig:
        return ProfileConfig(out=tmp_path / name, model="tiny-llama", channel="dropout", p=(0.1, 0.3),
                             splits=(0, 1, 2, 3, 4), seeds=2, tokens=48, context=24, batch_size=2, workers=workers)

    local = run_profile(config("local", 0), inputs, progress=False, plots=False).cells
    seen, factory = [], RayEvaluatorFactory(2)
    remote = run_profile(config("ray", 2), inputs, progress=False, plots=False, evaluator_factory=factory,
                         on_group=seen.append).cells
    assert len(remote) == len(local) == 5 * 2 * 2
    assert remote.drop(columns="wall_s").equals(local.drop(columns="wall_s"))
    noisy_wall = remote[remote["k"].isin([1, 2, 3])]["wall_s"]
    assert (noisy_wall > 0).all()  # really evaluated (by the workers), not copied from the local run
    assert len(seen) == 2 + 3 * 2  # two lossless groups (k=0, k=4) + three splits × two groups of two cells
    assert len(factory.worker_pids) == 2 and os.getpid() not in factory.worker_pids
