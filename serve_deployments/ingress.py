"""The HTTP face of the edge: a FastAPI app (versioned routes, OpenAPI docs at ``/docs``) served by Ray Serve.

Routes (JSON unless noted; every error is ``{"error": {"code", "message", "retry_after_s"}}`` with its status):

- ``GET  /healthz``                         liveness (no auth)
- ``GET  /readyz``                          the edge and the controller answer (no auth); 503 until they do
- ``GET  /v1/models``                       the served model (layers, hidden size, vocab, limits)
- ``POST /v1/sessions``                     open a session: ``{k, encoding, max_tokens, temperature, top_p, seed,
                                            logprobs}`` → 201 ``{session_id, ...}``
- ``POST /v1/sessions/{id}/prefill``        body: an ActivationPacket frame (``application/octet-stream``) with the
                                            prompt → ``{token, position, logprob?, top_logprobs?, replica}``
- ``POST /v1/sessions/{id}/decode``         body: one token's frame → the next token, same shape
- ``DELETE /v1/sessions/{id}``              free the session
- ``POST /v1/split``                        a UE's state → the controller's split decision

Auth: when the app was built with API tokens (``EDGESPLIT_API_TOKEN``, comma-separated for several tenants), every
route but the health probes needs ``Authorization: Bearer <token>``; a session is usable only with the token that
opened it (another token gets 403). Only SHA-256 digests of the tokens reach the replicas. Session ids come
from :mod:`secrets` (192 bits). Bodies are read up to ``max_body_bytes``
and never unpickled: frames are parsed by :meth:`ActivationPacket.decode` on the edge.
"""

# no `from __future__ import annotations`: FastAPI must see the real classes in the route signatures of a
# Serve ingress class (string annotations are not resolved there, and Request would be read as a query field)
import asyncio
import hashlib
import re
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_deployments.edge_errors import STATUS, EdgeError
from serve_deployments.split_schema import SplitDecision, UEState
from serve_deployments.tail_engine import SessionCreate

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
"""What a session id looks like (``secrets.token_urlsafe(24)``); anything else is an unknown session."""


class IngressArgs(BaseModel):
    """Arguments of the HTTP ingress."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("api_token_sha256")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        if any(not re.fullmatch(r"[0-9a-f]{64}", v) for v in value):
            raise ValueError("api_token_sha256 entries must be 64 lowercase hex digits (SHA-256 of a token)")
        return value

    api_token_sha256: list[str] = Field(default_factory=list, max_length=1024)
    """SHA-256 (hex) of each accepted bearer token; empty: no auth. Each token owns the sessions it opens."""
    max_body_bytes: int = Field(16 << 20, ge=1024, le=1 << 30)
    """Largest request body accepted (a prefill frame of the longest prompt must fit)."""
    retry_after_s: float = Field(1.0, ge=0, le=600)
    """``Retry-After`` sent when the edge is overloaded or a replica is unavailable."""
    call_timeout_s: float = Field(60.0, gt=0, le=3600)
    """Longest wait for an edge or controller call."""


def token_owner(token: str | None) -> str:
    """The owner tag of a bearer token (its SHA-256); ``""`` without auth."""
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def error_response(error: EdgeError) -> JSONResponse:
    """A JSON error body with its status and ``Retry-After`` where the client should back off."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, int(-(-error.retry_after_s // 1))))
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


def _answer(result: dict, status: int = 200) -> JSONResponse:
    if "error" in result:
        raw = result["error"]
        return error_response(EdgeError(raw["code"], raw["message"], raw.get("retry_after_s")))
    return JSONResponse(result, status_code=status)


app = FastAPI(title="edgesplit edge", version="1",
              description="Split LLM inference: the edge layer stack and the live split controller.")


@app.exception_handler(RequestValidationError)
async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    return error_response(EdgeError("bad_request", f"invalid request: {fields}"))


@app.exception_handler(StarletteHTTPException)
async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = "not_found" if exc.status_code == 404 else "bad_request"
    status = exc.status_code if exc.status_code in (404, 405) else STATUS[code]
    return JSONResponse(EdgeError(code, str(exc.detail)).to_dict(), status_code=status)


@serve.ingress(app)
class EdgeIngress:
    """Routes HTTP to the edge tail (by session, with affinity) and to the split controller."""

    def __init__(self, edge, controller, args: dict | IngressArgs | None = None) -> None:
        self.edge, self.controller = edge, controller
        self.args = IngressArgs.model_validate(args or {}) if not isinstance(args, IngressArgs) else args

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _owner(self, request: Request) -> str | EdgeError:
        if not self.args.api_token_sha256:
            return ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token_owner(token) if scheme.lower() == "bearer" and token else ""
        # compare against every accepted digest (no early exit), so timing does not tell which one matched
        matches = [secrets.compare_digest(presented, known) for known in self.args.api_token_sha256]
        if not presented or not any(matches):
            return EdgeError("unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)")
        return presented

    async def _call(self, method, *args) -> dict:
        try:
            return await asyncio.wait_for(method.remote(*args), self.args.call_timeout_s)
        except BackPressureError:
            return EdgeError("overloaded", "the edge's request queue is full; retry later",
                             self.args.retry_after_s).to_dict()
        except (TimeoutError, RayActorError, DeploymentUnavailableError) as err:
            return EdgeError("edge_unavailable", f"edge replica unavailable ({type(err).__name__}); retry: a lost "
                                                 f"session answers unknown_session", self.args.retry_after_s).to_dict()
        except RayTaskError as err:
            return EdgeError("internal", f"edge call failed: {type(err.cause).__name__}").to_dict()

    def _edge(self, session_id: str, method: str):
        return getattr(self.edge.options(session_id=session_id), method)

    async def _body(self, request: Request) -> bytes | EdgeError:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.args.max_body_bytes):
            return EdgeError("token_limit", f"body larger than {self.args.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.args.max_body_bytes:
                return EdgeError("token_limit", f"body larger than {self.args.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _step(self, request: Request, session_id: str, method: str) -> JSONResponse:
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        if not SESSION_ID.match(session_id):
            return error_response(EdgeError("unknown_session", "no such session"))
        body = await self._body(request)
        if isinstance(body, EdgeError):
            return error_response(body)
        return _answer(await self._call(self._edge(session_id, method), session_id, owner, body))

    # ---- routes -------------------------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> dict:
        """Liveness: the ingress answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Readiness: the edge and the controller answer within 5 s."""
        try:
            edge, ctl = await asyncio.wait_for(asyncio.gather(self.edge.info.remote(), self.controller.info.remote()),
                                               5.0)
        except Exception as err:  # any failure to answer means not ready
            return error_response(EdgeError("edge_unavailable", f"not ready: {type(err).__name__}", 1.0))
        return JSONResponse({"status": "ready", "model": edge["model"], "policy": ctl})

    @app.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        """The served model and the edge's limits."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        info = await self._call(self.edge.info)
        keep = ("model", "num_layers", "hidden_size", "vocab_size", "encodings", "max_tokens_per_session")
        return _answer(info if "error" in info else {key: info[key] for key in keep})

    @app.post("/v1/sessions", status_code=201)
    async def create_session(self, spec: SessionCreate, request: Request) -> JSONResponse:
        """Open a session at split ``k`` on the replica its id hashes to."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        session_id = secrets.token_urlsafe(24)
        result = await self._call(self._edge(session_id, "create"), spec.model_dump(), owner, session_id)
        return _answer(result, status=201)

    @app.post("/v1/sessions/{session_id}/prefill")
    async def prefill(self, session_id: str, request: Request) -> JSONResponse:
        """The prompt's ActivationPacket (octet-stream) → the first token."""
        return await self._step(request, session_id, "prefill")

    @app.post("/v1/sessions/{session_id}/decode")
    async def decode(self, session_id: str, request: Request) -> JSONResponse:
        """One token's ActivationPacket (octet-stream) → the next token."""
        return await self._step(request, session_id, "decode")

    @app.delete("/v1/sessions/{session_id}")
    async def close_session(self, session_id: str, request: Request) -> JSONResponse:
        """Free the session's KV cache."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        if not SESSION_ID.match(session_id):
            return error_response(EdgeError("unknown_session", "no such session"))
        return _answer(await self._call(self._edge(session_id, "close"), session_id, owner))

    @app.post("/v1/split", response_model=SplitDecision)
    async def split(self, state: UEState, request: Request) -> JSONResponse:
        """The live split controller: a UE's state → ``k``, encoding, policy version and reason."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        return _answer(await self._call(self.controller.decide, state.model_dump()))
