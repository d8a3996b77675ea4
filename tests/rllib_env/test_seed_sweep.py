"""The multi-seed comparison: pooled truth cells, the oracle joined once per trace set, the seed table, and a
two-seed run of the loop with the surrogate-greedy row (tiny PPO budget on the synthetic grid)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from rllib_env.baselines import GreedyOracle, rule_policies
from rllib_env.evaluate import evaluate_policies, heldout_seeds, rollout
from rllib_env.mbrl import MbrlConfig
from rllib_env.registry import describe, replay_oracle
from rllib_env.seeds import SeedSweepConfig, seed_table, sweep_seeds, trace_seeds
from rllib_env.sources import TableRewardSource
from rllib_env.split_env import SplitEnv
from surrogate.dataset import add_targets, pool_seeds
from surrogate.synthetic import MODEL_NAME, synthetic_cells

BASE = {"model": MODEL_NAME, "snr_grid_db": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0], "episode_steps": 8,
        "reward": "paper"}
TINY = {"training": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1},
        "env_runners": {"num_envs_per_env_runner": 2}}


def _awgn():
    cells = synthetic_cells(seed=0)
    return cells[cells["channel"] == "awgn"].reset_index(drop=True)


def test_pool_seeds_pools_nll_sums_exactly():
    one = _awgn()
    if "nll_sum" not in one.columns:  # the synthetic grid states perplexities: give it the profiler's sums
        one = one.assign(scored_tokens=100, nll_sum=100 * np.log(one["perplexity"]),
                         clean_nll_sum=100 * np.log(one["clean_perplexity"]))
    other = one.assign(seed=1, nll_sum=one["nll_sum"] + 3.0, scored_tokens=one["scored_tokens"],
                       kl_nats=one["kl_nats"] * 3)
    pooled = pool_seeds(pd.concat([one, other], ignore_index=True))
    assert len(pooled) == len(one) and (pooled["pooled_seeds"] == 2).all() and (pooled["seed"] == 0).all()
    row, a, b = pooled.iloc[7], one.iloc[7], other.iloc[7]
    tokens = a["scored_tokens"] + b["scored_tokens"]
    assert row["scored_tokens"] == tokens
    assert math.log(row["perplexity"] / row["clean_perplexity"]) == pytest.approx(
        (a["nll_sum"] + b["nll_sum"] - a["clean_nll_sum"] - b["clean_nll_sum"]) / tokens)
    assert row["kl_nats"] == pytest.approx(2 * a["kl_nats"])  # token-weighted mean of kl and 3·kl
    add_targets(pooled)  # a valid quality table
    with pytest.raises(ValueError, match="fading"):
        pool_seeds(one.assign(fading="rayleigh"))


def test_the_oracle_is_computed_once_and_joined_to_every_policy():
    table = TableRewardSource(_awgn(), describe(MODEL_NAME))
    policies = {name: rule_policies(SplitEnv(BASE, source=table))[name] for name in ("random", "fixed-k3")}
    steps, _ = evaluate_policies(policies, BASE, table, heldout_seeds(2))
    alone = rollout(policies["fixed-k3"][0], SplitEnv(BASE, source=table), heldout_seeds(2))
    joined = steps[steps["policy"] == "fixed-k3"].reset_index(drop=True)
    assert np.allclose(joined["oracle_reward"], alone["oracle_reward"])
    assert (joined["oracle_k"] == alone["oracle_k"]).all()


def test_seed_table_reports_mean_and_worst_seed():
    frame = pd.DataFrame([{"seed": s, "policy": p, "mean_reward": r, "pct_oracle": pct, "real_evaluations": 20}
                          for s, (r, pct) in enumerate([(1.0, 99.0), (0.8, 80.0), (0.9, 90.0)]) for p in ("mbrl",)])
    row = seed_table(frame).iloc[0]
    assert (row["pct_oracle_mean"], row["pct_oracle_worst"], row["worst_seed"]) == (pytest.approx(89.66666), 80.0, 1)
    assert trace_seeds(3, 2) != trace_seeds(4, 2) and len(set(trace_seeds(3, 16)) & set(trace_seeds(4, 16))) == 0
    with pytest.raises(ValueError, match="model_free"):
        SeedSweepConfig(model_free="sometimes")


def test_two_seeds_with_the_surrogate_greedy_row(ray_session, tmp_path):
    cells = _awgn()
    truth = TableRewardSource(cells, describe(MODEL_NAME))
    mbrl = MbrlConfig(budget=8, initial=4, per_round=2, iterations_first=1, iterations_per_round=1,
                      final_iterations=0, rollout_traces=1, design="decisive", sensitivity=_profile())
    config = SeedSweepConfig(seeds=(0, 1), mbrl=mbrl, traces=2, overrides=TINY)
    frame = sweep_seeds(replay_oracle(cells), truth, BASE, config, tmp_path, progress=False)
    assert set(frame["seed"]) == {0, 1} and (tmp_path / "seeds.parquet").is_file()
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["mbrl"]["design"] == "decisive" and written["mbrl"]["sensitivity"] == [MODEL_NAME]
    rows = frame.set_index(["seed", "policy"])
    for seed in (0, 1):
        assert 4 <= rows.loc[(seed, "mbrl"), "real_evaluations"] <= 8
        assert rows.loc[(seed, "greedy-oracle"), "pct_oracle"] == pytest.approx(100.0)
        assert rows.loc[(seed, "surrogate-greedy"), "mean_reward"] <= rows.loc[(seed, "greedy-oracle"), "mean_reward"]
    # the surrogate-greedy row is GreedyOracle on the surrogate: on the truth itself it is the oracle
    env = SplitEnv(BASE, source=truth)
    assert rollout(GreedyOracle(truth), env, trace_seeds(0, 1))["reward"].sum() == pytest.approx(
        rollout(GreedyOracle(), env, trace_seeds(0, 1))["reward"].sum())


def _profile():
    from surrogate.sensitivity import SensitivityProfile
    from surrogate.synthetic import NUM_LAYERS

    hump = [0.0] + [0.5 + float(np.sin(np.pi * k / NUM_LAYERS)) for k in range(1, NUM_LAYERS)] + [0.0]
    return {MODEL_NAME: SensitivityProfile(model=MODEL_NAME, num_layers=NUM_LAYERS, iso=tuple(hump), diag=tuple(hump),
                                           dir=tuple(0.1 * h for h in hump), absmax=tuple(10 * h for h in hump),
                                           tokens=64, samples=1, seed=0)}


def test_decisive_design_spends_nothing_and_follows_visits_and_prior():
    from rllib_env.mbrl import candidate_cells, decisive_design, setting_visits
    from rllib_env.sources import RealRewardSource, cell_frame
    from surrogate.features import linearised_kl_of

    cells = _awgn()
    real = RealRewardSource(replay_oracle(cells), describe(MODEL_NAME))
    env = SplitEnv(BASE, source=real)
    design = decisive_design(env, 6, seed=0, sensitivity=_profile())
    assert real.stats.llm_evaluations == 0 and real.stats.queries == 0  # chosen before any evaluation
    assert len(design) == len(set(design)) == 6 and set(design) <= set(candidate_cells(env))
    visits = setting_visits(env, 16, 0)
    first = design[0][1]
    # the first cell belongs to the most visited setting still undecided, and is its best prior lossy split
    ranked = [s for s, _ in visits.most_common()]
    assert ranked.index(first) <= ranked.index(design[1][1])
    lossy = [k for k, s in candidate_cells(env) if s == first]
    prior = linearised_kl_of(cell_frame(env.source.descriptor, [(k, first) for k in lossy]), _profile())
    reward, ok = env.book(env.device_state).rewards(lossy, [first] * len(lossy), prior, prior, 1.0)
    assert design[0][0] == lossy[int(np.argmax(np.where(ok, reward, -np.inf)))]
    with pytest.raises(ValueError, match="decisive needs"):
        MbrlConfig(design="decisive")


def test_with_switching_the_planner_rows_are_bounded_by_hindsight(ray_session, tmp_path):
    cells = _awgn()
    truth = TableRewardSource(cells, describe(MODEL_NAME))
    mbrl = MbrlConfig(budget=6, initial=4, per_round=2, iterations_first=1, iterations_per_round=1,
                      final_iterations=0, rollout_traces=1, design="decisive", sensitivity=_profile(),
                      rollout_policy="planner")
    config = SeedSweepConfig(seeds=(0,), mbrl=mbrl, traces=2, overrides=TINY)
    env_config = {**BASE, "switching": True, "switch_latency_weight": 50.0, "switch_energy_weight": 50.0}
    frame = sweep_seeds(replay_oracle(cells), truth, env_config, config, tmp_path, progress=False)
    rows = frame.set_index("policy")
    assert {"planner", "planner-truth", "hindsight", "greedy-oracle"} <= set(rows.index)
    assert rows.loc["planner", "real_evaluations"] == rows.loc["mbrl", "real_evaluations"]
    for name in ("planner", "planner-truth", "mbrl", "greedy-oracle"):
        assert rows.loc[name, "mean_reward"] <= rows.loc["hindsight", "mean_reward"] + 1e-9
    table = seed_table(frame)
    assert {"planner", "planner-truth"} <= set(table["policy"]) and "pct_hindsight_worst" in table.columns
