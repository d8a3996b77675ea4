"""Write the ``serveConfigV2`` of deploy/kuberay-rayservice.yaml from serve_deployments/config.yaml.

    .venv/bin/python deploy/render_rayservice.py           # rewrites that block in place, prints what it did
    .venv/bin/python deploy/render_rayservice.py --check   # exit 1 if the manifest no longer matches config.yaml

The application (name, route prefix, import path, args, deployments) is copied as it is, so ``serve run
serve_deployments/config.yaml`` on one machine and the RayService on Kubernetes serve the same app. Only what a
Kubernetes cluster needs differently is changed, in ``CLUSTER_OVERRIDES``. tests/deploy checks the manifest is current.
"""

from __future__ import annotations

import argparse
import copy
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = ROOT / "serve_deployments" / "config.yaml"
MANIFEST = ROOT / "deploy" / "kuberay-rayservice.yaml"
BLOCK_KEY = "  serveConfigV2: |"
"""The line that opens the generated block (a literal scalar under ``spec``, its text indented by four spaces)."""

CLUSTER_OVERRIDES: dict[str, Any] = {
    # KubeRay's readiness probe on RayService worker pods asks the Serve proxy of that pod (:8000/-/healthz), so every
    # node runs one; the consistent-hash router gives a session the same replica from any proxy.
    "proxy_location": "EveryNode",
    # The Kubernetes Service and the probes reach the proxies at the pod's IP; config.yaml's 127.0.0.1 is for one
    # machine. Access control is the bearer token (EDGESPLIT_API_TOKEN from a Secret) and the ClusterIP Service.
    "http_options": {"host": "0.0.0.0"},
}
"""Top-level Serve options that differ on a cluster (merged one level deep into config.yaml's)."""

HEADER = "# Generated from serve_deployments/config.yaml by deploy/render_rayservice.py: edit those, not this block.\n"


def cluster_serve_config(serve_config: dict[str, Any]) -> dict[str, Any]:
    """``serve_config`` (config.yaml, parsed) with ``CLUSTER_OVERRIDES`` applied; applications untouched."""
    out = copy.deepcopy(serve_config)
    for key, value in CLUSTER_OVERRIDES.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def render(manifest_text: str, serve_config: dict[str, Any]) -> str:
    """``manifest_text`` with its serveConfigV2 block replaced by ``cluster_serve_config(serve_config)``."""
    lines = manifest_text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == BLOCK_KEY]
    if len(starts) != 1:
        raise ValueError(f"expected one line {BLOCK_KEY!r} in the manifest, found {len(starts)}")
    start = starts[0] + 1
    end = next((i for i in range(start, len(lines)) if lines[i].strip() and _indent(lines[i]) <= 2), len(lines))
    body = yaml.safe_dump(cluster_serve_config(serve_config), sort_keys=False, default_flow_style=False, width=120)
    return "".join(lines[:start]) + textwrap.indent(HEADER + body, "    ") + "".join(lines[end:])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the manifest is stale")
    args = parser.parse_args(argv)
    current = MANIFEST.read_text()
    wanted = render(current, yaml.safe_load(SERVE_CONFIG.read_text()))
    if args.check:
        stale = wanted != current
        print(f"{MANIFEST.relative_to(ROOT)} is {'stale: run deploy/render_rayservice.py' if stale else 'current'}")
        return int(stale)
    if wanted != current:
        MANIFEST.write_text(wanted)
    print(f"{MANIFEST.relative_to(ROOT)}: serveConfigV2 {'rewritten' if wanted != current else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
