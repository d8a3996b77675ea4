"""Split generation through the Serve app (HTTP and handles) vs the unsplit ``model.generate``: tokens/s, one run.

Run:  .venv/bin/python benchmarks/serve_split_generation.py [--k 15] [--prompts 6] [--prompt-tokens 64]
                                                            [--max-new-tokens 32] [--seed 0] [--quick]

Ideal channel, loopback, batch 1, greedy, EOS ignored. Four paths decode the same WikiText-2 prompts (built-in
sentences when ``../shared/data`` is absent), interleaved prompt by prompt with a rotating order, after one warm-up
prompt on every path:

- ``unsplit``: ``model.generate(do_sample=False)`` in this process (the reference);
- ``http``: :class:`SplitClient` over :class:`HttpTransport` → Serve proxy → the edge replica (its own FastAPI routes);
- ``handle``: :class:`SplitClient` over :class:`HandleTransport` from this (driver) process → edge replica;
- ``inproc``: the same split in this process without any transport (head → packet → :class:`TailEngine`), each
  piece timed; it also runs every payload through a bare :class:`EdgeTail` (not counted in its wall time) to
  separate the tail forward from the engine's packet decode, checks and sampling.

Torch runs one thread on each side (this process: ``torch.set_num_threads(1)``; the edge replica:
``EdgeArgs.torch_threads=1``): with 2 cores the UE head and the edge tail would otherwise fight over both. Head and
tail run one after the other per token, so each has a core while it computes.

Prints tokens/s per path, the ratios split / unsplit over all prompts and per prompt (median and worst; target
>= 0.8), whether every path's tokens equal the unsplit greedy tokens, and where a decode step's time goes: UE head
and packet encode (the client's ``head_s``, split in the ``inproc`` proportions), the edge's tail forward (the
``compute_s`` the edge reports with each token), its packet decode + checks + sampling (``inproc``: engine minus
bare tail), transport + Serve overhead (the rest of ``round_trip_s``) and the client's own loop. Writes
``runs/bench/serve_split_generation/{generations,steps}.parquet`` and ``config.json``. The machine is shared:
compare the paths of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import sys
import time

import serve_common as sc
import torch

NAME = "serve_split_generation"
PATHS = ("unsplit", "http", "handle", "inproc")


def unsplit_generate(loaded, prompt: list[int], new_tokens: int) -> tuple[list[int], list[dict], float]:
    """Greedy ``model.generate`` for one prompt (EOS does not stop it); (tokens, no steps, wall seconds)."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    ids = torch.tensor([prompt])
    start = time.perf_counter()
    out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out[0, len(prompt):].tolist(), [], time.perf_counter() - start


def served_generate(client, prompt: list[int], new_tokens: int, k: int) -> tuple[list[int], list[dict], float]:
    """One generation through a :class:`SplitClient`; (tokens, per-step client timings, wall seconds)."""
    start = time.perf_counter()
    result = client.generate(prompt, new_tokens, k=k)
    wall = time.perf_counter() - start
    steps = [{"index": e.index, "head_s": e.head_s, "round_trip_s": e.round_trip_s, "frame_bytes": e.frame_bytes,
              "edge_compute_s": e.edge_compute_s} for e in result.events]
    return result.tokens, steps, wall


@torch.inference_mode()
def inproc_generate(loaded, prompt: list[int], new_tokens: int, k: int) -> tuple[list[int], list[dict], float]:
    """Split generation in this process without a transport; (tokens, per-step timings, timed seconds)."""
    from edgesplit.packet import ActivationPacket
    from edgesplit.split import DeviceHead, EdgeTail
    from serve_deployments.tail_engine import SessionCreate, TailEngine

    head, tail, engine = DeviceHead(loaded, k), EdgeTail(loaded, k), TailEngine(loaded)
    sid = engine.create(SessionCreate(k=k, max_tokens=len(prompt) + new_tokens), "")["session_id"]
    hs, ts = head.new_session(), tail.new_session()
    tokens, rows, ids, position = [], [], list(prompt), 0
    while len(tokens) < new_tokens:
        t0 = time.perf_counter()
        hidden = head(torch.tensor([ids]), session=hs)
        t1 = time.perf_counter()
        frame = ActivationPacket.from_tensor(hidden, session_id=sid, split_k=k, position_start=position).encode()
        t2 = time.perf_counter()
        answer = (engine.decode if tokens else engine.prefill)(sid, "", frame)
        t3 = time.perf_counter()
        tail(ActivationPacket.decode(frame).to_tensor(), session=ts, last_only=True)
        rows.append({"index": len(tokens), "head_s": t1 - t0, "encode_s": t2 - t1, "engine_s": t3 - t2,
                     "tail_s": time.perf_counter() - t3})
        position += len(ids)
        tokens.append(int(answer["token"]))
        ids = tokens[-1:]
    return tokens, rows, sum(r["head_s"] + r["encode_s"] + r["engine_s"] for r in rows)


def run_paths(loaded, prompts: list[list[int]], args, url: str) -> tuple[list[dict], list[dict]]:
    """Every prompt through every path, the order rotating per prompt; (generation rows, step rows)."""
    from edgesplit.client import HttpTransport, SplitClient
    from serve_deployments.handle_transport import HandleTransport

    clients = {"http": SplitClient(loaded, HttpTransport(url)), "handle": SplitClient(loaded, HandleTransport())}
    runners = {"unsplit": lambda p: unsplit_generate(loaded, p, args.max_new_tokens),
               "http": lambda p: served_generate(clients["http"], p, args.max_new_tokens, args.k),
               "handle": lambda p: served_generate(clients["handle"], p, args.max_new_tokens, args.k),
               "inproc": lambda p: inproc_generate(loaded, p, args.max_new_tokens, args.k)}
    gens, steps = [], []
    try:
        with sc.progress() as bar:
            task = bar.add_task("generations (prompt 0 = warm-up)", total=len(PATHS) * len(prompts))
            for p, prompt in enumerate(prompts):
                for path in PATHS[p % len(PATHS):] + PATHS[:p % len(PATHS)]:
                    tokens, rows, wall = runners[path](prompt)
                    gens.append({"path": path, "prompt": p, "warmup": p == 0, "wall_s": wall, "tokens": tokens,
                                 "new_tokens": len(tokens)})
                    steps += [{"path": path, "prompt": p, **row} for row in rows]
                    bar.advance(task)
    finally:
        for client in clients.values():
            client.close()
    return gens, steps


def breakdown(gens, steps, path: str) -> dict[str, float]:
    """Seconds per decode step (the prefill step excluded) of one served path, split with the ``inproc`` steps."""
    timed = steps[(steps.prompt > 0) & (steps["index"] > 0)]
    mine, rep = timed[timed.path == path], timed[timed.path == "inproc"]
    head, encode, tail, engine = rep.head_s.mean(), rep.encode_s.mean(), rep.tail_s.mean(), rep.engine_s.mean()
    ue, rtt, edge = mine.head_s.mean(), mine.round_trip_s.mean(), mine.edge_compute_s.astype(float).mean()
    checks = max(0.0, engine - tail)
    loop = gens[(gens.path == path) & ~gens.warmup]
    loop = float(((loop.wall_s - loop.head_sum_s - loop.rtt_sum_s) / loop.new_tokens).mean())
    return {
        "UE head + packet encode (client head_s)": ue,
        "  UE head forward (inproc share)": ue * head / (head + encode),
        "  UE packet encode (inproc share)": ue * encode / (head + encode),
        "edge call round trip (client round_trip_s)": rtt,
        "  edge tail forward (the edge's own compute_s)": edge,
        "  edge packet decode + checks + sampling (inproc)": checks,
        "  transport + Serve overhead (the rest)": rtt - edge - checks,
        "client loop + other (per token, all steps)": loop,
        "sum": ue + rtt + loop,
        "for scale, inproc: head + encode + engine": head + encode + engine,
        "for scale, inproc: bare tail forward": tail,
    }


def report(args, config: dict, gens, steps) -> int:
    """Print the ratios and the breakdown, write the tables; exit status 1 if any tokens differ."""
    import pandas as pd

    gens, steps = pd.DataFrame(gens), pd.DataFrame(steps)
    served = steps[steps.path.isin(["http", "handle"])]
    sums = served.groupby(["path", "prompt"]).agg(head_sum_s=("head_s", "sum"), rtt_sum_s=("round_trip_s", "sum"))
    gens = gens.merge(sums, how="left", left_on=["path", "prompt"], right_index=True)
    reference = {row.prompt: row.tokens for row in gens[gens.path == "unsplit"].itertuples()}
    gens["identical"] = [list(row.tokens) == list(reference[row.prompt]) for row in gens.itertuples()]
    gens["tokens_per_s"] = gens.new_tokens / gens.wall_s
    timed = gens[~gens.warmup]
    tps = {path: float(grp.new_tokens.sum() / grp.wall_s.sum()) for path, grp in timed.groupby("path")}
    per_prompt = timed.pivot(index="prompt", columns="path", values="tokens_per_s")
    print(f"\nmodel {args.model}, split k={args.k}, {len(reference) - 1} timed prompts x {args.prompt_tokens} tokens "
          f"from {config['prompt_source']}, {args.max_new_tokens} new tokens, batch 1, greedy")
    print(f"  {'path':8s} {'tokens/s':>9s}  {'ratio':>6s}  {'per-prompt median':>17s}  {'worst':>6s}  identical")
    for path in PATHS:
        ratios = per_prompt[path] / per_prompt["unsplit"]
        print(f"  {path:8s} {tps[path]:9.2f}  {tps[path] / tps['unsplit']:6.3f}  {ratios.median():17.3f}  "
              f"{ratios.min():6.3f}  {bool(gens[gens.path == path].identical.all())}")
    print("  (ratio = split / unsplit tokens/s; target >= 0.8 for http and handle)")
    parts = {path: breakdown(gens, steps, path) for path in ("http", "handle")}
    print(f"\nms per decode step (prefill step excluded)              {'http':>7s}  {'handle':>7s}")
    for name in parts["http"]:
        print(f"  {name:54s} {1e3 * parts['http'][name]:7.2f}  {1e3 * parts['handle'][name]:7.2f}")
    first = served[(served["index"] == 0) & (served.prompt > 0)].groupby("path")[["head_s", "round_trip_s"]].mean()
    for path, row in first.iterrows():
        print(f"  first token ({path}): head_s {1e3 * row.head_s:.1f} ms (prompt through the head), "
              f"round_trip_s {1e3 * row.round_trip_s:.1f} ms (session create + prefill calls)")
    config = {**config, "tokens_per_s": tps, "breakdown_ms": {p: {n: 1e3 * v for n, v in d.items()}
                                                             for p, d in parts.items()}}
    out = sc.write_results(NAME, config, generations=gens, steps=steps)
    print(f"\nwrote {out}/{{generations,steps}}.parquet, config.json")
    return 0 if bool(gens.identical.all()) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=15, help="split point (layers on the UE)")
    parser.add_argument("--prompts", type=int, default=6, help="timed prompts (one more is the warm-up)")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="picks the prompts")
    parser.add_argument("--quick", action="store_true", help="2 prompts x 12 new tokens")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.max_new_tokens = 2, 12
    return args


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    from edgesplit.models import load_model

    loaded = load_model(args.model)
    if not 0 < args.k < loaded.num_layers:
        sys.exit(f"--k must be in 1..{loaded.num_layers - 1} (both sides run layers)")
    prompts, source = sc.text_prompts(loaded.tokenizer, [args.prompt_tokens] * (args.prompts + 1), args.seed)
    config = {**vars(args), "prompt_source": source, "num_layers": loaded.num_layers, "warmup_prompts": 1,
              "torch_threads": "1 in this process (UE head, unsplit, inproc) + 1 in the edge replica",
              "channel": "ideal (float32 packets)", "transport": "loopback"}
    sc.print_config(NAME, config)
    url = sc.start_serve()
    try:
        from serve_deployments.app import build_app

        print(f"app deployed in {sc.deploy(build_app(sc.edge_app_args())):.1f} s at {url}")
        gens, steps = run_paths(loaded, prompts, args, url)
    finally:
        sc.stop_serve()
    return report(args, config, gens, steps)


if __name__ == "__main__":
    sys.exit(main())
