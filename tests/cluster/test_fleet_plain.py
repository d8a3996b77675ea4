"""UE and edge classes without Ray: exact split generation, edge batching, channel effects, determinism."""

from __future__ import annotations

import pytest
import torch

from cluster.edge_actor import EdgeWorker
from cluster.edge_transport import LocalTransport
from cluster.fleet import FleetConfig, parse_kind_params, run_local_fleet
from cluster.prompts import make_prompts
from cluster.quality_signal import clean_greedy, score_rows
from cluster.ue_actor import UEFleet
from tests.conftest import make_tiny

NEW = 6




def _generate(loaded, prompt: tuple[int, ...]) -> list[int]:
    ids = torch.tensor([list(prompt)])
    out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False,
                                pad_token_id=0)
    return out[0, len(prompt):].tolist()


def _config(**overrides) -> FleetConfig:
    base = {"ues": 3, "edges": 2, "requests": 6, "max_new_tokens": NEW, "prompt_tokens": 8, "policy": "fixed:2"}
    return FleetConfig(**{**base, **overrides})


@pytest.mark.parametrize("policy", ["fixed:0", "fixed:2", "fixed:4", "snr:-100=0,5=1,10=3"])
def test_ideal_channel_gives_exactly_the_unsplit_greedy_tokens(llama, policy: str) -> None:
    config = _config(policy=policy)
    prompts, _ = make_prompts(llama, config.requests, config.prompt_tokens, seed=0)
    rows = run_local_fleet(llama, config, prompts)
    assert sorted(r["request_id"] for r in rows) == list(range(config.requests))
    for row in rows:
        assert row["status"] == "ok" and row["retries"] == 0
        assert row["tokens"] == _generate(llama, prompts[row["request_id"]])
        assert row["ue"] == row["request_id"] % 3
        assert row["edge"] == (-1 if row["k"] == 4 else row["ue"] % 2)
        assert row["packets"] == (0 if row["k"] == 4 else NEW)
        assert (row["bytes_sent"] == 0) == (row["k"] == 4)


def test_edge_batches_same_shape_steps_and_stays_exact(llama) -> None:
    config = _config(ues=4, edges=1, requests=8)
    prompts, _ = make_prompts(llama, config.requests, config.prompt_tokens, seed=2)
    batched = run_local_fleet(llama, config, prompts)
    single = run_local_fleet(llama, _config(ues=4, edges=1, requests=8, batch_edge=False), prompts)
    assert [r["tokens"] for r in batched] == [r["tokens"] for r in single]
    assert all(r["edge_batch_size"] == 4 for r in batched)  # the 4 UEs step in lockstep on one edge
    assert all(r["edge_batch_size"] == 1 for r in single)


def test_sliding_window_models_fall_back_to_one_session_per_forward() -> None:
    mistral = make_tiny("mistral")
    config = _config(ues=2, edges=1, requests=2)
    prompts, _ = make_prompts(mistral, 2, 8, seed=0)
    rows = run_local_fleet(mistral, config, prompts)
    assert all(r["edge_batch_size"] == 1 for r in rows)
    assert [r["tokens"] for r in rows] == [_generate(mistral, p) for p in prompts]


def test_same_seed_same_run_and_channel_changes_the_output(llama) -> None:
    config = _config(impairment="dropout", impairment_params={"p": 0.5})
    prompts, _ = make_prompts(llama, config.requests, config.prompt_tokens, seed=0)
    keys = ("tokens", "k", "snr_db_mean", "bytes_sent", "sim_link_s", "ue_energy_j")
    first, second = (run_local_fleet(llama, config, prompts) for _ in range(2))
    assert [[r[k] for k in keys] for r in first] == [[r[k] for k in keys] for r in second]
    clean = run_local_fleet(llama, _config(), prompts)
    assert any(a["tokens"] != b["tokens"] for a, b in zip(first, clean, strict=True))
    score_rows(llama, first, dict(enumerate(prompts)), NEW)
    score_rows(llama, clean, dict(enumerate(prompts)), NEW)
    assert all(r["greedy_match_frac"] == 1.0 and r["first_divergence"] == NEW for r in clean)
    assert min(r["greedy_match_frac"] for r in first) < 1.0


def test_clean_greedy_matches_generate(llama) -> None:
    prompts, _ = make_prompts(llama, 3, 8, seed=5)
    reference = clean_greedy(llama, prompts, NEW)
    assert [reference[p] for p in prompts] == [_generate(llama, p) for p in prompts]


def test_enforced_link_latency_is_waited_out(llama) -> None:
    slow = {"channel": "static", "channel_params": {"mean_snr_db": -15.0}, "link": "lte-10mhz"}
    config = _config(ues=1, edges=1, requests=1, enforce_link_latency=True, **slow)
    prompts, _ = make_prompts(llama, 1, 8, seed=0)
    edges = [EdgeWorker(llama, 0)]
    fleet = UEFleet(llama, config.ue_specs(), LocalTransport(edges), enforce_link_latency=True)
    fleet.submit(config.make_requests(prompts))
    (row,) = fleet.run()
    assert row["sim_link_s"] > 0.005
    assert row["wall_s"] >= row["sim_link_s"]


def test_fleet_config_validation() -> None:
    with pytest.raises(ValueError, match="ue_actors"):
        FleetConfig(ues=2, ue_actors=3)
    with pytest.raises(ValueError, match="distance_m"):
        FleetConfig(channel="rayleigh", distance_range_m=(50.0, 200.0))
    with pytest.raises(ValueError, match="unknown channel process kind"):
        FleetConfig(channel="nope")
    with pytest.raises(ValueError, match="unknown impairment"):
        FleetConfig(impairment="nope")
    with pytest.raises(ValueError, match="encoding"):
        FleetConfig(encoding="token_ids")
    config = FleetConfig(ues=3, distance_range_m=(50.0, 250.0))
    assert [s.channel_params["distance_m"] for s in config.ue_specs()] == [50.0, 150.0, 250.0]
    assert parse_kind_params("digital:bits=4,modulation=16qam,x=none") == (
        "digital", {"bits": 4, "modulation": "16qam", "x": None})


class _Flaky:
    """Answers k = 2 for even requests, an impossible split for odd ones, and raises for request 3."""

    def choose(self, observation) -> int:
        if observation.request_id == 3:
            raise RuntimeError("no idea")
        return 2 if observation.request_id % 2 == 0 else 99


def test_a_failing_policy_fails_only_its_requests(llama) -> None:
    config = _config(ues=2, edges=1, requests=6, policy=_Flaky())
    prompts, _ = make_prompts(llama, 6, 8, seed=0)
    rows = sorted(run_local_fleet(llama, config, prompts), key=lambda r: r["request_id"])
    assert [r["status"] for r in rows] == ["ok", "failed"] * 3
    assert "outside 0..4" in rows[1]["error"] and "no idea" in rows[3]["error"]
    assert all(r["tokens"] == _generate(llama, prompts[r["request_id"]]) for r in rows if r["status"] == "ok")
