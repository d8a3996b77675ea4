"""A bounded load test of the loopback Serve app: N concurrent HTTP clients for a fixed time, errors by kind.

Run:  .venv/bin/python benchmarks/serve_load_test.py [--clients 16] [--duration-s 60] [--new-tokens 8]
        [--phases default,tight] [--tight-edge-max-ongoing 2] [--tight-edge-max-queued 2]
        [--tight-max-sessions 4]
        [--max-retries 8] [--seed 0] [--quick]

Each client (asyncio + one shared ``httpx.AsyncClient``) loops over short generations until the phase's time is
up: ``POST /v1/split`` (a seeded UE state), ``POST /v1/sessions`` at split ``k``, ``/prefill``, ``new_tokens - 1``
``/decode`` steps and ``DELETE``. The packets are RECORDED greedy trajectories of WikiText-2 prompts (16..48
tokens, computed once in this process at ``k``), so the clients spend no CPU on the model and the app is what is
loaded; the controller's answer is recorded but the recorded ``k`` is used.

A 429 or 503 is retried after its ``Retry-After`` (header, else the JSON body's ``retry_after_s``, else an
exponential back-off), times a seeded jitter in [0.5, 1.5), at most ``--max-retries`` times; any other error ends
the generation and the client starts a new one. Two phases run one after the other, each on a fresh deployment:

- ``default``: the app as ``build_app`` makes it (nothing should be refused);
- ``tight``: the same app with small limits to show the refusals: the edge deployment's ``max_ongoing_requests`` /
  ``max_queued_requests`` with Serve's ``BackpressureConfig(status_code=429, retry_after_s=1)`` (a full queue → 429
  from Serve's proxy, with ``Retry-After``; the controller's full queue → 503 ``overloaded``) and the edge's
  ``EdgeLimits.max_sessions`` (→ 429 ``capacity`` with ``Retry-After``).

Prints per phase: requests/s (every HTTP response), successful requests/s, generations and tokens per second,
p50/p99 latency per route (successful calls), and error counts by status and code, with how many carried
``Retry-After``, how many calls were retried and then succeeded, and how many gave up. Writes
``runs/bench/serve_load_test/{requests,phases}.parquet`` and ``config.json``. The machine is shared: compare the
phases of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections import Counter

import numpy as np
import serve_common as sc
import torch

NAME = "serve_load_test"
RETRYABLE_STATUS = (429, 503)


class GaveUp(Exception):
    """A call still refused after the retry budget (or the phase ended while waiting)."""


class LoadClient:
    """One simulated UE: short generations over HTTP, every response recorded."""

    def __init__(self, ident: int, http, recs: list[sc.Recorded], args, rows: list, deadline: float) -> None:
        self.ident, self.http, self.recs, self.args, self.rows = ident, http, recs, args, rows
        self.deadline = deadline
        self.rng = np.random.default_rng([args.seed, 13, ident])
        self.generations = self.tokens = self.retried_ok = self.gave_up = 0

    async def call(self, op: str, method: str, path: str, **kwargs):
        """One request with the retry policy; every attempt is a row. Returns (status, body)."""
        for attempt in range(self.args.max_retries + 1):
            start = time.perf_counter()
            status, body, retry_after = await self._once(method, path, **kwargs)
            code = body.get("error", {}).get("code") if isinstance(body, dict) and "error" in body else None
            if status in RETRYABLE_STATUS and code is None:
                code = "serve_backpressure"  # Serve's own refusal (proxy), not an edgesplit JSON error
            self.rows.append({"client": self.ident, "op": op, "attempt": attempt, "status": status, "code": code,
                              "retry_after": retry_after, "latency_s": time.perf_counter() - start, "t": start})
            if status not in RETRYABLE_STATUS:
                self.retried_ok += attempt > 0 and status < 300
                return status, body
            wait = self._wait(retry_after, body, attempt)
            if attempt == self.args.max_retries or time.perf_counter() + wait > self.deadline + self.args.grace_s:
                break
            await asyncio.sleep(wait)
        self.gave_up += 1
        raise GaveUp(op)

    async def _once(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            return 0, {"error": {"code": "client_timeout"}}, None
        except httpx.TransportError as err:
            return 0, {"error": {"code": f"transport:{type(err).__name__}"}}, None
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text[:200]}
        return response.status_code, body, response.headers.get("retry-after")

    def _wait(self, header: str | None, body, attempt: int) -> float:
        base = min(self.args.max_backoff_s, 0.1 * 2**attempt)
        with contextlib.suppress(KeyError, TypeError, ValueError):
            base = float(header) if header is not None else float(body["error"]["retry_after_s"])
        return min(self.args.max_backoff_s, base) * float(self.rng.uniform(0.5, 1.5))

    async def generation(self) -> None:
        """split → create → prefill → decode × (n-1) → delete; stops at the first non-retryable error."""
        rec = self.recs[int(self.rng.integers(len(self.recs)))]
        state = {"snr_db_history": [round(float(x), 2) for x in self.rng.normal(15, 6, size=4).clip(-50, 80)]}
        status, _ = await self.call("split", "POST", "/v1/split", json=state)
        if status != 200:
            return
        spec = {"k": self.args.k, "max_tokens": len(rec.prompt) + len(rec.tokens)}
        sid = secrets.token_urlsafe(24)  # the client names its session; Serve routes by the x-session-id header
        status, body = await self.call("create", "POST", "/v1/sessions", json=spec, headers={"x-session-id": sid})
        if status != 201:
            return
        prefill, decodes = sc.frames(rec, sid, self.args.k)
        octet = {"content-type": "application/octet-stream", "x-session-id": sid}
        try:
            for op, frame in [("prefill", prefill)] + [("decode", f) for f in decodes]:
                status, _ = await self.call(op, "POST", f"/v1/sessions/{sid}/{op}", content=frame, headers=octet)
                if status != 200:
                    return
                self.tokens += 1
            self.generations += 1
        finally:
            await self.call("delete", "DELETE", f"/v1/sessions/{sid}", headers={"x-session-id": sid})

    async def run(self) -> None:
        while time.perf_counter() < self.deadline:
            with contextlib.suppress(GaveUp):
                await self.generation()


def build_phase_app(phase: str, args):
    """The app of one phase: ``build_app`` as is, or the same composition with the tight limits."""
    from ray.serve.config import BackpressureConfig

    from serve_deployments.app import build_app, compose
    from serve_deployments.tail_engine import EdgeLimits

    if phase == "default":
        return build_app(sc.edge_app_args())
    app_args = sc.edge_app_args(limits=EdgeLimits(max_sessions=args.tight_max_sessions, retry_after_s=1.0))
    return compose(app_args, {"max_ongoing_requests": args.tight_edge_max_ongoing,
                              "max_queued_requests": args.tight_edge_max_queued,
                              "backpressure_config": BackpressureConfig(status_code=429, retry_after_s=1.0)})


async def run_phase(phase: str, url: str, recs, args, bar) -> tuple[list[dict], dict]:
    """N clients for the phase's duration; (request rows, phase summary)."""
    import httpx

    rows: list[dict] = []
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout_s, limits=limits) as http:
        start = time.perf_counter()
        deadline = start + args.duration_s
        clients = [LoadClient(i, http, recs, args, rows, deadline) for i in range(args.clients)]
        task = bar.add_task(f"{phase}: {args.clients} clients", total=args.duration_s)
        ticker = asyncio.create_task(_tick(bar, task, start, rows, phase, args))
        await asyncio.gather(*(c.run() for c in clients))
        ticker.cancel()
        wall = time.perf_counter() - start
        bar.update(task, completed=args.duration_s)
    summary = {"phase": phase, "wall_s": wall, **{key: sum(getattr(c, key) for c in clients)
                                                  for key in ("generations", "tokens", "retried_ok", "gave_up")}}
    return [{**row, "phase": phase, "t": row["t"] - start} for row in rows], summary


async def _tick(bar, task, start: float, rows: list, phase: str, args) -> None:
    while True:
        await asyncio.sleep(0.5)
        errors = sum(1 for r in rows if r["status"] not in (200, 201))
        bar.update(task, completed=min(args.duration_s, time.perf_counter() - start),
                   description=f"{phase}: {args.clients} clients, {len(rows)} requests, {errors} refused/failed")


def report(args, config: dict, rows: list[dict], phases: list[dict]) -> None:
    import pandas as pd

    requests = pd.DataFrame(rows)
    for summary in phases:
        sel = requests[requests.phase == summary["phase"]]
        ok = sel[sel.status.isin([200, 201])]
        wall = summary["wall_s"]
        summary.update({"requests": len(sel), "requests_per_s": len(sel) / wall, "ok_per_s": len(ok) / wall,
                        "generations_per_s": summary["generations"] / wall, "tokens_per_s": summary["tokens"] / wall,
                        **sc.quantiles_ms(ok.latency_s)})
        print(f"\nphase {summary['phase']}: {args.clients} clients, {wall:.1f} s, {len(sel)} requests "
              f"({summary['requests_per_s']:.1f}/s, {summary['ok_per_s']:.1f}/s succeeded), "
              f"{summary['generations']} generations ({summary['generations_per_s']:.2f}/s), "
              f"{summary['tokens_per_s']:.1f} tokens/s")
        print(f"  {'route':8s} {'ok':>6s} {'p50 ms':>8s} {'p99 ms':>8s}")
        for op in ("split", "create", "prefill", "decode", "delete"):
            q = sc.quantiles_ms(ok[ok.op == op].latency_s)
            print(f"  {op:8s} {int((ok.op == op).sum()):6d} {q['p50_ms']:8.1f} {q['p99_ms']:8.1f}")
        _errors(sel, summary)
    out = sc.write_results(NAME, config, requests=requests, phases=phases)
    print(f"\nwrote {out}/{{requests,phases}}.parquet, config.json")


def _errors(sel, summary: dict) -> None:
    bad = sel[~sel.status.isin([200, 201])]
    kinds = Counter(zip(bad.status, bad.code.fillna("-"), bad.retry_after.notna(), strict=True))
    print(f"  errors by kind ({len(bad)} responses):" + ("" if kinds else " none"))
    for (status, code, has_retry), count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {status:3d} {code:20s} x{count:<6d} Retry-After: {'yes' if has_retry else 'no'}")
    summary["errors"] = len(bad)
    print(f"  calls that succeeded after >= 1 retry: {summary['retried_ok']}; calls given up after the retry "
          f"budget or at the end of the phase: {summary['gave_up']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=60.0, help="per phase")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8, help="recorded prompts the clients cycle through")
    parser.add_argument("--phases", default="default,tight")
    parser.add_argument("--tight-edge-max-ongoing", type=int, default=2)
    parser.add_argument("--tight-edge-max-queued", type=int, default=2)
    parser.add_argument("--tight-max-sessions", type=int, default=4)
    parser.add_argument("--max-retries", type=int, default=8)
    parser.add_argument("--max-backoff-s", type=float, default=2.0)
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per HTTP request")
    parser.add_argument("--grace-s", type=float, default=5.0, help="retries may run this long past the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 clients, 15 s per phase")
    args = parser.parse_args()
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if set(args.phases) - {"default", "tight"}:
        parser.error("--phases takes default and/or tight")
    if args.quick:
        args.clients, args.duration_s = 8, 15.0
    return args


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    from edgesplit.models import load_model

    loaded = load_model(args.model)
    lengths = [int(x) for x in np.linspace(16, 48, args.prompts).round()]
    prompts, source = sc.text_prompts(loaded.tokenizer, lengths, args.seed)
    recs = [sc.record(loaded, p, args.k, args.new_tokens) for p in prompts]
    config = {**vars(args), "prompt_source": source, "prompt_lengths": lengths, "edge_torch_threads": 1}
    sc.print_config(NAME, config)
    url = sc.start_serve()
    rows, phases = [], []
    try:
        with sc.progress() as bar:
            for phase in args.phases:
                bar.console.print(f"deploying phase {phase}")
                sc.deploy(build_phase_app(phase, args))
                got, summary = asyncio.run(run_phase(phase, url, recs, args, bar))
                rows += got
                phases.append(summary)
                sc.undeploy()
    finally:
        sc.stop_serve()
    report(args, config, rows, phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
