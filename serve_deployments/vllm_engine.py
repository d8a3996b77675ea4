"""The edge's layer stack on vLLM: the same sessions, limits and packet checks as TailEngine, vLLM doing the compute.

:class:`VllmEdgeEngine` subclasses :class:`~serve_deployments.tail_engine.TailEngine` and replaces only what runs
the model; admission, the session table, packet validation, TTL and errors are TailEngine's. One vLLM
``LLMEngine`` per split ``k`` it serves (each with its own weights and paged KV cache), run in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) on the replica's model thread:

- ``k = 0`` (token ids) is native vLLM: a greedy session is one long-running request, generated with continuous
  batching alongside every other running session; tokens computed ahead of the UE wait in the session, and a
  request that gets ``run_ahead_tokens`` ahead is paused (aborted; its KV blocks stay in the prefix cache and a
  resumed request re-runs at most one block). The token the UE sends back must be the one it was answered; another
  one (the UE overrode it) drops what was computed ahead and resumes from the UE's history.
- ``0 < k < L`` runs the tail model of :mod:`serve_deployments.vllm_tail_model` over ``prompt_embeds``. vLLM embeds a
  generated token with its own table, which a tail must not do (the next input is the UE's hidden state), so every
  step is a one-token request carrying the session's whole history of hidden states; prefix caching (hashed on the
  embeddings) serves all full blocks from the cache, so a step computes the new token and at most
  ``block_size - 1`` re-run ones. The steps of concurrent sessions go into one engine step (continuous batching).
- Sampled sessions (``temperature > 0``) run one request per step at every ``k``, seeded from ``(seed, position)`` as
  TailEngine's sampler is: reproducible and unchanged by a re-prefill elsewhere, though vLLM's draws are not
  TailEngine's. Greedy tokens equal TailEngine's (tested on the built-in model at ``k = 0`` and ``k = 15``).
  Log-probabilities are vLLM's raw ones (before temperature), as TailEngine reports.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import AutoConfig

from edgesplit.models.device import DTYPES
from edgesplit.models.loader import _resolve_source
from serve_deployments.edge_engine import VllmArgs
from serve_deployments.edge_errors import EdgeError, EdgeRejected
from serve_deployments.tail_engine import DecodeWork, EdgeLimits, TailEngine, _Session


@dataclass
class VllmState:
    """One session's state on the vLLM engine: what the UE sent, and tokens computed but not yet answered."""

    k: int
    history: torch.Tensor
    """Token ids ``[capacity]`` (``k = 0``) or hidden states ``[capacity, hidden]``; the first ``length`` are real."""
    length: int = 0
    request: str | None = None
    """The live vLLM request of this session, if any."""
    ahead: deque = field(default_factory=deque)
    """``(token, logprobs)`` computed for the next positions, not yet answered."""
    answered: int | None = None
    """The last token answered (at ``k = 0`` the UE sends it back as its next input)."""

    @property
    def seen_tokens(self) -> int:
        """Positions the UE has sent (prompt + decode inputs)."""
        return self.length

    def append(self, payload: torch.Tensor) -> None:
        """Add the packet's tokens ``[1, n]`` or hidden states ``[1, n, hidden]`` to the history."""
        rows = payload[0]
        if self.length + len(rows) > len(self.history):
            grown = self.history.new_empty((max(2 * len(self.history), self.length + len(rows)),
                                            *self.history.shape[1:]))
            grown[:self.length] = self.history[:self.length]
            self.history = grown
        self.history[self.length:self.length + len(rows)] = rows
        self.length += len(rows)


class VllmEdgeEngine(TailEngine):
    """TailEngine's sessions and checks over vLLM engines (one per split)."""

    def __init__(self, model: str, dtype: str = "float32", limits: EdgeLimits | None = None,
                 options: VllmArgs | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
        self.source, local = _resolve_source(model)
        config = AutoConfig.from_pretrained(self.source, local_files_only=local)
        self._init_table(model, config, DTYPES[dtype], limits, clock)
        self.dtype, self.options = dtype, options or VllmArgs()
        self.architecture = (config.architectures or ["?"])[0]
        self._engines: dict[int, object] = {}
        self._requests: dict[str, _Session] = {}
        self._ids = itertools.count()
        self.prompt_counters = {"requests": 0, "prompt_tokens": 0, "prefix_cached_tokens": 0}
        for k in self.options.splits:
            self.engine(k)

    # ---- engines ------------------------------------------------------------------------------------------------
    def engine(self, k: int):
        """The vLLM ``LLMEngine`` serving split ``k`` (built on first use)."""
        if k not in self._engines:
            if not 0 <= k < self.num_layers:
                raise ValueError(f"k must be in 0..{self.num_layers - 1}, got {k}")
            self._engines[k] = self._build(k)
        return self._engines[k]

    def _build(self, k: int):
        # the engine core runs in this thread, not in a child process: a Serve replica is already its own process
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.options.kv_cache_gib))
        from vllm.engine.arg_utils import EngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine

        from serve_deployments.vllm_tail_model import SPLIT_KEY, register, tail_architecture

        extra: dict = {}
        if k > 0:
            register()
            extra = {"enable_prompt_embeds": True,
                     "hf_overrides": {"architectures": [tail_architecture(self.architecture)], SPLIT_KEY: k}}
        args = EngineArgs(model=self.source, dtype=self.dtype, seed=0, enforce_eager=self.options.enforce_eager,
                          block_size=self.options.block_size, enable_prefix_caching=True, skip_tokenizer_init=True,
                          max_model_len=self.limits.max_tokens_per_session + 1,
                          max_num_seqs=self.limits.max_batch_size,
                          gpu_memory_utilization=self.options.gpu_memory_utilization, **extra)
        return LLMEngine.from_engine_args(args)

    def _new_state(self, k: int, max_tokens: int) -> VllmState:
        if k > 0:
            from serve_deployments.vllm_tail_model import BASES

            if self.architecture not in BASES:
                raise EdgeRejected("bad_request", f"this edge's vLLM engine has no tail for {self.architecture}; "
                                                  f"it serves k = 0 only")
        capacity = min(max_tokens, 64)
        history = torch.empty(capacity, dtype=torch.long) if k == 0 else \
            torch.empty(capacity, self.hidden, dtype=DTYPES[self.dtype])
        return VllmState(k, history)

    def _drop(self, session: _Session) -> None:
        self._stop(session)
        super()._drop(session)

    def _stop(self, session: _Session) -> None:
        """Abort the session's live request (its computed blocks stay in vLLM's prefix cache)."""
        state = session.state
        if state.request is not None:
            self._requests.pop(state.request, None)
            self.engine(session.k).abort_request([state.request])
            state.request = None

    # ---- requests -----------------------------------------------------------------------------------------------
    def _streams(self, session: _Session) -> bool:
        return session.k == 0 and session.sampler.temperature == 0.0

    def _params(self, session: _Session, max_tokens: int):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        sampler, position = session.sampler, session.state.length
        seed = None if sampler.temperature == 0 else (sampler.seed * 1_000_003 + position) % 2**63
        return SamplingParams(max_tokens=max_tokens, temperature=sampler.temperature, top_p=sampler.top_p,
                              seed=seed, logprobs=sampler.logprobs, ignore_eos=True, detokenize=False,
                              output_kind=RequestOutputKind.DELTA)

    def _launch(self, session: _Session) -> None:
        """Send the session's history as a new request: to its budget when it streams, else for one token."""
        state = session.state
        rid = f"{session.session_id}:{next(self._ids)}"
        history = state.history[:state.length]
        prompt = {"prompt_token_ids": history.tolist()} if session.k == 0 else {"prompt_embeds": history}
        budget = session.max_tokens - state.length + 1 if self._streams(session) else 1
        self.engine(session.k).add_request(rid, prompt, self._params(session, budget))
        state.request = rid
        self._requests[rid] = session
        self.prompt_counters["requests"] += 1
        self.prompt_counters["prompt_tokens"] += state.length

    def _accept(self, session: _Session, payload: torch.Tensor) -> None:
        """Take the UE's packet into the history and make sure a request will produce the next token."""
        state = session.state
        if session.k == 0 and state.answered is not None and int(payload[0, 0]) != state.answered:
            self._stop(session)  # the UE sent another token than it was answered: what ran ahead is void
            state.ahead.clear()
        state.append(payload)
        state.answered = None
        if not state.ahead and state.request is None:
            self._launch(session)

    def _pump(self, k: int, waiting: list[_Session]) -> None:
        """Step split ``k``'s engine until every waiting session has its next token (others advance too)."""
        engine = self.engine(k)
        while any(not s.state.ahead for s in waiting):
            if not engine.has_unfinished_requests():
                raise RuntimeError("vLLM finished every request before a waiting session got its token")
            for output in engine.step():
                session = self._requests.get(output.request_id)
                if session is None:  # aborted, or closed meanwhile
                    continue
                self._collect(session, output)

    def _collect(self, session: _Session, output) -> None:
        state, completion = session.state, output.outputs[0]
        logprobs = completion.logprobs or [None] * len(completion.token_ids)
        state.ahead.extend(zip(completion.token_ids, logprobs, strict=True))
        if output.finished:
            self.prompt_counters["prefix_cached_tokens"] += output.num_cached_tokens or 0
            self._requests.pop(output.request_id, None)
            state.request = None
        elif len(state.ahead) >= self.options.run_ahead_tokens:
            self._stop(session)

    def _next_answer(self, session: _Session) -> dict:
        token, logprobs = session.state.ahead.popleft()
        session.state.answered = token
        report: dict = {"token": token}
        if logprobs is not None:
            if not math.isfinite(logprobs[token].logprob):
                self._non_finite(session)
            if session.sampler.logprobs:
                top = sorted((p.rank, t, p.logprob) for t, p in logprobs.items() if p.rank <= session.sampler.logprobs)
                report["logprob"] = logprobs[token].logprob
                report["top_logprobs"] = [[t, lp] for _, t, lp in top]
        return self._record(session, report)

    # ---- steps --------------------------------------------------------------------------------------------------
    def _run_prefill(self, session: _Session, payload: torch.Tensor) -> dict:
        self._accept(session, payload)
        self._pump(session.k, [session])
        return self._next_answer(session)

    @torch.inference_mode()
    def decode_many(self, works: list[DecodeWork]) -> list[dict | EdgeError]:
        """Run validated decode steps: per split, every step in the same vLLM engine steps (continuous batching)."""
        results: list[dict | EdgeError | None] = [None] * len(works)
        by_k: dict[int, list[int]] = {}
        for index in self._fresh(works, results):
            by_k.setdefault(works[index].session.k, []).append(index)
        for k, group in by_k.items():
            start = time.perf_counter()
            for index in group:
                self._accept(works[index].session, works[index].payload)
            self._pump(k, [works[index].session for index in group])
            share = (time.perf_counter() - start) / len(group)
            self.counters["forwards"] += 1
            for index in group:
                self.counters["bytes_in"] += works[index].bytes_in
                try:
                    results[index] = {**self._next_answer(works[index].session), "batch_size": len(group),
                                      "compute_s": share}
                except EdgeRejected as rej:
                    results[index] = rej.error
        return results

    def stats(self) -> dict:
        """TailEngine's load figures plus the engine kind, the splits with a built vLLM engine and the prompt
        tokens sent to vLLM (of them, served from the prefix cache: counted when a request finishes)."""
        return {**super().stats(), "engine": "vllm", "vllm_splits": sorted(self._engines),
                "vllm_live_requests": len(self._requests), **self.prompt_counters}
