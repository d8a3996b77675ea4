"""The edge engine's own batching ceiling: one padded decode forward of B sessions vs B forwards, in-process.

Run:  .venv/bin/python benchmarks/edge_engine_batching.py [--k 15] [--batches 1,4,16] [--repeats 5] [--seed 0]

No Serve, no network: :class:`~serve_deployments.tail_engine.TailEngine` holds 16 prefilled sessions of mixed
lengths (16..151 tokens) at split ``k``; each repeat times ``decode_many`` on the first B sessions (one padded
forward) and B single-session calls, interleaved, one torch thread. Prints ms per token of both and their ratio —
the most that cross-session batching can buy on this CPU, which bounds what ``serve_edge_batching.py`` can show
through Serve. Writes ``runs/bench/edge_engine_batching/{timings.parquet,config.json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from edgesplit.models import load_model
from edgesplit.packet import ActivationPacket
from edgesplit.split import DeviceHead
from serve_deployments.tail_engine import SessionCreate, TailEngine


def _sessions(engine, head, k, count, seed):
    g = torch.Generator().manual_seed(seed)
    sessions = []
    for i in range(count):
        ids = torch.randint(100, 20000, (1, 16 + 9 * i), generator=g)
        sid = engine.create(SessionCreate(k=k, max_tokens=1024), "")["session_id"]
        frame = ActivationPacket.from_tensor(head(ids), session_id=sid, split_k=k, position_start=0,
                                             encoding="float32").encode()
        engine.prefill(sid, "", frame)
        sessions.append([sid, ids.shape[1]])
    return sessions


def _works(engine, sessions, k, hidden):
    works = []
    for s in sessions:
        frame = ActivationPacket.from_tensor(hidden, session_id=s[0], split_k=k, position_start=s[1],
                                             encoding="float32").encode()
        works.append(engine.check_decode(s[0], "", frame))
        s[1] += 1
    return works


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    repeats = 2 if args.quick else args.repeats
    loaded = load_model()
    engine, head = TailEngine(loaded), DeviceHead(loaded, args.k)
    sessions = _sessions(engine, head, args.k, max(batches), args.seed)
    hidden = torch.randn(1, 1, loaded.hidden_size, generator=torch.Generator().manual_seed(args.seed))
    rows = []
    for repeat in range(repeats):
        for b in batches:
            for mode in (("batched", "single") if repeat % 2 == 0 else ("single", "batched")):
                works = _works(engine, sessions[:b], args.k, hidden)
                start = time.perf_counter()
                if mode == "batched":
                    engine.decode_many(works)
                else:
                    for work in works:
                        engine.decode_many([work])
                rows.append({"repeat": repeat, "batch": b, "mode": mode,
                             "ms_per_token": 1e3 * (time.perf_counter() - start) / b})
    frame = pd.DataFrame(rows)
    out = Path("runs/bench/edge_engine_batching")
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "timings.parquet", index=False)
    (out / "config.json").write_text(json.dumps({**vars(args), "repeats": repeats, "model": loaded.name}, indent=2))
    print(f"edge engine, k={args.k}, mixed cache lengths, one torch thread, median of {repeats} repeats")
    print("  batch  single ms/tok  batched ms/tok  ratio")
    for b in batches:
        med = {m: statistics.median(frame[(frame.batch == b) & (frame["mode"] == m)].ms_per_token)
               for m in ("single", "batched")}
        print(f"  {b:5d}  {med['single']:13.2f}  {med['batched']:14.2f}  {med['single'] / med['batched']:5.2f}")


if __name__ == "__main__":
    main()
