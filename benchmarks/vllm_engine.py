"""Edge tokens/s of the vLLM engine ÷ the transformers TailEngine: same prompts, same recorded UE packets, same run.

Run (in the vLLM venv, ``make setup-vllm``):

    .venv-vllm/bin/python benchmarks/vllm_engine.py [--k 0,15] [--sessions 1,4] [--new-tokens 32] [--repeats 3]
    .venv-vllm/bin/python benchmarks/vllm_engine.py --quick        # CI-sized: 12 tokens, 1 and 4 sessions, 2 repeats

No Serve, no network: the UE side is taken out of the timing. For each split ``k`` the UE's packets (prompt, then one
token per step) are recorded once from a greedy run of the transformers engine; every timed pass replays them into an
engine — all sessions prefilled one by one, then each step of every session in one ``decode_many`` call — and counts
the generated tokens per second of engine time. The two engines alternate pass by pass (order swapped every repeat),
each after one untimed warm-up pass, on ``--threads`` torch threads each. Greedy tokens must match the recording on
both engines (printed; a mismatch is flagged). Prints the median tokens/s of each engine and their ratio per ``k`` and
session count; writes ``timings.parquet`` and ``config.json`` under ``--out`` (default ``runs/bench/vllm_engine``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

PROMPTS = [
    "The capital of France is",
    "Write a short story about a lighthouse keeper who finds a message in a bottle. It begins on a stormy night",
    "Explain in simple words why the sky is blue during the day and red at sunset.",
    "List three facts about the planet Mars: its size, its distance from the sun, and its two small moons",
]
"""Prompts of mixed lengths (6 to 24 tokens); session ``i`` takes prompt ``i mod 4``."""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="0,15", help="splits, comma-separated (0 <= k < L)")
    parser.add_argument("--sessions", default="1,4", help="concurrent session counts, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both engines")
    parser.add_argument("--block-size", type=int, default=32, help="vLLM KV block (CPU: a multiple of 32)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quick", action="store_true", help="12 new tokens, 2 repeats")
    parser.add_argument("--out", default="runs/bench/vllm_engine")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.repeats = 12, 2
    return args


def _frame(sid, k, position, payload):
    from edgesplit.packet import ActivationPacket

    return ActivationPacket.from_tensor(payload, session_id=sid, split_k=k, position_start=position,
                                        encoding="token_ids" if k == 0 else "float32").encode()


def record(engine, loaded, k: int, count: int, new_tokens: int) -> list[dict]:
    """Greedy runs through ``engine``: per session its id, prompt frame, decode frames and tokens."""
    import torch

    from edgesplit.split import DeviceHead
    from serve_deployments.tail_engine import SessionCreate

    head, sessions = DeviceHead(loaded, k), []
    for i in range(count):
        ids = torch.tensor([loaded.tokenizer(PROMPTS[i % len(PROMPTS)]).input_ids])
        sid = f"bench-session-{k}-{i}-".ljust(40, "x")
        budget = ids.shape[1] + new_tokens
        engine.create(SessionCreate(k=k, max_tokens=budget), "", sid)
        hs = head.new_session()
        frames = [_frame(sid, k, 0, head(ids, session=hs))]
        tokens = [engine.prefill(sid, "", frames[0])["token"]]
        for step in range(new_tokens - 1):
            frames.append(_frame(sid, k, ids.shape[1] + step, head(torch.tensor([[tokens[-1]]]), session=hs)))
            tokens.append(engine.decode(sid, "", frames[-1])["token"])
        engine.close(sid, "")
        sessions.append({"sid": sid, "budget": budget, "frames": frames, "tokens": tokens})
    return sessions


def replay(engine, k: int, sessions: list[dict]) -> tuple[float, list[list[int]]]:
    """Engine seconds for all sessions (prefills, then every step of all sessions in one call) and their tokens."""
    from serve_deployments.tail_engine import SessionCreate

    for s in sessions:
        engine.create(SessionCreate(k=k, max_tokens=s["budget"]), "", s["sid"])
    start = time.perf_counter()
    tokens = [[engine.prefill(s["sid"], "", s["frames"][0])["token"]] for s in sessions]
    for step in range(1, len(sessions[0]["frames"])):
        works = [engine.check_decode(s["sid"], "", s["frames"][step]) for s in sessions]
        for out, answer in zip(tokens, engine.decode_many(works), strict=True):
            out.append(answer["token"])
    seconds = time.perf_counter() - start
    for s in sessions:
        engine.close(s["sid"], "")
    return seconds, tokens


def main() -> None:
    args = _parse()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # else vLLM's worker drops this process to one torch thread
    import pandas as pd
    import torch

    from edgesplit.models import load_model
    from serve_deployments.edge_engine import VllmArgs
    from serve_deployments.tail_engine import EdgeLimits, TailEngine
    from serve_deployments.vllm_engine import VllmEdgeEngine

    splits = [int(k) for k in args.k.split(",")]
    counts = [int(n) for n in args.sessions.split(",")]
    limits = EdgeLimits(max_tokens_per_session=256, max_batch_size=max(counts))
    torch.set_num_threads(args.threads)  # before vLLM starts: its CPU worker turns set_num_threads into a no-op
    loaded = load_model(args.model)
    engines = {"transformers": TailEngine(loaded, limits),
               "vllm": VllmEdgeEngine(args.model, limits=limits,
                                      options=VllmArgs(splits=splits, block_size=args.block_size))}
    rows = []
    for k in splits:
        recorded = record(engines["transformers"], loaded, k, max(counts), args.new_tokens)
        for count in counts:
            sessions = recorded[:count]
            for engine in engines.values():
                replay(engine, k, sessions)  # warm-up, untimed
            for repeat in range(args.repeats):
                order = list(engines) if repeat % 2 == 0 else list(reversed(engines))
                for name in order:
                    seconds, tokens = replay(engines[name], k, sessions)
                    rows.append({"k": k, "sessions": count, "repeat": repeat, "engine": name, "seconds": seconds,
                                 "tokens": sum(map(len, tokens)), "tokens_per_s": sum(map(len, tokens)) / seconds,
                                 "identical": tokens == [s["tokens"] for s in sessions]})
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "timings.parquet", index=False)
    (out / "config.json").write_text(json.dumps({**vars(args), "prompts": PROMPTS, "torch": torch.__version__,
                                                 "vllm_stats": engines["vllm"].stats()}, indent=2))
    _print(frame, args)


def _print(frame, args) -> None:
    print(f"edge tokens/s, vLLM engine / transformers TailEngine, {args.new_tokens} new tokens per session, "
          f"{args.threads} torch thread(s), median of {args.repeats} repeats")
    print("   k  sessions  transformers tok/s  vllm tok/s  ratio  tokens identical")
    for (k, count), group in frame.groupby(["k", "sessions"]):
        med = {name: statistics.median(group[group.engine == name].tokens_per_s) for name in ("transformers", "vllm")}
        same = "yes" if group.identical.all() else "NO"
        print(f"  {k:2d}  {count:8d}  {med['transformers']:18.1f}  {med['vllm']:10.1f}  "
              f"{med['vllm'] / med['transformers']:5.2f}  {same}")


if __name__ == "__main__":
    main()
