"""Serve-mode fleet UEs (``--edge serve``): the same rows as with actor edges.

Without Ray, :class:`~cluster.serve_edge.ServeUEFleet` drives an in-process :class:`TailEngine` through a transport
with HandleTransport's coroutines: tokens, channel blocks and simulated costs equal the actor-edge classes' (an
impaired channel included: same blocks, same noise draws), and a lost session costs one re-prefill. On Ray,
``python -m cluster.run_fleet --edge serve`` deploys the real app (the built-in model: the replica loads it by
name), runs 2 UEs through deployment handles and removes the app again.
"""

from __future__ import annotations

import math
import threading

import pandas as pd
import pytest

from cluster import run_fleet
from cluster.fleet import FleetConfig, run_local_fleet
from cluster.prompts import make_prompts
from cluster.quality_signal import clean_greedy
from cluster.serve_edge import NOT_MEASURED, ServeUEFleet, number_replicas
from edgesplit.client import EdgeCallError
from serve_deployments.edge_errors import STATUS, EdgeRejected
from serve_deployments.tail_engine import SessionCreate, TailEngine

NEW = 5
SAME = ("tokens", "k", "status", "retries", "new_tokens", "packets", "snr_db_start", "snr_db_mean", "sim_link_s",
        "sim_total_s", "ue_energy_j")
"""Columns a serve-mode row shares exactly with the actor-edge row of the same request."""


class EngineTransport:
    """HandleTransport's coroutines over one in-process engine (a lock: the UEs' threads share it)."""

    def __init__(self, engine: TailEngine, lock: threading.Lock, lose: set[int] = frozenset()) -> None:
        self.engine, self.lock, self.lose, self.calls = engine, lock, set(lose), 0

    async def _call(self, fn, *args) -> dict:
        with self.lock:
            try:
                return {**fn(*args), "replica": "local-0"}
            except EdgeRejected as rej:
                raise EdgeCallError(rej.error.code, rej.error.message, STATUS[rej.error.code]) from None

    async def create(self, body: dict) -> dict:
        return await self._call(self.engine.create, SessionCreate.model_validate(body), "")

    async def prefill(self, session_id: str, frame: bytes) -> dict:
        return await self._call(self.engine.prefill, session_id, "", frame)

    async def decode(self, session_id: str, frame: bytes) -> dict:
        self.calls += 1
        if self.calls in self.lose:  # the replica "restarted": the session is gone
            self.engine.close(session_id, "")
        return await self._call(self.engine.decode, session_id, "", frame)

    async def close(self, session_id: str) -> dict:
        return await self._call(self.engine.close, session_id, "")




def _config(**overrides) -> FleetConfig:
    base = {"ues": 3, "edges": 1, "requests": 6, "max_new_tokens": NEW, "prompt_tokens": 8, "policy": "fixed:2",
            "batch_edge": False}
    return FleetConfig(**{**base, **overrides})


def _serve_rows(loaded, config: FleetConfig, prompts, lose: set[int] = frozenset()) -> list[dict]:
    engine, lock = TailEngine(loaded), threading.Lock()
    fleet = ServeUEFleet(loaded, config.ue_specs(), lambda: EngineTransport(engine, lock, lose), **config.ue_options())
    try:
        fleet.submit(config.make_requests(prompts))
        rows = sorted(fleet.run(), key=lambda row: row["request_id"])
    finally:
        fleet.close()
    assert not engine.sessions  # every session was closed
    return rows


@pytest.mark.parametrize("overrides", [
    {"policy": "snr:-100=0,0=2,3=4"},
    {"impairment": "dropout", "impairment_params": {"p": 0.5}},
    {"impairment": "awgn", "channel": "static", "channel_params": {"mean_snr_db": 5.0}, "encoding": "float16"},
])
def test_serve_rows_equal_actor_edge_rows(llama, overrides) -> None:
    config = _config(**overrides)
    prompts, _ = make_prompts(llama, config.requests, config.prompt_tokens, seed=0)
    actor = sorted(run_local_fleet(llama, config, prompts), key=lambda row: row["request_id"])
    serve = _serve_rows(llama, config, prompts)
    assert [[row[key] for key in SAME] for row in serve] == [[row[key] for key in SAME] for row in actor]
    for s, a in zip(serve, actor, strict=True):
        assert s["ue"] == a["ue"] and s["resumes"] == s["call_retries"] == 0
        at_edge = s["k"] < llama.num_layers
        assert (s["bytes_sent"] > 0) == at_edge and s["replica"] == ("local-0" if at_edge else "")
        assert s["bytes_sent"] >= a["bytes_sent"]  # longer session ids in the headers, same payloads
        assert s["edge_batch_size"] == (1.0 if at_edge else 0.0) and s["head_s"] > 0
        assert all(math.isnan(s[key]) for key in NOT_MEASURED)


def test_a_lost_session_costs_one_reprefill_and_nothing_else(llama) -> None:
    config = _config(ues=1, requests=2)
    prompts, _ = make_prompts(llama, 2, 8, seed=1)
    rows = _serve_rows(llama, config, prompts, lose={2})
    reference = clean_greedy(llama, prompts, NEW)
    assert [row["tokens"] for row in rows] == [reference[p] for p in prompts]
    assert [row["resumes"] for row in rows] == [1, 0] and all(row["status"] == "ok" for row in rows)
    assert rows[0]["bytes_sent"] > rows[1]["bytes_sent"]  # the re-prefill resent the history


def test_replicas_are_numbered_and_the_serve_backend_is_validated() -> None:
    rows = [{"replica": "b"}, {"replica": ""}, {"replica": "a"}, {"replica": "b"}]
    number_replicas(rows)
    assert [row["edge"] for row in rows] == [1, -1, 0, 1]
    with pytest.raises(ValueError, match="edge backend"):
        FleetConfig(edge_backend="grpc")
    with pytest.raises(ValueError, match="serve backend"):
        FleetConfig(edge_backend="serve", edge_fault_after_calls=1)


@pytest.mark.parametrize("args, message", [
    (["--edge", "serve", "--edge-fault-after", "1"], "serve backend"),
    (["--edge", "grpc"], "invalid choice"),
])
def test_bad_serve_flags_exit_2_before_anything_starts(tmp_path, capsys, args, message) -> None:
    assert run_fleet.main([*args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


# ---- on Ray: the real app ---------------------------------------------------------------------------------------
RAY_ARGS = ["--edge", "serve", "--model", "smollm2-135m", "--ues", "2", "--edges", "1", "--requests", "3",
            "--max-new-tokens", "6", "--prompt-tokens", "12", "--policy", "fixed:15", "--seed", "2"]


@pytest.fixture(scope="module")
def serve_run(ray_session, tmp_path_factory):
    from ray import serve

    out = tmp_path_factory.mktemp("fleet-serve") / "run"
    try:
        status = run_fleet.main([*RAY_ARGS, "--out", str(out)])
        apps_after = dict(serve.status().applications)
    finally:
        serve.shutdown()  # whatever happened, leave Serve free for the other tests
    return status, out, apps_after


@pytest.mark.ray
@pytest.mark.slow
def test_fleet_through_the_serve_app_gives_the_split_greedy_tokens(serve_run, real_model) -> None:
    status, out, apps_after = serve_run
    assert status == 0
    assert "edgesplit" not in apps_after  # the fleet removed the app it deployed
    rows = pd.read_parquet(out / "requests.parquet").sort_values("request_id")
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    prompts, _ = make_prompts(real_model, 3, 12, seed=2)
    reference = clean_greedy(real_model, prompts, 6)
    assert [list(tokens) for tokens in rows["tokens"]] == [reference[p] for p in prompts]
    assert (rows["k"] == 15).all() and (rows["greedy_match_frac"] == 1.0).all()
    assert list(rows["ue"]) == [0, 1, 0] and (rows["edge"] == 0).all() and (rows["replica"] != "").all()
    assert (rows["bytes_sent"] > 6 * 576 * 4).all() and (rows["packets"] == 6).all()
    assert (rows["rtt_s"] > 0).all() and (rows["sim_link_s"] > 0).all() and (rows["resumes"] == 0).all()
    summary = pd.read_csv(out / "summary.csv").set_index("k")
    assert summary.loc["all", "ok"] == 3 and summary.loc["all", "new_tokens"] == 18
