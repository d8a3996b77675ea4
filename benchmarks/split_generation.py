"""Split generation through Ray actors (ideal channel) vs the unsplit model's ``generate``: tokens/s, same run.

Run:  .venv/bin/python benchmarks/split_generation.py [--model smollm2-135m] [--split 15] [--prompts 4]
                                                      [--max-new-tokens 32] [--quick]

Both sides decode the same equal-length prompts greedily at batch 1 with one torch thread each (the edge and UE
actors also use one thread each, and they run one after the other per token). The unsplit side is
``model.generate`` in this process; the split side is one UE (a fleet actor) and one edge actor at split ``k``
with an ideal channel: head → impair (none) → ActivationPacket bytes → Ray call → decode → tail → token back.
Each side is warmed up on one prompt first. Prints tokens/s of each, their ratio (split / unsplit; the target is
≥ 0.8), whether the tokens are identical, and where the split path's time goes per token: head compute, impair +
packet encode (UE), packet decode + checks (edge), tail compute, other edge handling, Ray call overhead
(round trip minus edge handler time), and the UE fleet's own loop. The machine is shared: compare the two
figures of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from cluster.fleet import FleetConfig, RayFleet
from cluster.prompts import make_prompts
from cluster.run_fleet import start_ray
from edgesplit.models import load_model


def unsplit_generate(loaded, prompts: list[tuple[int, ...]], new_tokens: int) -> tuple[list[list[int]], float]:
    """Greedy ``model.generate`` per prompt (EOS does not stop it); (tokens, wall seconds)."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    outputs, start = [], time.perf_counter()
    for prompt in prompts:
        ids = torch.tensor([prompt])
        out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        outputs.append(out[0, len(prompt) :].tolist())
    return outputs, time.perf_counter() - start


def split_generate_on_ray(fleet: RayFleet, prompts: list[tuple[int, ...]]) -> tuple[list[dict], float]:
    """One request at a time through the UE actor and the edge actor; (rows, wall seconds)."""
    start = time.perf_counter()
    rows = fleet.run(prompts)
    return rows, time.perf_counter() - start


def breakdown_ms_per_token(rows: list[dict], wall_s: float) -> dict[str, float]:
    """Where the split path's time went, in ms per generated token."""
    tokens = sum(r["new_tokens"] for r in rows)
    total = {key: sum(r[key] for r in rows) for key in ("head_s", "encode_s", "edge_decode_s", "edge_compute_s",
                                                         "call_overhead_s", "rtt_s")}
    handler_s = total["rtt_s"] - total["call_overhead_s"]
    parts = {
        "UE head compute": total["head_s"],
        "UE impair + packet encode": total["encode_s"],
        "edge packet decode + checks": total["edge_decode_s"],
        "edge tail compute": total["edge_compute_s"],
        "edge other handling": handler_s - total["edge_decode_s"] - total["edge_compute_s"],
        "Ray call overhead": total["call_overhead_s"],
    }
    parts["UE fleet loop + driver"] = wall_s - sum(parts.values())
    return {name: 1e3 * seconds / tokens for name, seconds in parts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--split", type=int, default=15)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 prompts x 8 new tokens")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.max_new_tokens = 2, 8
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    torch.set_num_threads(1)
    loaded = load_model(args.model)
    if not 0 < args.split < loaded.num_layers:
        parser.error(f"--split must be in 1..{loaded.num_layers - 1} (both sides run layers)")
    prompts, source = make_prompts(loaded, args.prompts + 1, args.prompt_tokens, args.seed)
    warmup, prompts = prompts[:1], prompts[1:]
    config = FleetConfig(ues=1, edges=1, requests=len(prompts), policy=f"fixed:{args.split}", channel="static",
                         max_new_tokens=args.max_new_tokens, prompt_tokens=args.prompt_tokens, seed=args.seed,
                         progress_interval_s=600.0)
    started = start_ray(sum(p.numel() * p.element_size() for p in loaded.model.parameters()))
    fleet = RayFleet(config, loaded)
    try:
        unsplit_generate(loaded, warmup, args.max_new_tokens)
        split_generate_on_ray(fleet, warmup)
        reference, unsplit_s = unsplit_generate(loaded, prompts, args.max_new_tokens)
        rows, split_s = split_generate_on_ray(fleet, prompts)
    finally:
        fleet.shutdown()
        if started:
            import ray

            ray.shutdown()
    tokens = len(prompts) * args.max_new_tokens
    unsplit_tps, split_tps = tokens / unsplit_s, tokens / split_s
    identical = [r["tokens"] for r in rows] == reference
    print(f"model {args.model} ({loaded.num_layers} layers), split k={args.split}, {len(prompts)} prompts of "
          f"{args.prompt_tokens} tokens from {source}, {args.max_new_tokens} new tokens each, batch 1")
    print(f"unsplit model.generate : {unsplit_tps:8.2f} tokens/s  ({unsplit_s:.2f} s)")
    print(f"split via Ray actors   : {split_tps:8.2f} tokens/s  ({split_s:.2f} s)")
    print(f"ratio split / unsplit  : {split_tps / unsplit_tps:8.3f}   (target >= 0.8); tokens identical: {identical}")
    print("split path, ms per token:")
    for name, ms in breakdown_ms_per_token(rows, split_s).items():
        print(f"  {name:28s} {ms:8.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
