"""The joint optimiser: cost model, the convex 1-D subproblem, exactness against brute force and scipy,
infeasibility reports, baselines, the sweep and the command line (synthetic quality tables only)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import typer
from transformers import LlamaConfig
from typer.testing import CliRunner

from edgesplit.channel.state import ChannelState
from edgesplit.cost import ModelProfile, split_costs
from edgesplit.pruning.co_opt import CoOptProblem, build_plan, build_plans, design_cost, least_ratio, rho_cap, solve
from edgesplit.pruning.co_opt_baselines import compare
from edgesplit.pruning.co_opt_energy import UeTask, least_energy, tx_energy_j
from edgesplit.pruning.co_opt_reference import GridSpec, brute_force, scipy_reference
from edgesplit.pruning.co_opt_report import explain
from edgesplit.pruning.co_opt_sweep import budget_sweep, plot_sweep, versus_baselines
from edgesplit.pruning.curves import BoundObjective, QualityCurves

L = 8
PROFILE = ModelProfile.from_config(LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=L,
                                               num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                               tie_word_embeddings=True))


def synthetic_objective(a: float = 0.3, num_layers: int = L):
    """ppl = 30 · exp(a · k · rho²) measured at every other split, ratios 0..0.9."""
    rows = [{"method": "structured", "pattern": None, "side": "device", "k": k, "ratio": r, "ppl_dense": 30.0,
             "ppl": 30.0 * math.exp(a * k * r * r)}
            for k in range(0, num_layers + 1, 2) for r in np.round(np.arange(0, 0.91, 0.1), 2)]
    return QualityCurves.fit(pd.DataFrame(rows), num_layers).objective("structured", "device")


OBJECTIVE = synthetic_objective()


def problem(latency_s: float, energy_j: float, **options) -> CoOptProblem:
    return CoOptProblem.from_presets(PROFILE, latency_budget_s=latency_s, energy_budget_j=energy_j, tokens=64,
                                     **options)


def assert_feasible(p: CoOptProblem, design) -> None:
    assert design.cost.latency_s <= p.latency_budget_s * (1 + 1e-9)
    assert design.cost.energy_j <= p.energy_budget_j * (1 + 1e-9)
    assert design.cost.device_memory_bytes <= p.device_memory_bytes
    assert design.tx_power_w <= p.p_max_w * (1 + 1e-12) and p.device.f_min_hz <= design.f_hz <= p.f_max_hz


# ---- cost model -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 3, L])
def test_plan_prices_like_split_costs(k):
    p = replace(problem(1.0, 1.0), channel=ChannelState(mean_snr_db=7.0, fading_gain=0.5, loss_rate=0.1))
    plan = build_plan(p, k, 16)
    ref = split_costs(PROFILE, k, p.device, p.edge, p.link, p.channel, 64, 16, tx_power_w=0.05, f_hz=1.1e9)
    cost = design_cost(p, plan, 0.0, 0.05, 1.1e9)
    assert cost.latency_s == pytest.approx(ref.total_latency_s, rel=1e-12)
    assert cost.energy_j == pytest.approx(ref.ue_energy_j, rel=1e-12)
    assert cost.device_memory_bytes == pytest.approx(ref.device_memory_bytes)


def test_pruning_saves_only_where_it_should():
    p = problem(1, 1)
    structured = build_plan(p, 4, 16)
    layer = PROFILE.layers[0]
    per_cycle = p.device.flops_per_cycle * p.device.utilisation
    assert structured.cycles_per_rho == pytest.approx(4 * layer.dense_flops_per_token * 64 / per_cycle)
    assert build_plan(problem(1, 1, method="magnitude"), 4, 16).cycles_per_rho == 0.0
    assert build_plan(problem(1, 1, method="magnitude", sparse_kernel=True), 4, 16).cycles_per_rho > 0
    server = build_plan(problem(1, 1, side="server"), 4, 16)
    assert server.cycles_per_rho == 0.0 and server.edge_s_per_rho > 0
    assert not build_plan(problem(1, 1), 0, 16).prunes


def test_problem_validation_messages():
    with pytest.raises(ValueError, match="latency_budget_s must be a finite number > 0"):
        problem(-1.0, 1.0)
    with pytest.raises(ValueError, match="f_max_hz must be in"):
        problem(1.0, 1.0, f_max_hz=9e9)
    with pytest.raises(ValueError, match="wire width 8 has no quality penalty"):
        problem(1.0, 1.0, bits_choices=(8, 16))
    with pytest.raises(ValueError, match="method must be one of"):
        problem(1.0, 1.0, method="lottery")


# ---- the convex 1-D subproblem ---------------------------------------------------------------------------------
def random_task(rng) -> UeTask:
    return UeTask(cycles=float(rng.uniform(1e6, 5e8)), tx_bits=float(rng.uniform(1e4, 2e6)),
                  time_s=float(rng.uniform(0.01, 0.5)), kappa=1e-28, f_min_hz=0.3e9, f_max_hz=3.2e9,
                  bandwidth_hz=20e6, gain_per_w=float(10 ** rng.uniform(0, 3)), p_max_w=0.2)


def test_least_energy_matches_a_dense_grid():
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 25:
        task = random_task(rng)
        if task.min_time_s > task.time_s:
            assert not least_energy(task).feasible
            continue
        split = least_energy(task)
        lo = task.cycles / task.f_max_hz
        hi = min(task.cycles / task.f_min_hz, task.time_s - task.min_transmit_s)
        t_c = np.linspace(lo, hi, 200_001)
        t_x = task.time_s - t_c
        tx = t_x * np.expm1(task.tx_bits * math.log(2) / (task.bandwidth_hz * t_x)) / task.gain_per_w
        phi = task.kappa * task.cycles**3 / t_c**2 + tx
        assert split.energy_j <= phi.min() * (1 + 1e-12)
        assert split.tx_energy_j == pytest.approx(tx_energy_j(task, split.transmit_s), rel=1e-9)
        assert split.energy_j >= phi.min() * (1 - 1e-6)
        assert split.compute_s + split.transmit_s <= task.time_s * (1 + 1e-12)
        assert split.tx_power_w <= task.p_max_w and task.f_min_hz <= split.f_hz <= task.f_max_hz
        checked += 1


def test_least_energy_degenerate_cases():
    base = UeTask(cycles=0.0, tx_bits=1e5, time_s=0.1, kappa=1e-28, f_min_hz=0.3e9, f_max_hz=3.2e9,
                  bandwidth_hz=20e6, gain_per_w=50.0, p_max_w=0.2)
    radio_only = least_energy(base)
    assert radio_only.transmit_s == pytest.approx(0.1) and radio_only.compute_energy_j == 0.0
    cpu_only = least_energy(replace(base, cycles=1e8, tx_bits=0.0))
    assert cpu_only.f_hz == pytest.approx(1e9) and cpu_only.energy_j == pytest.approx(1e-28 * 1e8 * 1e18)
    slow_clock_floor = least_energy(replace(base, cycles=1e6, tx_bits=0.0))
    assert slow_clock_floor.f_hz == pytest.approx(0.3e9)  # f_min binds: the rest of the deadline is left unused
    assert not least_energy(replace(base, cycles=1e9, time_s=0.1)).feasible


# ---- exactness ----------------------------------------------------------------------------------------------------
def random_problems(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield problem(float(10 ** rng.uniform(-1.7, -0.7)), float(10 ** rng.uniform(-3, -1.5)),
                      snr_db=float(rng.uniform(0, 20)), min_device_layers=int(rng.integers(1, L + 1)))


def test_solver_matches_brute_force_on_small_grids():
    grid = GridSpec(rho_step=0.01, f_points=120, p_points=120)
    pruned = 0
    for p in random_problems(6, seed=1):
        exact = solve(p, OBJECTIVE)
        on_grid = solve(replace(p, rho_step=0.01), OBJECTIVE)
        brute = brute_force(p, OBJECTIVE, grid)
        assert exact.feasible == brute.feasible or (exact.feasible and not brute.feasible)
        if not brute.feasible:
            continue
        assert_feasible(p, exact.design)
        assert exact.design.loss <= on_grid.design.loss + 1e-12 <= brute.design.loss + 2e-12
        assert brute.design.loss - on_grid.design.loss <= 0.05  # brute's clock/power grid may need one more step
        pruned += exact.design.rho > 0
    assert pruned >= 2


def test_solver_matches_scipy_slsqp():
    for p in random_problems(2, seed=5):
        on_grid = solve(replace(p, rho_step=0.1), OBJECTIVE)
        reference = scipy_reference(replace(p, rho_step=0.1), OBJECTIVE, rho_step=0.1)
        assert on_grid.feasible == reference.feasible
        if on_grid.feasible:
            assert on_grid.design.loss == pytest.approx(reference.design.loss, abs=1e-9)


def test_least_ratio_is_tight_and_feasibility_monotone():
    p = problem(0.03, 0.004, min_device_layers=4)
    plan = build_plan(p, 4, 16)
    rho, split = least_ratio(p, plan, rho_cap(p, plan, OBJECTIVE))
    assert 0 < rho < 0.9 and split.energy_j == pytest.approx(p.energy_budget_j, rel=1e-6)
    assert least_energy(plan.task(p, rho - 1e-4)).energy_j > p.energy_budget_j
    energies = [least_energy(plan.task(p, r)).energy_j for r in np.linspace(0, 0.9, 46)]
    assert all(b <= a for a, b in zip(energies, energies[1:], strict=False))


def test_looser_budgets_never_hurt_and_the_privacy_floor_holds():
    losses = [solve(problem(t, 0.004, min_device_layers=3), OBJECTIVE).design for t in (0.02, 0.03, 0.05, 0.1)]
    values = [math.inf if d is None else d.loss for d in losses]
    assert values == sorted(values, reverse=True) and values[-1] < values[0]
    assert all(d is None or d.k >= 3 for d in losses)
    assert solve(problem(1.0, 1.0), OBJECTIVE).design.loss == 0.0


# ---- infeasibility ------------------------------------------------------------------------------------------------
def _feasible(p: CoOptProblem) -> bool:
    return solve(p, OBJECTIVE).feasible


def test_energy_bound_report_gives_the_least_energy_budget():
    p = problem(0.02, 2e-4, min_device_layers=2)
    report = explain(p, OBJECTIVE)
    assert report is not None and report.binding == ("latency", "energy") and "energy" in report.message()
    least = report.least_energy_budget_j
    assert _feasible(p.with_budgets(energy_budget_j=least * 1.001))
    assert not _feasible(p.with_budgets(energy_budget_j=least * 0.999))
    assert _feasible(p.with_budgets(latency_budget_s=report.least_latency_budget_s * 1.001))
    assert not _feasible(p.with_budgets(latency_budget_s=report.least_latency_budget_s * 0.999))


def test_latency_bound_report_and_memory_bound_report():
    p = problem(0.002, 1.0, min_device_layers=2)
    report = explain(p, OBJECTIVE)
    assert report.binding == ("latency",) and report.least_energy_budget_j is None
    assert _feasible(p.with_budgets(latency_budget_s=report.least_latency_budget_s * 1.001))
    assert not _feasible(p.with_budgets(latency_budget_s=report.least_latency_budget_s * 0.999))
    tight = problem(1.0, 1.0, min_device_layers=L, device_memory_bytes=1e6)
    memory = explain(tight, OBJECTIVE)
    assert memory.binding == ("memory",) and "UE memory >=" in memory.message()
    assert _feasible(tight.with_budgets(device_memory_bytes=memory.least_memory_bytes * 1.001))
    assert not _feasible(tight.with_budgets(device_memory_bytes=memory.least_memory_bytes * 0.999))
    assert explain(problem(1.0, 1.0), OBJECTIVE) is None


# ---- baselines and the sweep ---------------------------------------------------------------------------------------
def test_baselines_are_restrictions_the_joint_design_never_loses_to():
    p = problem(0.04, 0.006, min_device_layers=2)
    results = compare(p, OBJECTIVE, bound=BoundObjective.from_profile(PROFILE, "device"))
    joint = results["joint"].design
    for name, result in results.items():
        if result.feasible:
            assert joint.loss <= result.design.loss + 1e-12, name
            assert_feasible(p, result.design)
    assert results["on-server"].design is None  # the privacy floor forbids k = 0
    assert results["on-device"].design is None or results["on-device"].design.k == L
    assert all(d.rho == 0.5 for d in results["fixed-ratio"].candidates if d.k > 0)
    assert all(d.k == L // 2 for d in results["fixed-split"].candidates)
    assert all(d.rho == 0.0 for d in results["no-pruning"].candidates)
    bound = results["bound"].design
    assert bound.loss == pytest.approx(OBJECTIVE.loss(bound.k, bound.rho))


def test_budget_sweep_verdicts_and_plots(tmp_path):
    p = problem(0.05, 0.005, min_device_layers=2)
    frame = budget_sweep(p, OBJECTIVE, [0.02, 0.04, 0.2], [0.002, 0.01, 0.1],
                         bound=BoundObjective.from_profile(PROFILE, "device"))
    assert set(frame["scheme"]) >= {"joint", "on-device", "on-server", "fixed-ratio", "fixed-split", "no-pruning",
                                    "bound"}
    verdicts = versus_baselines(frame)
    assert verdicts["never_loses"].all()
    assert verdicts.set_index("baseline").loc["on-server", "only_joint_feasible"] > 0
    files = plot_sweep(frame, tmp_path)
    assert all(path.is_file() and path.stat().st_size > 0 for path in files)


def test_plans_follow_bits_choices():
    p = problem(1.0, 1.0, bits_choices=(8, 16), bits_penalty={8: 0.05, 16: 0.0})
    plans = build_plans(p)
    assert sum(plan.k == 3 for plan in plans) == 2 and sum(plan.k == 0 for plan in plans) == 1
    eight = next(plan for plan in plans if plan.k == 3 and plan.bits == 8)
    assert eight.penalty == 0.05 and eight.tx_bits < next(q for q in plans if q.k == 3 and q.bits == 16).tx_bits


# ---- command line -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """A typer app with only co-opt, a tiny model directory and a synthetic table for its depth."""
    from edgesplit.pruning.command import co_opt_command
    from tests.conftest import make_tiny

    root = tmp_path_factory.mktemp("co_opt_cli")
    make_tiny("llama").model.save_pretrained(root / "model")
    rows = [{"method": "structured", "pattern": None, "side": "device", "k": k, "ratio": r, "ppl_dense": 30.0,
             "ppl": 30.0 * math.exp(0.3 * k * r * r)} for k in range(5) for r in (0.0, 0.3, 0.6, 0.9)]
    pd.DataFrame(rows).to_parquet(root / "table.parquet")
    app = typer.Typer()
    app.command("co-opt")(co_opt_command)
    app.command("noop")(lambda: None)
    return app, root


def _run(cli, *args):
    app, root = cli
    base = ["co-opt", "--model", str(root / "model"), "--table", str(root / "table.parquet"), "--no-measure"]
    return CliRunner().invoke(app, [*base, *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--latency-ms", "-5"], "--latency-ms must be > 0"),
    (["--method", "lottery"], "method must be one of"),
    (["--device", "toaster"], "unknown device preset 'toaster'"),
    (["--bits", "8"], "width 8 needs its measured quality penalty"),
    (["--sweep"], "--sweep writes tables and plots: give --out"),
    (["--min-device-layers", "9"], "min_device_layers must be in 0..4"),
    (["--side", "server"], "no rows for structured/server"),
])
def test_cli_bad_input_exits_2(cli, args, message):
    result = _run(cli, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_bad_table_exits_2(cli, tmp_path):
    app, root = cli
    pd.DataFrame({"method": ["structured"]}).to_parquet(tmp_path / "bad.parquet")
    for table, message in ((tmp_path / "missing.parquet", "no such file"), (tmp_path / "bad.parquet", "lacks col")):
        result = CliRunner().invoke(app, ["co-opt", "--model", str(root / "model"), "--table", str(table),
                                          "--no-measure"])
        assert result.exit_code == 2 and message in result.output


def test_cli_prints_the_design_and_reports_infeasible_budgets(cli, tmp_path):
    result = _run(cli, "--latency-ms", "200", "--energy-mj", "50", "--min-device-layers", "2", "--out",
                  str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "chosen: k=" in result.output and "on-device" in result.output and (tmp_path / "design.json").is_file()
    infeasible = _run(cli, "--latency-ms", "0.001", "--min-device-layers", "2")
    assert infeasible.exit_code == 1 and "binding: latency" in infeasible.output


def test_measurement_text_is_held_out_from_the_table_sweep(tmp_path):
    import json

    from edgesplit.pruning.co_opt_run import parse_bits, text_plan

    (tmp_path / "config.json").write_text(json.dumps({"config": {"corpus": "wiki.raw", "eval_tokens": 1024,
                                                                 "calib_tokens": 4096, "context": 512}}))
    plan = text_plan(tmp_path / "cells.parquet", None, 256, None)
    assert (plan.corpus, plan.calib_range, plan.eval_range, plan.context) == ("wiki.raw", (1024, 5120),
                                                                              (5120, 5376), 512)
    assert text_plan(None, None, 256, None).corpus == "default"
    assert parse_bits("8=0.02,16") == ((8, 16), {16: 0.0, 32: 0.0, 8: 0.02})
    with pytest.raises(ValueError, match="not a width"):
        parse_bits("sixteen")


def test_server_side_pruning_buys_edge_time_when_the_edge_is_slow():
    from edgesplit.cost import EdgeProfile

    rows = [{"method": "structured", "pattern": None, "side": "server", "k": k, "ratio": r, "ppl_dense": 30.0,
             "ppl": 30.0 * math.exp(0.3 * (L - k) * r * r)} for k in range(0, L, 2) for r in (0.0, 0.3, 0.6, 0.9)]
    objective = QualityCurves.fit(pd.DataFrame(rows), L).objective("structured", "server")
    slow_edge = EdgeProfile(name="weak", peak_flops=2e11, utilisation=0.5, memory_bytes=8e9)
    p = replace(problem(0.03, 1.0, side="server"), edge=slow_edge)  # the dense model takes ~37 ms on this edge
    design = solve(p, objective).design
    dense_edge_s = build_plan(p, design.k, 16).edge_s
    assert design.rho > 0 and design.cost.edge_compute_s < dense_edge_s
    assert_feasible(p, design)
    brute = brute_force(p, objective, GridSpec(rho_step=0.01, f_points=60, p_points=60))
    assert design.loss <= brute.design.loss + 1e-12
