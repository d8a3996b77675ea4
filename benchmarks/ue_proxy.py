"""The UE's OpenAI-compatible proxy vs the split client it wraps: time to first token and tokens/s, one run.

Run:  .venv/bin/python benchmarks/ue_proxy.py [--k 15 | --controller] [--prompts 4] [--repeats 3]
                                              [--prompt-tokens 64] [--max-new-tokens 32] [--snr-db 25]
                                              [--seed 0] [--out runs/ue_proxy] [--quick]

Starts a local Ray + the edgesplit Serve app on loopback (one edge replica, one torch thread), and in this process
the proxy (``build_proxy_app`` on uvicorn, a loopback port) with the same model. Two paths generate the same
WikiText-2 prompts (built-in sentences when ``../shared/data`` is absent; given to both as token ids), greedy, the
same split, after one warm-up generation each; every (repeat, prompt) pair runs both paths back to back, the order
alternating:

- ``direct``: :class:`~edgesplit.client.SplitClient` ``stream`` (the UE client itself, no proxy);
- ``proxy``: the official ``openai`` client streaming ``/v1/completions`` from the proxy (which runs an
  :class:`~edgesplit.client.AsyncSplitClient`): JSON bodies, server-sent events, detokenisation, the client's own
  parsing.

Time to first token (TTFT) is from the call to the first token (direct) / the first chunk with text (proxy);
tokens/s is generated tokens ÷ the whole call. Both paths stop at EOS; each pair's texts must be equal. Prints the
medians per path and the ratios proxy ÷ direct (TTFT: > 1 is slower; tokens/s: < 1 is slower), over all pairs and
per pair (median, worst), and writes ``generations.parquet`` + ``config.json`` under ``--out``. The machine is shared:
compare the paths of one run, not absolute numbers across runs. ``--quick``: 2 prompts x 2 repeats x 12 tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import serve_common as sc
import torch

NAME = "ue_proxy"
PATHS = ("direct", "proxy")


def direct_run(client, model, prompt: list[int], new: int, k: int | None, stop_ids) -> dict:
    """One generation through the split client: TTFT, wall, tokens, text."""
    start, ttft, tokens = time.perf_counter(), None, []
    for event in client.stream(prompt, new, k=k, temperature=0.0, stop_ids=stop_ids):
        ttft = ttft if ttft is not None else time.perf_counter() - start
        tokens.append(event.token)
    wall = time.perf_counter() - start
    text = model.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return {"ttft_s": ttft, "wall_s": wall, "new_tokens": len(tokens), "text": text}


def proxy_run(client, model_id: str, prompt: list[int], new: int) -> dict:
    """One streamed completion through the proxy with the openai client: TTFT, wall, tokens (usage), text."""
    start, ttft, pieces, usage = time.perf_counter(), None, [], None
    stream = client.completions.create(model=model_id, prompt=prompt, max_tokens=new, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].text:
            ttft = ttft if ttft is not None else time.perf_counter() - start
            pieces.append(chunk.choices[0].text)
    wall = time.perf_counter() - start
    return {"ttft_s": ttft, "wall_s": wall, "new_tokens": usage.completion_tokens, "text": "".join(pieces)}


def run_pairs(model, prompts, args, edge_url: str) -> list[dict]:
    """Warm-up, then every (repeat, prompt) through both paths, the order alternating."""
    import openai

    from edgesplit.client import SplitClient
    from edgesplit.client.openai_proxy import ProxyConfig, build_proxy_app
    from edgesplit.client.proxy_server import ProxyServer
    from serve_deployments.loopback import pick_port

    k = None if args.controller else args.k
    app = build_proxy_app(model, ProxyConfig(edge_url=edge_url, split=k, snr_db=args.snr_db, edge_retries=0))
    stop_ids = app.state.proxy.stop_ids
    rows = []
    with ProxyServer(app, port=pick_port()) as url, SplitClient(model, edge_url) as direct:
        direct.ue_state.update({"snr_db_history": [args.snr_db]})
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=120)
        runners = {"direct": lambda p: direct_run(direct, model, p, args.max_new_tokens, k, stop_ids),
                   "proxy": lambda p: proxy_run(client, model.name, p, args.max_new_tokens)}
        for path in PATHS:
            runners[path](prompts[0])
        with sc.progress() as bar:
            task = bar.add_task("generations", total=len(PATHS) * args.repeats * len(prompts))
            for repeat in range(args.repeats):
                for p, prompt in enumerate(prompts):
                    turn = repeat * len(prompts) + p
                    for path in PATHS[turn % 2:] + PATHS[:turn % 2]:
                        rows.append({"path": path, "repeat": repeat, "prompt": p, "first": path == PATHS[turn % 2],
                                     **runners[path](prompt)})
                        bar.advance(task)
        client.close()
    return rows


def report(args, config: dict, rows: list[dict]) -> int:
    """Print medians and ratios, write the table and config; exit status 1 if a pair's texts differ."""
    import pandas as pd

    gens = pd.DataFrame(rows)
    gens["tokens_per_s"] = gens.new_tokens / gens.wall_s
    pairs = gens.pivot_table(index=["repeat", "prompt"], columns="path",
                             values=["ttft_s", "tokens_per_s", "new_tokens"], aggfunc="first")
    texts = gens.pivot_table(index=["repeat", "prompt"], columns="path", values="text", aggfunc="first")
    identical = bool((texts.direct == texts.proxy).all())
    ttft_ratio = pairs.ttft_s.proxy / pairs.ttft_s.direct
    tps_ratio = pairs.tokens_per_s.proxy / pairs.tokens_per_s.direct
    tps = {path: float(g.new_tokens.sum() / g.wall_s.sum()) for path, g in gens.groupby("path")}
    ttft = {path: float(g.ttft_s.median()) for path, g in gens.groupby("path")}
    summary = {"tokens_per_s": tps, "ttft_median_s": ttft, "tokens_per_s_ratio": tps["proxy"] / tps["direct"],
               "ttft_ratio_of_medians": ttft["proxy"] / ttft["direct"],
               "ttft_ratio_per_pair_median": float(ttft_ratio.median()),
               "ttft_ratio_per_pair_worst": float(ttft_ratio.max()),
               "tokens_per_s_ratio_per_pair_median": float(tps_ratio.median()),
               "tokens_per_s_ratio_per_pair_worst": float(tps_ratio.min()), "texts_identical": identical,
               "tokens_equal_counts": bool((pairs.new_tokens.direct == pairs.new_tokens.proxy).all())}
    split = "controller-chosen k" if args.controller else f"k={args.k}"
    print(f"\nmodel {args.model}, {split}, {args.prompts} prompts x {args.repeats} repeats, "
          f"{args.prompt_tokens} prompt tokens from {config['prompt_source']}, up to {args.max_new_tokens} new "
          f"tokens, greedy, batch 1")
    print(f"  {'path':7s} {'TTFT median ms':>15s} {'tokens/s':>9s}")
    for path in PATHS:
        print(f"  {path:7s} {1e3 * ttft[path]:15.1f} {tps[path]:9.2f}")
    print(f"  proxy / direct: TTFT {summary['ttft_ratio_of_medians']:.3f} (per pair median "
          f"{summary['ttft_ratio_per_pair_median']:.3f}, worst {summary['ttft_ratio_per_pair_worst']:.3f}); "
          f"tokens/s {summary['tokens_per_s_ratio']:.3f} (per pair median "
          f"{summary['tokens_per_s_ratio_per_pair_median']:.3f}, worst "
          f"{summary['tokens_per_s_ratio_per_pair_worst']:.3f})")
    print(f"  texts identical on both paths: {identical}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gens.to_parquet(out / "generations.parquet", index=False)
    (out / "config.json").write_text(json.dumps({**config, **summary}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}/generations.parquet, {out}/config.json")
    return 0 if identical else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=15, help="fixed split (layers on the UE)")
    parser.add_argument("--controller", action="store_true", help="let the controller choose k (ignores --k)")
    parser.add_argument("--snr-db", type=float, default=25.0, help="SNR the UE reports to the controller")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="picks the prompts")
    parser.add_argument("--out", default="runs/ue_proxy", help="where the table and config go")
    parser.add_argument("--quick", action="store_true", help="2 prompts x 2 repeats x 12 new tokens")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.repeats, args.max_new_tokens = 2, 2, 12
    if min(args.prompts, args.repeats, args.prompt_tokens, args.max_new_tokens) < 1:
        parser.error("--prompts, --repeats, --prompt-tokens and --max-new-tokens must be >= 1")
    return args


def main() -> int:
    args = parse_args()
    from edgesplit.outdir import check_writable_dir

    try:
        check_writable_dir(args.out, "--out")
    except ValueError as err:
        sys.exit(f"error: {err}")
    torch.set_num_threads(1)
    from edgesplit.models import load_model

    model = load_model(args.model)
    if not args.controller and not 0 <= args.k <= model.num_layers:
        sys.exit(f"--k must be in 0..{model.num_layers}")
    prompts, source = sc.text_prompts(model.tokenizer, [args.prompt_tokens] * args.prompts, args.seed)
    config = {**vars(args), "prompt_source": source, "num_layers": model.num_layers, "warmup": "1 per path",
              "torch_threads": "1 in this process (UE head, both paths) + 1 in the edge replica",
              "transport": "loopback HTTP", "client": "openai streaming completions (proxy), SplitClient.stream"}
    sc.print_config(NAME, config)
    url = sc.start_serve()
    try:
        from serve_deployments.app import build_app

        print(f"app deployed in {sc.deploy(build_app(sc.edge_app_args())):.1f} s at {url}")
        rows = run_pairs(model, prompts, args, url)
    finally:
        sc.stop_serve()
    return report(args, config, rows)


if __name__ == "__main__":
    sys.exit(main())
