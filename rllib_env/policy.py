"""A trained split policy: an RLModule (from an algorithm checkpoint or in memory) that maps observations to actions.

policy = Policy.from_checkpoint("runs/policy/checkpoint")   # or the module directory itself
action = policy.act(obs)                                     # greedy (forward_inference)

Greedy means the argmax of the action logits (PPO) or the module's own exploit action (DQN); for a
MultiDiscrete space the logits are split per dimension. Loading needs only torch and RLlib's module classes, not a
running Ray cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

MODULE_SUBDIR = Path("learner_group") / "learner" / "rl_module" / "default_policy"
"""Where an RLlib algorithm checkpoint keeps the (single-agent) RLModule."""


def module_dir(path: str | Path) -> Path:
    """The RLModule directory inside an algorithm checkpoint (or ``path`` itself if it is a module directory)."""
    path = Path(path)
    for candidate in (path / MODULE_SUBDIR, path / "checkpoint" / MODULE_SUBDIR, path):
        if (candidate / "module_state.pt").is_file() or (candidate / "class_and_ctor_args.pkl").is_file():
            return candidate
    raise ValueError(f"{path} holds no RLlib module checkpoint (looked for {MODULE_SUBDIR} and a module directory)")


class Policy:
    """Greedy actions of an RLModule (see the module docstring)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        space = getattr(module, "action_space", None)
        self.nvec = np.asarray(space.nvec) if space is not None and hasattr(space, "nvec") else None

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Policy:
        """Load from an algorithm checkpoint directory (``train_policy``'s ``checkpoint``) or a module directory."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        return cls(RLModule.from_checkpoint(str(module_dir(path))))

    @torch.no_grad()
    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for ``[n, obs_dim]`` observations: ``[n]`` ints, or ``[n, dims]`` for MultiDiscrete."""
        batch = {"obs": torch.as_tensor(np.asarray(obs, dtype=np.float32))}
        out = self.module.forward_inference(batch)
        if "actions" in out:
            return np.asarray(out["actions"])
        logits = out["action_dist_inputs"]
        if self.nvec is None:
            return logits.argmax(dim=-1).numpy()
        parts = torch.split(logits, self.nvec.tolist(), dim=-1)
        return torch.stack([part.argmax(dim=-1) for part in parts], dim=-1).numpy()

    def act(self, obs: np.ndarray) -> Any:
        """The greedy action for one observation."""
        action = self.act_batch(np.asarray(obs)[None])[0]
        return action if self.nvec is not None else int(action)

    def __call__(self, env: Any, obs: np.ndarray) -> Any:
        """Policy-function form used by :mod:`rllib_env.evaluate` (the env is not needed)."""
        return self.act(obs)


__all__ = ["MODULE_SUBDIR", "Policy", "module_dir"]
