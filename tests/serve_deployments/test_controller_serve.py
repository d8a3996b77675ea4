"""The split controller under Ray Serve (handles only, no HTTP port): hot reload under load loses no request.

Two routes to a new ``user_config``: ``serve.run`` again (Python deploys get a fresh code version, so Serve
replaces the replica) and a config deploy — what ``serve run/deploy config.yaml`` sends — where only
``user_config`` changed, which Serve applies in place through ``reconfigure``.
"""

from __future__ import annotations

import threading
import time

import pytest

from serve_deployments.controller import SplitControllerDeployment
from serve_deployments.split_policies import RULE_VERSION, PolicySpec
from surrogate.checkpoint import save_surrogate
from surrogate.ensemble import EnsembleConfig
from surrogate.model import QualitySurrogate
from surrogate.synthetic import MODEL_NAME, synthetic_cells

pytestmark = pytest.mark.ray
APP, CONFIG_APP = "ctl-test", "ctl-config"
ARGS = {"model": MODEL_NAME}


@pytest.fixture(scope="module")
def serve_session(ray_session):
    from ray import serve

    serve.start(proxy_location="Disabled")  # handles only: no HTTP port is opened
    yield serve
    for name in (APP, CONFIG_APP):
        serve.delete(name)
    serve.shutdown()


@pytest.fixture(scope="module")
def surrogate_dir(tmp_path_factory):
    config = EnsembleConfig(hidden_size=16, depth=1, epochs=150, ensemble_size=3, lr=1e-2, seed=0)
    surrogate = QualitySurrogate(config).fit(synthetic_cells(seed=0))
    return save_surrogate(surrogate, tmp_path_factory.mktemp("surrogate") / "ckpt")


class Load:
    """Threads calling ``decide`` in a loop, recording every answer's version and every failure."""

    def __init__(self, handle, threads: int = 4) -> None:
        self.handle, self.stop = handle, threading.Event()
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        snr = 0.0
        while not self.stop.is_set():
            snr = (snr + 3.7 + index) % 30.0
            try:
                answer = self.handle.decide.remote({"snr_db_history": [snr], "battery": 0.5}).result(timeout_s=60)
                self.versions.append(answer["policy_version"])
            except Exception as err:  # every failure counts, whatever its type
                self.failures.append(f"{type(err).__name__}: {err}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)


def test_hot_reload_under_load_loses_no_request(serve_session, surrogate_dir):
    serve = serve_session
    handle = serve.run(SplitControllerDeployment.bind(ARGS), name=APP, route_prefix=None)
    assert handle.info.remote().result(timeout_s=60)["policy_version"] == RULE_VERSION
    new = PolicySpec(kind="surrogate_greedy", path=str(surrogate_dir))
    with Load(handle) as load:
        time.sleep(1.0)
        before = len(load.versions)
        serve.run(SplitControllerDeployment.deployment(user_config={"policy": new.model_dump()}).bind(ARGS),
                  name=APP, route_prefix=None)
        switched = time.monotonic()
        while time.monotonic() - switched < 20 and (not load.versions or load.versions[-1] != new.version):
            time.sleep(0.1)
        time.sleep(1.0)
    assert load.failures == []
    assert before > 0 and load.versions[0] == RULE_VERSION and load.versions[-1] == new.version
    info = handle.info.remote().result(timeout_s=60)
    assert info["policy"] == "surrogate_greedy" and info["policy_version"] == new.version
    assert info["num_layers"] == 8 and info["last_reload_error"] is None
    serve.delete(APP)


def deploy_config(user_config: dict) -> None:
    """Apply a config as ``serve deploy`` does (through the controller client: the test Ray has no dashboard)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    app = {"name": CONFIG_APP, "route_prefix": None, "args": ARGS,
           "import_path": "serve_deployments.controller:build_controller_app",
           "deployments": [{"name": "SplitControllerDeployment", "user_config": user_config}]}
    config = ServeDeploySchema.model_validate({"proxy_location": "Disabled", "applications": [app]})
    _get_global_client().deploy_apps(config, _blocking=True)


def test_config_reload_reconfigures_in_place_and_survives_a_bad_config(serve_session, surrogate_dir):
    serve = serve_session
    deploy_config({})
    handle = serve.get_deployment_handle("SplitControllerDeployment", app_name=CONFIG_APP)
    first = handle.info.remote().result(timeout_s=60)
    new = PolicySpec(kind="surrogate_greedy", path=str(surrogate_dir))
    with Load(handle) as load:
        time.sleep(0.5)
        deploy_config({"policy": new.model_dump()})
        switched = time.monotonic()
        while time.monotonic() - switched < 20 and (not load.versions or load.versions[-1] != new.version):
            time.sleep(0.1)
        deploy_config({"policy": {"kind": "rllib", "path": str(surrogate_dir / "missing")}})
        time.sleep(1.0)
    info = handle.info.remote().result(timeout_s=60)
    assert load.failures == [] and load.versions[0] == RULE_VERSION and load.versions[-1] == new.version
    assert info["replica"] == first["replica"] and info["policy_version"] == new.version  # reconfigured in place
    assert "does not exist" in info["last_reload_error"]
