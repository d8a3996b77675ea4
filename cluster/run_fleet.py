"""Run a fleet of UEs and edge workers doing real split generation on Ray, and log every request.

Run::

    python -m cluster.run_fleet --ues 8 --edges 2 --requests 32 --policy fixed:15 --out runs/fleet
    python -m cluster.run_fleet --smoke-test --out runs/fleet-smoke          # 2 UEs x 1 edge, 4 short requests
    python -m cluster.run_fleet --edge serve --edges 2 --out runs/fleet-serve  # through the Serve app's handles
    python -m cluster.run_fleet --edges 2 --edge-gpus 1 --torch-device cuda --dtype bfloat16   # GPU edges
    ray job submit --working-dir . -- python -m cluster.run_fleet --out runs/fleet   # on a cluster

Starts a local Ray instance, or joins the cluster named by ``RAY_ADDRESS``. Prompts are equal-length token
windows cut from the default corpus at seeded offsets. ``--edge actors`` (the default) serves the tails with the
fleet's own edge actors; ``--edge serve`` sends every UE's requests through the ``edgesplit`` Serve app
(``serve_deployments``) with a SplitClient over deployment handles — the app is deployed with ``--edges`` edge
replicas when none is running, and removed at the end (the UEs still pick ``k`` and impair the activations
themselves; see ``cluster/serve_edge.py`` for what the rows record there). Writes, under ``--out``:

- ``requests.parquet``: one row per request (UE, edge, k, retries, status, channel state, prompt/new tokens and
  the generated ids, bytes sent, measured head/encode/edge/call-overhead times, simulated link/compute times,
  UE energy, and text-quality signals against the clean unsplit model);
- ``summary.csv``: per split point and overall (also printed);
- ``config.json``: the configuration, seed, prompt source, versions and run totals.

Devices: the UEs run on CPU in float32; ``--torch-device``, ``--dtype`` and ``--edge-gpus`` (Ray GPUs reserved per
edge actor or replica) place the edges' tails (``auto``: cuda exactly when an edge reserved a GPU, bfloat16 there).
``--devices`` is something else: the UEs' hardware profiles for the simulated compute time.

Channel options take ``kind:name=value,...``: ``--channel gauss_markov:distance_sigma_m=20,fading_rho=0.8``,
``--impairment awgn`` or ``--impairment digital:bits=4,modulation=16qam``. Bad input exits with status 2 before
anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from cluster.fleet import FleetConfig, parse_kind_params

SMOKE = {"ues": 2, "edges": 1, "requests": 4, "max_new_tokens": 4, "prompt_tokens": 16}
"""What ``--smoke-test`` runs."""


class BadInput(ValueError):
    """Input the run cannot start with (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cluster.run_fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="built-in name, local directory or hub id")
    p.add_argument("--ues", type=int, default=8)
    p.add_argument("--edges", type=int, default=2, help="edge actors, or edge replicas with --edge serve")
    p.add_argument("--edge", choices=("actors", "serve"), default="actors",
                   help="where the tails run: the fleet's edge actors, or the Serve app through handles")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--ue-actors", type=int, default=1, help="actor processes holding the UEs (default 1)")
    p.add_argument("--policy", default="fixed:15", help="fixed:K | snr:T1=K1,T2=K2,... | import:module:Name")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--channel", default="gauss_markov", help="process kind[:name=value,...]")
    p.add_argument("--distances-m", default=None, help="LOW:HIGH spread of the UEs' mean distance")
    p.add_argument("--impairment", default="none", help="none | awgn | dropout:p=.. | digital:bits=..,...")
    p.add_argument("--encoding", default="float32", help="float32 | float16 | bfloat16 | int8 | int4")
    p.add_argument("--devices", default="phone-soc", help="comma-separated device profiles, cycled over UEs")
    p.add_argument("--link", default="5g-nr-20mhz")
    p.add_argument("--edge-profile", default="a100")
    p.add_argument("--corpus", default="default", help="where prompts are cut from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--enforce-link-latency", action="store_true", help="sleep the simulated link time")
    p.add_argument("--no-edge-batching", action="store_true", help="one tail forward per session and step")
    p.add_argument("--max-restarts", type=int, default=2, help="Ray restarts per edge actor")
    p.add_argument("--max-request-retries", type=int, default=3)
    p.add_argument("--edge-fault-after", type=int, default=None, help="crash edge 0 on call N+1 (fault demo)")
    p.add_argument("--torch-device", default="auto", help="edges' torch device: auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="edges' weight dtype: auto | float32 | bfloat16 | float16")
    p.add_argument("--allow-cpu-half", action="store_true", help="accept float16/bfloat16 on CPU edges")
    p.add_argument("--edge-gpus", type=float, default=0.0, help="Ray GPUs reserved per edge (0: CPU edges)")
    p.add_argument("--out", type=Path, default=Path("runs/fleet"))
    p.add_argument("--smoke-test", action="store_true", help=f"tiny run: {SMOKE}")
    return p


def _distances(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        return float(low), float(high if sep else low)
    except ValueError:
        raise BadInput(f"--distances-m must look like LOW:HIGH in metres, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    """The validated :class:`FleetConfig` (``BadInput`` says what was wrong)."""
    sizes = {name: getattr(args, name) for name in SMOKE}
    if args.smoke_test:
        sizes = dict(SMOKE)
    try:
        channel, channel_params = parse_kind_params(args.channel)
        impairment, impairment_params = parse_kind_params(args.impairment)
        ue_actors = min(args.ue_actors, sizes["ues"]) if args.smoke_test else args.ue_actors
        return FleetConfig(**sizes, ue_actors=ue_actors, policy=args.policy, channel=channel,
                           channel_params=channel_params, distance_range_m=_distances(args.distances_m),
                           impairment=impairment, impairment_params=impairment_params, encoding=args.encoding,
                           devices=tuple(d.strip() for d in args.devices.split(",") if d.strip()), link=args.link,
                           edge_profile=args.edge_profile, seed=args.seed,
                           enforce_link_latency=args.enforce_link_latency, batch_edge=not args.no_edge_batching,
                           max_restarts=args.max_restarts, max_request_retries=args.max_request_retries,
                           edge_fault_after_calls=args.edge_fault_after, edge_backend=args.edge,
                           edge_device=args.torch_device, edge_dtype=args.dtype, edge_num_gpus=args.edge_gpus,
                           allow_cpu_half=args.allow_cpu_half)
    except (ValueError, TypeError) as err:
        raise BadInput(str(err)) from None


def check_output(out: Path) -> None:
    """``BadInput`` unless ``out`` is (or can become) a writable directory."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"--out {out} is not writable ({parent} does not accept new files)")


def _load(config: FleetConfig, model: str, corpus: str):
    from cluster.prompts import make_prompts
    from edgesplit.models import load_model

    try:
        loaded = load_model(model)
    except (ValueError, FileNotFoundError, OSError) as err:
        raise BadInput(f"cannot load model {model!r}: {err}") from None
    try:
        config.check_model(loaded.num_layers)
        prompts, source = make_prompts(loaded, config.requests, config.prompt_tokens, config.seed, corpus)
    except ValueError as err:
        raise BadInput(str(err)) from None
    return loaded, prompts, source


def start_ray(model_bytes: int) -> bool:
    """Join ``RAY_ADDRESS`` or start a local instance; True when this call started one (and must stop it)."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", log_to_driver=False)
        return False
    store = max(256 * 1024**2, 2 * model_bytes + 128 * 1024**2)
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, object_store_memory=store, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_DISABLE_USAGE_STATS": "1"}})
    return True


def _check_resources(config: FleetConfig) -> None:
    import ray

    need = config.ue_actors * config.ue_num_cpus + config.edges * config.edge_num_cpus
    have = ray.cluster_resources().get("CPU", 0.0)
    if need > have:
        raise BadInput(f"the fleet needs {need:g} Ray CPUs ({config.ue_actors} UE actors x {config.ue_num_cpus:g} "
                       f"+ {config.edges} edges x {config.edge_num_cpus:g}) but the cluster has {have:g}")
    gpus, have_gpus = config.edges * config.edge_num_gpus, ray.cluster_resources().get("GPU", 0.0)
    if gpus > have_gpus:
        raise BadInput(f"the fleet needs {gpus:g} Ray GPUs ({config.edges} edges x {config.edge_num_gpus:g}, "
                       f"--edge-gpus) but the cluster has {have_gpus:g}")


def run(config: FleetConfig, loaded, prompts: list[tuple[int, ...]]) -> tuple[list[dict[str, Any]], float]:
    """Build the fleet, serve every prompt with a progress bar, tear it down; (rows, wall seconds)."""
    from tqdm import tqdm

    from cluster.fleet import RayFleet

    _check_resources(config)
    try:
        fleet = RayFleet(config, loaded)
    except ValueError as err:  # e.g. a running Serve app that serves another model
        raise BadInput(str(err)) from None
    try:
        with tqdm(total=config.requests, desc="requests", unit="req", file=sys.stderr) as bar:
            start = time.perf_counter()
            rows = fleet.run(prompts, on_progress=lambda done, total, _: bar.update(done - bar.n))
            return rows, time.perf_counter() - start
    finally:
        fleet.shutdown()


def _versions() -> dict[str, str]:
    import numpy
    import ray
    import torch
    import transformers

    import edgesplit

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__,
            "edgesplit": getattr(edgesplit, "__version__", "unknown")}


def write_outputs(out: Path, config: FleetConfig, rows: list[dict], meta: dict[str, Any]):
    """Write requests.parquet, summary.csv and config.json; return the summary frame."""
    import dataclasses

    import pandas as pd

    from cluster.summary import summarize

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_parquet(out / "requests.parquet", index=False)
    summary = summarize(frame)
    summary.to_csv(out / "summary.csv", index=False)
    record = {"config": dataclasses.asdict(config), "seed": config.seed, **meta, "versions": _versions()}
    (out / "config.json").write_text(json.dumps(record, indent=2, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse already printed what was wrong (status 2) or the help (0)
        return int(exit_.code or 0)
    try:
        config = config_from_args(args)
        check_output(args.out)
        loaded, prompts, source = _load(config, args.model, args.corpus)
        started_ray = start_ray(sum(p.numel() * p.element_size() for p in loaded.model.parameters()))
        try:
            rows, wall_s = run(config, loaded, prompts)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from cluster.quality_signal import score_rows
    from cluster.summary import print_summary

    score_rows(loaded, rows, dict(enumerate(prompts)), config.max_new_tokens)
    if loaded.tokenizer is not None:
        for row in rows:
            row["text"] = loaded.tokenizer.decode(row["tokens"])
    tokens = sum(row["new_tokens"] for row in rows if row["status"] == "ok")
    meta = {"model": args.model, "num_layers": loaded.num_layers, "prompt_source": source, "corpus": args.corpus,
            "run": {"wall_s": wall_s, "requests_ok": sum(r["status"] == "ok" for r in rows),
                    "requests_failed": sum(r["status"] != "ok" for r in rows),
                    "retries": sum(r["retries"] for r in rows), "tokens_per_s": tokens / wall_s}}
    summary = write_outputs(args.out, config, rows, meta)
    edges = f"{config.edges} edge replicas (Serve)" if config.edge_backend == "serve" else f"{config.edges} edges"
    print_summary(summary, f"fleet: {config.ues} UEs x {edges}, {args.model}, policy {config.policy}")
    print(f"{len(rows)} requests in {wall_s:.1f} s ({tokens / wall_s:.1f} tokens/s fleet-wide, "
          f"{meta['run']['retries']} retries); wrote {args.out}/requests.parquet, summary.csv, config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
