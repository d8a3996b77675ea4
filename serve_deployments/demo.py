"""The serving step of ``make demo``: start the Serve app, run a few UEs against it over HTTP, shut down.

``edgesplit serve-demo --out runs/demo/serve`` starts a local Ray + the app on loopback (the built-in model, one
edge replica, the controller's rule fallback), then runs ``--ues`` UE clients concurrently: every UE asks the
controller for ``k`` before each request; UE 0 sees a channel that fades from 30 dB down to 0 dB and back, so the
controller moves its split, the others sit at fixed SNRs. Prints the decisions and the aggregate throughput; writes
``requests.parquet`` (one row per request), ``config.json`` (arguments + seed) and ``splits.png``. About a minute
on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROMPTS = ("The history of radio begins with", "Edge computing moves computation", "A language model predicts",
           "The weather in spring is")


def snr_trace(requests: int, seed: int) -> list[float]:
    """30 dB → 0 dB → 30 dB over the requests, with 1 dB of seeded jitter (the moving UE's channel)."""
    rng = np.random.default_rng(seed)
    half = np.linspace(30.0, 0.0, max(2, (requests + 1) // 2))
    path = np.concatenate([half, half[::-1]])[:requests]
    return [round(float(v), 1) for v in path + rng.normal(0.0, 1.0, len(path))]


async def _ue(client, ue: int, snrs: list[float], tokenizer, max_new_tokens: int) -> list[dict]:
    rows = []
    for request, snr in enumerate(snrs):
        client.ue_state["snr_db_history"] = (client.ue_state.get("snr_db_history", []) + [snr])[-16:]
        start = time.perf_counter()
        result = await client.generate(tokenizer(PROMPTS[(ue + request) % len(PROMPTS)]).input_ids, max_new_tokens)
        rows.append({"ue": ue, "request": request, "snr_db": snr, "k": result.k,
                     "policy": result.decision["policy"], "reason": result.decision["reason"],
                     "tokens": len(result.tokens), "wall_s": time.perf_counter() - start,
                     "resumes": result.resumes, "retries": result.retries,
                     "uplink_bytes": sum(e.frame_bytes for e in result.events)})
    return rows


async def _drive(url: str, model, ues: int, requests: int, max_new_tokens: int, seed: int) -> list[dict]:
    from edgesplit.client import AsyncSplitClient

    traces = [snr_trace(requests, seed)] + [[10.0 + 10.0 * ue] * requests for ue in range(1, ues)]
    clients = [AsyncSplitClient(model, url, seed=seed + ue) for ue in range(ues)]
    try:
        per_ue = await asyncio.gather(*(_ue(c, ue, traces[ue], model.tokenizer, max_new_tokens)
                                        for ue, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return [row for rows in per_ue for row in rows]


def _plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moving = frame[frame.ue == 0]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(moving.request, moving.snr_db, "o-", color="tab:blue", label="SNR reported (dB)")
    ax.set_xlabel("request of UE 0")
    ax.set_ylabel("SNR (dB)", color="tab:blue")
    twin = ax.twinx()
    twin.step(moving.request, moving.k, where="mid", color="tab:red", label="k chosen")
    twin.set_ylabel("split k (layers on the UE)", color="tab:red")
    ax.set_title("Live split controller: UE 0's channel fades and recovers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_serve_demo(out: Path, ues: int = 3, requests: int = 6, max_new_tokens: int = 8, seed: int = 0,
                   port: int | None = None) -> pd.DataFrame:
    """Start Ray + the app, run the UEs, write the results, shut everything down."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    from edgesplit.models import load_model
    from serve_deployments.app import EdgeAppArgs, compose
    from serve_deployments.loopback import start_serve

    out.mkdir(parents=True, exist_ok=True)
    config = {"ues": ues, "requests": requests, "max_new_tokens": max_new_tokens, "seed": seed, "port": port}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2)
    try:
        port = start_serve(port=port)  # None: a free loopback port
        config["port"] = port
        args = EdgeAppArgs(edge={"torch_threads": 1}, api_token_env="EDGESPLIT_DEMO_NO_TOKEN")
        serve.run(compose(args, {"ray_actor_options": {"num_cpus": 1}}), name="edgesplit", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        print(f"serving at {url}; {ues} UEs x {requests} requests x {max_new_tokens} tokens")
        start = time.perf_counter()
        rows = asyncio.run(_drive(url, load_model(), ues, requests, max_new_tokens, seed))
        wall = time.perf_counter() - start
    finally:
        serve.shutdown()
        ray.shutdown()
    frame = pd.DataFrame(rows)
    frame.to_parquet(out / "requests.parquet", index=False)
    (out / "config.json").write_text(json.dumps({**config, "wall_s": wall}, indent=2))
    _plot(frame, out / "splits.png")
    for row in frame[frame.ue == 0].itertuples():
        print(f"  UE 0 request {row.request}: SNR {row.snr_db:5.1f} dB -> k={row.k:2d} ({row.reason})")
    print(f"  {int(frame.tokens.sum())} tokens in {wall:.1f} s = {frame.tokens.sum() / wall:.1f} tokens/s aggregate; "
          f"{int(frame.retries.sum())} retries, {int(frame.resumes.sum())} resumes; results in {out}")
    return frame
