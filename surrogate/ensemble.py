"""A deep ensemble of small MLPs trained as one batched network (all members in one matmul per layer).

Members differ by their seeded initialisation only (every member sees every row: with a few dozen real cells,
bootstrapping would throw away data the members need). The spread of the members is the epistemic uncertainty.
The ensemble runs on one torch ``device`` (CPU by default: these networks are tiny, and the weights are drawn on
the CPU generator wherever they then run, so a seed gives the same initial members on every device).
Training is full-batch AdamW on the mean squared error in standardised target space, optionally with a
monotonicity penalty: ``monotone`` maps an input column to a sign per output (+1: the output must not decrease
when that input grows, −1: must not increase), and ``monotone_weight · mean(relu(−sign · ∂out/∂in)²)`` is added to
the loss on the training inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu, "tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu}


@dataclass(frozen=True)
class EnsembleConfig:
    """Hyper-parameters of the deep ensemble (the Tune search space names these fields)."""

    hidden_size: int = 64
    """Units per hidden layer."""
    depth: int = 2
    """Number of hidden layers."""
    lr: float = 3e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    ensemble_size: int = 8
    """Number of members."""
    epochs: int = 1500
    """Full-batch optimisation steps."""
    activation: str = "silu"
    """Hidden activation: silu, tanh, relu or gelu."""
    monotone_weight: float = 0.0
    """Weight of the monotonicity penalty (0: off)."""
    seed: int = 0
    """Seed of the members' initialisation."""

    def __post_init__(self) -> None:
        limits = {"hidden_size": (1, 4096), "depth": (1, 16), "ensemble_size": (1, 256), "epochs": (1, 1_000_000)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (math.isfinite(self.monotone_weight) and self.monotone_weight >= 0):
            raise ValueError(f"monotone_weight must be >= 0, got {self.monotone_weight!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; accepted: {', '.join(ACTIVATIONS)}")

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EnsembleConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected; ints given as floats (Tune) are converted."""
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown EnsembleConfig field(s) {unknown}; accepted: {', '.join(names)}")
        ints = {"hidden_size", "depth", "ensemble_size", "epochs", "seed"}
        return cls(**{k: int(v) if k in ints and float(v).is_integer() else v for k, v in data.items()})


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the caller's setting.

    These networks are tiny: extra threads only add synchronisation, and on a busy machine they make training
    10-20x slower (measured: 0.85 s on one thread vs 16 s on two for the same fit while other jobs held the cores).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class BatchedMLP(torch.nn.Module):
    """``members`` independent MLPs evaluated together: input ``[members, n, in]`` → ``[members, n, out]``."""

    def __init__(self, members: int, sizes: list[int], activation: str, generator: torch.Generator) -> None:
        super().__init__()
        self.activation = activation
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default init, drawn from our generator
            w = (torch.rand(members, fan_in, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            b = (torch.rand(members, 1, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(w.float()))
            self.biases.append(torch.nn.Parameter(b.float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = act(x)
        return x


def _monotone_penalty(net: BatchedMLP, x: torch.Tensor, monotone: dict[int, list[float]]) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = net(x)
    penalty = x.new_zeros(())
    for t in range(out.shape[-1]):
        (grad,) = torch.autograd.grad(out[..., t].sum(), x, create_graph=True)
        for column, signs in monotone.items():
            if signs[t] != 0:
                penalty = penalty + torch.relu(-signs[t] * grad[..., column]).pow(2).mean()
    return penalty


class DeepEnsemble:
    """Train and evaluate the ensemble on standardised inputs and targets (numpy in, numpy out)."""

    def __init__(self, config: EnsembleConfig, in_features: int, out_features: int,
                 monotone: dict[int, list[float]] | None = None, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.in_features, self.out_features = in_features, out_features
        self.monotone = monotone or {}
        generator = torch.Generator().manual_seed(config.seed)
        sizes = [in_features] + [config.hidden_size] * config.depth + [out_features]
        self.net = BatchedMLP(config.ensemble_size, sizes, config.activation, generator).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps = 0

    def _inputs(self, x: np.ndarray) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected inputs of shape [n, {self.in_features}], got {x.shape}")
        return torch.as_tensor(x, dtype=torch.float32, device=self.device).expand(self.config.ensemble_size, -1, -1)

    def train(self, x: np.ndarray, y: np.ndarray, steps: int | None = None) -> float:
        """Run ``steps`` (default: ``config.epochs``) full-batch steps; returns the last MSE."""
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need as many targets as inputs (and at least one), got {len(x)} and {len(y)}")
        xs, ys = self._inputs(x), torch.as_tensor(y, dtype=torch.float32, device=self.device)
        with single_thread():
            return self._steps(xs, ys, self.config.epochs if steps is None else steps)

    def _steps(self, xs: torch.Tensor, ys: torch.Tensor, steps: int) -> float:
        loss = torch.zeros((), device=self.device)
        self.net.train()
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = (self.net(xs) - ys).pow(2).mean()
            total = loss
            if self.config.monotone_weight > 0 and self.monotone:
                total = loss + self.config.monotone_weight * _monotone_penalty(self.net, xs, self.monotone)
            total.backward()
            self.optimizer.step()
            self.steps += 1
        return float(loss.detach())

    @torch.no_grad()
    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """``[members, n, out]`` predictions in standardised target space."""
        self.net.eval()
        with single_thread():
            return self.net(self._inputs(x)).double().cpu().numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights (for safetensors), in host memory."""
        return {name: p.detach().to("cpu", copy=True).contiguous() for name, p in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_dict` (shapes must match the config)."""
        self.net.load_state_dict(state)


__all__ = ["ACTIVATIONS", "BatchedMLP", "DeepEnsemble", "EnsembleConfig", "single_thread"]
