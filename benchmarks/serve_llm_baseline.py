"""Fully-on-server baseline: Ray Serve LLM (``ray.serve.llm.build_openai_app``) on the same vLLM ÷ the edgesplit app.

Run (in the vLLM venv, ``make setup-vllm``):

    .venv-vllm/bin/python benchmarks/serve_llm_baseline.py [--new-tokens 32] [--repeats 3]
    .venv-vllm/bin/python benchmarks/serve_llm_baseline.py --quick     # 12 tokens, 1 repeat

One local Ray (4 logical CPUs on 2 cores: Serve LLM's ingress and its LLM server reserve one each, the edge one),
both apps on one loopback Serve proxy: Ray Serve LLM's OpenAI app at ``/llm`` (vLLM's own server, CPU accelerator,
one request per generation) and the edgesplit app at ``/`` with ``edge.engine: vllm`` at ``k = 0`` (the UE sends
token ids, one HTTP call per token through :class:`~edgesplit.client.SplitClient`). Same prompts, greedy,
``ignore_eos``, alternated request by request (order swapped every repeat). Prints the median tokens/s of each
(wall time of a whole generation, HTTP included), their ratio and whether the tokens are identical; writes
``timings.parquet`` and ``config.json`` under ``--out`` (default ``runs/bench/serve_llm_baseline``). Expect a few
minutes: deploying Serve LLM alone took ~90 s here.
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
]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="12 new tokens, 1 repeat")
    parser.add_argument("--out", default="runs/bench/serve_llm_baseline")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.repeats = 12, 1
    return args


def deploy(model_dir: str) -> str:
    """Both apps on a fresh loopback Serve; returns the base URL."""
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    from serve_deployments.app import EdgeAppArgs, compose
    from serve_deployments.loopback import start_serve

    port = start_serve()
    llm = LLMConfig(model_loading_config={"model_id": "smollm2", "model_source": model_dir},
                    accelerator_config={"kind": "cpu"}, deployment_config={"num_replicas": 1},
                    engine_kwargs={"enforce_eager": True, "dtype": "float32", "max_model_len": 512, "block_size": 32})
    serve.run(build_openai_app({"llm_configs": [llm]}), name="serve-llm", route_prefix="/llm")
    edge = EdgeAppArgs(edge={"model": "smollm2-135m", "engine": "vllm", "vllm": {"splits": [0]},
                             "limits": {"max_tokens_per_session": 512}}, api_token_env="EDGESPLIT_BENCH_NO_TOKEN")
    serve.run(compose(edge, {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1}}), name="edgesplit",
              route_prefix="/")
    return f"http://127.0.0.1:{port}"


def serve_llm_generate(client, url: str, ids: list[int], new_tokens: int) -> list[int]:
    body = {"model": "smollm2", "prompt": ids, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True,
            "return_token_ids": True}
    answer = client.post(f"{url}/llm/v1/completions", json=body, timeout=300)
    answer.raise_for_status()
    return answer.json()["choices"][0]["token_ids"]


def main() -> None:
    args = _parse()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import httpx
    import pandas as pd
    import ray

    from edgesplit.client import HttpTransport, SplitClient
    from edgesplit.models import builtin_dir, load_model

    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False,
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "RAY_DISABLE_USAGE_STATS": "1"}})
    loaded = load_model("smollm2-135m")
    start = time.perf_counter()
    url = deploy(str(builtin_dir("smollm2-135m")))
    deploy_s = time.perf_counter() - start
    rows = []
    with httpx.Client() as http, SplitClient(loaded, HttpTransport(url)) as split:
        runners = {"serve_llm": lambda ids: serve_llm_generate(http, url, ids, args.new_tokens),
                   "edgesplit_vllm_k0": lambda ids: split.generate(ids, args.new_tokens, k=0).tokens}
        for ids in (loaded.tokenizer(p).input_ids for p in PROMPTS):  # warm-up, untimed
            for run in runners.values():
                run(ids)
        for repeat in range(args.repeats):
            for index, text in enumerate(PROMPTS):
                ids = loaded.tokenizer(text).input_ids
                tokens = {}
                for name in (list(runners) if repeat % 2 == 0 else list(reversed(runners))):
                    begin = time.perf_counter()
                    tokens[name] = runners[name](ids)
                    seconds = time.perf_counter() - begin
                    rows.append({"repeat": repeat, "prompt": index, "path": name, "seconds": seconds,
                                 "tokens_per_s": len(tokens[name]) / seconds})
                for row in rows[-2:]:
                    row["identical"] = tokens["serve_llm"] == tokens["edgesplit_vllm_k0"]
    ray.shutdown()
    _write(pd.DataFrame(rows), args, deploy_s)


def _write(frame, args, deploy_s: float) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "timings.parquet", index=False)
    (out / "config.json").write_text(json.dumps({**vars(args), "prompts": PROMPTS, "deploy_s": deploy_s}, indent=2))
    med = {name: statistics.median(frame[frame.path == name].tokens_per_s) for name in set(frame.path)}
    print(f"fully on the server, {args.new_tokens} greedy tokens per request, loopback HTTP, median of "
          f"{len(frame) // 2} requests each (both apps deployed in {deploy_s:.0f} s)")
    print(f"  Ray Serve LLM (vLLM, one request per generation): {med['serve_llm']:6.1f} tok/s")
    print(f"  edgesplit, engine vllm, k = 0 (one call per token): {med['edgesplit_vllm_k0']:6.1f} tok/s")
    print(f"  ratio edgesplit / Serve LLM: {med['edgesplit_vllm_k0'] / med['serve_llm']:.2f}; "
          f"tokens identical: {'yes' if frame.identical.all() else 'NO'}")


if __name__ == "__main__":
    main()
