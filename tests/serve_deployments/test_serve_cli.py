"""`edgesplit serve` / `serve run` config and the `edgesplit client` command, for real (subprocesses on loopback)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from serve_deployments.command import DEFAULT_CONFIG
from serve_deployments.loopback import pick_port as free_port

BIN = Path(sys.executable).parent


def test_packaged_config_is_valid_and_loopback():
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"
    app = schema.applications[0]
    assert app.import_path == "serve_deployments.app:build_app"
    from serve_deployments.app import EdgeAppArgs

    EdgeAppArgs.model_validate(app.args)  # the YAML's args are what the builder accepts
    names = {d["name"] for d in raw["applications"][0]["deployments"]}
    assert names == {"EdgeTailDeployment", "SplitControllerDeployment"}


def test_bad_config_and_unreachable_edge_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: [{name: x, import_path: 3, args: {edge: {nonsense: 1}}}]\nhttp_options: {port: -1}")
    run = subprocess.run([BIN / "edgesplit", "serve", "--config", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "cannot use Serve config" in run.stderr
    run = subprocess.run([BIN / "edgesplit", "client", "hi", "--edge", f"http://127.0.0.1:{free_port()}", "-k", "15",
                          "--max-retries", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "edge_unavailable" in run.stderr, run.stderr[-500:]
    run = subprocess.run([BIN / "edgesplit", "client", "hi", "--edge", "ftp://x", "-k", "15"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "http://" in run.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_edgesplit_serve_starts_answers_and_stops_on_ctrl_c():
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="esr", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_DISABLE_USAGE_STATS": "1"}
    env.pop("RAY_ADDRESS", None)
    server = subprocess.Popen([BIN / "edgesplit", "serve", "--port", str(port), "--num-cpus", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 240
        while "serving at" not in line and time.monotonic() < deadline and server.poll() is None:
            line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, server.stdout.read()[-2000:] if server.poll() is not None else line
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        client = subprocess.run([BIN / "edgesplit", "client", "The capital of France is", "--edge",
                                 f"http://127.0.0.1:{port}", "--max-new-tokens", "4", "--snr-db", "12"],
                                capture_output=True, text=True, timeout=300)
        assert client.returncode == 0, client.stderr[-800:]
        assert "k=15" in client.stderr and "edge round trip" in client.stderr
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=240) == 0  # Serve's shutdown is slow on 2 loaded cores
    finally:
        if server.poll() is None:
            server.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
