"""``edgesplit profile --channel coded`` end to end on a tiny model: the coded columns, the NR cost columns, resume
and identity; bad coded flags exit 2 before any work; tables written before the coded columns still load."""

from __future__ import annotations

import json
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgesplit.profile.config import ProfileConfig
from edgesplit.profile.rows import SCHEMA
from edgesplit.profile.store import RunStore
from tests.profile.conftest import invoke_profile

NEW_COLUMNS = SCHEMA.names[SCHEMA.names.index("wall_s") + 1:]


def _invoke(model, out, **options):
    return invoke_profile(model, out, **{"--channel": "coded", "--snr-db": "-10,10", **options})


@pytest.mark.parametrize(("options", "message"), [
    ({"--channel": "awgn", "--mcs-table": "2"}, "--mcs-table applies to --channel coded only"),
    ({"--channel": "digital", "--harq-transmissions": "2"}, "--harq-transmissions applies to --channel coded only"),
    ({"--mcs-table": "3"}, "mcs_table must be one of [1, 2]"),
    ({"--target-bler": "1.5"}, "target_bler must be in (0, 1)"),
    ({"--harq-transmissions": "0"}, "harq_transmissions must be in 1..16"),
    ({"--coded-path": "fast"}, "unknown coded_path 'fast'; accepted: abstracted, bit_true"),
    ({"--coded-channel": "fading"}, "unknown coded_channel 'fading'; accepted: awgn, rayleigh, tdl"),
    ({"--channel": "awgn", "--coded-channel": "tdl"}, "--coded-channel applies to --channel coded only"),
    ({"--bits": "17"}, "--bits: 17 is out of range"),
])
def test_bad_coded_flags_exit_2_and_write_nothing(tiny_dir, tmp_path, options, message):
    out = tmp_path / "run"
    result = _invoke(tiny_dir, out, **options)
    assert result.exit_code == 2, result.output
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line
    assert not out.exists()


def test_coded_run_writes_nr_columns_resumes_and_keeps_its_identity(tiny_dir, tmp_path):
    out = tmp_path / "run"
    first = _invoke(tiny_dir, out)
    assert first.exit_code == 0, first.output
    assert "6 cells computed" in first.stdout and "coded 8b 10 dB" in first.stdout
    assert {"cells.parquet", "summary.csv", "heatmap_perplexity.png", "cost_per_split.png"} <= {
        p.name for p in out.iterdir()}
    cells = RunStore(out).load().set_index(["k", "snr_db"])
    assert set(cells["setting"]) == {"coded 8b -10 dB", "coded 8b 10 dB"}
    assert (cells["carrier_bandwidth_hz"] == 20e6).all() and (cells["harq_transmissions"] == 4).all()
    bad, good = cells.loc[(1, -10.0)], cells.loc[(1, 10.0)]
    assert bad["nr_erased_tb_fraction"] == 1.0 and bad["nr_transmissions_per_tb"] == 4.0  # HARQ gave every TB up
    assert good["nr_erased_tb_fraction"] == 0.0 and good["nr_mean_mcs"] == good["prefill_nr_mcs"] > 3
    assert good["prefill_uplink_s"] > good["prefill_shannon_uplink_s"] > 0
    assert math.isclose(good["prefill_ue_tx_energy_j"], 0.2 * good["prefill_uplink_airtime_s"])
    assert math.isnan(cells.loc[(0, 10.0), "nr_mean_mcs"]) and cells.loc[(0, 10.0), "prefill_nr_num_tbs"] >= 1
    assert cells.loc[(3, 10.0), "prefill_uplink_s"] == 0 and math.isnan(cells.loc[(3, 10.0), "prefill_nr_mcs"])
    assert "nr_mean_mcs" in pd.read_csv(out / "summary.csv").columns
    again = _invoke(tiny_dir, out)
    assert again.exit_code == 0 and "0 cells computed, 6 already in" in again.stdout
    other = _invoke(tiny_dir, out, **{"--harq-transmissions": "2"})
    assert other.exit_code == 2 and "harq_transmissions: 4 there, 2 now" in other.stderr
    assert (cells["coded_channel"] == "awgn").all()
    config_path = out / "config.json"  # a coded run written before coded_channel joined the identity was awgn
    saved = json.loads(config_path.read_text())
    del saved["identity"]["coded_channel"]
    config_path.write_text(json.dumps(saved))
    assert "0 cells computed, 6 already in" in _invoke(tiny_dir, out).stdout
    other = _invoke(tiny_dir, out, **{"--coded-channel": "tdl"})
    assert other.exit_code == 2 and "coded_channel: 'awgn' there, 'tdl' now" in other.stderr


def test_a_tdl_run_records_its_channel_and_prices_the_faded_link(tiny_dir, tmp_path):
    result = _invoke(tiny_dir, tmp_path / "tdl", **{"--coded-channel": "tdl", "--snr-db": "10", "--splits": "1"})
    assert result.exit_code == 0, result.output
    tdl = RunStore(tmp_path / "tdl").load().iloc[0]
    assert tdl["coded_channel"] == "tdl" and tdl["setting"] == "coded 8b 10 dB tdl"
    flat = RunStore(tmp_path / "awgn")
    assert _invoke(tiny_dir, tmp_path / "awgn", **{"--snr-db": "10", "--splits": "1"}).exit_code == 0
    flat = flat.load().iloc[0]
    assert tdl["prefill_nr_mcs"] < flat["prefill_nr_mcs"] and tdl["prefill_uplink_s"] > flat["prefill_uplink_s"]


def test_other_kinds_keep_their_identity_and_coded_fields_are_refused_for_them(tmp_path):
    awgn = ProfileConfig(out=tmp_path, channel="awgn")
    assert "mcs_table" not in awgn.identity()
    assert ProfileConfig(out=tmp_path, channel="coded", target_bler=0.01).identity()["target_bler"] == 0.01
    with pytest.raises(ValueError, match="target_bler applies to channel 'coded' only"):
        ProfileConfig(out=tmp_path, channel="awgn", target_bler=0.01)
    wide = ProfileConfig(out=tmp_path, channel="coded", link="5g-nr-100mhz", snr_db=(5.0,)).settings()
    assert [s.carrier_bandwidth_hz for s in wide] == [100e6]


def test_tables_written_before_the_coded_columns_load_and_save(tmp_path):
    old_schema = pa.schema([field for field in SCHEMA if field.name not in NEW_COLUMNS])
    row = {name: None for name in old_schema.names} | {"k": 1, "setting": "awgn 10 dB", "fading": "none",
                                                       "seed": 0, "snr_db": 10.0, "bits_per_element": 32}
    tmp_path.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), tmp_path / "cells.parquet")
    store = RunStore(tmp_path)
    table = store.load()
    assert list(table.columns) == SCHEMA.names and table[list(NEW_COLUMNS)].isna().all().all()
    store.save(table)
    assert store.load().shape == (1, len(SCHEMA.names))
