"""What a run writes: the parquet schema, config.json with versions, summary.csv and non-empty PNG plots."""

from __future__ import annotations

import json
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from edgesplit.profile import SCHEMA, ProfileConfig, ProfileInputs, run_profile
from edgesplit.profile.plots import PLOTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("digital")
    config = ProfileConfig(out=out, model="tiny-llama", channel="digital", snr_db=(2.0, 12.0), bits=(4,),
                           modulations=("qpsk", "16qam"), splits=(0, 2, 4), seeds=2, tokens=48, context=24,
                           fading="rayleigh", batch_size=4)
    ids = torch.randint(2, 128, (48,), generator=torch.Generator().manual_seed(1))
    return config, run_profile(config, ProfileInputs(tiny_llama, ids, "synthetic"), progress=False)


def test_parquet_schema_and_dtypes(run):
    config, outcome = run
    schema = pq.read_schema(config.out / "cells.parquet")
    assert schema.names == SCHEMA.names
    assert [str(t) for t in schema.types] == [str(t) for t in SCHEMA.types]
    table = pd.read_parquet(config.out / "cells.parquet")
    assert len(table) == 3 * 4 * 2
    for column in ("k", "seed", "scored_tokens", "bits_per_element", "prefill_tokens", "num_layers"):
        assert table[column].dtype == "int64", column
    for column in ("perplexity", "kl_nats", "top1_agreement", "prefill_latency_s", "prefill_ue_energy_j",
                   "payload_bits_per_token", "wall_s", "fading_gain", "snr_db"):
        assert table[column].dtype == "float64", column
    assert table["feasible"].dtype == bool and set(table["modulation"]) == {"qpsk", "16qam"}
    assert table["p"].isna().all() and (table["bits_per_element"] == 4).all()


def test_rows_carry_quality_costs_and_channel(run):
    _, outcome = run
    t = outcome.cells
    inner = t[t["k"] == 2]
    assert (t[t["k"].isin([0, 4])]["kl_nats"] == 0).all() and (inner["kl_nats"] > 0).all()
    assert set(t["sends"]) == {"token_ids", "hidden", "nothing"}
    parts = t[["prefill_device_s", "prefill_uplink_s", "prefill_edge_s", "prefill_downlink_s"]].sum(axis=1)
    assert parts.to_numpy() == pytest.approx(t["prefill_latency_s"].to_numpy())
    assert (t[t["k"] == 4]["prefill_uplink_s"] == 0).all() and (t[t["k"] == 0]["prefill_device_s"] == 0).all()
    # 4-bit codes + one 32-bit scale per token (+ packet headers) cross at k = 2
    assert inner["payload_bits_per_token"].min() > 64 * 4 + 32
    gains = t.groupby("seed")["fading_gain"].nunique()
    assert (gains == 1).all() and t["fading_gain"].nunique() == 2  # one block gain per seed
    assert (inner["link_ber"] >= 0).all() and math.isnan(t[t["k"] == 0]["link_ber"].iloc[0])


def test_config_json_records_config_and_versions(run):
    config, _ = run
    saved = json.loads((config.out / "config.json").read_text())
    assert ProfileConfig.from_dict(saved["config"]) == config
    assert saved["seeds"] == [0, 1] and saved["splits"] == [0, 2, 4] and saved["corpus_name"] == "synthetic"
    versions = saved["versions"]
    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"].startswith("2.")
    for name in ("python", "transformers", "edgesplit", "ray"):
        assert name in versions


def test_summary_csv_aggregates_over_seeds(run):
    config, outcome = run
    summary = pd.read_csv(config.out / "summary.csv")
    assert len(summary) == 3 * 4 and (summary["seeds"] == 2).all()
    row = summary[(summary["k"] == 2) & (summary["setting"] == "digital 4b qpsk 2 dB")].iloc[0]
    cells = outcome.cells[(outcome.cells["k"] == 2) & (outcome.cells["setting"] == "digital 4b qpsk 2 dB")]
    assert row["perplexity_mean"] == pytest.approx(cells["perplexity"].mean())
    assert row["perplexity_std"] == pytest.approx(cells["perplexity"].std())
    assert list(summary["setting"].drop_duplicates()) == ["digital 4b 16qam 2 dB", "digital 4b 16qam 12 dB",
                                                          "digital 4b qpsk 2 dB", "digital 4b qpsk 12 dB"]


def test_plots_are_written_and_non_empty(run):
    config, outcome = run
    for name in PLOTS:
        data = (config.out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 20_000, name
    assert {p.name for p in outcome.files} >= set(PLOTS) | {"cells.parquet", "config.json", "summary.csv"}
