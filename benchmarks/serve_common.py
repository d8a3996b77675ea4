"""Shared start-up and bookkeeping for the ``serve_*`` benchmarks (not a runnable itself).

- :func:`start_serve` starts a small local Ray (2 CPUs, no dashboard, 256 MiB object store) and Serve's HTTP proxy
  on a free loopback port; :func:`deploy` runs an app and waits until it answers; :func:`stop_serve` tears down.
- :func:`text_prompts` cuts real text prompts from WikiText-2 (``../shared/data``) or, when that file is absent,
  from a few built-in sentences (the run's config says which).
- :func:`record` runs a prompt's greedy trajectory once through :class:`~edgesplit.split.DeviceHead` and
  :class:`~edgesplit.split.EdgeTail` at split ``k`` and keeps the UE's hidden states, so clients can replay exact
  packets later without running the head (:func:`frames`).
- :func:`write_results` writes parquet tables and a JSON config under ``runs/bench/<name>/``.

The Ray environment variables are set when this module is imported, before any benchmark imports ray.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import torch

from edgesplit.packet import ActivationPacket

ROOT = Path(__file__).resolve().parents[1]
WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
"""The WikiText-2 raw test split (see ``../shared/data/README.md``); optional."""
FALLBACK_TEXT = (
    "The edge server runs the upper layers of the language model while the phone runs the lower ones. "
    "Wireless links fade, so the best place to split the network changes from one second to the next. "
    "A small controller watches the signal quality and the battery and moves the split point when it helps. "
    "Researchers measure the quality of the answers with perplexity and the cost with latency and energy. "
    "When the channel is good the device sends compact hidden states; when it is poor it keeps more layers. "
)
"""Prompt text used when WikiText-2 is not on this machine."""


# ---- prompts and recorded packets -----------------------------------------------------------------------------------
def _paragraphs() -> tuple[list[str], str]:
    if WIKITEXT.is_file():
        text = WIKITEXT.read_text(encoding="utf-8").replace("\r\n", "\n")
        paras = [line.strip() for line in text.split("\n") if len(line) > 400 and not line.lstrip().startswith("=")]
        return paras, f"wikitext-2-raw test ({WIKITEXT})"
    print(f"note: {WIKITEXT} not found; prompts come from built-in sentences", file=sys.stderr)
    return [FALLBACK_TEXT * 8], "built-in sentences (WikiText-2 not found)"


def text_prompts(tokenizer, lengths: list[int], seed: int) -> tuple[list[list[int]], str]:
    """One prompt of each length (token ids), each from a different seeded paragraph; and the source's name."""
    paras, source = _paragraphs()
    rng = np.random.default_rng([seed, 11])
    order = rng.permutation(len(paras))
    prompts, cursor = [], 0
    for length in lengths:
        while True:
            ids = tokenizer(paras[order[cursor % len(order)]], add_special_tokens=False).input_ids
            cursor += 1
            if len(ids) >= length or len(paras) == 1:
                break
        ids = (ids * (length // max(1, len(ids)) + 1))[:length]
        prompts.append(list(ids))
    return prompts, source


@dataclass
class Recorded:
    """One prompt's greedy trajectory at split ``k``, as the UE would have sent it."""

    prompt: list[int]
    """Prompt token ids."""
    tokens: list[int]
    """Greedy tokens (the first comes from the prefill)."""
    prefill: torch.Tensor
    """Hidden state after layer ``k`` of the prompt, ``[1, len(prompt), hidden]``."""
    steps: list[torch.Tensor]
    """Hidden state of ``tokens[i]`` after layer ``k`` (``[1, 1, hidden]``), for ``i < len(tokens) - 1``."""


@torch.inference_mode()
def record(loaded, prompt: list[int], k: int, new_tokens: int) -> Recorded:
    """Run the head and the tail in this process and keep what the UE would send."""
    from edgesplit.split import DeviceHead, EdgeTail

    head, tail = DeviceHead(loaded, k), EdgeTail(loaded, k)
    hs, ts = head.new_session(), tail.new_session()
    prefill = head(torch.tensor([prompt]), session=hs)
    tokens = [int(tail(prefill, session=ts, last_only=True)[0, -1].argmax())]
    steps = []
    while len(tokens) < new_tokens:
        hidden = head(torch.tensor([[tokens[-1]]]), session=hs)
        steps.append(hidden)
        tokens.append(int(tail(hidden, session=ts, last_only=True)[0, -1].argmax()))
    return Recorded(list(prompt), tokens, prefill, steps)


def frames(rec: Recorded, session_id: str, k: int, encoding: str = "float32") -> tuple[bytes, list[bytes]]:
    """The prefill frame and the decode frames of a recorded trajectory, addressed to ``session_id``."""
    def frame(x: torch.Tensor, position: int) -> bytes:
        return ActivationPacket.from_tensor(x, session_id=session_id, split_k=k, position_start=position,
                                            encoding=encoding).encode()

    n = len(rec.prompt)
    return frame(rec.prefill, 0), [frame(x, n + i) for i, x in enumerate(rec.steps)]


# ---- Ray / Serve ----------------------------------------------------------------------------------------------------
def start_serve(num_cpus: int = 2) -> str:
    """Start a local Ray and Serve's proxy on loopback; returns the base URL."""
    import ray

    from serve_deployments.loopback import start_serve as start_proxy

    ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)
    port = start_proxy()  # a free loopback port, retried if another socket takes it first
    return f"http://127.0.0.1:{port}"


def deploy(app, name: str = "edgesplit", route_prefix: str = "/") -> float:
    """``serve.run`` the app (blocks until it is RUNNING); returns the seconds it took."""
    from ray import serve

    start = time.perf_counter()
    serve.run(app, name=name, route_prefix=route_prefix)
    return time.perf_counter() - start


def undeploy(name: str = "edgesplit") -> None:
    """Delete one app and wait until it is gone."""
    from ray import serve

    serve.delete(name, _blocking=True)


def stop_serve() -> None:
    """Shut Serve and Ray down (quietly, whatever state they are in)."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def edge_app_args(**edge):
    """``EdgeAppArgs`` with one torch thread on the edge replica and the given ``EdgeArgs`` fields."""
    from serve_deployments.app import EdgeAppArgs
    from serve_deployments.edge_deployment import EdgeArgs

    return EdgeAppArgs(edge=EdgeArgs(**{"torch_threads": 1, **edge}))


# ---- results --------------------------------------------------------------------------------------------------------
def out_dir(name: str) -> Path:
    """``runs/bench/<name>/`` under the project root (created)."""
    path = ROOT / "runs" / "bench" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(name: str, config: dict, **tables) -> Path:
    """Write each table (a pandas DataFrame or a list of dicts) as ``<table>.parquet`` and ``config.json``."""
    import pandas as pd

    path = out_dir(name)
    for table, rows in tables.items():
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        frame.to_parquet(path / f"{table}.parquet", index=False)
    (path / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    return path


def print_config(title: str, config: dict) -> None:
    """The run's configuration, one ``key = value`` per line."""
    print(f"== {title}")
    for key, value in config.items():
        print(f"   {key} = {value}")


def quantiles_ms(values) -> dict[str, float]:
    """p50 / p99 / mean of seconds, in ms (NaN for no values)."""
    arr = np.asarray(list(values), dtype=float) * 1e3
    if arr.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean())}


def progress():
    """A rich progress bar (description, bar, count, elapsed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)
