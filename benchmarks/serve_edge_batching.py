"""Edge-side aggregate decode tokens/s with cross-session batching on vs off, at 1, 4 and 16 concurrent sessions.

Run:  .venv/bin/python benchmarks/serve_edge_batching.py [--k 15] [--sessions 1,4,16] [--decode-steps 32]
                                                         [--transport handle|http] [--repeats 2] [--batch-wait-s S]
                                                         [--seed 0] [--quick]

The UE side is taken out of the measurement: every session's packets are RECORDED once up front (prompts of
different lengths cut from WikiText-2, so the edge batches caches of mixed lengths; the greedy trajectory is
computed in this process with :class:`DeviceHead` + :class:`EdgeTail` at split ``k``). Each session's frames are
built from those hidden states after its session is opened (a frame names its session), before the clock starts.
Then ``C`` sessions fire their decode frames concurrently (asyncio, one step in flight per session) through
Serve handles from this driver (``--transport handle``, the default: the least client-side CPU, so the edge is
the bottleneck) or through the HTTP API. The edge's answers never choose the next frame (the trajectory is
recorded); they are only compared with the recorded greedy tokens as a sanity check.

Two app deployments run one after the other in the same run with the same inputs: ``EdgeArgs(batching=True)``
(``@serve.batch`` gathers concurrent steps into one padded forward) and ``batching=False`` (one forward per step);
with ``--repeats 2`` (the default) the order alternates (on/off, off/on) and the worst ratio is reported. Each
deployment gets a warm-up round first. The edge replica runs one torch thread; ``--batch-wait-s`` sets the
batching deployment's ``EdgeArgs.batch_wait_timeout_s`` (default: the product's own adaptive wait, at most 20 ms).

Prints, per concurrency: decode tokens/s with and without batching, their ratio (target >= 3x at 16 sessions),
the mean decode batch size the edge reported (``batch_size`` in each decode answer), p50/p99 step latency, the
fraction of answers equal to the recorded greedy tokens, and the edge's own tail-forward time per token and busy
fraction (from the ``compute_s`` each answer carries: is the edge the bottleneck?). Writes
``runs/bench/serve_edge_batching/{levels,steps}.parquet`` and ``config.json``. The machine is shared: compare the
two modes of one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import serve_common as sc
import torch

NAME = "serve_edge_batching"


def make_transport(kind: str, url: str):
    """The UE transport the recorded clients fire through."""
    if kind == "http":
        from edgesplit.client import HttpTransport

        return HttpTransport(url)
    from serve_deployments.handle_transport import HandleTransport

    return HandleTransport()


async def open_sessions(transport, recs: list[sc.Recorded], k: int) -> list[tuple[str, bytes, list[bytes]]]:
    """Open one session per recording and build its frames (outside the timed part)."""
    specs = [{"k": k, "encoding": "float32", "max_tokens": len(r.prompt) + len(r.tokens)} for r in recs]
    opened = await asyncio.gather(*(transport.create(spec) for spec in specs))
    return [(o["session_id"], *sc.frames(r, o["session_id"], k)) for o, r in zip(opened, recs, strict=True)]


async def decode_all(transport, session_id: str, decode_frames: list[bytes], rec: sc.Recorded) -> list[dict]:
    """Fire one session's recorded decode frames one after another; per-step rows."""
    rows = []
    for step, frame in enumerate(decode_frames):
        start = time.perf_counter()
        answer = await transport.decode(session_id, frame)
        rows.append({"step": step, "latency_s": time.perf_counter() - start, "batch_size": answer["batch_size"],
                     "compute_s": answer.get("compute_s", float("nan")),
                     "match": answer["token"] == rec.tokens[step + 1]})
    return rows


async def run_level(transport, recs: list[sc.Recorded], k: int, steps: int | None = None) -> tuple[float, list]:
    """Open, prefill (untimed), decode concurrently (timed), close; (decode wall seconds, step rows)."""
    sessions = await open_sessions(transport, recs, k)
    prefills = await asyncio.gather(*(transport.prefill(sid, pre) for sid, pre, _ in sessions))
    first_ok = [p["token"] == r.tokens[0] for p, r in zip(prefills, recs, strict=True)]
    start = time.perf_counter()
    per_session = await asyncio.gather(*(decode_all(transport, sid, dec[:steps], rec)
                                         for (sid, _, dec), rec in zip(sessions, recs, strict=True)))
    wall = time.perf_counter() - start
    await asyncio.gather(*(transport.close(sid) for sid, _, _ in sessions))
    rows = [{**row, "session": i, "cache_tokens": len(recs[i].prompt) + row["step"] + 1, "prefill_ok": first_ok[i]}
            for i, session_rows in enumerate(per_session) for row in session_rows]
    return wall, rows


async def run_mode(batching: bool, recs, args, url: str, bar, task) -> tuple[list[dict], list[dict]]:
    """Every concurrency level against one deployment; (level rows, step rows)."""
    transport = make_transport(args.transport, url)
    levels, steps = [], []
    try:
        await run_level(transport, recs[:min(4, len(recs))], args.k, steps=4)  # warm-up (padded path included)
        for concurrency in args.sessions:
            wall, rows = await run_level(transport, recs[:concurrency], args.k)
            tokens = len(rows)
            levels.append({"batching": batching, "sessions": concurrency, "decode_tokens": tokens, "wall_s": wall,
                           "tokens_per_s": tokens / wall, "mean_batch_size": float(np.mean([r["batch_size"]
                                                                                             for r in rows])),
                           "edge_ms_per_token": 1e3 * float(np.mean([r["compute_s"] for r in rows])),
                           "edge_busy": float(np.sum([r["compute_s"] for r in rows])) / wall,
                           **sc.quantiles_ms(r["latency_s"] for r in rows),
                           "match_rate": float(np.mean([r["match"] for r in rows])),
                           "prefill_ok": all(r["prefill_ok"] for r in rows)})
            steps += [{"batching": batching, "sessions": concurrency, **row} for row in rows]
            bar.advance(task)
    finally:
        closer = getattr(transport, "aclose", None)
        if closer is not None:
            await closer()
    return levels, steps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--sessions", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--decode-steps", type=int, default=32, help="recorded decode steps per session")
    parser.add_argument("--min-prompt-tokens", type=int, default=16)
    parser.add_argument("--max-prompt-tokens", type=int, default=160)
    parser.add_argument("--transport", choices=("handle", "http"), default="handle")
    parser.add_argument("--repeats", type=int, default=2, help="deploy pairs; the order alternates")
    parser.add_argument("--batch-wait-s", type=float, default=None,
                        help="EdgeArgs.batch_wait_timeout_s of the batching deployment (default: EdgeArgs' own)")
    parser.add_argument("--seed", type=int, default=0, help="picks the prompts and the order of their lengths")
    parser.add_argument("--quick", action="store_true", help="12 decode steps per session, 1 repeat")
    args = parser.parse_args()
    args.sessions = sorted({int(s) for s in args.sessions.split(",")})
    if args.quick:
        args.decode_steps, args.repeats = 12, 1
    if min(args.sessions) < 1 or args.decode_steps < 1 or args.repeats < 1:
        parser.error("--sessions, --decode-steps and --repeats must be >= 1")
    return args


def record_sessions(loaded, args) -> tuple[list[sc.Recorded], str]:
    """One recording per session of the largest level, prompt lengths spread over the range in a seeded order."""
    n = max(args.sessions)
    lengths = np.linspace(args.min_prompt_tokens, args.max_prompt_tokens, n).round().astype(int)
    lengths = [int(x) for x in np.random.default_rng([args.seed, 3]).permutation(lengths)]
    prompts, source = sc.text_prompts(loaded.tokenizer, lengths, args.seed)
    with sc.progress() as bar:
        task = bar.add_task("recording greedy trajectories", total=n)
        recs = []
        for prompt in prompts:
            recs.append(sc.record(loaded, prompt, args.k, args.decode_steps + 1))
            bar.advance(task)
    return recs, source


def report(args, config: dict, levels: list[dict], steps: list[dict]) -> None:
    import pandas as pd

    levels, steps = pd.DataFrame(levels), pd.DataFrame(steps)
    print(f"\nedge decode throughput, split k={args.k}, {args.decode_steps} recorded decode steps per session, "
          f"prompt lengths {args.min_prompt_tokens}..{args.max_prompt_tokens} (mixed), via {args.transport}")
    print(f"  {'sessions':>8s} {'on tok/s':>9s} {'off tok/s':>9s} {'ratio':>6s} {'worst':>6s} {'batch on':>8s} "
          f"{'batch off':>9s} {'p50 on':>7s} {'p50 off':>7s} {'p99 on':>7s} {'p99 off':>7s} {'match':>6s}")
    ratios = {}
    for concurrency, grp in levels.groupby("sessions"):
        on, off = grp[grp.batching], grp[~grp.batching]
        per_repeat = on.tokens_per_s.to_numpy() / off.tokens_per_s.to_numpy()
        ratios[int(concurrency)] = {"ratio": float(on.tokens_per_s.mean() / off.tokens_per_s.mean()),
                                    "worst": float(per_repeat.min())}
        print(f"  {concurrency:8d} {on.tokens_per_s.mean():9.1f} {off.tokens_per_s.mean():9.1f} "
              f"{ratios[int(concurrency)]['ratio']:6.2f} {per_repeat.min():6.2f} {on.mean_batch_size.mean():8.2f} "
              f"{off.mean_batch_size.mean():9.2f} {on.p50_ms.mean():7.1f} {off.p50_ms.mean():7.1f} "
              f"{on.p99_ms.mean():7.1f} {off.p99_ms.mean():7.1f} {grp.match_rate.min():6.3f}")
    print(f"  (ratio = batching on / off; target >= 3x at 16 sessions; latencies in ms; match = answers equal to "
          f"the recorded greedy tokens; prefills all matched: {bool(levels.prefill_ok.all())})")
    print("  the edge's own tail-forward time (compute_s it reports; a batch's time shared by its tokens):")
    print(f"  {'sessions':>8s} {'ms/token on':>11s} {'ms/token off':>12s} {'busy on':>8s} {'busy off':>8s}")
    for concurrency, grp in levels.groupby("sessions"):
        on, off = grp[grp.batching], grp[~grp.batching]
        print(f"  {concurrency:8d} {on.edge_ms_per_token.mean():11.2f} {off.edge_ms_per_token.mean():12.2f} "
              f"{on.edge_busy.mean():8.0%} {off.edge_busy.mean():8.0%}")
    out = sc.write_results(NAME, {**config, "ratios": ratios}, levels=levels, steps=steps)
    print(f"\nwrote {out}/{{levels,steps}}.parquet, config.json")


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    from edgesplit.models import load_model
    from serve_deployments.app import build_app
    from serve_deployments.edge_deployment import EdgeArgs

    loaded = load_model(args.model)
    recs, source = record_sessions(loaded, args)
    config = {**vars(args), "prompt_source": source, "prompt_lengths": [len(r.prompt) for r in recs],
              "edge_torch_threads": 1, "driver_torch_threads": 1,
              "batch_wait_timeout_s": args.batch_wait_s or EdgeArgs().batch_wait_timeout_s,
              "max_batch_size": EdgeArgs().limits.max_batch_size}
    sc.print_config(NAME, config)
    url = sc.start_serve()
    levels, steps = [], []
    try:
        order = [[True, False] if r % 2 == 0 else [False, True] for r in range(args.repeats)]
        with sc.progress() as bar:
            task = bar.add_task("levels", total=2 * args.repeats * len(args.sessions))
            for repeat, modes in enumerate(order):
                for batching in modes:
                    bar.console.print(f"deploying batching={batching} (repeat {repeat})")
                    wait = {} if args.batch_wait_s is None else {"batch_wait_timeout_s": args.batch_wait_s}
                    sc.deploy(build_app(sc.edge_app_args(batching=batching, **wait)))
                    lv, st = asyncio.run(run_mode(batching, recs, args, url, bar, task))
                    levels += [{**row, "repeat": repeat} for row in lv]
                    steps += [{**row, "repeat": repeat} for row in st]
                    sc.undeploy()
    finally:
        sc.stop_serve()
    report(args, config, levels, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
