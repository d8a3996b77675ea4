"""``co-opt --measure``: the chosen design built and scored window by window on held-out text (the real model)."""

from __future__ import annotations

import math
import types

import pytest

from edgesplit.pruning.co_opt_run import MeasuredQuality, TextPlan, measure_design, wire_link
from edgesplit.quality import evaluate_split, load_corpus, tokenize_corpus


def test_window_statistics_by_hand():
    q = MeasuredQuality(ppl=2.0, ppl_dense=1.0, scored_tokens=4, achieved_ratio=0.3, corpus="x",
                        window_losses=(0.1, 0.3, 0.2, 0.4))
    assert q.window_sd == pytest.approx(math.sqrt(((0.15**2 + 0.05**2) * 2) / 3))
    assert q.loss_se == pytest.approx(q.window_sd / 2)
    assert math.isnan(MeasuredQuality(2.0, 1.0, 4, 0.3, "x", (0.1,)).window_sd)


def test_measured_design_pools_its_windows_exactly_and_pairs_them(real_model):
    """Pooled perplexities equal one evaluate_split over the whole held-out range, and each window's paired loss
    averages (weighted by its targets) to the pooled loss."""
    text = TextPlan(corpus="default", calib_range=(0, 1024), eval_range=(1024, 1024 + 384), context=128)
    problem = types.SimpleNamespace(method="magnitude", side="device")
    q = measure_design("smollm2-135m", problem, 8, 0.3, 16, text)
    assert len(q.window_losses) == 3 and q.scored_tokens == 3 * 127
    assert 0.29 < q.achieved_ratio < 0.31
    ids = tokenize_corpus(load_corpus("default"), real_model.tokenizer, text.eval_range[1])[1024:]
    whole = evaluate_split(real_model, ids, 8, wire_link(16), context=128)
    assert q.ppl_dense == pytest.approx(whole.perplexity, rel=1e-6)
    assert q.loss == pytest.approx(sum(q.window_losses) / 3, rel=1e-6)
    assert q.loss > 0 and q.loss_se > 0
