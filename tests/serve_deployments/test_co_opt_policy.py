"""The co_opt split policy on a synthetic sweep table (plain, no Ray)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from serve_deployments.co_opt_policy import CoOptPolicy, CoOptVariants
from serve_deployments.split_policies import PolicySpec, load_policy
from serve_deployments.split_schema import UEState

MODEL = "smollm2-135m"
LAYERS = 30


def write_sweep(directory, variants: dict | None) -> None:
    """ppl = ppl0 · exp(a · pruned_layers · rho²) at k in {5, 10, 20}, ratios {0.1, 0.3, 0.5, 0.7}, both sides."""
    rows = [{"method": "structured", "pattern": None, "side": side, "k": k, "ratio": rho, "num_layers": LAYERS,
             "ppl": 20.0 * np.exp(0.01 * (k if side == "device" else LAYERS - k) * rho**2), "ppl_dense": 20.0}
            for side in ("device", "server") for k in (5, 10, 20) for rho in (0.1, 0.3, 0.5, 0.7)]
    pd.DataFrame(rows).to_parquet(directory / "cells.parquet")
    if variants is not None:
        (directory / "co_opt.json").write_text(json.dumps(variants))


# The edge holds pruned tails only, the UE runs at least one layer: more UE layers, less pruned loss.
VARIANTS = {"ratios": [0.3, 0.5, 0.7], "method": "structured", "side": "server", "min_device_layers": 1}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    write_sweep(directory, VARIANTS)
    return directory


@pytest.fixture(scope="module")
def policy(sweep_dir) -> CoOptPolicy:
    return CoOptPolicy.from_path(sweep_dir, MODEL, warm_snrs_db=(0.0, 2.0))


def test_load_policy_dispatches_and_versions_by_content(sweep_dir, tmp_path):
    spec = PolicySpec(kind="co_opt", path=str(sweep_dir / "cells.parquet"), model=MODEL)
    served = load_policy(spec)
    assert isinstance(served, CoOptPolicy) and served.num_layers == LAYERS
    assert spec.version.startswith("co_opt:") and served.version == spec.version
    decision = served.decide(UEState(snr_db_history=[10.0]))
    assert decision.policy == "co_opt" and decision.policy_version == spec.version
    write_sweep(tmp_path, {**VARIANTS, "ratios": [0.5, 0.7]})
    assert PolicySpec(kind="co_opt", path=str(tmp_path), model=MODEL).version != spec.version


def test_k_moves_with_snr(policy):
    ks = [policy.decide(UEState(snr_db_history=[snr])).k for snr in (0.0, 5.0, 10.0)]
    assert ks == sorted(ks) and ks[0] < ks[-1]  # a better link leaves more of the budget for UE layers


def test_reason_names_variant_power_and_clock(policy):
    decision = policy.decide(UEState(snr_db_history=[10.0]))
    assert "variant rho=0.3" in decision.reason and " mW" in decision.reason and " GHz" in decision.reason
    assert decision.encoding == "float16" and decision.bits == 16


def test_tighter_latency_changes_the_design(policy):
    loose = policy.lookup(UEState(snr_db_history=[10.0]))[1]
    tight = policy.lookup(UEState(snr_db_history=[10.0], latency_budget_s=0.05))[1]
    assert tight.cost.latency_s <= 0.05 + 1e-9
    assert tight.k < loose.k or tight.rho > loose.rho


def test_low_battery_shrinks_the_ue_share(policy):
    full = policy.lookup(UEState(snr_db_history=[10.0], battery=1.0))[1]
    low = policy.lookup(UEState(snr_db_history=[10.0], battery=0.1))[1]
    assert low.cost.energy_j < full.cost.energy_j and low.k <= full.k


def test_infeasible_budget_falls_back_to_the_rule(policy):
    decision = policy.decide(UEState(snr_db_history=[-5.0], latency_budget_s=0.03))
    assert decision.policy == "rule"
    assert "co-opt infeasible" in decision.reason and "binding: latency" in decision.reason


def test_decide_is_fast_after_warm_up(policy):
    states = [UEState(snr_db_history=[float(s)], battery=0.8) for s in np.linspace(0.0, 10.0, 200)]
    for state in states[::10]:
        policy.decide(state)  # the 0.5 dB keys these states fall on
    start = time.perf_counter()
    for state in states:
        policy.decide(state)
    assert time.perf_counter() - start < 1.0


def test_variants_are_validated(tmp_path):
    with pytest.raises(ValueError, match="ratios"):
        CoOptVariants(ratios=[0.99])
    write_sweep(tmp_path, {"ratios": [0.0, 0.3]})  # the table has device and server rows: say which
    with pytest.raises(ValueError, match="method and side"):
        CoOptPolicy.from_path(tmp_path, MODEL, warm_snrs_db=(0.0, 0.0))
    (tmp_path / "cells.parquet").unlink()
    with pytest.raises(ValueError, match="no pruning sweep table"):
        PolicySpec(kind="co_opt", path=str(tmp_path), model=MODEL)
