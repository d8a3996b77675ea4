"""The live split controller: a UE reports its state, the controller answers k, the packet encoding, the policy
version and a short reason; policies are hot-swapped through Serve's ``user_config``.

serve run serve_deployments.controller:build_controller_app model=smollm2-135m    # the controller alone
handle = serve.run(SplitControllerDeployment.bind({"model": "smollm2-135m"}), name="ctl", route_prefix=None)
handle.decide.remote({"snr_db_history": [11.0, 12.3]}).result()   # {"k": 15, "encoding": "float32", ...}

The work is in :class:`SplitController`, a plain class (tested without Ray); :class:`SplitControllerDeployment`
is the thin Serve wrapper the app builder binds (``serve.deployment(...)(SplitControllerDeployment)``, or its own
``SplitControllerDeployment.bind(args)`` with the defaults below).

Policies (:mod:`serve_deployments.split_policies`) are named by a :class:`PolicySpec` in the server's
configuration: the app's :class:`ControllerArgs` (``policy``) and, for hot reload, the deployment's
``user_config``: ``{"policy": {"kind": "rllib", "path": "/srv/policy_export"}}`` switches to that policy,
``{"policy": null}`` to the rule fallback, ``{}`` back to the args' policy (the rule fallback when the args name
none). Serve calls ``reconfigure`` on deploy and whenever ``user_config`` changes. A reload builds the new policy
completely — weights read, predictions made — in a worker thread while the old one keeps answering, then swaps one
reference; a decision reads that reference once, so it never sees a half-loaded policy. A bad ``user_config``
raises ``ValueError`` in :meth:`SplitController.reconfigure` and leaves the old policy in place; the deployment
counts the failure (``edgesplit_policy_reload_failures_total``), reports it in ``info()`` and keeps serving — only
the first configuration of a replica fails the replica, so a broken deploy does not come up silently.

If the served policy raises on a request, the rule fallback answers it (its reason says so). Metrics (Prometheus,
through ``ray.serve.metrics``): ``edgesplit_split_decisions_total{k, policy}``,
``edgesplit_policy_reload_failures_total``, ``edgesplit_policy_fallback_decisions_total{policy}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from ray import serve

from edgesplit.reward import reward_preset
from serve_deployments.split_policies import PolicySpec, ServingPolicy, light_profile, load_policy
from serve_deployments.split_schema import SplitDecision, UEState

logger = logging.getLogger("ray.serve")
DEPLOYMENT_OPTIONS = {"name": "SplitControllerDeployment", "max_ongoing_requests": 64,
                      "ray_actor_options": {"num_cpus": 0}}
"""Defaults of :meth:`SplitControllerDeployment.deployment` (the YAML's per-deployment options override them)."""


class ControllerArgs(BaseModel):
    """Arguments of the controller deployment (the ``controller`` block of the app's args)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    """Model whose split is chosen: only its config is read (layer count, cost profile), never its weights."""
    policy: PolicySpec | None = None
    """Policy served from the start (a server-side path); None: the rule fallback until a ``user_config`` names
    one."""
    fallback: PolicySpec | None = None
    """The rule fallback (kind ``rule``; with ``path`` a profile table); None: the built-in SNR rule."""
    reward: str = "paper"
    """Reward preset of rule policies whose spec names none (the fallback included); a surrogate-greedy policy
    without one uses its checkpoint's reward."""

    @field_validator("reward")
    @classmethod
    def _known_reward(cls, value: str) -> str:
        reward_preset(value)
        return value

    def spec(self, data: PolicySpec | dict) -> PolicySpec:
        """A policy spec with the controller's model and reward filled in where it names none."""
        if not isinstance(data, PolicySpec | dict):
            raise ValueError(f"a policy spec must be a mapping, got {type(data).__name__}")
        data = data.model_dump() if isinstance(data, PolicySpec) else dict(data)
        return PolicySpec.model_validate({**data, "model": data.get("model") or self.model,
                                          "reward": data.get("reward") or (self.reward if data.get("kind") == "rule"
                                                                           else None)})


class SplitController:
    """Holds the served policy, its version and the rule fallback; decides and hot-reloads (see the module
    docstring)."""

    def __init__(self, args: ControllerArgs | dict | None = None) -> None:
        self.args = args if isinstance(args, ControllerArgs) else ControllerArgs.model_validate(args or {})
        self.num_layers = light_profile(self.args.model).num_layers
        fallback = self.args.spec(self.args.fallback or {"kind": "rule"})
        if fallback.kind != "rule":
            raise ValueError(f"the fallback must be a rule policy, got kind {fallback.kind!r}")
        self.fallback = self._build(fallback)
        self._active: tuple[ServingPolicy, PolicySpec | None] = (self.fallback, None)
        self._lock = threading.Lock()
        self.reloads = 0
        self.fallback_decisions = 0
        if self.args.policy is not None:
            spec = self.args.spec(self.args.policy)
            self._active = (self._build(spec), spec)

    def _build(self, spec: PolicySpec) -> ServingPolicy:
        try:
            policy = load_policy(spec)
        except ValueError:
            raise
        except Exception as err:  # damaged files surface as OSError, KeyError, safetensors errors, ...
            raise ValueError(f"cannot load the {spec.kind} policy at {spec.path}: {type(err).__name__}: {err}") from err
        if policy.num_layers != self.num_layers:
            raise ValueError(f"the {spec.kind} policy at {spec.path} decides for {policy.num_layers} layers, the "
                             f"model {self.args.model!r} has {self.num_layers}")
        return policy

    @property
    def policy(self) -> ServingPolicy:
        """The policy answering now."""
        return self._active[0]

    def decide(self, state: UEState | dict) -> SplitDecision:
        """The split decision for one UE report (ValueError for a bad report)."""
        state = state if isinstance(state, UEState) else UEState.model_validate(state)
        if state.current_k is not None and state.current_k > self.num_layers:
            raise ValueError(f"current_k={state.current_k} exceeds the model's {self.num_layers} layers")
        policy = self._active[0]  # read once: a concurrent reload swaps the whole tuple
        if policy is self.fallback:
            return policy.decide(state)
        try:
            return policy.decide(state)
        except Exception as err:  # a policy failure must not fail the request: the rule answers, and says so
            self.fallback_decisions += 1
            decision = self.fallback.decide(state)
            reason = f"fallback ({policy.kind} failed: {type(err).__name__}); {decision.reason}"
            return decision.model_copy(update={"reason": reason[:240]})

    def reconfigure(self, user_config: dict | None) -> dict[str, Any]:
        """Switch policy per ``user_config`` (see the module docstring); returns :meth:`info`. On any error the old
        policy stays and ValueError is raised."""
        user_config = {} if user_config is None else user_config
        if not isinstance(user_config, dict) or set(user_config) - {"policy"}:
            raise ValueError(f"user_config must be a mapping with at most a 'policy' key, got {user_config!r}")
        if "policy" not in user_config:
            spec = None if self.args.policy is None else self.args.spec(self.args.policy)
        else:
            spec = None if user_config["policy"] is None else self.args.spec(user_config["policy"])
        with self._lock:  # one reload at a time; decisions never wait for it
            if spec == self._active[1]:  # unchanged (Serve reconfigures on every deploy)
                return self.info()
            policy = self.fallback if spec is None else self._build(spec)  # fully built before the swap
            self._active = (policy, spec)
            self.reloads += 1
        return self.info()

    def info(self) -> dict[str, Any]:
        """What answers now (no server paths: this is shown to clients)."""
        policy = self._active[0]
        return {"policy": policy.kind, "policy_version": policy.version, "num_layers": self.num_layers,
                "model": self.args.model, "fallback_version": self.fallback.version, "reloads": self.reloads,
                "fallback_decisions": self.fallback_decisions}


class SplitControllerDeployment:
    """The Serve face of :class:`SplitController`: validates, counts, and loads reloads off the event loop."""

    def __init__(self, args: ControllerArgs | dict | None = None) -> None:
        from ray.serve import metrics

        self.controller = SplitController(args)
        self._configured = False
        self.last_reload_error: str | None = None
        self._decisions = metrics.Counter("edgesplit_split_decisions_total", tag_keys=("k", "policy"),
                                          description="Split decisions by chosen split k and policy kind.")
        self._reload_failures = metrics.Counter("edgesplit_policy_reload_failures_total",
                                                description="user_config reloads that failed (old policy kept).")
        self._fallbacks = metrics.Counter("edgesplit_policy_fallback_decisions_total", tag_keys=("policy",),
                                          description="Requests the rule fallback answered after a policy failed.")

    @classmethod
    def deployment(cls, **options: Any) -> serve.Deployment:
        """This class as a Serve deployment with :data:`DEPLOYMENT_OPTIONS` (``options`` override them)."""
        return serve.deployment(**{**DEPLOYMENT_OPTIONS, **options})(cls)

    @classmethod
    def bind(cls, *args: Any, **kwargs: Any) -> serve.Application:
        """``SplitControllerDeployment.deployment().bind(...)``."""
        return cls.deployment().bind(*args, **kwargs)

    async def decide(self, state: dict) -> dict:
        """A UE's state (a :class:`UEState` as a dict) → a :class:`SplitDecision` as a dict."""
        before = self.controller.fallback_decisions
        decision = self.controller.decide(UEState.model_validate(state))
        self._decisions.inc(tags={"k": str(decision.k), "policy": decision.policy})
        if self.controller.fallback_decisions != before:
            self._fallbacks.inc(tags={"policy": self.controller.policy.kind})
        return decision.model_dump()

    async def reconfigure(self, user_config: dict) -> None:
        """Serve's hook (on deploy and on every ``user_config`` change)."""
        first, self._configured = not self._configured, True
        try:
            await asyncio.to_thread(self.controller.reconfigure, user_config)
            self.last_reload_error = None
        except ValueError as err:
            self._reload_failures.inc()
            self.last_reload_error = str(err)[:500]
            if first:
                raise
            logger.warning("split controller reload failed, keeping %s: %s", self.controller.policy.version, err)

    async def info(self) -> dict:
        """Policy kind and version, layer count, reload counters, the last reload error and the replica's id."""
        try:
            replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # called outside a replica (tests of the plain object)
            replica = None
        return {**self.controller.info(), "last_reload_error": self.last_reload_error, "replica": replica}


def build_controller_app(args: dict | None = None) -> serve.Application:
    """App builder of the controller alone (``serve run serve_deployments.controller:build_controller_app``)."""
    return SplitControllerDeployment.bind(ControllerArgs.model_validate(args or {}).model_dump())


__all__ = ["DEPLOYMENT_OPTIONS", "ControllerArgs", "SplitController", "SplitControllerDeployment",
           "build_controller_app"]
