"""The Serve app from config_vllm.yaml (``engine: vllm``) on loopback: HTTP generation at k = 0 and k = 15 equals
the unsplit model.

Runs in .venv-vllm (``make test``); skipped where vllm is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import torch
import yaml

from edgesplit.client import HttpTransport, SplitClient
from edgesplit.split import DeviceHead, EdgeTail, split_generate
from serve_deployments.edge_engine import vllm_available
from serve_deployments.loopback import start_serve

pytestmark = [pytest.mark.vllm, pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(not vllm_available(), reason="vllm is not installed here (make setup-vllm)")]

CONFIG = Path(__file__).resolve().parents[2] / "serve_deployments" / "config_vllm.yaml"
TOKEN = "vllm-test-token-0123456789"
PROMPT = "The tallest mountain in the world is"


@pytest.fixture(scope="module")
def vllm_url(ray_session):
    from ray import serve

    from serve_deployments.app import EdgeAppArgs, compose

    port = start_serve()
    os.environ["EDGESPLIT_VLLM_TEST_TOKENS"] = TOKEN
    args = yaml.safe_load(CONFIG.read_text())["applications"][0]["args"]  # the shipped vLLM config, smaller limits
    args["edge"]["limits"].update(max_tokens_per_session=256, max_batch_size=4)
    args = EdgeAppArgs.model_validate({**args, "api_token_env": "EDGESPLIT_VLLM_TEST_TOKENS"})
    assert args.edge.engine == "vllm" and args.edge.vllm.splits == [0, 15]
    serve.run(compose(args, {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1}}), name="edgesplit-vllm",
              route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.mark.parametrize("k", [0, 15])
def test_http_generation_on_vllm_equals_unsplit(vllm_url, real_model, k):
    ids = real_model.tokenizer(PROMPT).input_ids
    with SplitClient(real_model, HttpTransport(vllm_url, TOKEN)) as client:
        result = client.generate(ids, 10, k=k)
    reference = split_generate(DeviceHead(real_model, k), EdgeTail(real_model, k), torch.tensor([ids]),
                               max_new_tokens=10)
    assert result.tokens == reference[0].tolist()
    assert result.resumes == 0 and all(e.k == k for e in result.events)
    ready = httpx.get(f"{vllm_url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["model"] == "smollm2-135m"
