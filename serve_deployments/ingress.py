"""The HTTP face of the edge: a FastAPI app (versioned routes, OpenAPI docs at ``/docs``) served by the edge replicas.

Routes (JSON unless noted; every error is ``{"error": {"code", "message", "retry_after_s"}}`` with its status):

- ``GET  /healthz``                         liveness (no auth)
- ``GET  /readyz``                          the edge and the controller answer (no auth); 503 until they do
- ``GET  /v1/models``                       the served model (layers, hidden size, vocab, limits)
- ``POST /v1/sessions``                     open a session: ``{k, encoding, max_tokens, temperature, top_p, seed,
                                            logprobs}`` with a fresh id in ``x-session-id`` → 201 ``{session_id, ...}``
- ``POST /v1/sessions/{id}/prefill``        body: an ActivationPacket frame (``application/octet-stream``) with the
                                            prompt → ``{token, position, logprob?, top_logprobs?, replica}``
- ``POST /v1/sessions/{id}/decode``         body: one token's frame → the next token, same shape
- ``DELETE /v1/sessions/{id}``              free the session
(the session routes need ``x-session-id: {id}``: Serve's proxy routes a session's calls to its replica by it)
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
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_deployments.edge_errors import STATUS, EdgeError
from serve_deployments.split_schema import SplitDecision, UEState
from serve_deployments.tail_engine import SessionCreate

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
"""What a session id looks like (``secrets.token_urlsafe(24)``); anything else is an unknown session."""
MIN_CLIENT_SESSION_ID = 32
"""Shortest id a client may open a session with (32 base64url characters = 192 bits from ``secrets``)."""
SESSION_HEADER = "x-session-id"
"""The header Serve's proxy routes by (Ray's default ``RAY_SERVE_SESSION_ID_HEADER_KEY``)."""


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
    """``Retry-After`` sent when the controller is overloaded or unavailable (and on Serve's own 503s)."""
    call_timeout_s: float = Field(60.0, gt=0, le=3600)
    """Longest wait for a controller call."""


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


class EdgeHttpRoutes:
    """The HTTP routes, mixed into the edge deployment (``EdgeServer``): no hop between HTTP and the model.

    Serve's proxy routes each request by its ``x-session-id`` header through the deployment's consistent-hash
    router, so a session's calls reach the replica that holds it; the session routes therefore require that header
    to equal the session id of the path (the UE picks a fresh 192-bit id with :mod:`secrets` when it opens a
    session and sends it with every call).
    """

    http: IngressArgs
    controller: object

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _owner(self, request: Request) -> str | EdgeError:
        if not self.http.api_token_sha256:
            return ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token_owner(token) if scheme.lower() == "bearer" and token else ""
        # compare against every accepted digest (no early exit), so timing does not tell which one matched
        matches = [secrets.compare_digest(presented, known) for known in self.http.api_token_sha256]
        if not presented or not any(matches):
            return EdgeError("unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)")
        return presented

    def _routed(self, request: Request, session_id: str) -> EdgeError | None:
        """The session id must look like one and travel in ``x-session-id`` too (Serve routes by that header)."""
        if not SESSION_ID.match(session_id):
            return EdgeError("unknown_session", "no such session")
        if request.headers.get(SESSION_HEADER) != session_id:
            return EdgeError("bad_request", f"send the session id in the {SESSION_HEADER} header as well: Serve "
                                            f"routes a session's requests to its replica by that header")
        return None

    async def _controller(self, method, *args) -> dict:
        try:
            return await asyncio.wait_for(method.remote(*args), self.http.call_timeout_s)
        except BackPressureError:
            return EdgeError("overloaded", "the controller's queue is full; retry later",
                             self.http.retry_after_s).to_dict()
        except (TimeoutError, RayActorError, DeploymentUnavailableError) as err:
            return EdgeError("edge_unavailable", f"controller unavailable ({type(err).__name__})",
                             self.http.retry_after_s).to_dict()
        except RayTaskError as err:
            return EdgeError("internal", f"controller call failed: {type(err.cause).__name__}").to_dict()

    async def _body(self, request: Request) -> bytes | EdgeError:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.http.max_body_bytes):
            return EdgeError("token_limit", f"body larger than {self.http.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.http.max_body_bytes:
                return EdgeError("token_limit", f"body larger than {self.http.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _step(self, request: Request, session_id: str, method, with_body: bool = True) -> JSONResponse:
        """Auth, routing check and (optionally) the packet body, then ``method(session_id, owner[, body])``."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        problem = self._routed(request, session_id)
        if problem is not None:
            return error_response(problem)
        if not with_body:
            return _answer(await method(session_id, owner))
        body = await self._body(request)
        if isinstance(body, EdgeError):
            return error_response(body)
        return _answer(await method(session_id, owner, body))

    # ---- routes -------------------------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> dict:
        """Liveness: the replica answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Readiness: the model is loaded and the controller answers within 5 s."""
        try:
            ctl = await asyncio.wait_for(self.controller.info.remote(), 5.0)
        except Exception as err:  # any failure to answer means not ready
            return error_response(EdgeError("edge_unavailable", f"not ready: {type(err).__name__}", 1.0))
        return JSONResponse({"status": "ready", "model": self.engine.name, "policy": ctl})

    @app.get("/v1/models")
    async def http_models(self, request: Request) -> JSONResponse:
        """The served model and the edge's limits."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        return JSONResponse(self.engine.model_info())

    @app.post("/v1/sessions", status_code=201)
    async def http_create(self, spec: SessionCreate, request: Request) -> JSONResponse:
        """Open a session at split ``k``; its id comes in ``x-session-id`` (which routed it here)."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        session_id = request.headers.get(SESSION_HEADER, "")
        if not SESSION_ID.match(session_id) or len(session_id) < MIN_CLIENT_SESSION_ID:
            return error_response(EdgeError("bad_request", f"open a session with a fresh random id in the "
                                                           f"{SESSION_HEADER} header: {MIN_CLIENT_SESSION_ID}..64 "
                                                           f"characters of [A-Za-z0-9_-], e.g. "
                                                           f"secrets.token_urlsafe(24)"))
        return _answer(await self.create(spec.model_dump(), owner, session_id), status=201)

    @app.post("/v1/sessions/{session_id}/prefill")
    async def http_prefill(self, session_id: str, request: Request) -> JSONResponse:
        """The prompt's ActivationPacket (octet-stream) → the first token."""
        return await self._step(request, session_id, self.prefill)

    @app.post("/v1/sessions/{session_id}/decode")
    async def http_decode(self, session_id: str, request: Request) -> JSONResponse:
        """One token's ActivationPacket (octet-stream) → the next token."""
        return await self._step(request, session_id, self.decode)

    @app.delete("/v1/sessions/{session_id}")
    async def http_close(self, session_id: str, request: Request) -> JSONResponse:
        """Free the session's KV cache."""
        return await self._step(request, session_id, self.close, with_body=False)

    @app.post("/v1/split", response_model=SplitDecision)
    async def http_split(self, state: UEState, request: Request) -> JSONResponse:
        """The live split controller: a UE's state → ``k``, encoding, policy version and reason."""
        owner = self._owner(request)
        if isinstance(owner, EdgeError):
            return error_response(owner)
        return _answer(await self._controller(self.controller.decide, state.model_dump()))
