"""Split-controller decision latency (p50/p99) over HTTP and via handle, against an empty deployment's, one run.

Run:  .venv/bin/python benchmarks/serve_controller_latency.py [--calls 1000] [--warmup 50] [--seed 0] [--quick]

Two apps run side by side on one Serve instance: the edgesplit app (``build_app``; the controller with its default
rule policy) and an ``empty`` app whose deployment returns a constant decision-shaped dict. Each is reached both
ways the product offers:

- HTTP: ``POST /v1/split`` with a ``UEState`` JSON body → the edge replica's route (auth check, pydantic validation) →
  ``SplitControllerDeployment.decide``; the empty app's FastAPI ingress takes the same body at
  ``POST /empty/v1/split`` → ``EmptyDeployment.decide`` (same hops: proxy → FastAPI replica → handle call);
- handle: ``controller.decide.remote(state)`` vs ``empty.decide.remote(state)`` from this driver.

Calls are sequential (one in flight), the same seeded UE states go to both targets, and each call pair is
interleaved with the order drawn per pair, so both sides see the same machine. Prints p50 / p99 / mean latency of
each, the ratios controller / empty (target: p99 <= 1.5x) and the error count. Writes
``runs/bench/serve_controller_latency/calls.parquet`` and ``config.json``. The machine is shared: compare the two
targets of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import serve_common as sc
from fastapi import FastAPI
from ray import serve

NAME = "serve_controller_latency"
CONSTANT = {"k": 15, "encoding": "float32", "bits": 32, "policy": "rule", "policy_version": "empty",
            "reason": "constant answer of the empty baseline", "num_layers": 30}
"""What the empty deployment answers (decision-shaped, so both responses serialise alike)."""

empty_api = FastAPI(title="empty baseline")


@serve.deployment(name="EmptyDeployment", ray_actor_options={"num_cpus": 0})
class EmptyDeployment:
    """Returns a constant dict: the floor of a Serve handle call."""

    async def decide(self, state: dict) -> dict:
        return CONSTANT


@serve.deployment(name="EmptyIngress", ray_actor_options={"num_cpus": 0})
@serve.ingress(empty_api)
class EmptyIngress:
    """A FastAPI route in front of :class:`EmptyDeployment`, mirroring the edge route → controller."""

    def __init__(self, target) -> None:
        self.target = target

    @empty_api.post("/v1/split")
    async def split(self, state: dict) -> dict:
        return await self.target.decide.remote(state)


def ue_states(n: int, seed: int) -> list[dict]:
    """Seeded, varied ``UEState`` bodies (SNR histories of 1..16 reports, battery, budget, loss)."""
    rng = np.random.default_rng([seed, 5])
    states = []
    for _ in range(n):
        history = rng.normal(rng.uniform(-5, 30), 3, size=int(rng.integers(1, 17))).clip(-50, 80)
        states.append({"snr_db_history": [round(float(x), 2) for x in history],
                       "loss_rate": round(float(rng.uniform(0, 0.1)), 3),
                       "battery": round(float(rng.uniform(0.05, 1.0)), 3),
                       "latency_budget_s": round(float(rng.uniform(0.2, 2.0)), 3)})
    return states


def measure(calls: dict, states: list[dict], seed: int, bar, label: str) -> list[dict]:
    """Sequential calls, each state to every target in a per-state random order; one row per call."""
    rng = np.random.default_rng([seed, 9])
    names = list(calls)
    rows = []
    task = bar.add_task(label, total=len(states))
    for index, state in enumerate(states):
        for name in rng.permutation(names):
            start = time.perf_counter()
            ok, detail = calls[name](state)
            rows.append({"target": str(name), "call": index, "latency_s": time.perf_counter() - start, "ok": ok,
                         "detail": detail})
        bar.advance(task)
    return rows


def http_calls(client, url: str) -> dict:
    def call(path):
        def post(state):
            response = client.post(f"{url}{path}", json=state)
            body = response.json()
            return response.status_code == 200 and "k" in body, str(body.get("k", response.status_code))
        return post

    return {"controller": call("/v1/split"), "empty": call("/empty/v1/split")}


def handle_calls() -> dict:
    controller = serve.get_deployment_handle("SplitControllerDeployment", app_name="edgesplit")
    empty = serve.get_deployment_handle("EmptyDeployment", app_name="empty")

    def call(handle):
        def decide(state):
            body = handle.decide.remote(state).result()
            return "k" in body, str(body.get("k"))
        return decide

    return {"controller": call(controller), "empty": call(empty)}


def report(args, config: dict, rows: list[dict]) -> None:
    import pandas as pd

    calls = pd.DataFrame(rows)
    timed = calls[~calls.warmup]
    print(f"\nsplit decision latency, {args.calls} calls per target and transport, sequential, interleaved")
    print(f"  {'transport':9s} {'target':10s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s} {'errors':>6s}")
    ratios = {}
    for transport in ("http", "handle"):
        stats = {}
        for target in ("controller", "empty"):
            sel = timed[(timed.transport == transport) & (timed.target == target)]
            stats[target] = sc.quantiles_ms(sel.latency_s)
            print(f"  {transport:9s} {target:10s} {stats[target]['p50_ms']:8.2f} {stats[target]['p99_ms']:8.2f} "
                  f"{stats[target]['mean_ms']:8.2f} {int((~sel.ok).sum()):6d}")
        ratios[transport] = {q: stats["controller"][q] / stats["empty"][q] for q in ("p50_ms", "p99_ms")}
        print(f"  {transport:9s} ratio controller / empty: p50 {ratios[transport]['p50_ms']:.2f}x, "
              f"p99 {ratios[transport]['p99_ms']:.2f}x (target p99 <= 1.5x)")
    decided = timed[(timed.target == "controller") & timed.ok].detail.value_counts().to_dict()
    print(f"  the controller's k over its timed calls (both transports): {decided}")
    out = sc.write_results(NAME, {**config, "ratios": ratios}, calls=calls)
    print(f"\nwrote {out}/calls.parquet, config.json")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per target and transport")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per target and transport first")
    parser.add_argument("--seed", type=int, default=0, help="picks the UE states and the call order")
    parser.add_argument("--quick", action="store_true", help="200 calls, 20 warm-up")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warmup = 200, 20
    return args


def main() -> int:
    import httpx

    from serve_deployments.app import build_app

    args = parse_args()
    config = {**vars(args), "controller": "ControllerArgs() defaults (rule fallback)",
              "empty": "EmptyIngress (FastAPI) -> EmptyDeployment returning a constant dict", "in_flight": 1}
    sc.print_config(NAME, config)
    states = ue_states(args.warmup + args.calls, args.seed)
    url = sc.start_serve()
    rows = []
    try:
        sc.deploy(build_app(sc.edge_app_args()))
        sc.deploy(EmptyIngress.bind(EmptyDeployment.bind()), name="empty", route_prefix="/empty")
        with httpx.Client(timeout=30.0) as client, sc.progress() as bar:
            for transport, calls in (("http", http_calls(client, url)), ("handle", handle_calls())):
                for phase, chunk in (("warm-up", states[:args.warmup]), ("timed", states[args.warmup:])):
                    got = measure(calls, chunk, args.seed, bar, f"{transport} {phase}")
                    rows += [{**row, "transport": transport, "warmup": phase == "warm-up"} for row in got]
    finally:
        sc.stop_serve()
    report(args, config, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
