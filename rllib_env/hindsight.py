"""The hindsight optimum of a whole trace when changing the split costs a KV migration: dynamic programming.

from rllib_env.hindsight import HindsightOracle, hindsight_plan
plan, total = hindsight_plan(base_rewards, penalties, feasible)    # [T, K], [T, K, K] (or penalty(t, i, j)), [T, K]
steps, summary = evaluate_policies({"hindsight": (HindsightOracle(), {}), "greedy-oracle": (GreedyOracle(), {})},
                                   {**env_config, "switching": True}, table, heldout_seeds(8))

The problem. With ``switching`` on (:mod:`rllib_env.split_env`) the reward of block ``t`` is its base reward minus
the migration penalty of moving from the previous block's split, so the per-block greedy oracle is no longer optimal.
Over a trace of ``T`` blocks and ``K`` candidates (rows of :meth:`SplitEnv.action_table`), :func:`hindsight_plan`
maximises::

    Σ_t base[t, a_t]  −  start[a_0]  −  Σ_{t ≥ 1} penalty[t, a_{t−1}, a_t]      over feasible cells (t, a_t)

by Viterbi in O(T·K²) time: ``penalty[0]`` is not used; ``start`` (default 0) prices the first choice, which the env
charges nothing for on the first block of an episode. A penalty of ``+inf`` forbids a transition. Ties go to the
lowest index. It is the bound of a policy that knows the trace's future; the greedy oracle is its myopic counterpart.

:class:`HindsightOracle` is a policy ``(env, obs) -> action`` like :class:`~rllib_env.baselines.GreedyOracle`. At the
first block of a trace (or whenever the env is not where its plan expects) it replays the trace on a copy of the env
(:func:`trace_tables`): the channel and device states are exogenous, so :meth:`SplitEnv.next_block` on the copy walks
through the very blocks the env will see; the copy shares the env's reward source, and reads each block's base
rewards (:meth:`SplitEnv.candidate_rewards`) and penalty matrix (:meth:`SplitEnv.switch_penalties`). It solves the
DP and follows the plan. With relative actions, moves beyond ``±max_move`` are forbidden transitions. A block with no
feasible candidate keeps all of them (the plan then takes the env's infeasible reward, as the greedy oracle does).

Counted real sources. A :class:`~rllib_env.sources.RealRewardSource` is read only through ``peek`` (cells measured
before, or lossless): planning never spends or counts a real evaluation. A cell that would need the LLM raises
ValueError — evaluate the hindsight oracle against a measured table (or give it one as ``source``). Other sources are
queried like the greedy oracle queries them (a table or surrogate spends nothing; their query counters do move).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgesplit.scenario import ChannelSetting
from rllib_env.sources import RealRewardSource, RewardSource
from rllib_env.split_env import SplitEnv

Penalty = np.ndarray | Callable[[int, int, int], float]


def _penalty_array(penalty: Penalty, horizon: int, size: int) -> np.ndarray:
    if callable(penalty):
        table = np.zeros((horizon, size, size))
        for t in range(1, horizon):
            table[t] = [[penalty(t, i, j) for j in range(size)] for i in range(size)]
        return table
    table = np.asarray(penalty, dtype=float)
    if table.shape != (horizon, size, size):
        raise ValueError(f"penalty must have shape {(horizon, size, size)} (blocks, from, to), got {table.shape}")
    return table


def _check_inputs(base: np.ndarray, feasible: Any, start: Any) -> tuple[np.ndarray, np.ndarray]:
    if base.ndim != 2 or 0 in base.shape:
        raise ValueError(f"base_rewards must be a non-empty [blocks, candidates] array, got shape {base.shape}")
    if np.isnan(base).any():
        raise ValueError("base_rewards must not hold NaN")
    mask = np.ones(base.shape, dtype=bool) if feasible is None else np.asarray(feasible, dtype=bool)
    first = np.zeros(base.shape[1]) if start is None else np.asarray(start, dtype=float)
    if mask.shape != base.shape or first.shape != base.shape[1:]:
        raise ValueError(f"feasible must have shape {base.shape} and start_penalty {base.shape[1:]}, got "
                         f"{mask.shape} and {first.shape}")
    return mask, first


def plan_value(base_rewards: Any, penalty: Penalty, plan: Sequence[int], start_penalty: Any = None) -> float:
    """The objective of one plan, summed block by block as the env sums ``info["reward"]``."""
    base = np.asarray(base_rewards, dtype=float)
    pen = _penalty_array(penalty, *base.shape)
    total, prev = 0.0, None
    for t, a in enumerate(int(a) for a in plan):
        cost = (0.0 if start_penalty is None else float(start_penalty[a])) if prev is None else pen[t, prev, a]
        total += float(base[t, a]) - float(cost)
        prev = a
    return total


def hindsight_plan(base_rewards: Any, penalty: Penalty, feasible: Any = None,
                   start_penalty: Any = None) -> tuple[np.ndarray, float]:
    """The best candidate sequence and its objective (module docstring); ValueError when no feasible plan exists.

    ``base_rewards`` ``[T, K]``; ``penalty`` ``[T, K, K]`` (block, from, to) or ``penalty(t, i, j)`` for ``t ≥ 1``;
    ``feasible`` ``[T, K]`` (default all); ``start_penalty`` ``[K]`` (default 0).
    """
    base = np.asarray(base_rewards, dtype=float)
    mask, first = _check_inputs(base, feasible, start_penalty)
    horizon, size = base.shape
    pen = _penalty_array(penalty, horizon, size)
    if np.isnan(pen).any() or np.isnan(first).any():
        raise ValueError("penalties must not hold NaN (use +inf to forbid a transition)")
    value = np.where(mask[0], base[0] - first, -np.inf)
    back = np.zeros((horizon, size), dtype=int)
    for t in range(1, horizon):
        reach = value[:, None] - pen[t]  # [from, to]
        back[t] = np.argmax(reach, axis=0)
        value = np.where(mask[t], reach[back[t], np.arange(size)] + base[t], -np.inf)
    if not np.isfinite(value.max()):
        raise ValueError("no feasible plan: some block has no feasible candidate reachable from the previous one")
    plan = np.zeros(horizon, dtype=int)
    plan[-1] = int(np.argmax(value))
    for t in range(horizon - 1, 0, -1):
        plan[t - 1] = back[t, plan[t]]
    return plan, plan_value(base, pen, plan, first)


class _PeekedQuality:
    """``quality`` of a counted real source from what it already knows (never spends, never counts)."""

    def __init__(self, real: RealRewardSource) -> None:
        self.real = real

    def quality(self, ks: Sequence[int], settings: Sequence[ChannelSetting]) -> np.ndarray:
        rows = [self.real.peek(k, s) for k, s in zip(ks, settings, strict=True)]
        missing = [f"k={k}, {s.label}" for k, s, row in zip(ks, settings, rows, strict=True) if row is None]
        if missing:
            raise ValueError(f"the hindsight oracle never spends real evaluations, and {len(missing)} cell(s) of this "
                             f"trace are unmeasured (first: {missing[0]}); evaluate it against a measured table or "
                             f"pass one as HindsightOracle(source=...)")
        return np.stack(rows)


def trace_tables(env: SplitEnv, source: RewardSource | None = None) -> dict[str, np.ndarray]:
    """Base rewards ``[T, K]``, feasibility ``[T, K]``, penalties ``[T, K, K]`` and the first block's penalty ``[K]``
    from the env's current block to the end of its episode, read on a copy (the env itself is not moved)."""
    chosen = source or env.source
    quality = _PeekedQuality(chosen) if isinstance(chosen, RealRewardSource) else chosen
    shared = {id(x): x for x in (env.source, chosen, env.profile, env.book, env.config)}
    shadow = copy.deepcopy(env, memo=shared)
    base, feasible, penalties, start = [], [], [], None
    for i in range(max(env.config.episode_steps - env.t, 1)):
        if i:
            shadow.next_block()
        candidates = shadow.candidate_rewards(quality)
        start = candidates["switch_penalty"] if start is None else start
        base.append(candidates["base_reward"])
        feasible.append(candidates["feasible"])
        penalties.append(shadow.switch_penalties())
    tables = {"base_reward": np.array(base), "feasible": np.array(feasible), "penalty": np.array(penalties),
              "start_penalty": start}
    if env.config.action == "relative":
        ks = np.array([k for _, k, _ in env.action_table()])
        tables["penalty"][:, np.abs(ks[:, None] - ks[None, :]) > env.config.max_move] = np.inf
        tables["start_penalty"] = np.where(np.abs(ks - env.prev_k) > env.config.max_move, np.inf, start)
    tables["feasible"][~tables["feasible"].any(axis=1)] = True  # nothing feasible: the exact reward decides
    return tables


def plan_trace(env: SplitEnv, source: RewardSource | None = None) -> tuple[np.ndarray, float]:
    """The hindsight plan (action-table rows) from the env's current block to the end of its episode, and its total."""
    tables = trace_tables(env, source)
    return hindsight_plan(tables["base_reward"], tables["penalty"], tables["feasible"], tables["start_penalty"])


class HindsightOracle:
    """Follows the hindsight plan of each trace (see the module docstring); ``total`` is the planned trace reward."""

    def __init__(self, source: RewardSource | None = None) -> None:
        self.source = source
        self.plan: np.ndarray | None = None
        self.total: float | None = None
        self._env: SplitEnv | None = None
        self._start = 0
        self._expected: tuple[int, int] | None = None

    def __call__(self, env: SplitEnv, obs: np.ndarray) -> Any:
        if env.t == 0 or env is not self._env or self._expected != (env.t, env.prev_k) \
                or env.t - self._start >= len(self.plan):
            self.plan, self.total = plan_trace(env, self.source)
            self._env, self._start = env, env.t
        _, k, bits = env.action_table()[int(self.plan[env.t - self._start])]
        self._expected = (env.t + 1, k)
        return env.action_for(k, bits)


__all__ = ["HindsightOracle", "hindsight_plan", "plan_trace", "plan_value", "trace_tables"]
