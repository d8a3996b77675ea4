"""The deep ensemble and the baselines: fitting, uncertainty, lossless cells, checkpoints, bad inputs, metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from surrogate.baselines import GPSurrogate, PaperSurrogate
from surrogate.checkpoint import CONFIG_FILE, load_surrogate, save_surrogate
from surrogate.ensemble import EnsembleConfig
from surrogate.features import FEATURES, feature_matrix, lossless_mask
from surrogate.metrics import coverage, decision_regret, r2_score, spearman
from surrogate.model import QualitySurrogate
from surrogate.synthetic import synthetic_cells

SMALL = EnsembleConfig(hidden_size=32, depth=2, epochs=300, ensemble_size=6, lr=1e-2, seed=0)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_cells(seed=0)


def _awgn_at(table: pd.DataFrame, snr: float) -> pd.DataFrame:
    return table[(table["channel"] == "awgn") & (table["snr_db"] == snr) & ~lossless_mask(table)]


def test_ensemble_fits_held_out_cells(table):
    rng = np.random.default_rng(0)
    train = rng.random(len(table)) < 0.6
    surrogate = QualitySurrogate(SMALL).fit(table[train])
    held = table[~train & ~lossless_mask(table)]
    pred = surrogate.predict(held).column("log_ppl_ratio")
    assert r2_score(held["log_ppl_ratio"], pred) > 0.9
    assert surrogate.trained_on == int((train & ~lossless_mask(table)).sum())


def test_std_shrinks_where_data_is_added(table):
    far = _awgn_at(table, 0.0)
    without = table[~((table["channel"] == "awgn") & (table["snr_db"] <= 5.0))]
    with_far = pd.concat([without, far])
    std_without = QualitySurrogate(SMALL).fit(without).predict(far).z_epistemic[:, 0].mean()
    std_with = QualitySurrogate(SMALL).fit(with_far).predict(far).z_epistemic[:, 0].mean()
    assert std_with < 0.5 * std_without


def test_lossless_cells_are_exact(table):
    surrogate = QualitySurrogate(SMALL).fit(table)
    exact = table[lossless_mask(table)]
    prediction = surrogate.predict(exact)
    np.testing.assert_allclose(prediction.mean, np.tile([0.0, 0.0, 1.0], (len(exact), 1)), atol=1e-12)
    assert (prediction.std == 0).all() and (prediction.z_total == 0).all()


def test_same_seed_same_predictions(table):
    a = QualitySurrogate(SMALL).fit(table).predict(table).z_members
    b = QualitySurrogate(SMALL).fit(table).predict(table).z_members
    np.testing.assert_array_equal(a, b)


def test_interval_and_nll_are_consistent(table):
    prediction = QualitySurrogate(SMALL).fit(table).predict(table)
    low, high = prediction.interval(0.9)
    assert (low <= prediction.mean + 1e-12).all() and (prediction.mean <= high + 1e-12).all()
    assert np.isfinite(prediction.nll(table[["log_ppl_ratio", "kl_nats", "top1_agreement"]].to_numpy()))
    draws = prediction.sample(16, np.random.default_rng(0))
    assert draws.shape == (16, len(table), 3)


def test_monotone_penalty_runs_and_changes_training(table):
    short = EnsembleConfig(**{**SMALL.to_dict(), "epochs": 50})
    plain = QualitySurrogate(short).fit(table).predict(table).z_members
    config = EnsembleConfig(**{**short.to_dict(), "monotone_weight": 1.0})
    monotone = QualitySurrogate(config).fit(table).predict(table).z_members
    assert not np.array_equal(plain, monotone)


def test_checkpoint_round_trip_gives_identical_predictions(table, tmp_path):
    surrogate = QualitySurrogate(SMALL).fit(table)
    path = save_surrogate(surrogate, tmp_path / "ckpt", extra={"note": "test"})
    loaded = load_surrogate(path)
    np.testing.assert_array_equal(loaded.predict(table).z_members, surrogate.predict(table).z_members)
    np.testing.assert_array_equal(loaded.predict(table).mean, surrogate.predict(table).mean)
    assert json.loads((path / CONFIG_FILE).read_text())["extra"] == {"note": "test"}
    assert not list(path.glob("*.pkl")) and sorted(p.name for p in path.iterdir()) == [
        "surrogate.json", "weights.safetensors"]


def test_checkpoint_layout_mismatch_is_refused(table, tmp_path):
    path = save_surrogate(QualitySurrogate(SMALL).fit(table), tmp_path / "ckpt")
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["features"] = meta["features"][:-1]
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="features"):
        load_surrogate(path)
    with pytest.raises(ValueError, match="not a surrogate checkpoint"):
        load_surrogate(tmp_path)


def test_gp_baseline_cannot_be_checkpointed_but_predicts(table, tmp_path):
    gp = GPSurrogate(restarts=0).fit(table)
    prediction = gp.predict(table)
    assert prediction.mean.shape == (len(table), 3) and (prediction.std >= 0).all()
    with pytest.raises(ValueError, match="pickle"):
        save_surrogate(gp, tmp_path / "gp")


def test_paper_surrogate_uses_two_inputs_only(table):
    paper = PaperSurrogate(epochs=200).fit(table)
    prediction = paper.predict(table)
    assert prediction.targets == ("log_ppl_ratio",) and (prediction.std == 0).all()
    same_inputs = table.assign(hidden_size=1, num_params=1, bits_per_element=16)  # the paper sees none of these
    np.testing.assert_array_equal(paper.predict(same_inputs).mean, prediction.mean)


@pytest.mark.parametrize(("change", "message"), [
    ({"snr_db": 100.0}, "snr_db=100"),
    ({"k": 9}, "split k=9 is out of range"),
    ({"channel": "laser"}, "unknown channel kind 'laser'"),
    ({"p": 1.5}, "p=1.5"),
    ({"fading_gain": 0.0}, "fading_gain"),
])
def test_out_of_range_features_raise_clear_errors(table, change, message):
    with pytest.raises(ValueError, match=message):
        feature_matrix(table.head(3).assign(**change))


def test_bad_configs_and_unfitted_use_raise():
    with pytest.raises(ValueError, match="hidden_size"):
        EnsembleConfig(hidden_size=0)
    with pytest.raises(ValueError, match="unknown activation"):
        EnsembleConfig(activation="sigmoid")
    with pytest.raises(ValueError, match="unknown EnsembleConfig field"):
        EnsembleConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="not trained"):
        QualitySurrogate().predict(synthetic_cells().head(2))
    with pytest.raises(ValueError, match="no lossy cell"):
        QualitySurrogate(SMALL).fit(synthetic_cells().query("k == 0"))
    assert feature_matrix(synthetic_cells().head(2)).shape == (2, len(FEATURES))


def test_metrics_by_hand():
    truth, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0])
    assert r2_score(truth, pred) == pytest.approx(1 - 1 / 5)
    assert spearman(truth, pred) == pytest.approx(1.0)
    assert coverage(truth, truth - 0.5, np.array([1.5, 2.5, 2.9, 4.5])) == pytest.approx(0.75)
    # two states; state 0 picks k=1 (true 1.0, best 3.0 at k=2), state 1 picks its best
    states, ks = np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 1])
    true, guess = np.array([0.0, 1.0, 3.0, 2.0, 1.0]), np.array([0.0, 9.0, 1.0, 5.0, 1.0])
    regret = decision_regret(states, ks, true, guess, np.ones(5, dtype=bool))
    assert regret.mean == pytest.approx(1.0) and regret.reward_range == pytest.approx(3.0)
    assert regret.pct_of_range == pytest.approx(100 / 3) and regret.optimal_fraction == pytest.approx(0.5)
    assert regret.pct_per_state == pytest.approx((200 / 3 + 0) / 2)
    masked = decision_regret(states, ks, true, guess, np.array([True, False, True, True, True]))
    assert masked.mean == 0.0 and masked.optimal_fraction == 1.0  # with k=1 masked, state 0 picks its best k=2
