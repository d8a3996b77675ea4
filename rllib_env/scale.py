"""How big an RLlib training run is: env runners, sub-environments per runner, learners and GPUs per learner.

scale = TrainScale(num_env_runners=2, num_envs_per_env_runner=4, num_learners=1, num_gpus_per_learner="auto")
gpus = scale.gpus_per_learner(cluster_gpus=ray.cluster_resources().get("GPU", 0), local_cuda=torch.cuda.is_available())
scale.apply(config, gpus)          # AlgorithmConfig.env_runners(...).learners(...)
check_placement(config, ray.cluster_resources(), local_cuda, joined=bool(os.environ.get("RAY_ADDRESS")))

- ``num_env_runners``: remote env runners (0, the default: sample in this process). Each runner builds its own
  environments and, from a source spec, its own reward source: a counted real source counts per runner and the
  learning curve sums the runners' counts.
- ``num_envs_per_env_runner``: vectorised sub-environments per runner (None: the algorithm YAML's; ppo.yaml 8,
  dqn.yaml 1).
- ``num_learners``: remote learner actors (0, the default: one local learner in this process; > 1: data-parallel).
- ``num_gpus_per_learner``: ``auto`` (default) is 1 when the Ray cluster reports a GPU for every learner
  (``ray.cluster_resources()["GPU"] >= num_learners``) and 0 otherwise; the local learner (``num_learners=0``) runs
  in this process, so there auto is 1 only when the cluster reports a GPU *and* this process sees CUDA. Explicit:
  0 (CPU), a fraction (learners sharing one GPU; at most one learner) or a whole number.

The command line applies these after the algorithm YAML, so the flags win over a YAML's ``env_runners`` /
``learners`` values. :func:`check_placement` refuses what a Ray started here can never place (actors would wait
forever); on a joined cluster (``RAY_ADDRESS``), which may be autoscaling, it warns instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

AUTO = "auto"


def parse_gpus(text: str | float) -> float | str:
    """``auto`` or a non-negative number of GPUs (the ``--num-gpus-per-learner`` value); ValueError otherwise."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"num_gpus_per_learner must be 'auto' or a number of GPUs, got {text!r}") from None
    return value


@dataclass(frozen=True)
class TrainScale:
    """Processes and GPUs of one training run (see the module docstring)."""

    num_env_runners: int = 0
    """Remote env runners (0: sample in this process)."""
    num_envs_per_env_runner: int | None = None
    """Sub-environments per env runner (None: the algorithm YAML's value)."""
    num_learners: int = 0
    """Remote learners (0: one local learner in this process)."""
    num_gpus_per_learner: float | str = AUTO
    """GPUs per learner: ``auto`` or a number (see the module docstring)."""

    def __post_init__(self) -> None:
        for name in ("num_env_runners", "num_learners"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        envs = self.num_envs_per_env_runner
        if envs is not None and (isinstance(envs, bool) or not isinstance(envs, int) or envs < 1):
            raise ValueError(f"num_envs_per_env_runner must be an integer >= 1 (or None), got {envs!r}")
        object.__setattr__(self, "num_gpus_per_learner", parse_gpus(self.num_gpus_per_learner))
        gpus = self.num_gpus_per_learner
        if gpus == AUTO:
            return
        if not (math.isfinite(gpus) and gpus >= 0):
            raise ValueError(f"num_gpus_per_learner must be >= 0, got {gpus!r}")
        if 0 < gpus < 1 and self.num_learners > 1:
            raise ValueError(f"num_gpus_per_learner={gpus:g} (a shared GPU) works with one learner at most; "
                             f"{self.num_learners} data-parallel learners need a whole GPU each")
        if gpus > 1 and not gpus.is_integer():
            raise ValueError(f"num_gpus_per_learner above 1 must be a whole number of GPUs, got {gpus:g}")

    def gpus_per_learner(self, cluster_gpus: float, local_cuda: bool) -> float:
        """The number of GPUs per learner, ``auto`` resolved for a cluster reporting ``cluster_gpus`` GPUs, and
        ``local_cuda`` whether this process sees CUDA (where the local learner runs)."""
        if self.num_gpus_per_learner != AUTO:
            return float(self.num_gpus_per_learner)
        if self.num_learners == 0:
            return 1.0 if cluster_gpus > 0 and local_cuda else 0.0
        return 1.0 if cluster_gpus >= self.num_learners else 0.0

    def apply(self, config: Any, gpus_per_learner: float) -> Any:
        """``config`` with these runners and learners (and ``gpus_per_learner`` GPUs each) set."""
        runners = {"num_env_runners": self.num_env_runners}
        if self.num_envs_per_env_runner is not None:
            runners["num_envs_per_env_runner"] = self.num_envs_per_env_runner
        return config.env_runners(**runners).learners(num_learners=self.num_learners,
                                                       num_gpus_per_learner=gpus_per_learner)


def _cpus_per_learner(config: Any) -> float:
    value = config.num_cpus_per_learner
    if value == AUTO:  # RLlib's rule: a CPU learner takes one CPU, a GPU learner none
        return 0.0 if config.num_gpus_per_learner > 0 else 1.0
    return float(value)


def check_placement(config: Any, cluster: dict[str, float], local_cuda: bool, joined: bool = False) -> None:
    """Refuse (Ray started here) or warn about (``joined`` cluster, maybe autoscaling) an AlgorithmConfig whose
    actors the cluster cannot place; a local learner that wants a GPU this process does not see is always refused."""
    gpus, learners = float(config.num_gpus_per_learner), int(config.num_learners)
    if learners == 0 and gpus > 0 and not local_cuda:
        raise ValueError(f"num_gpus_per_learner={gpus:g} with num_learners=0: the local learner runs in this process, "
                         f"which sees no CUDA device; use num_learners >= 1 to place learners on GPU nodes, or "
                         f"num_gpus_per_learner 0")
    runner_cpus = config.num_env_runners * float(config.num_cpus_per_env_runner)
    needs = {"GPU": learners * gpus, "CPU": runner_cpus + learners * _cpus_per_learner(config)}
    for resource, need in needs.items():
        have = float(cluster.get(resource, 0.0))
        if need <= have:
            continue
        message = (f"the run needs {need:g} Ray {resource}s ({config.num_env_runners} env runners x "
                   f"{float(config.num_cpus_per_env_runner):g} CPU, {learners} learners x "
                   f"{_cpus_per_learner(config):g} CPU + {gpus:g} GPU) but the cluster reports {have:g}")
        if not joined:
            raise ValueError(f"{message}: its actors would wait forever; lower --num-env-runners / --num-learners / "
                             f"--num-gpus-per-learner")
        print(f"warning: {message}; the run waits until an autoscaler adds nodes", flush=True)


__all__ = ["AUTO", "TrainScale", "check_placement", "parse_gpus"]
