"""Export a trained RLlib split policy to safetensors + JSON, and run the export in pure torch (no RLlib, no pickle).

edgesplit export-policy runs/policy/checkpoint --out runs/policy_export
from rllib_env.export import export_policy, load_exported
export_policy("runs/policy/checkpoint", "runs/policy_export")   # needs RLlib; checks the export before writing
net = load_exported("runs/policy_export")                        # torch + safetensors only
net.act_batch(obs)                                               # greedy actions, identical to the RLModule's

RLlib checkpoints are pickle files: unpickling runs code, so :func:`export_policy` must only be given trusted local
checkpoints (your own ``train-policy`` / ``mbrl`` output). The export is what a server loads instead: it reads
JSON and safetensors and nothing else, so a serving process never unpickles anything and never imports RLlib.

What is exported is the greedy path of the RLModule: the actor encoder (``encoder.actor_encoder`` of PPO's
actor-critic encoder, or the shared ``encoder``) followed by the action head (``pi`` for PPO, ``af`` — the
advantages, whose argmax is the Q argmax even with a dueling head — for DQN), read off the module's torch layers
in order. Before anything is written the rebuilt network is run against the module's own ``forward_inference`` on
``samples`` random observations; any difference in logits or actions aborts the export.

``policy.json`` (:data:`FORMAT` version :data:`FORMAT_VERSION`)::

    format, format_version          "edgesplit-split-policy", 1
    module_class, ray_version       the RLModule class that was exported and the Ray that wrote it
    observation_space               {"type": "Box", "shape": [n], "low": a, "high": b}
    action_space                    {"type": "Discrete", "n": m} or {"type": "MultiDiscrete", "nvec": [...]}
    head                            "pi" (PPO: logits) or "af" (DQN: advantages)
    layers                          [{"op": "linear", "weight": name, "bias": name | null, "in": i, "out": o},
                                     {"op": "tanh"}, {"op": "layer_norm", "weight": ..., "bias": ..., "eps": e}, ...]
    obs_normalization               null (the default env-to-module pipeline; other connectors are refused)
    env_config                      the SplitEnv config trained on (rebuilds observations and decodes actions)
    num_layers                      L of the model whose split is chosen
    source_checkpoint               absolute path of the checkpoint exported
    source_module_sha256            sha256 of the module's state file in that checkpoint
    weights_sha256                  sha256 of policy.safetensors (checked on load)

``policy.safetensors`` holds the module's whole ``state_dict`` under RLlib's own tensor names; ``layers`` names the
tensors the greedy path uses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT = "edgesplit-split-policy"
FORMAT_VERSION = 1
SPEC_FILE = "policy.json"
WEIGHTS_FILE = "policy.safetensors"
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "silu": torch.nn.functional.silu,
               "elu": torch.nn.functional.elu, "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu}
"""Element-wise ops a layer list may hold (by name)."""
DEFAULT_CONNECTORS = {"AddObservationsFromEpisodesToBatch", "AddTimeDimToBatchAndZeroPad",
                      "AddStatesFromEpisodesToBatch", "AgentToModuleMapping", "BatchIndividualItems", "NumpyToTensor"}
"""Env-to-module connectors that pass a flat Box observation through unchanged."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ExportedPolicyNet:
    """The greedy path of an exported policy as plain torch ops (see the module docstring)."""

    def __init__(self, spec: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.spec = spec
        space = spec["action_space"]
        self.nvec = None if space["type"] == "Discrete" else [int(n) for n in space["nvec"]]
        self.num_actions = int(space["n"]) if self.nvec is None else sum(self.nvec)
        self.obs_dim = int(spec["observation_space"]["shape"][0])
        self._ops = [self._op(layer, tensors) for layer in spec["layers"]]
        with torch.inference_mode():
            out = self.logits(np.zeros((1, self.obs_dim), dtype=np.float32))
        if out.shape[1] != self.num_actions:
            raise ValueError(f"the exported net outputs {out.shape[1]} values, the action space needs "
                             f"{self.num_actions}")

    @staticmethod
    def _op(layer: dict[str, Any], tensors: dict[str, torch.Tensor]):
        def tensor(key: str) -> torch.Tensor | None:
            name = layer.get(key)
            if name is None:
                return None
            if name not in tensors:
                raise ValueError(f"layer {layer} names tensor {name!r}, which the weights file lacks")
            return tensors[name].float().contiguous()

        op = layer.get("op")
        if op == "linear":
            weight, bias = tensor("weight"), tensor("bias")
            if weight is None or weight.shape != (layer["out"], layer["in"]):
                raise ValueError(f"linear layer {layer} has a weight of shape {getattr(weight, 'shape', None)}")
            return lambda x: torch.nn.functional.linear(x, weight, bias)
        if op == "layer_norm":
            weight, bias, eps = tensor("weight"), tensor("bias"), float(layer["eps"])
            return lambda x: torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias, eps)
        if op in ACTIVATIONS:
            return ACTIVATIONS[op]
        raise ValueError(f"unknown layer op {op!r}; accepted: linear, layer_norm, {', '.join(ACTIVATIONS)}")

    def logits(self, obs: np.ndarray) -> torch.Tensor:
        """``[n, outputs]`` action logits (PPO) or advantages (DQN) of ``[n, obs_dim]`` observations."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"observations must have shape [n, {self.obs_dim}], got {tuple(x.shape)}")
        with torch.inference_mode():
            for op in self._ops:
                x = op(x)
        return x

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions: ``[n]`` ints, or ``[n, dims]`` for a MultiDiscrete space (argmax per dimension)."""
        logits = self.logits(obs)
        if self.nvec is None:
            return logits.argmax(dim=-1).numpy()
        return torch.stack([part.argmax(dim=-1) for part in torch.split(logits, self.nvec, dim=-1)], -1).numpy()

    def act(self, obs: np.ndarray) -> Any:
        """The greedy action of one observation (an int, or an array for MultiDiscrete)."""
        action = self.act_batch(np.asarray(obs, dtype=np.float32)[None])[0]
        return action if self.nvec is not None else int(action)


def read_spec(path: str | Path) -> dict[str, Any]:
    """``policy.json`` of an export directory, checked for format and version."""
    path = Path(path)
    if not (path / SPEC_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ValueError(f"{path} is not a policy export (needs {SPEC_FILE} and {WEIGHTS_FILE}; write one with "
                         f"`edgesplit export-policy CHECKPOINT --out DIR`)")
    try:
        spec = json.loads((path / SPEC_FILE).read_text())
    except ValueError as err:
        raise ValueError(f"{path / SPEC_FILE} is not valid JSON: {err}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT or spec.get("format_version") != FORMAT_VERSION:
        found = (spec.get("format"), spec.get("format_version")) if isinstance(spec, dict) else None
        raise ValueError(f"{path}: unsupported policy export {found}; this code reads {FORMAT} v{FORMAT_VERSION}")
    return spec


def load_exported(path: str | Path) -> ExportedPolicyNet:
    """The policy net of an export directory (JSON + safetensors only; the weights' sha256 is checked)."""
    path = Path(path)
    spec = read_spec(path)
    digest = sha256_file(path / WEIGHTS_FILE)
    if digest != spec.get("weights_sha256"):
        raise ValueError(f"{path / WEIGHTS_FILE} has sha256 {digest[:16]}…, {SPEC_FILE} expects "
                         f"{str(spec.get('weights_sha256'))[:16]}…; the export is damaged or was edited")
    return ExportedPolicyNet(spec, load_file(str(path / WEIGHTS_FILE)))


# ---- export (needs RLlib) -----------------------------------------------------------------------------------------
def _leaf_layers(module: Any, part: Any) -> list[dict[str, Any]]:
    """The torch leaf modules of ``part`` (a sub-module of ``module``) in order, as layer dicts."""
    names = {id(m): name for name, m in module.named_modules()}
    layers: list[dict[str, Any]] = []
    for leaf in (m for m in part.modules() if not list(m.children())):
        name = names[id(leaf)]
        if isinstance(leaf, torch.nn.Linear):
            layers.append({"op": "linear", "weight": f"{name}.weight",
                           "bias": f"{name}.bias" if leaf.bias is not None else None,
                           "in": leaf.in_features, "out": leaf.out_features})
        elif isinstance(leaf, torch.nn.LayerNorm):
            layers.append({"op": "layer_norm", "weight": f"{name}.weight" if leaf.weight is not None else None,
                           "bias": f"{name}.bias" if leaf.bias is not None else None, "eps": leaf.eps})
        elif type(leaf).__name__.lower() in ACTIVATIONS:
            layers.append({"op": type(leaf).__name__.lower()})
        elif not isinstance(leaf, torch.nn.Identity):
            raise ValueError(f"cannot export layer {name} of type {type(leaf).__name__}; supported: Linear, "
                             f"LayerNorm, Identity, {', '.join(ACTIVATIONS)}")
    return layers


def greedy_layers(module: Any) -> tuple[list[dict[str, Any]], str]:
    """The layer list of a PPO or DQN RLModule's greedy path (encoder, then the action head) and the head's name."""
    encoder = getattr(module, "encoder", None)
    if encoder is None:
        raise ValueError(f"{type(module).__name__} has no encoder; only RLlib's default PPO/DQN modules are exported")
    for attr in ("actor_encoder", "encoder"):
        if getattr(encoder, attr, None) is not None:
            encoder = getattr(encoder, attr)
            break
    head = next((a for a in ("pi", "af") if getattr(module, a, None) is not None), None)
    if head is None:
        raise ValueError(f"{type(module).__name__} has neither a 'pi' nor an 'af' head")
    return _leaf_layers(module, encoder) + _leaf_layers(module, getattr(module, head)), head


def _space(space: Any) -> dict[str, Any]:
    kind = type(space).__name__
    if kind == "Box":
        return {"type": "Box", "shape": list(space.shape), "low": float(np.min(space.low)),
                "high": float(np.max(space.high))}
    if kind == "Discrete":
        return {"type": "Discrete", "n": int(space.n)}
    if kind == "MultiDiscrete":
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in space.nvec]}
    raise ValueError(f"cannot export a policy over a {kind} space")


def _check_connectors(checkpoint: Path) -> bool:
    """True when the env-to-module pipeline was found and is the default one; ValueError naming another connector.

    The pipeline is restored by RLlib's own checkpoint loader (it unpickles the class: trusted checkpoints only)."""
    from ray.rllib.connectors.connector_pipeline_v2 import ConnectorPipelineV2

    found = [p for p in (checkpoint / "env_runner" / "env_to_module_connector",
                         checkpoint / "checkpoint" / "env_runner" / "env_to_module_connector") if p.is_dir()]
    if not found:
        return False
    pipeline = ConnectorPipelineV2.from_checkpoint(found[0])
    extra = sorted({type(c).__name__ for c in pipeline.connectors} - DEFAULT_CONNECTORS)
    if extra:
        raise ValueError(f"the checkpoint's env-to-module connectors {extra} change observations; the export "
                         f"reproduces the default pipeline only (train without them)")
    return True


def _env_config(checkpoint: Path, env_config: str | Path | dict | None) -> dict[str, Any]:
    from rllib_env.split_env import SplitEnvConfig

    if isinstance(env_config, dict):
        return SplitEnvConfig.from_dict(env_config).to_dict()
    candidates = [Path(env_config)] if env_config is not None else \
        [p / "env_config.json" for p in (checkpoint, *checkpoint.parents[:3])]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ValueError(f"no env_config.json beside {checkpoint} (train-policy and mbrl write one); pass env_config")
    return SplitEnvConfig.from_dict(json.loads(found.read_text())).to_dict()


def _num_layers(env_config: dict[str, Any], action: dict[str, Any]) -> int:
    if env_config["action"] == "absolute":
        return (action["n"] if action["type"] == "Discrete" else action["nvec"][0]) - 1
    from surrogate.dataset import model_profile

    return model_profile(env_config["model"]).num_layers


def self_check(module: Any, net: ExportedPolicyNet, samples: int, seed: int = 0) -> int:
    """Run the module and the exported net on ``samples`` random observations; ValueError on any difference.
    Returns the number of observations compared."""
    from rllib_env.policy import Policy

    space = net.spec["observation_space"]
    obs = np.random.default_rng(seed).uniform(space["low"], space["high"], (samples, net.obs_dim)).astype(np.float32)
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(obs)})
    if net.spec["head"] == "pi" and not torch.allclose(out["action_dist_inputs"].float(), net.logits(obs),
                                                          rtol=1e-5, atol=1e-5):
        raise ValueError("the exported net's logits differ from the RLModule's; the module is not a plain MLP path")
    mismatch = int((np.asarray(Policy(module).act_batch(obs)) != net.act_batch(obs)).reshape(samples, -1).any(1).sum())
    if mismatch:
        raise ValueError(f"the exported net disagrees with the RLModule on {mismatch}/{samples} observations")
    return samples


def export_policy(checkpoint: str | Path, out: str | Path, env_config: str | Path | dict | None = None,
                  samples: int = 512) -> Path:
    """Export an RLlib algorithm (or module) checkpoint to ``out`` (see the module docstring); returns ``out``.

    Only for trusted local checkpoints: they are pickles. ``env_config`` defaults to the ``env_config.json`` that
    ``train-policy`` / ``mbrl`` write beside the checkpoint."""
    from rllib_env.policy import Policy, module_dir

    checkpoint = Path(checkpoint).resolve()
    if not checkpoint.exists():
        raise ValueError(f"checkpoint {checkpoint} does not exist")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    source = module_dir(checkpoint)
    config = _env_config(checkpoint, env_config)
    connectors_checked = _check_connectors(checkpoint)
    module = Policy.from_checkpoint(checkpoint).module
    tensors = {name: t.detach().cpu().clone().contiguous() for name, t in module.state_dict().items()}
    action = _space(module.action_space)
    state_file = next((p for p in sorted(source.glob("module_state*")) if p.is_file()), None)
    layers, head = greedy_layers(module)
    import ray

    spec = {"format": FORMAT, "format_version": FORMAT_VERSION, "module_class": f"{type(module).__module__}."
            f"{type(module).__name__}", "ray_version": ray.__version__,
            "observation_space": _space(module.observation_space), "action_space": action,
            "layers": layers, "head": head, "obs_normalization": None, "connectors_checked": connectors_checked,
            "env_config": config, "num_layers": _num_layers(config, action), "source_checkpoint": str(checkpoint),
            "source_module_sha256": sha256_file(state_file) if state_file else None}
    net = ExportedPolicyNet(spec, tensors)
    self_check(module, net, samples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE))
    spec["weights_sha256"] = sha256_file(out / WEIGHTS_FILE)
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return out


__all__ = ["ACTIVATIONS", "FORMAT", "FORMAT_VERSION", "SPEC_FILE", "WEIGHTS_FILE", "ExportedPolicyNet",
           "export_policy", "greedy_layers", "load_exported", "read_spec", "self_check", "sha256_file"]
