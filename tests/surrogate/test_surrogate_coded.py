"""Coded cells in the surrogate: the physical features (TB erasure after HARQ from the NR cost model, bits), the
first-order KL, settings round trips, table keys and seed pooling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgesplit.channel.nr import nr_uplink_cost
from edgesplit.scenario import ChannelSetting
from surrogate.dataset import pool_seeds
from surrogate.evaluator import TableOracle
from surrogate.features import (
    coded_erasure_rate,
    feature_matrix,
    feature_names,
    linearised_kl_of,
    setting_columns,
    setting_of,
    state_keys,
)
from surrogate.sensitivity import SensitivityProfile
from surrogate.synthetic import MODEL_NAME, NUM_LAYERS, synthetic_cells

SNRS = (-10.0, -6.0, 0.0, 20.0)


@pytest.fixture(scope="module")
def cells() -> pd.DataFrame:
    return synthetic_cells(seed=0, snr_db=(10.0,), p=(), coded_snr_db=SNRS)


def test_coded_features_carry_bits_and_the_harq_erasure_rate(cells):
    coded = cells[cells["channel"] == "coded"].reset_index(drop=True)
    names = feature_names(False)
    x = feature_matrix(coded)
    column = {name: x[:, names.index(name)] for name in names}
    assert (column["kind_coded"] == 1).all() and (column["bits_frac"] == 8 / 32).all()
    assert (column["modulation_frac"] == 0).all() and np.allclose(column["snr_db"], coded["snr_db"])
    expected = [nr_uplink_cost(1, s, ChannelSetting("coded", snr_db=s).nr_link()).residual_tb_loss
                for s in coded["snr_db"]]
    assert np.allclose(column["loss_rate"], expected) and np.allclose(coded_erasure_rate(coded), expected)
    loss = dict(zip(coded["snr_db"], column["loss_rate"], strict=True))
    assert loss[-10.0] > 0.9 and loss[20.0] < 1e-4 and loss[-6.0] >= loss[0.0]  # HARQ gives TBs up at low SNR
    awgn = feature_matrix(cells[cells["channel"] == "awgn"])
    assert (awgn[:, names.index("kind_coded")] == 0).all() and (awgn[:, names.index("loss_rate")] == 0).all()


def test_linearised_kl_of_coded_cells_is_quantisation_plus_erasures(cells):
    terms = {name: tuple(float(v) for v in np.r_[0.0, np.linspace(1.0, 2.0, NUM_LAYERS - 1), 0.0])
             for name in ("iso", "diag", "dir", "absmax")}
    profile = SensitivityProfile(model=MODEL_NAME, num_layers=NUM_LAYERS, tokens=64, samples=1, seed=0, **terms)
    coded = cells[(cells["channel"] == "coded") & (cells["k"] == 3)].sort_values("snr_db")
    kl = linearised_kl_of(coded, {MODEL_NAME: profile})
    q = coded_erasure_rate(coded)
    quantisation = terms["absmax"][3] * (1 / 12) / 127**2
    assert np.allclose(kl, quantisation + q * (1 - q) * terms["diag"][3] + q**2 * terms["dir"][3])
    assert kl[0] > 100 * kl[-1]


def test_coded_settings_round_trip_through_cell_columns():
    setting = ChannelSetting("coded", snr_db=7.0, bits=6, mcs_table=2, target_bler=0.05, harq_transmissions=2,
                             carrier_bandwidth_hz=40e6, coded_channel="rayleigh")
    row = {"k": 1, **setting_columns(setting)}
    assert setting_of(row) == setting
    assert setting_of({**row, "coded_channel": None}) == ChannelSetting(  # tables written before the column
        "coded", snr_db=7.0, bits=6, mcs_table=2, target_bler=0.05, harq_transmissions=2, carrier_bandwidth_hz=40e6)
    assert setting_of({"channel": "coded", "snr_db": 7.0, "bits_per_element": 8, "mcs_table": float("nan")}) == \
        ChannelSetting("coded", snr_db=7.0, bits=8)
    with pytest.raises(ValueError, match="mcs_table must be one of"):
        feature_matrix(synthetic_cells(p=(), coded_snr_db=(0.0,)).assign(mcs_table=3))


def test_the_loss_feature_sees_the_coded_channel(cells):
    coded = cells[cells["channel"] == "coded"].reset_index(drop=True)
    names = feature_names(False)
    loss = {channel: feature_matrix(coded.assign(coded_channel=channel))[:, names.index("loss_rate")]
            for channel in ("awgn", "rayleigh")}
    # HARQ rescues an AWGN link at 20 dB almost surely; a Rayleigh one at the same mean SNR still loses TBs
    at20 = (coded["snr_db"] == 20.0).to_numpy()
    assert loss["rayleigh"][at20][0] > 10 * loss["awgn"][at20][0]


def test_table_keys_and_pooling_tell_coded_options_apart(cells):
    coded = cells[cells["channel"] == "coded"]
    other = coded.assign(harq_transmissions=1, setting=coded["setting"] + " harq1")
    both = pd.concat([coded, other], ignore_index=True)
    assert len(set(state_keys(both))) == 2 * len(SNRS)
    oracle = TableOracle(both)
    query = pd.DataFrame([{"model": MODEL_NAME, "num_layers": NUM_LAYERS, "hidden_size": 64, "num_params": 1,
                           "k": 2, "seed": 0, **setting_columns(ChannelSetting("coded", snr_db=0.0,
                                                                               harq_transmissions=1))}])
    assert oracle.evaluate_frame(query)["harq_transmissions"].iloc[0] == 1
    seeds = pd.concat([coded.assign(seed=s, nll_sum=1.0, clean_nll_sum=1.0, scored_tokens=10, nr_mean_mcs=5.0,
                                    nr_erased_tb_fraction=0.1 * s) for s in (0, 1)], ignore_index=True)
    pooled = pool_seeds(seeds)
    assert len(pooled) == len(coded) and np.allclose(pooled["nr_erased_tb_fraction"], 0.05)
