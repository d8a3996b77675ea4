"""``python -m cluster.run_fleet`` end to end on Ray: 3 UEs x 2 edge actors on a tiny model, with edge 0
crashing mid-run (injected fault): Ray restarts it, the affected requests are retried from scratch, and every
request is logged exactly once with the exact greedy tokens.

One run serves every test here: starting actor processes (torch + transformers each) dominates the time.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from cluster import run_fleet
from cluster.prompts import make_prompts
from cluster.quality_signal import clean_greedy
from edgesplit.models import load_model
from tests.conftest import make_tiny

pytestmark = pytest.mark.ray

ARGS = ["--ues", "3", "--edges", "2", "--requests", "6", "--max-new-tokens", "6", "--prompt-tokens", "8",
        "--policy", "fixed:2", "--edge-fault-after", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def fleet_run(ray_session, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model_dir = tmp_path_factory.mktemp("tiny-llama")
    make_tiny("llama", seed=4).model.save_pretrained(model_dir)
    out = tmp_path_factory.mktemp("fleet") / "run"
    status = run_fleet.main([*ARGS, "--model", str(model_dir), "--out", str(out)])
    yield status, out, model_dir
    torch.set_num_threads(threads)


def test_every_request_is_logged_once(fleet_run) -> None:
    status, out, _ = fleet_run
    assert status == 0
    rows = pd.read_parquet(out / "requests.parquet")
    assert sorted(rows["request_id"]) == list(range(6))
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    expected_columns = {"ue", "edge", "k", "retries", "snr_db_start", "snr_db_mean", "fading_gain_mean",
                        "prompt_tokens", "new_tokens", "tokens", "bytes_sent", "head_s", "encode_s",
                        "edge_compute_s", "edge_decode_s", "call_overhead_s", "sim_link_s", "sim_total_s",
                        "ue_energy_j", "greedy_match_frac", "clean_logprob_mean", "wall_s"}
    assert expected_columns <= set(rows.columns)
    assert set(zip(rows["ue"], rows["edge"], strict=True)) == {(0, 0), (1, 1), (2, 0)}
    assert (rows["new_tokens"] == 6).all() and (rows["prompt_tokens"] == 8).all() and (rows["k"] == 2).all()
    assert (rows["bytes_sent"] > 6 * 64 * 4).all() and (rows["sim_link_s"] > 0).all()


def test_crashed_edge_requests_were_retried_and_still_exact(fleet_run) -> None:
    _, out, model_dir = fleet_run
    rows = pd.read_parquet(out / "requests.parquet").sort_values("request_id")
    assert rows.loc[rows["edge"] == 0, "retries"].sum() >= 1  # edge 0 crashed on its third call
    assert (rows.loc[rows["edge"] == 1, "retries"] == 0).all()  # edge 1 never failed
    loaded = load_model(str(model_dir))
    prompts, _ = make_prompts(loaded, 6, 8, seed=3)
    reference = clean_greedy(loaded, prompts, 6)
    assert [list(t) for t in rows["tokens"]] == [reference[p] for p in prompts]
    assert (rows["greedy_match_frac"] == 1.0).all()


def test_summary_and_config_agree_with_the_log(fleet_run) -> None:
    _, out, _ = fleet_run
    rows = pd.read_parquet(out / "requests.parquet")
    summary = pd.read_csv(out / "summary.csv").set_index("k")
    assert summary.loc["all", "requests"] == 6 and summary.loc["all", "ok"] == 6
    assert summary.loc["all", "retries"] == rows["retries"].sum()
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["config"]["ues"] == 3 and config["run"]["retries"] == rows["retries"].sum()
    assert {"ray", "torch", "transformers", "python"} <= set(config["versions"])
