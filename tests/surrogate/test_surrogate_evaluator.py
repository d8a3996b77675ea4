"""Real evaluations: the LLM through the profiler engine, counted, cached; the table oracle; the Ray pool."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from edgesplit.profile import WindowSeededLink
from edgesplit.quality import evaluate_split, make_windows
from edgesplit.scenario import ChannelSetting
from surrogate.evaluator import RealEvaluator, TableOracle, cell_of
from surrogate.features import setting_columns

CONTEXT = 32


@pytest.fixture(scope="module")
def token_ids() -> torch.Tensor:
    return torch.randint(2, 128, (96,), generator=torch.Generator().manual_seed(0))


def _cells(model, rows: list[tuple[int, ChannelSetting]], seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame([{"model": model.name, "num_layers": model.num_layers, "hidden_size": model.hidden_size,
                          "num_params": 1, "k": k, "seed": seed, **setting_columns(s)} for k, s in rows])


AWGN10, AWGN20 = ChannelSetting("awgn", snr_db=10.0), ChannelSetting("awgn", snr_db=20.0)
DIGITAL = ChannelSetting("digital", snr_db=6.0, bits=4, modulation="16qam")


def test_counts_caches_and_matches_a_direct_evaluation(tiny_llama, token_ids):
    evaluator = RealEvaluator(tiny_llama, token_ids, context=CONTEXT, batch_size=2)
    cells = _cells(tiny_llama, [(1, AWGN10), (2, AWGN10), (2, DIGITAL), (0, AWGN10), (4, AWGN20), (1, AWGN10)])
    rows = evaluator.evaluate_frame(cells)
    assert len(rows) == 6
    pd.testing.assert_series_equal(rows.loc[0], rows.loc[5], check_names=False)
    stats = evaluator.stats
    assert stats.evaluations == 5 and stats.tail_runs == 3 and stats.cache_hits == 1
    assert stats.wall_s > 0 and stats.clean_pass_s > 0
    again = evaluator.evaluate_frame(cells.iloc[:3])
    assert evaluator.stats.evaluations == 5 and evaluator.stats.cache_hits == 4
    pd.testing.assert_frame_equal(again, rows.iloc[:3].reset_index(drop=True))
    # the same numbers as evaluate_split with the profiler's per-window noise
    cell = cell_of(cells.iloc[2].to_dict())
    direct = evaluate_split(tiny_llama, token_ids, 2, WindowSeededLink(cell, make_windows(96, CONTEXT)),
                            context=CONTEXT, batch_size=1)
    assert rows.loc[2, "perplexity"] == pytest.approx(direct.perplexity, rel=1e-6)
    assert rows.loc[2, "log_ppl_ratio"] == pytest.approx(math.log(direct.perplexity / direct.clean_perplexity))
    assert rows.loc[3, "log_ppl_ratio"] == 0.0 and rows.loc[4, "kl_nats"] == 0.0  # lossless k = 0, k = L
    assert {"hidden_size", "num_params", "prefill_latency_s"} <= set(rows.columns)


def test_seeds_give_different_draws_and_bad_cells_fail(tiny_llama, token_ids):
    evaluator = RealEvaluator(tiny_llama, token_ids, context=CONTEXT)
    a = evaluator.evaluate_frame(_cells(tiny_llama, [(2, AWGN10)], seed=0))
    b = evaluator.evaluate_frame(_cells(tiny_llama, [(2, AWGN10)], seed=1))
    assert a.loc[0, "perplexity"] != b.loc[0, "perplexity"]
    with pytest.raises(ValueError, match="out of range"):
        evaluator.evaluate_frame(_cells(tiny_llama, [(5, AWGN10)]))
    with pytest.raises(ValueError, match="1-D stream"):
        RealEvaluator(tiny_llama, token_ids[None], context=CONTEXT)


def test_table_oracle_counts_distinct_cells(tiny_llama, token_ids):
    table = RealEvaluator(tiny_llama, token_ids, context=CONTEXT).evaluate_frame(
        _cells(tiny_llama, [(1, AWGN10), (2, AWGN10), (3, AWGN20)]))
    oracle = TableOracle(table)
    out = oracle.evaluate_frame(table.iloc[[2, 0]])
    assert list(out["k"]) == [3, 1] and oracle.stats.evaluations == 2
    oracle.evaluate_frame(table.iloc[[0, 1]])
    assert oracle.stats.evaluations == 3 and oracle.stats.cache_hits == 1
    with pytest.raises(ValueError, match="not in the table"):
        oracle.evaluate_frame(table.iloc[[0]].assign(k=4))
    with pytest.raises(ValueError, match="same cell twice"):
        TableOracle(pd.concat([table, table.iloc[[0]]]))


@pytest.mark.ray
def test_ray_pool_matches_a_local_evaluator(ray_session, tiny_llama, token_ids):
    from surrogate.evaluator_pool import EvaluatorPool

    cells = _cells(tiny_llama, [(1, AWGN10), (2, AWGN10), (3, DIGITAL), (1, AWGN20), (2, AWGN10)])
    local = RealEvaluator(tiny_llama, token_ids, context=CONTEXT).evaluate_frame(cells)
    pool = EvaluatorPool(2, tiny_llama, token_ids, num_cpus=0.5, context=CONTEXT)
    try:
        remote = pool.evaluate_frame(cells)
        pd.testing.assert_frame_equal(remote[local.columns].drop(columns="wall_s"), local.drop(columns="wall_s"))
        pool.evaluate_frame(cells.iloc[:2])
        stats = pool.stats
        assert stats.evaluations == 4 and stats.cache_hits == 1 + 2
    finally:
        pool.close()
