"""The cached-tail engine gives exactly what a direct evaluate_split with the same link draws gives."""

from __future__ import annotations

import pytest
import torch

from edgesplit.link import ImpairedLink
from edgesplit.profile import (
    ProfileCell,
    WindowSeededLink,
    enumerate_cells,
    evaluate_cells,
    evaluate_group,
    prepare_windows,
    window_seed,
)
from edgesplit.quality import evaluate_split, make_windows
from edgesplit.scenario import ChannelSetting

CONTEXT = 32
SETTINGS = [ChannelSetting("awgn", snr_db=5.0), ChannelSetting("dropout", p=0.2),
            ChannelSetting("digital", snr_db=4.0, bits=4, modulation="16qam")]


@pytest.fixture(scope="module")
def stream() -> torch.Tensor:
    return torch.randint(2, 128, (80,), generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def prepared(tiny_llama, stream):
    return prepare_windows(tiny_llama, stream, CONTEXT, batch_size=3)


def _direct(model, stream, cell, batch_size=1, context=CONTEXT):
    windows = make_windows(int(stream.numel()), context)
    return evaluate_split(model, stream, cell.k, WindowSeededLink(cell, windows), context=context,
                          batch_size=batch_size)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.kind)
def test_noisy_cells_equal_direct_evaluation_bit_for_bit(tiny_llama, stream, prepared, setting):
    cells = [ProfileCell(k=2, setting=setting, seed=seed) for seed in (0, 1, 2)]
    results = evaluate_group(tiny_llama, prepared, cells)
    for cell, result in zip(cells, results, strict=True):
        direct = _direct(tiny_llama, stream, cell)
        assert result.quality == direct  # every field, exactly (same draws, row-invariant tail)
        assert result.quality.perplexity != result.quality.clean_perplexity  # the channel did something
    assert results[0].quality.nll_sum != results[1].quality.nll_sum  # seeds draw different noise


def test_any_batch_size_of_the_direct_path_agrees_to_rounding(tiny_llama, stream, prepared):
    cell = ProfileCell(k=1, setting=SETTINGS[0], seed=4)
    engine = evaluate_group(tiny_llama, prepared, [cell])[0].quality
    direct = _direct(tiny_llama, stream, cell, batch_size=2)
    assert direct.perplexity == pytest.approx(engine.perplexity, rel=1e-5)
    assert direct.kl_nats == pytest.approx(engine.kl_nats, rel=1e-4)
    assert direct.top1_agreement == engine.top1_agreement


def test_single_window_matches_a_plain_impaired_link(tiny_llama, stream):
    ids = stream[:CONTEXT]
    (window,) = make_windows(CONTEXT, CONTEXT)
    cell = ProfileCell(k=3, setting=SETTINGS[0], seed=9)
    engine = evaluate_group(tiny_llama, prepare_windows(tiny_llama, ids, CONTEXT), [cell])[0].quality
    link = ImpairedLink(cell.setting.impairment(), cell.setting.state(),
                        seed=window_seed(cell.seed, cell.k, cell.setting, window))
    assert evaluate_split(tiny_llama, ids, cell.k, link, context=CONTEXT) == engine


def test_lossless_cells_are_the_clean_model(tiny_llama, stream, prepared):
    L = tiny_llama.num_layers
    cells = [ProfileCell(k=0, setting=SETTINGS[0], seed=0), ProfileCell(k=L, setting=SETTINGS[1], seed=0),
             ProfileCell(k=2, setting=ChannelSetting("ideal"), seed=0)]
    for cell in cells:
        (result,) = evaluate_group(tiny_llama, prepared, [cell])
        direct = evaluate_split(tiny_llama, stream, cell.k, None, context=CONTEXT, batch_size=1)
        assert result.quality.perplexity == result.quality.clean_perplexity == direct.clean_perplexity
        assert result.quality.kl_nats == 0.0 and result.quality.top1_agreement == 1.0
        assert result.wall_s == 0.0


def test_results_do_not_depend_on_order_grouping_or_neighbours(tiny_llama, prepared):
    cells = enumerate_cells((1, 3), SETTINGS[:2], (0, 1))
    forward = {r.cell.key: r.quality for g in evaluate_cells(tiny_llama, prepared, cells, batch_size=4) for r in g}
    backward = {r.cell.key: r.quality
                for g in evaluate_cells(tiny_llama, prepared, cells[::-1], batch_size=1) for r in g}
    alone = evaluate_group(tiny_llama, prepared, [cells[5]])[0].quality
    assert forward == backward and forward[cells[5].key] == alone


def test_prepared_windows_survive_numpy_roundtrip(tiny_llama, prepared):
    again = type(prepared).from_numpy(prepared.to_numpy())
    cell = ProfileCell(k=2, setting=SETTINGS[2], seed=1)
    before = evaluate_group(tiny_llama, prepared, [cell])[0].quality
    assert evaluate_group(tiny_llama, again, [cell])[0].quality == before


@pytest.mark.slow
def test_real_model_cells_agree_with_evaluate_split(real_model):
    from edgesplit.quality import load_corpus, tokenize_corpus

    ids = tokenize_corpus(load_corpus("default"), real_model.tokenizer, 64)
    prepared = prepare_windows(real_model, ids, 32, batch_size=2)
    cell = ProfileCell(k=24, setting=ChannelSetting("awgn", snr_db=10.0), seed=0)
    (result,) = evaluate_group(real_model, prepared, [cell])
    assert result.quality == _direct(real_model, ids, cell, context=32)
    assert result.quality.clean_perplexity < result.quality.perplexity < 5 * result.quality.clean_perplexity
