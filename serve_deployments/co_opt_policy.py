"""The ``co_opt`` split policy: the joint split / pruning / power / clock optimiser answering a UE's report.

policy = load_policy(PolicySpec(kind="co_opt", path="/srv/prune_sweep/cells.parquet", model="smollm2-135m"))
decision = policy.decide(UEState(snr_db_history=[12.0], battery=0.5, latency_budget_s=0.1))
decision.k, decision.reason      # "co-opt ...: variant rho=0.3, p=120 mW, f=1.40 GHz ... -> k=12"

What it reads (server-side only, from :class:`~serve_deployments.split_policies.PolicySpec`'s ``path``): a pruning
sweep table (``cells.parquet`` of :mod:`edgesplit.pruning.sweep`; ``path`` is the file or its directory) and,
optionally, ``co_opt.json`` in the same directory (:class:`CoOptVariants`): the pruned variants the deployment
holds (``ratios``), the method and side they were pruned with, and the default budgets. Without the JSON the
deployment holds the dense model only (``ratios = [0.0]``) and method / side are the table's only pair. The policy
version hashes both files.

How a report becomes a problem (:func:`edgesplit.pruning.co_opt_problem.CoOptProblem.from_presets`): the UE's
device preset; its newest SNR, **floored** to 0.5 dB, and loss rate (0.01); ``latency_budget_s`` (None: the
JSON's default, 200 ms); an energy budget of ``energy_budget_j · battery`` (a nominal per-request budget scaled by
the state of charge, at least :data:`MIN_BATTERY_SHARE` of it; None: a full battery); a clock cap of
``cpu_freq_hz`` (floored to 10 MHz; None: the preset's top clock); ``context_tokens`` rounded up to a power of two
(0: the JSON's ``tokens``). Budgets are floored to a 10 % log grid. Every rounding goes the conservative way, so a
cached answer stays feasible for the exact report.

How it solves. On the **grid of variants**: :func:`edgesplit.pruning.co_opt.solve` at each held ratio fixed
(``rho=``), with the measured curve objective of (method, side), and the least loss over all of them (ties: least
UE energy). The answer is k, the wire width as its encoding, and — in ``reason`` only — the chosen variant, the
transmit power and the clock. When no design meets the budgets the built-in rule answers (its decision, ``policy``
``rule``), with a reason naming the binding constraint (the budget whose relaxation alone makes it feasible).
Solutions are cached per rounded key; a default UE over :data:`WARM_RANGE_DB` is solved when the policy is built.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgesplit.channel.state import ChannelState
from edgesplit.cost import ModelProfile, get_device
from edgesplit.pruning.co_opt import CoOptDesign, CoOptProblem, best_of, build_plans, solve
from edgesplit.pruning.curves import QualityCurves
from edgesplit.reward import reward_preset
from serve_deployments.split_pricing import request_tokens, rounded_loss
from serve_deployments.split_schema import SplitDecision, UEState

SIDECAR = "co_opt.json"
"""Name of the variants file next to the sweep table."""
TABLE = "cells.parquet"
"""The table's name when ``path`` is a directory."""
SNR_STEP_DB = 0.5
"""SNR resolution of the solution cache (floored)."""
BUDGET_STEP = 1.1
"""Budgets are floored to powers of this factor (10 % buckets)."""
FREQ_STEP_HZ = 1e7
"""Clock-cap resolution (floored)."""
MIN_BATTERY_SHARE = 0.05
"""Least share of the nominal energy budget granted (an empty battery still asks for a tiny budget)."""
WARM_RANGE_DB = (-10.0, 40.0)
"""SNRs a default UE is solved at when the policy is built."""
CACHE_SIZE = 8192
"""Solved keys kept (the warm ones are kept when it is full)."""
RELAXED = 1e6
"""A budget large enough not to bind (s or J), used to name the binding constraint."""


class CoOptVariants(BaseModel):
    """``co_opt.json``: the pruned variants a deployment holds and the policy's defaults."""

    model_config = ConfigDict(extra="forbid")

    ratios: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    """Pruning ratios of the variants held (0.0: the dense model), each in [0, 0.95]."""
    method: str | None = None
    """Pruning method of the variants (a table ``method``); None: the table's only one."""
    side: str | None = None
    """Pruned side (``device``, ``server``, ``both``); None: the table's only one."""
    latency_budget_s: float = Field(0.2, gt=0.0)
    """Latency budget of a UE that reports none."""
    energy_budget_j: float = Field(0.05, gt=0.0)
    """Nominal UE energy per request at a full battery."""
    tokens: int = Field(128, ge=1)
    """Request size of a UE that reports ``context_tokens = 0``."""
    edge: str = "a100"
    """Edge accelerator preset."""
    link: str = "5g-nr-20mhz"
    """Radio link preset."""
    bits_choices: list[int] = Field(default_factory=lambda: [16], min_length=1)
    """Candidate wire widths of the hidden state."""
    bits_penalty: dict[int, float] = Field(default_factory=dict)
    """Quality penalty of non-lossless widths (16 and 32 default to 0)."""
    min_device_layers: int = Field(0, ge=0)
    """Privacy floor: the UE runs at least this many layers."""

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: list[float]) -> list[float]:
        if any(not 0.0 <= r <= 0.95 for r in value):
            raise ValueError(f"variant ratios must be in [0, 0.95], got {value}")
        return sorted(set(value))


def table_path(path: str | Path) -> Path:
    """The sweep table ``path`` names (the file, or ``cells.parquet`` in the directory)."""
    path = Path(path)
    table = path / TABLE if path.is_dir() else path
    if not table.is_file():
        raise ValueError(f"{path} holds no pruning sweep table ({TABLE})")
    return table


def co_opt_files(path: str | Path) -> list[Path]:
    """What a co_opt policy reads (what its version hashes): the table and, when present, the variants file."""
    table = table_path(path)
    sidecar = table.parent / SIDECAR
    return [table, sidecar] if sidecar.is_file() else [table]


def read_variants(path: str | Path) -> CoOptVariants:
    """The variants file next to the table, or the defaults (dense only) without one."""
    files = co_opt_files(path)
    return CoOptVariants.model_validate(json.loads(files[1].read_text())) if len(files) > 1 else CoOptVariants()


def _floor_bucket(value: float, base: float) -> int:
    """Index of the largest ``base · BUDGET_STEP**i`` not above ``value``."""
    return math.floor(math.log(value / base) / math.log(BUDGET_STEP) + 1e-9)


class CoOptPolicy:
    """The joint optimiser over the held variants (see the module docstring)."""

    kind = "co_opt"

    def __init__(self, profile: ModelProfile, table: pd.DataFrame, variants: CoOptVariants, version: str,
                 reward: str | None = None, warm_snrs_db: tuple[float, float] = WARM_RANGE_DB) -> None:
        from serve_deployments.split_policies import RuleTablePolicy

        self.profile, self.variants, self.version = profile, variants, version
        self.num_layers = profile.num_layers
        layers = set(table["num_layers"].astype(int)) if "num_layers" in table.columns else {self.num_layers}
        if layers != {self.num_layers}:
            raise ValueError(f"the sweep table describes {sorted(layers)} layers, the model has {self.num_layers}")
        self.method, self.side = self._pair(table, variants)
        self.objective = QualityCurves.fit(table, self.num_layers).objective(self.method, self.side)
        self.fallback = RuleTablePolicy(profile, reward_preset(reward or "paper"))
        self._plans: dict[tuple, list] = {}
        self._cache: dict[tuple, tuple[CoOptDesign | None, str]] = {}
        self._warm = set()
        steps = int(round((warm_snrs_db[1] - warm_snrs_db[0]) / SNR_STEP_DB))
        for i in range(steps + 1):
            key = self.key(UEState(snr_db_history=[warm_snrs_db[0] + i * SNR_STEP_DB]))
            self._cache[key] = self._solve(key)
            self._warm.add(key)

    @classmethod
    def from_path(cls, path: str | Path, model: str, reward: str | None = None, version: str = "",
                  **options) -> CoOptPolicy:
        """Build from a server-side table path (and its ``co_opt.json``) for ``model``."""
        from serve_deployments.split_policies import content_version, light_profile

        table = pd.read_parquet(table_path(path))
        return cls(light_profile(model), table, read_variants(path), version or content_version(cls.kind, Path(path)),
                   reward, **options)

    @staticmethod
    def _pair(table: pd.DataFrame, variants: CoOptVariants) -> tuple[str, str]:
        rows = table[table["pattern"].isna()] if "pattern" in table.columns else table
        pairs = sorted({(str(m), str(s)) for m, s in zip(rows["method"], rows["side"], strict=True)
                        if (variants.method in (None, m)) and (variants.side in (None, s))})
        if len(pairs) != 1:
            raise ValueError(f"co_opt.json must name the method and side of the variants: the table offers "
                             f"{pairs or 'no matching rows'}")
        return pairs[0]

    def key(self, state: UEState) -> tuple:
        """The rounded (device, SNR, loss, tokens, latency, energy, clock) key a report is solved at."""
        v, device = self.variants, get_device(state.device)
        latency = state.latency_budget_s or v.latency_budget_s
        battery = 1.0 if state.battery is None else max(state.battery, MIN_BATTERY_SHARE)
        f_cap = device.f_max_hz if state.cpu_freq_hz is None else state.cpu_freq_hz
        return (state.device, math.floor(state.snr_db / SNR_STEP_DB + 1e-9) * SNR_STEP_DB,
                rounded_loss(state.loss_rate), request_tokens(state, v.tokens), _floor_bucket(latency, 1.0),
                _floor_bucket(v.energy_budget_j * battery, 1.0),
                max(math.floor(f_cap / FREQ_STEP_HZ + 1e-9) * FREQ_STEP_HZ, device.f_min_hz))

    def problem(self, key: tuple) -> CoOptProblem:
        """The optimiser's problem at a rounded key."""
        device, snr, loss, tokens, latency, energy, f_cap = key
        v = self.variants
        problem = CoOptProblem.from_presets(
            self.profile, latency_budget_s=BUDGET_STEP**latency, energy_budget_j=BUDGET_STEP**energy, device=device,
            edge=v.edge, link=v.link, snr_db=snr, tokens=tokens, f_max_hz=f_cap, method=self.method, side=self.side,
            bits_choices=tuple(v.bits_choices), bits_penalty={16: 0.0, 32: 0.0, **v.bits_penalty},
            min_device_layers=v.min_device_layers)
        return replace(problem, channel=ChannelState(mean_snr_db=snr, loss_rate=loss))

    def _best(self, problem: CoOptProblem, plans: list) -> CoOptDesign | None:
        results = (solve(problem, self.objective, rho=r, plans=plans, scheme="co_opt") for r in self.variants.ratios)
        return best_of(result.design for result in results if result.design is not None)

    def _solve(self, key: tuple) -> tuple[CoOptDesign | None, str]:
        problem = self.problem(key)
        plan_key = (key[0], key[2], key[3])  # plans depend on device, loss and tokens, not budgets or SNR
        if plan_key not in self._plans:
            self._plans[plan_key] = build_plans(problem)
        plans = self._plans[plan_key]
        design = self._best(problem, plans)
        return design, "" if design is not None else self._binding(problem, plans)

    def _binding(self, problem: CoOptProblem, plans: list) -> str:
        """Which budget, relaxed alone, makes the problem feasible (else both, else memory / privacy floor)."""
        alone = [name for name, relaxed in (("latency", problem.with_budgets(latency_budget_s=RELAXED)),
                                            ("energy", problem.with_budgets(energy_budget_j=RELAXED)))
                 if self._best(relaxed, plans) is not None]
        if alone:
            return " or ".join(alone)
        both = problem.with_budgets(latency_budget_s=RELAXED, energy_budget_j=RELAXED)
        return "latency and energy" if self._best(both, plans) is not None else "memory (or the privacy floor)"

    def lookup(self, state: UEState) -> tuple[tuple, CoOptDesign | None, str]:
        """(key, design or None, binding constraint) of a report, solved on a cache miss."""
        key = self.key(state)
        if key not in self._cache:
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {k: v for k, v in self._cache.items() if k in self._warm}
            self._cache[key] = self._solve(key)
        return key, *self._cache[key]

    def decide(self, state: UEState) -> SplitDecision:
        from serve_deployments.split_policies import _decision

        key, design, binding = self.lookup(state)
        budgets = f"T {BUDGET_STEP**key[4] * 1e3:.3g} ms, E {BUDGET_STEP**key[5] * 1e3:.3g} mJ"
        if design is None:
            decision = self.fallback.decide(state)
            reason = f"co-opt infeasible at snr {key[1]:g} dB, {budgets} (binding: {binding}); rule: {decision.reason}"
            return decision.model_copy(update={"reason": reason[:240]})
        return _decision(self, design.k, design.bits,
                         f"co-opt {self.method}/{self.side} at snr {key[1]:g} dB, {budgets}: variant rho="
                         f"{design.rho:g}, p={design.tx_power_w * 1e3:.3g} mW, f={design.f_hz / 1e9:.2f} GHz, "
                         f"loss {design.loss:.3g} -> k={design.k}")


__all__ = ["SIDECAR", "CoOptPolicy", "CoOptVariants", "co_opt_files", "read_variants", "table_path"]
