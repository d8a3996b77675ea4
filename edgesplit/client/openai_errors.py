"""How the UE proxy fails: :class:`ProxyError` (an OpenAI error body + HTTP status), and where errors come from.

Every failure leaves the proxy as ``{"error": {"message", "type", "param", "code"}}`` with its status: a body that
does not validate 400 (``param`` names the field), a body too large 413, and a failed edge call mapped by
:func:`edge_error` (overload 429 / 503 passed on with ``Retry-After``, an unreachable edge 502). Request bodies are
read by :func:`read_request`: at most ``limit`` bytes, parsed as JSON by pydantic, never unpickled.
"""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgesplit.client.transport import EdgeCallError


class ProxyError(Exception):
    """A request the proxy answers with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def validation_error(err: ValidationError) -> ProxyError:
    """A 400 naming the first offending field (``param``) and up to five problems."""
    problems = err.errors(include_url=False)
    first = problems[0]["loc"] if problems else ()
    param = str(first[0]) if first else None
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in problems[:5])
    return ProxyError(400, f"invalid request: {text}", param=param, code="invalid_value")


def edge_error(err: EdgeCallError, edge_url: str) -> ProxyError:
    """What the client sees of a failed edge call: overload passed on with Retry-After, the rest as 400 / 502."""
    if err.status in (429, 503):
        wait = max(1, math.ceil(err.retry_after_s if err.retry_after_s is not None else 1.0))
        kind = "rate_limit_error" if err.status == 429 else "server_error"
        return ProxyError(err.status, f"the edge is overloaded ({err.code}: {err.message}); retry after {wait} s",
                          type=kind, code=err.code, headers={"Retry-After": str(wait)})
    if err.status == 0:
        return ProxyError(502, f"the edge at {edge_url} cannot be reached ({err.message}); is `edgesplit serve` "
                               f"running there?", type="server_error", code="edge_unreachable")
    if err.status in (401, 403):
        return ProxyError(502, f"the edge at {edge_url} refused the proxy's credentials ({err.message}); start the "
                               f"proxy with --api-token (or EDGESPLIT_API_TOKEN)", type="server_error",
                          code="edge_unauthorized")
    if err.code == "token_limit":
        return ProxyError(400, f"the edge refused the request's length: {err.message}", param="max_tokens",
                          code="context_length_exceeded")
    return ProxyError(502, f"the edge answered {err.status} {err.code}: {err.message}", type="server_error",
                      code="edge_error")


async def read_request(request: Request, model: type[BaseModel], limit: int) -> BaseModel:
    """The JSON body, at most ``limit`` bytes, validated by ``model`` (a :class:`ProxyError` otherwise)."""
    too_large = ProxyError(413, f"request body larger than {limit} bytes", code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as err:
        raise validation_error(err) from None


def error_response(_request: Request, err: ProxyError) -> JSONResponse:
    """The app's handler of :class:`ProxyError`."""
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Unknown routes (404) and wrong methods (405) in the OpenAI error shape too."""
    code = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
    return JSONResponse(ProxyError(exc.status_code, str(exc.detail), code=code).body(), status_code=exc.status_code)
