"""Model-based RL for the split policy: train PPO on the surrogate, spend real LLM evaluations only where needed.

from rllib_env.mbrl import MbrlConfig, run_mbrl
outcome = run_mbrl(real_source, env_config, MbrlConfig(budget=20), out="runs/mbrl")
outcome.evaluations      # one row per real LLM evaluation (why it was asked for, cell, quality, wall time)

The loop (every real evaluation goes through one counted :class:`~rllib_env.sources.RealRewardSource`):

1. Initial design: ``initial`` cells chosen by greedy maximin over the surrogate's features of the candidate grid
   (every allowed lossy split × every grid setting; :func:`surrogate.active.space_filling`), evaluated for real.
2. Fit the deep-ensemble surrogate (:class:`~surrogate.model.QualitySurrogate`, the Tune-chosen config when
   ``surrogate_config`` names one) on every real evaluation so far; measured cells keep their measured value in
   the training environment (the surrogate fills in the rest).
3. Train PPO on the surrogate environment (the first round ``iterations_first`` iterations, later rounds
   ``iterations_per_round`` more, warm-started: one algorithm, the surrogate inside its source is swapped).
4. Roll the greedy policy out on the real evaluator over ``rollout_traces`` fresh traces, spending at most
   ``per_round`` new evaluations: the cells the policy actually picks are the ones whose quality decides its
   reward. Then spend what is left of the round on the policy's blind spots: for the channel settings the
   rollouts visited, the never-evaluated splits most likely to be the best (``explore="thompson"``: Thompson draws
   of the surrogate, observation noise included, with measured cells fixed; ``"ucb"``: optimistic gain over the
   best verified split), weighted by how often each setting was visited.
5. Refit on everything, go to 3, until ``budget`` real evaluations are spent (or a round finds nothing worth
   evaluating, even over every grid setting); then ``final_iterations`` more.

Scale: ``scale`` (:class:`~rllib_env.scale.TrainScale`) sizes the PPO runs. With remote env runners every runner
holds its own copy of the training source (a ``pushed`` spec, :mod:`rllib_env.registry`): after each refit the
driver pushes the new surrogate and the measured cells to every runner, so the runners train on exactly what the
driver's source serves. The real evaluations stay in this process (one counted source sees every query).

Counting: ``real_evaluations`` is the number of distinct lossy cells whose quality needed the LLM (cache misses);
``queries`` counts every cell asked for, cache hits included. Outputs under ``out``: ``evaluations.parquet``,
``rounds.parquet`` (per round: evaluations, queries, optional held-out reward), ``surrogate/`` (checkpoint),
``policy/`` (the PPO checkpoint and its learning curve).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgesplit.scenario import ChannelSetting
from rllib_env.device_state import DeviceState
from rllib_env.policy import Policy
from rllib_env.registry import push_surrogate, register_source, unregister_source
from rllib_env.scale import TrainScale
from rllib_env.sources import QUALITY_COLUMNS, RealRewardSource, SurrogateRewardSource, cell_frame, lossless
from rllib_env.split_env import SplitEnv, SplitEnvConfig
from rllib_env.train import PolicyTrainer, ensure_ray, merge, placed_config, read_overrides
from surrogate.active import REWARD_TARGET, probability_best, quality_args

EXPLORATION = ("thompson", "ucb", "none")
DESIGNS = ("space-filling", "decisive")
DESIGN_TRACES = 16
"""Training-distribution traces whose visited settings weight the decisive design (free: no quality asked)."""
ROLLOUT_SEED = 500_000
"""First seed of the real rollouts (disjoint from training resets and from the held-out traces)."""


@dataclass(frozen=True)
class MbrlConfig:
    """Budget and schedule of the model-based loop."""

    budget: int = 20
    """Real LLM evaluations in total (initial design included)."""
    initial: int = 8
    """Cells of the space-filling initial design."""
    per_round: int = 4
    """Most new real evaluations per round (policy rollouts and exploration together)."""
    iterations_first: int = 12
    """PPO iterations after the first fit."""
    iterations_per_round: int = 3
    """PPO iterations after each refit."""
    final_iterations: int = 6
    """PPO iterations once the budget is spent."""
    rollout_traces: int = 4
    """Fresh traces rolled out on the real evaluator per round."""
    explore: str = "thompson"
    """Exploration step: thompson (probability of being the best split), ucb (optimistic gain) or none."""
    ucb_beta: float = 1.0
    """Optimism of the ucb exploration step."""
    samples: int = 256
    """Predictive draws behind the thompson exploration step."""
    max_rounds: int = 50
    """Safety stop when the policy keeps choosing cells already evaluated."""
    surrogate_config: Any = None
    """Ensemble config: None (defaults), a dict, an EnsembleConfig or the Tune driver's best-config JSON path."""
    design: str = "space-filling"
    """Initial design: ``space-filling`` (greedy maximin over the surrogate's features) or ``decisive`` (needs
    ``sensitivity``): the cells whose prior reward — the first-order KL as the log-PPL ratio, no evaluation spent —
    is nearest the best of their setting, settings taken in order of how often training traces visit them, and
    settings where no lossy split can beat the lossless ones skipped (see :func:`decisive_design`)."""
    sensitivity: Any = None
    """Sensitivity profiles ``{model: SensitivityProfile}`` (:mod:`surrogate.sensitivity`, one clean forward +
    backward pass, no cell evaluated): the surrogate and the initial design then use the first-order KL feature."""
    rollout_policy: str = "ppo"
    """Whose rollouts spend each round's evaluations: ``ppo`` (the policy being trained) or ``planner`` (the
    :class:`~rllib_env.planner.SwitchingPlanner` on the current surrogate — with switching costs, the policy that
    is deployed; its channel forecaster is counted once, on simulated traces seeded by ``seed``)."""
    seed: int = 0
    """Seed of the design, the surrogate and PPO."""

    def __post_init__(self) -> None:
        if self.rollout_policy not in ("ppo", "planner"):
            raise ValueError(f"rollout_policy must be ppo or planner, got {self.rollout_policy!r}")
        if not 2 <= self.initial <= self.budget:
            raise ValueError(f"initial must be in 2..budget ({self.budget}), got {self.initial}")
        if min(self.per_round, self.rollout_traces, self.max_rounds, self.iterations_first) < 1:
            raise ValueError("per_round, rollout_traces, max_rounds and iterations_first must be >= 1")
        if min(self.iterations_per_round, self.final_iterations) < 0 or not self.ucb_beta >= 0:
            raise ValueError("iterations_per_round, final_iterations and ucb_beta must be >= 0")
        if self.explore not in EXPLORATION or self.samples < 1:
            raise ValueError(f"explore must be one of {', '.join(EXPLORATION)} and samples >= 1")
        if self.design not in DESIGNS or (self.design == "decisive" and not self.sensitivity):
            raise ValueError(f"design must be one of {', '.join(DESIGNS)}; decisive needs sensitivity profiles")


@dataclass
class MbrlOutcome:
    """What the loop produced."""

    policy: Policy
    """The final policy."""
    checkpoint: Path | None
    """PPO checkpoint (None without ``out``)."""
    rounds: pd.DataFrame
    """One row per round."""
    evaluations: pd.DataFrame
    """One row per real LLM evaluation."""
    surrogate: Any
    """The final surrogate."""
    curve: pd.DataFrame
    """PPO learning curve over all rounds."""


def candidate_cells(env: SplitEnv) -> list[tuple[int, ChannelSetting]]:
    """Every allowed lossy split × every setting of the env's SNR grid (the design's candidate pool)."""
    c = env.config
    if c.snr_grid_db is None:
        raise ValueError("the model-based loop needs an snr_grid_db: the design is drawn from grid cells")
    settings = []
    for snr in c.snr_grid_db:
        extra = [{"p": p} for p in c.p_values] if c.channel_kind == "dropout" else [{}]
        bits = c.bits_options or (c.bits,)
        for more in extra:
            for b in bits:
                kind = {"kind": c.channel_kind, "snr_db": float(snr), **more}
                if c.channel_kind == "digital":
                    kind.update(bits=b, modulation=c.modulation)
                settings.append(ChannelSetting(**kind))
    return [(k, s) for s in settings for k in range(env.low_k, env.high_k + 1)
            if not lossless(k, s, env.num_layers)]


def initial_design(env: SplitEnv, count: int, seed: int, sensitivity: Any = None) -> list[tuple[int, ChannelSetting]]:
    """``count`` space-filling candidate cells (greedy maximin over standardised surrogate features)."""
    from surrogate.active import space_filling
    from surrogate.features import FeatureScaler, feature_matrix

    cells = candidate_cells(env)
    if count > len(cells):
        raise ValueError(f"initial design of {count} cells exceeds the {len(cells)} candidate cells")
    raw = feature_matrix(cell_frame(env.source.descriptor, cells), sensitivity)
    picks = space_filling(FeatureScaler.fit(raw).transform(raw), count, seed)
    return [cells[i] for i in picks]


def setting_visits(env: SplitEnv, traces: int, seed: int) -> Counter:
    """How often ``traces`` fresh traces visit each channel setting (no reward is asked: the blocks are exogenous)."""
    visits: Counter = Counter()
    for i in range(traces):
        env.reset(seed=seed * 7919 + i)
        for _ in range(env.config.episode_steps):
            visits[env.setting()] += 1
            env.next_block()
    return visits


def decisive_design(env: SplitEnv, count: int, seed: int, sensitivity: Any) -> list[tuple[int, ChannelSetting]]:
    """``count`` cells where the split decision is decided, chosen before any real evaluation.

    Prior quality of a lossy cell: its first-order KL (:func:`surrogate.features.linearised_kl_of`) taken as the
    log-PPL ratio — good at high SNR, optimistic at low SNR. Per setting the prior reward of every allowed split
    (lossless ones exact) gives each lossy cell its gap to the setting's best; settings whose best prior lossy cell
    does not beat the best lossless split are decided without measuring. The cells are then taken round-robin over
    the remaining settings in order of their visits on :data:`DESIGN_TRACES` training traces, nearest-to-best
    first, until ``count``.
    """
    from surrogate.features import linearised_kl_of

    visits = setting_visits(env, DESIGN_TRACES, seed)
    ks = list(range(env.low_k, env.high_k + 1))
    reward_fn = env.book(env.device_state)
    queues = []
    for setting, _ in visits.most_common():
        is_lossy = np.array([not lossless(k, setting, env.num_layers) for k in ks])
        if not is_lossy.any():
            continue
        prior = np.zeros(len(ks))  # lossless splits are exact
        lossy_cells = [(k, setting) for k in np.asarray(ks)[is_lossy].tolist()]
        prior[is_lossy] = linearised_kl_of(cell_frame(env.source.descriptor, lossy_cells), sensitivity)
        reward, feasible = reward_fn.rewards(ks, [setting] * len(ks), prior, prior, 1.0)
        reward = np.where(feasible, reward, -np.inf)
        if reward[is_lossy].max() > reward[~is_lossy].max(initial=-np.inf):
            queues.append([(ks[i], setting) for i in np.argsort(-reward, kind="stable")
                           if is_lossy[i] and np.isfinite(reward[i])])
    cells: list[tuple[int, ChannelSetting]] = []
    while len(cells) < count and any(queues):
        for queue in queues:
            if queue and len(cells) < count:
                cells.append(queue.pop(0))
    if len(cells) < count:  # every setting decided or exhausted: fill with the space-filling design
        extra = [c for c in initial_design(env, min(count * 2, len(candidate_cells(env))), seed) if c not in cells]
        cells.extend(extra[: count - len(cells)])
    return cells


def fit_surrogate(labelled: pd.DataFrame, config: Any, seed: int, sensitivity: Any = None) -> Any:
    """A fresh deep ensemble fitted on the real evaluations so far (with the sensitivity feature when given)."""

    from surrogate.fit import read_config
    from surrogate.model import QualitySurrogate

    return QualitySurrogate(replace(read_config(config), seed=seed), sensitivity=sensitivity).fit(labelled)


class MbrlLoop:
    """The loop's state between steps (see the module docstring); :func:`run_mbrl` drives it."""

    def __init__(self, real: RealRewardSource, env_config: dict[str, Any], config: MbrlConfig,
                 overrides: dict[str, Any] | None = None, scale: TrainScale | None = None) -> None:
        self.real, self.config = real, config
        self.env_config = SplitEnvConfig.from_dict(env_config).to_dict()
        self.real_env = SplitEnv(self.env_config, source=real)
        self.surrogate = None
        self.overrides, self.scale = overrides, scale or TrainScale()
        self.source = SurrogateRewardSource(None, real.descriptor)
        self.spec = register_source(self.source, pushed=True)
        self.trainer: PolicyTrainer | None = None
        self.rollout_seed = ROLLOUT_SEED
        self.rng = np.random.default_rng([config.seed, 0x3B71])
        self._forecaster = None

    @property
    def spent(self) -> int:
        """Real LLM evaluations so far."""
        return self.real.stats.llm_evaluations

    def design(self) -> None:
        """Evaluate the initial design for real and fit the first surrogate."""
        self.real.tag = "design"
        if self.config.design == "decisive":
            cells = decisive_design(self.real_env, self.config.initial, self.config.seed, self.config.sensitivity)
        else:
            cells = initial_design(self.real_env, self.config.initial, self.config.seed, self.config.sensitivity)
        self.real.quality([k for k, _ in cells], [s for _, s in cells])
        self.refit()

    def refit(self) -> None:
        """Fit the surrogate on every real evaluation and serve it to the training envs."""
        self.surrogate = fit_surrogate(self.real.labelled(), self.config.surrogate_config, self.config.seed,
                                       self.config.sensitivity)
        self.source.set_model(self.surrogate, known=self.real.measured())
        self.push()

    def push(self) -> None:
        """Serve the current surrogate and measured cells from the remote env runners' sources too (no-op without
        remote runners or before the trainer exists)."""
        if self.trainer is None or self.scale.num_env_runners == 0:
            return
        spec, model, surrogate, known = self.spec, self.env_config["model"], self.surrogate, self.real.measured()
        self.trainer.algo.env_runner_group.foreach_env_runner(
            lambda _runner: push_surrogate(spec, model, surrogate, known), local_env_runner=False)

    def train(self, iterations: int, tag: str) -> None:
        """More PPO iterations on the surrogate env (the trainer is built on first use)."""
        if iterations < 1:
            return
        if self.trainer is None:
            self.trainer = PolicyTrainer({**self.env_config, "source": self.spec}, overrides=self.overrides,
                                         scale=self.scale, seed=self.config.seed)
            self.push()
        self.trainer.train(iterations, tag=tag)

    def rollout(self, limit: int, tag: str, policy: Callable | None = None) -> list[tuple[Any, ChannelSetting]]:
        """Greedy rollouts on the real source, stopping before the ``limit``-th new evaluation; returns the visited
        (device state, setting) pairs. ``policy(env, obs)`` defaults to the PPO policy."""
        self.real.tag, env, policy = tag, self.real_env, policy or self.trainer.policy()
        start, visited = self.spent, []
        for _ in range(self.config.rollout_traces):
            obs, _ = env.reset(seed=self.rollout_seed)
            self.rollout_seed += 1
            for _ in range(env.config.episode_steps):
                action = policy(env, obs)
                k, bits = env.decode(action)
                setting = env.setting(bits)
                visited.append((env.device_state, setting))
                if self.real.would_evaluate(k, setting) and self.spent - start >= limit:
                    return visited
                obs, _, _, truncated, _ = env.step(action)
                if truncated:
                    break
        return visited

    def planner(self) -> Callable:
        """A :class:`~rllib_env.planner.SwitchingPlanner` on the current surrogate (a new one after every refit)."""
        from rllib_env.planner import ChannelForecaster, ForecasterConfig, SwitchingPlanner

        if self._forecaster is None:
            self._forecaster = ChannelForecaster.fit(self.env_config, ForecasterConfig(seed=self.config.seed))
        return SwitchingPlanner(self.source, self._forecaster)

    def explore(self, visited: list, limit: int, tag: str) -> None:
        """Spend up to ``limit`` evaluations on the never-evaluated cells with the largest visit-weighted
        optimistic gain over the best split verified for their setting (see :meth:`optimistic_gains`)."""
        if self.config.explore == "none" or limit <= 0:
            return
        self.real.tag = tag
        device = {s: d for d, s in visited}
        score = self.best_probability if self.config.explore == "thompson" else self.optimistic_gains
        scored = [(weight * gain, k, setting) for setting, weight in Counter(s for _, s in visited).items()
                  for k, gain in score(setting, device[setting]) if gain > 0]
        for _, k, setting in sorted(scored, key=lambda row: -row[0])[:limit]:
            self.real.quality([k], [setting])

    def best_probability(self, setting: ChannelSetting, device_state: Any) -> list[tuple[int, float]]:
        """(k, P(k is the best split)) for unevaluated feasible splits, by Thompson draws of the surrogate.

        Draws include the observation noise: the truth the policy is scored on is itself one noisy measurement per
        cell, so near-best candidates keep a real chance of being the best until measured. Measured and lossless
        cells enter with their known values.
        """
        env, ks = self.real_env, list(range(self.real_env.low_k, self.real_env.high_k + 1))
        prediction = self.surrogate.predict(cell_frame(self.real.descriptor, [(k, setting) for k in ks]))
        draws = prediction.sample(self.config.samples, self.rng)
        for i, k in enumerate(ks):
            known = self.real.peek(k, setting)
            if known is not None:
                draws[:, i] = [known[QUALITY_COLUMNS.index(t)] for t in prediction.targets]
        reward_fn, settings = env.book(device_state), [setting] * len(ks)
        rewards, feasible = reward_fn.rewards(ks, settings, **quality_args(draws, prediction.targets))
        p_best = probability_best(rewards, np.zeros(len(ks), dtype=int), feasible)
        return [(k, float(p)) for i, (k, p) in enumerate(zip(ks, p_best, strict=True))
                if feasible[i] and self.real.would_evaluate(k, setting)]

    def grid_states(self, visited: list) -> list[tuple[Any, ChannelSetting]]:
        """Every grid setting once (at the last visited device state): exploration beyond what the policy saw."""
        levels = self.real_env.config.device
        device = visited[-1][0] if visited else DeviceState(levels.f_levels_hz[0], levels.load_levels[0])
        return [(device, setting) for setting in dict.fromkeys(s for _, s in candidate_cells(self.real_env))]

    def optimistic_gains(self, setting: ChannelSetting, device_state: Any) -> list[tuple[int, float]]:
        """(k, gain) for unevaluated feasible splits whose optimistic reward beats the best verified one.

        Optimism is taken in the surrogate's standardised target space (``mean ∓ ucb_beta · epistemic std`` of the
        target the reward uses, towards better quality) and mapped back, so a split is worth an evaluation when the
        ensemble cannot rule out that it beats every split already measured (or lossless) for this setting.
        """
        env, ks = self.real_env, list(range(self.real_env.low_k, self.real_env.high_k + 1))
        prediction = self.surrogate.predict(cell_frame(self.real.descriptor, [(k, setting) for k in ks]))
        target = REWARD_TARGET[env.reward_config.quality_metric]
        column = prediction.targets.index(target)
        z = prediction.z_mean.copy()
        z[:, column] += (1.0 if target == "top1_agreement" else -1.0) * self.config.ucb_beta * \
            prediction.z_epistemic[:, column]
        reward_fn, settings = env.book(device_state), [setting] * len(ks)
        optimistic, feasible = reward_fn.rewards(ks, settings, **quality_args(prediction.codec.decode(z),
                                                                              prediction.targets))
        open_ = np.array([self.real.would_evaluate(k, setting) for k in ks]) & feasible
        known = [k for k, o, f in zip(ks, open_, feasible, strict=True) if f and not o]
        best = -np.inf
        if known:
            measured = np.stack([self.real.peek(k, setting) for k in known])
            best = float(np.max(reward_fn.rewards(known, [setting] * len(known), *measured.T)[0]))
        return [(k, float(g - best)) for k, g, o in zip(ks, optimistic, open_, strict=True) if o and g > best]

    def close(self) -> None:
        """Stop the algorithm and forget the registered source."""
        if self.trainer is not None:
            self.trainer.stop()
        unregister_source(self.spec)


def run_mbrl(real: RealRewardSource, env_config: dict[str, Any], config: MbrlConfig | None = None,
             out: str | Path | None = None, *, overrides: dict[str, Any] | None = None,
             evaluate: Callable[[Policy], float] | None = None, progress: bool = True,
             scale: TrainScale | None = None) -> MbrlOutcome:
    """Run the loop (see the module docstring); ``evaluate(policy)`` adds a held-out reward per round."""
    config = config or MbrlConfig()
    ensure_ray()  # a scale the cluster cannot place fails here, before any real evaluation is spent
    placed_config(env_config, "ppo", merge(read_overrides("ppo"), overrides), scale, config.seed)
    loop = MbrlLoop(real, env_config, config, overrides, scale)
    rounds: list[dict[str, Any]] = []

    def record(name: str) -> None:
        row = {"round": len(rounds), "phase": name, "real_evaluations": loop.spent,
               "queries": real.stats.queries, "ppo_iterations": len(loop.trainer.curve) if loop.trainer else 0}
        if evaluate is not None and loop.trainer is not None:
            row["heldout_reward"] = evaluate(loop.trainer.policy())
        rounds.append(row)
        if progress:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    try:
        loop.design()
        loop.train(config.iterations_first, tag="round0")
        record("design")
        while loop.spent < config.budget and len(rounds) <= config.max_rounds:
            tag = f"round{len(rounds)}"
            limit = min(config.per_round, config.budget - loop.spent)
            before = loop.spent
            planner = loop.planner() if config.rollout_policy == "planner" else None
            visited = loop.rollout(limit, f"{tag}-policy", planner)
            loop.explore(visited, limit - (loop.spent - before), f"{tag}-explore")
            if loop.spent == before:  # the visited states hold nothing worth evaluating: look at every grid setting
                loop.explore(loop.grid_states(visited), limit, f"{tag}-grid")
            if loop.spent == before:
                break
            loop.refit()
            loop.train(config.iterations_per_round, tag=tag)
            record(tag)
        loop.train(config.final_iterations, tag="final")
        record("final")
        checkpoint = _save(loop, out, config, pd.DataFrame(rounds)) if out is not None else None
        return MbrlOutcome(policy=loop.trainer.policy(), checkpoint=checkpoint, rounds=pd.DataFrame(rounds),
                           evaluations=real.log_frame(), surrogate=loop.surrogate,
                           curve=pd.DataFrame(loop.trainer.curve))
    finally:
        loop.close()


def _save(loop: MbrlLoop, out: str | Path, config: MbrlConfig, rounds: pd.DataFrame) -> Path:
    from surrogate.checkpoint import save_surrogate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loop.real.log_frame().to_parquet(out / "evaluations.parquet", index=False)
    rounds.to_parquet(out / "rounds.parquet", index=False)
    info = {k: (v if isinstance(v, int | float | str) or v is None else str(v)) for k, v in asdict(config).items()
            if k != "sensitivity"}
    info["sensitivity"] = sorted(config.sensitivity) if config.sensitivity else None
    save_surrogate(loop.surrogate, out / "surrogate", extra={"mbrl": info, "real_evaluations": loop.spent,
                                                              "reward": loop.real_env.reward_config.to_dict()})
    return loop.trainer.save(out / "policy")


def budget_ratio(mbrl_evaluations: int, curve: pd.DataFrame, target: float) -> dict[str, float]:
    """How many real evaluations model-free training needed to reach ``target`` held-out reward, and the ratio.

    ``curve`` needs ``real_evaluations`` and ``heldout_reward`` columns (one row per iteration). When the target
    is never reached, ``needed`` is NaN and ``ratio_upper_bound`` = MBRL's evaluations / all model-free ones.
    """
    reached = curve[curve["heldout_reward"] >= target]
    needed = float(reached["real_evaluations"].iloc[0]) if len(reached) else math.nan
    total = float(curve["real_evaluations"].max())
    return {"mbrl_evaluations": float(mbrl_evaluations), "model_free_needed": needed, "model_free_total": total,
            "ratio": mbrl_evaluations / needed if needed == needed and needed > 0 else math.nan,
            "ratio_upper_bound": mbrl_evaluations / total if total > 0 else math.nan}


__all__ = ["ROLLOUT_SEED", "MbrlConfig", "MbrlLoop", "MbrlOutcome", "budget_ratio", "candidate_cells",
           "fit_surrogate", "initial_design", "run_mbrl"]
