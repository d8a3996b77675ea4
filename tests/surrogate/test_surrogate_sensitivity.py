"""First-order sensitivity profiles: measurement, the linearised KL against measured KL, the feature, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from edgesplit.scenario import ChannelSetting
from surrogate.checkpoint import load_surrogate, save_surrogate
from surrogate.ensemble import EnsembleConfig
from surrogate.evaluator import RealEvaluator
from surrogate.features import FEATURES, SENSITIVITY_FEATURE, feature_matrix, linearised_kl_of, setting_columns
from surrogate.fit import fit_surrogate
from surrogate.model import CALIBRATION_BOUNDS, QualitySurrogate
from surrogate.sensitivity import (
    FLOOR,
    PROFILE_FILE,
    SensitivityProfile,
    find_profiles,
    linearised_kl,
    measure_sensitivity,
)
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

SMALL = EnsembleConfig(hidden_size=32, depth=2, epochs=300, ensemble_size=6, lr=1e-2, seed=0)
CONTEXT = 48


@pytest.fixture(scope="module")
def token_ids() -> torch.Tensor:
    return torch.randint(2, 128, (192,), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def profile(tiny_llama, token_ids) -> SensitivityProfile:
    return measure_sensitivity(tiny_llama, token_ids, context=CONTEXT, tokens=192, samples=2, seed=0)


def synthetic_profile() -> SensitivityProfile:
    """A hand-made profile for the synthetic 8-layer model: the middle layers most sensitive (like its table)."""
    hump = [0.0] + [0.5 + float(np.sin(np.pi * k / NUM_LAYERS)) for k in range(1, NUM_LAYERS)] + [0.0]
    return SensitivityProfile(model=MODEL_NAME, num_layers=NUM_LAYERS, iso=tuple(hump), diag=tuple(hump),
                              dir=tuple(0.1 * h for h in hump), absmax=tuple(10 * h for h in hump), tokens=64,
                              samples=1, seed=0)


def test_profile_shape_determinism_and_json_round_trip(tiny_llama, token_ids, profile, tmp_path):
    layers = tiny_llama.num_layers
    for name in ("iso", "diag", "dir", "absmax"):
        values = np.asarray(getattr(profile, name))
        assert values.shape == (layers + 1,) and values[0] == 0 and values[layers] == 0
        assert np.all(values[1:layers] > 0) and np.all(np.isfinite(values))
    assert profile.tokens == 192 and profile.passes == 4 * 2 and profile.wall_s > 0
    assert all(p.grad is None for p in tiny_llama.model.parameters())  # the model is left untouched
    again = measure_sensitivity(tiny_llama, token_ids, context=CONTEXT, tokens=192, samples=2, seed=0)
    assert again.iso == profile.iso and again.absmax == profile.absmax
    other = measure_sensitivity(tiny_llama, token_ids, context=CONTEXT, tokens=192, samples=2, seed=1)
    assert other.iso != profile.iso
    path = profile.save(tmp_path / "sub" / PROFILE_FILE)
    assert SensitivityProfile.load(path) == profile
    assert find_profiles(["auto"], tmp_path) == {profile.model: profile}
    assert not list(tmp_path.rglob("*.tmp"))


def test_linearised_kl_predicts_measured_kl_at_high_snr(tiny_llama, token_ids, profile):
    """The point of the profile: at small noise the first-order KL is the measured KL (random weights, no fit)."""
    evaluator = RealEvaluator(tiny_llama, token_ids[:192], context=CONTEXT)
    rows = []
    for k in range(1, tiny_llama.num_layers):
        for snr in (30.0, 40.0):
            rows.append({"model": tiny_llama.name, "num_layers": tiny_llama.num_layers,
                         "hidden_size": tiny_llama.hidden_size, "num_params": 1, "k": k, "seed": 0,
                         **setting_columns(ChannelSetting("awgn", snr_db=snr))})
    cells = pd.DataFrame(rows)
    measured = evaluator.evaluate_frame(cells)["kl_nats"].to_numpy()
    predicted = linearised_kl_of(cells, {tiny_llama.name: profile})
    ratio = measured / predicted
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    # 10 dB more SNR -> 10x less KL, in the measurement as in the formula
    np.testing.assert_allclose(measured[0::2] / measured[1::2], 10.0, rtol=0.3)


def test_linearised_kl_formulas_by_kind():
    p = synthetic_profile()
    ks = np.array([2, 2, 2, 2, 0])
    kinds = np.array(["awgn", "dropout", "digital", "ideal", "awgn"], dtype=object)
    kl = linearised_kl(p, ks, kinds, snr_db=np.array([10.0, 40, 40, 40, 10]), p=np.array([0, 0.1, 0, 0, 0]),
                       bits=np.array([32, 32, 8, 32, 32]), ber=np.array([0, 0, 1e-3, 0, 0]),
                       loss_rate=np.zeros(5), encoding=np.array(["float32"] * 5, dtype=object))
    iso = p.iso[2]
    assert kl[0] == pytest.approx(iso / 10.0)
    assert kl[1] == pytest.approx(0.1 * 0.9 * p.diag[2] + 0.01 * p.dir[2])
    assert kl[2] == pytest.approx(p.absmax[2] * (1 / 12 + 1e-3 * (4**8 - 1) / 3) / 127**2)
    assert kl[3] == FLOOR and kl[4] == FLOOR  # an ideal float32 link and k = 0 lose nothing
    with pytest.raises(ValueError, match="outside 0..8"):
        p.term("iso", np.array([9]))


def test_surrogate_with_sensitivity_feature_checkpoints_and_calibrates(tmp_path):
    table = synthetic_cells(seed=0)
    profiles = {MODEL_NAME: synthetic_profile()}
    x = feature_matrix(table, profiles)
    assert x.shape == (len(table), len(FEATURES) + 1)
    surrogate = QualitySurrogate(SMALL, sensitivity=profiles).fit(table)
    assert surrogate.features[-1] == SENSITIVITY_FEATURE
    before = surrogate.predict(table)
    scale = surrogate.calibrate(table, folds=4)
    assert scale.shape == (3,) and np.all((scale >= CALIBRATION_BOUNDS[0]) & (scale <= CALIBRATION_BOUNDS[1]))
    after = surrogate.predict(table)
    np.testing.assert_allclose(after.z_total, before.z_total * scale)
    np.testing.assert_array_equal(after.mean, before.mean)  # calibration widens intervals, never moves means
    loaded = load_surrogate(save_surrogate(surrogate, tmp_path / "ckpt"))
    assert loaded.sensitivity == profiles
    np.testing.assert_array_equal(loaded.predict(table).z_total, after.z_total)
    with pytest.raises(ValueError, match="no sensitivity profile for model 'other'"):
        surrogate.predict(table.assign(model="other"))
    with pytest.raises(ValueError, match="folds"):
        surrogate.calibrate(table, folds=1)


def test_fit_and_cli_read_profiles_and_reject_bad_ones(tmp_path):
    from edgesplit.cli import app

    table = synthetic_cells(seed=0)
    data = tmp_path / "data"
    data.mkdir()
    table.to_parquet(data / "cells.parquet")
    outcome = fit_surrogate(data, None, SMALL, sensitivity={MODEL_NAME: synthetic_profile()}, calibration_folds=3)
    assert outcome.surrogate.sensitivity is not None and not np.all(outcome.surrogate.interval_scale == 1.0)
    runner = CliRunner()
    missing = runner.invoke(app, ["fit-surrogate", "--data", str(data), "--out", str(tmp_path / "ckpt"),
                                  "--sensitivity", "auto"])
    assert missing.exit_code == 2 and "found no sensitivity.json" in missing.output
    (data / PROFILE_FILE).write_text(json.dumps({"format": "something-else"}))
    bad = runner.invoke(app, ["fit-surrogate", "--data", str(data), "--out", str(tmp_path / "ckpt"),
                              "--sensitivity", "auto"])
    assert bad.exit_code == 2 and "not a sensitivity profile" in bad.output
    assert not (tmp_path / "ckpt").exists()
    synthetic_profile().save(data / PROFILE_FILE)
    good = runner.invoke(app, ["fit-surrogate", "--data", str(data), "--out", str(tmp_path / "ckpt"),
                               "--sensitivity", "auto", "--calibration-folds", "3"])
    assert good.exit_code == 0, good.output
    assert json.loads((tmp_path / "ckpt" / "surrogate.json").read_text())["features"][-1] == SENSITIVITY_FEATURE
    wrong_out = runner.invoke(app, ["sensitivity", "--out", str(tmp_path / "profile.txt")])
    assert wrong_out.exit_code == 2 and ".json" in wrong_out.output


def test_equivalent_cells_prices_the_profile_by_flops():
    from surrogate.dataset import model_profile
    from surrogate.sensitivity import BACKWARD_FACTOR, equivalent_cells

    profile = model_profile(MODEL_NAME)
    # against k = 0 cells (a tail of every layer and the head) the ratio is forward+backward times the token ratio
    assert equivalent_cells(profile, 128, 256, 64, np.array([0])) == pytest.approx(BACKWARD_FACTOR * 128 / 256)
    late = equivalent_cells(profile, 128, 256, 64, np.array([NUM_LAYERS - 1]))
    assert late > equivalent_cells(profile, 128, 256, 64, np.array([1])) > BACKWARD_FACTOR * 128 / 256
    with pytest.raises(ValueError, match="at least one split"):
        equivalent_cells(profile, 128, 256, 64, np.array([], dtype=int))
