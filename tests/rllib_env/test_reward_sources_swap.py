"""Reward sources: surrogate, counted real and table are interchangeable; the real one counts LLM evaluations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesplit.scenario import ChannelSetting
from rllib_env.registry import describe, register_source, source_from_spec, unregister_source
from rllib_env.sources import RealRewardSource, SurrogateRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.actor import SurrogateActor
from surrogate.dataset import ModelDescriptor
from surrogate.ensemble import EnsembleConfig
from surrogate.evaluator import RealEvaluator, TableOracle
from surrogate.model import QualitySurrogate
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "episode_steps": 24}


@pytest.fixture(scope="module")
def cells():
    return synthetic_cells(seed=0)


@pytest.fixture(scope="module")
def fitted(cells):
    return QualitySurrogate(EnsembleConfig(hidden_size=32, ensemble_size=3, epochs=400)).fit(cells)


def sources(cells, fitted) -> dict:
    descriptor = describe(MODEL_NAME)
    return {"table": TableRewardSource(cells, descriptor),
            "real": RealRewardSource(TableOracle(cells), descriptor),
            "surrogate": SurrogateRewardSource(fitted, descriptor),
            "actor": SurrogateRewardSource(SurrogateActor(surrogate=fitted), descriptor)}


def trace(env: SplitEnv, seed: int = 7) -> tuple[list, list]:
    env.reset(seed=seed)
    rewards, ks = [], []
    for t in range(env.config.episode_steps):
        _, _, _, _, info = env.step((3 * t) % (NUM_LAYERS + 1))
        rewards.append(info["reward"])
        ks.append(info["k"])
    return rewards, ks


def test_every_source_drives_the_same_env(cells, fitted):
    results = {name: trace(SplitEnv(BASE, source=src)) for name, src in sources(cells, fitted).items()}
    assert len({tuple(ks) for _, ks in results.values()}) == 1
    np.testing.assert_array_equal(results["table"][0], results["real"][0])  # same measured quality
    np.testing.assert_allclose(results["surrogate"][0], results["actor"][0], rtol=1e-9)
    feasible = np.array(results["table"][0]) > -1e5
    # the surrogate is fitted on this very grid: its rewards track the truth
    assert np.corrcoef(np.array(results["surrogate"][0])[feasible], np.array(results["table"][0])[feasible])[0, 1] > 0.9


def test_real_source_counts_distinct_lossy_cells(cells):
    oracle = TableOracle(cells)
    real = RealRewardSource(oracle, describe(MODEL_NAME))
    a, b = ChannelSetting(kind="awgn", snr_db=5.0), ChannelSetting(kind="awgn", snr_db=10.0)
    real.quality([2, 3, 2, 0, NUM_LAYERS], [a, a, a, a, a])
    assert (real.stats.llm_evaluations, real.stats.queries, real.stats.distinct_cells) == (2, 5, 4)
    real.quality([2, 2, 3], [b, a, b])
    assert (real.stats.llm_evaluations, real.stats.queries) == (4, 8)
    assert oracle.stats.evaluations == real.stats.llm_evaluations  # the oracle's own counter agrees
    assert list(real.log_frame()["evaluation"]) == [1, 2, 3, 4]
    assert real.would_evaluate(4, a) and not real.would_evaluate(2, a) and not real.would_evaluate(0, b)
    labelled = real.labelled()
    assert len(labelled) == 4 and set(labelled["snr_db"]) == {5.0, 10.0}


def test_real_evaluator_on_a_tiny_llm_counts_each_llm_call(tiny_llama):
    ids = torch.randint(0, 128, (97,), generator=torch.Generator().manual_seed(0))
    evaluator = RealEvaluator(tiny_llama, ids, context=32, batch_size=2)
    descriptor = ModelDescriptor.from_profile(tiny_llama.name, evaluator.costs.profile)
    real = RealRewardSource(evaluator, descriptor)
    setting = ChannelSetting(kind="awgn", snr_db=0.0)
    first = real.quality([1, 2, 4, 1], [setting] * 4)
    again = real.quality([2, 1], [setting] * 2)
    assert real.stats.llm_evaluations == 2 == evaluator.stats.tail_runs == evaluator.stats.evaluations
    np.testing.assert_array_equal(first[[1, 0]], again)
    assert first[0, 1] > 0 and tuple(first[2]) == (0.0, 0.0, 1.0)  # noise moves the output; k = L is lossless


def test_sources_by_spec_are_shared_per_process(cells, fitted, tmp_path):
    cells.to_parquet(tmp_path / "cells.parquet")
    table = source_from_spec({"kind": "table", "path": str(tmp_path)}, MODEL_NAME)
    assert source_from_spec({"kind": "table", "path": str(tmp_path)}, MODEL_NAME) is table
    real = source_from_spec({"kind": "real", "table": str(tmp_path / "cells.parquet")}, MODEL_NAME)
    assert isinstance(real, RealRewardSource)
    spec = register_source(SurrogateRewardSource(fitted, describe(MODEL_NAME)))
    envs = [SplitEnv({**BASE, "source": spec}) for _ in range(2)]
    assert envs[0].source is envs[1].source
    unregister_source(spec)
    with pytest.raises(ValueError, match="no reward source registered"):
        SplitEnv({**BASE, "source": spec})
    with pytest.raises(ValueError, match="kind"):
        source_from_spec({"kind": "oracle"}, MODEL_NAME)


def test_surrogate_source_predicts_whole_settings_once(fitted):
    source = SurrogateRewardSource(fitted, describe(MODEL_NAME))
    setting = ChannelSetting(kind="awgn", snr_db=12.3)  # off-grid: the surrogate interpolates
    source.quality([1], [setting])
    source.quality([5, 6, 7], [setting] * 3)
    assert source.stats.predictions == NUM_LAYERS + 1 and source.stats.queries == 4
    source.set_model(fitted)
    source.quality([5], [setting])
    assert source.stats.predictions == 2 * (NUM_LAYERS + 1)
