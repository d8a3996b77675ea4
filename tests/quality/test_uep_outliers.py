"""Outlier-channel detection: a planted massive channel is found at the right splits, random models flag nothing."""

from __future__ import annotations

import json

import pytest
import torch

from edgesplit.quality.outliers import (
    OutlierRule,
    OutlierTable,
    channel_peaks,
    detect_outliers,
    repair_values,
    select_outliers,
)
from tests.conftest import make_tiny

PLANTED = 13


def _ids(n: int = 160) -> torch.Tensor:
    return torch.randint(2, 128, (n,), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def planted():
    """A tiny Llama whose layer-1 MLP writes channel 13 at ~300x its usual size (so from split 2 on)."""
    model = make_tiny("llama")
    with torch.no_grad():
        model.model.model.layers[1].mlp.down_proj.weight[PLANTED] *= 300.0
    return model


def test_planted_channel_is_found_from_the_layer_that_writes_it(planted) -> None:
    table = detect_outliers(planted, _ids(), context=64, corpus="random ids")
    assert table.channels_by_split() == {1: (), 2: (PLANTED,), 3: (PLANTED,)}
    assert table.splits[2][0].ratio > 10 and table.calibration_tokens == 160
    assert table.model == "tiny-llama" and table.hidden_size == 64 and table.num_layers == 4


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "opt"])
def test_random_models_have_no_outliers(family: str) -> None:
    table = detect_outliers(make_tiny(family), _ids(), context=64)
    assert all(channels == () for channels in table.channels_by_split().values())


def test_peaks_cover_only_requested_splits(planted) -> None:
    peaks = channel_peaks(planted, _ids(), splits=(2,), context=64)
    assert list(peaks) == [2] and peaks[2].shape == (64,) and int(peaks[2].argmax()) == PLANTED
    with pytest.raises(ValueError, match=r"splits must be ints in 1..3"):
        channel_peaks(planted, _ids(), splits=(4,))
    with pytest.raises(ValueError, match="1-D stream"):
        channel_peaks(planted, _ids().view(2, -1))


def test_repair_values_are_per_channel_medians_and_the_exact_sink_state(planted) -> None:
    from edgesplit.split import DeviceHead

    ids = _ids()
    fill = repair_values(planted, ids, splits=(1, 2), context=64, sink_tokens=1)
    assert sorted(fill.body) == [1, 2] and fill.body[2].shape == (64,) and "1 sink tokens" in fill.source
    with torch.inference_mode():
        window = DeviceHead(planted, 2)(ids[None, :64]).float()[0]  # the first window's state entering layer 2
    assert torch.allclose(fill.sink[2], window[0], atol=1e-4)  # position 0 sees only its own token
    body = repair_values(planted, ids[:64], splits=(2,), context=64).body[2]
    assert torch.allclose(body, window[1:].median(0).values, atol=1e-4)
    with pytest.raises(ValueError, match="1-D stream of >= 2 tokens"):
        repair_values(planted, ids.view(2, -1))
    with pytest.raises(ValueError, match="sink_tokens must be an int >= 1"):
        repair_values(planted, ids, sink_tokens=0)


def test_rule_threshold_cap_and_order() -> None:
    peaks = torch.ones(100)
    peaks[[4, 8, 15, 16]] = torch.tensor([30.0, 500.0, 11.0, 9.0])
    flagged, median = select_outliers(peaks, OutlierRule(tau=10.0, max_channels=8))
    assert median == 1.0 and [c.channel for c in flagged] == [8, 4, 15]
    assert [c.channel for c in select_outliers(peaks, OutlierRule(tau=10.0, max_channels=2))[0]] == [8, 4]
    assert select_outliers(torch.zeros(10), OutlierRule())[0] == ()


@pytest.mark.parametrize(("kwargs", "match"), [({"tau": 1.0}, "tau must be"), ({"tau": float("nan")}, "tau"),
                                               ({"max_channels": 0}, "max_channels")])
def test_bad_rules(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OutlierRule(**kwargs)


def test_json_round_trip_and_validation(planted, tmp_path) -> None:
    table = detect_outliers(planted, _ids(), OutlierRule(tau=12.0, max_channels=3), context=64, corpus="ids")
    path = table.save(tmp_path / "profile" / "outliers.json")
    obj = json.loads(path.read_text())
    assert obj["rule"] == {"statistic": "max_abs_over_tokens", "reference": "median_over_channels", "tau": 12.0,
                           "max_channels": 3}
    assert obj["splits"]["2"]["channels"][0]["channel"] == PLANTED
    assert OutlierTable.load(path) == table
    with pytest.raises(ValueError, match="not an outlier table"):
        OutlierTable.from_json({"format": "other"})
    obj["splits"]["2"]["channels"][0]["channel"] = 64
    with pytest.raises(ValueError, match=r"outside \[0, 64\)"):
        OutlierTable.from_json(obj)
    del obj["calibration"]
    with pytest.raises(ValueError, match="malformed outlier table"):
        OutlierTable.from_json(obj)
    with pytest.raises(ValueError, match="split 9 is not in the outlier table"):
        table.channels(9)


@pytest.mark.slow
def test_smollm2_massive_channel_is_flagged_at_every_middle_split(real_model) -> None:
    from edgesplit.quality import load_corpus, tokenize_corpus

    ids = tokenize_corpus(load_corpus("default"), real_model.tokenizer, 512)
    table = detect_outliers(real_model, ids, splits=(1, 6, 12, 20, 28))
    assert table.channels(1) == ()
    assert all(table.channels(k)[0] == 507 for k in (6, 12, 20, 28))
    assert all(len(table.channels(k)) <= 8 for k in table.splits)
