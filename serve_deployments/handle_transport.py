"""The UE client's transport over Serve deployment handles, for clients inside the Ray cluster (the UE fleet).

Same coroutines as :class:`edgesplit.client.HttpTransport`, but each call goes straight to the deployment with
``handle.options(session_id=...)`` (session affinity through the consistent-hash router) — no HTTP hop. Errors the
deployments return as data become :class:`~edgesplit.client.EdgeCallError`; a replica that dies mid-call or a full
queue become ``edge_unavailable`` / ``overloaded``, exactly as over HTTP.
"""

from __future__ import annotations

import hashlib
import secrets

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from edgesplit.client.transport import EdgeCallError
from serve_deployments.edge_errors import STATUS


class HandleTransport:
    """Talks to the edge and controller deployments of a running app through handles."""

    def __init__(self, app_name: str = "edgesplit", api_token: str | None = None, retry_after_s: float = 1.0) -> None:
        from ray import serve

        self.edge = serve.get_deployment_handle("EdgeTailDeployment", app_name=app_name)
        self.controller = serve.get_deployment_handle("SplitControllerDeployment", app_name=app_name)
        self.owner = hashlib.sha256(api_token.encode()).hexdigest() if api_token else ""
        self.retry_after_s = retry_after_s

    async def _call(self, method, *args) -> dict:
        try:
            result = await method.remote(*args)
        except BackPressureError:
            raise EdgeCallError("overloaded", "edge queue full", 503, self.retry_after_s) from None
        except (RayActorError, DeploymentUnavailableError) as err:
            raise EdgeCallError("edge_unavailable", type(err).__name__, 503, self.retry_after_s) from None
        except RayTaskError as err:  # e.g. the controller refusing a malformed state (a ValueError inside)
            if isinstance(err.cause, ValueError):
                raise EdgeCallError("bad_request", str(err.cause)[:500], 400) from None
            raise EdgeCallError("internal", f"{type(err.cause).__name__} in the deployment", 500) from None
        if "error" in result:
            error = result["error"]
            raise EdgeCallError(error["code"], error["message"], STATUS.get(error["code"], 500),
                                error.get("retry_after_s"))
        return result

    def _edge(self, session_id: str, method: str):
        return getattr(self.edge.options(session_id=session_id), method)

    async def models(self) -> dict:
        return await self._call(self.edge.info)

    async def create(self, body: dict) -> dict:
        session_id = secrets.token_urlsafe(24)
        return await self._call(self._edge(session_id, "create"), body, self.owner, session_id)

    async def prefill(self, session_id: str, frame: bytes) -> dict:
        return await self._call(self._edge(session_id, "prefill"), session_id, self.owner, frame)

    async def decode(self, session_id: str, frame: bytes) -> dict:
        return await self._call(self._edge(session_id, "decode"), session_id, self.owner, frame)

    async def close(self, session_id: str) -> dict:
        return await self._call(self._edge(session_id, "close"), session_id, self.owner)

    async def split(self, state: dict) -> dict:
        return await self._call(self.controller.decide, state)
