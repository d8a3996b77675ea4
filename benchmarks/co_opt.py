"""Joint optimiser bars: the exact solver against brute force and scipy, and the joint design against baselines.

    .venv/bin/python benchmarks/co_opt.py                 # 100 random constraint sets, 5 budget-sweep scenarios
    .venv/bin/python benchmarks/co_opt.py --quick         # 12 sets, 3 scenarios, 8 x 8 budgets (about a minute)
    .venv/bin/python benchmarks/co_opt.py --table runs/prune_sweep/cells.parquet --method wanda

Quality table (in this order): ``--table``; the project's pruning sweep ``runs/prune_sweep/cells.parquet`` when it
exists; this benchmark's cached table ``runs/bench/co_opt/table/cells.parquet``; else a small sweep measured now with
:mod:`edgesplit.pruning.sweep` (slow on a CPU). Only if that module is missing does it fall back to a **synthetic**
curve (ppl = ppl0 · exp(0.01 · k · (4 rho)²)), and says so loudly. The method defaults to the first of structured,
wanda, sparsegpt, magnitude in the table; an unstructured method is priced with an assumed ideal sparse kernel
(otherwise pruning saves nothing and there is nothing to optimise), as printed.

1. **Solver vs brute force** on random constraint sets (device and link presets, SNR, budgets, p_max, f_max,
   privacy floor, prompt length all drawn with a fixed seed): gap of the predicted perplexity (solver / brute − 1;
   negative: the solver is better, the brute-force grid is coarser than the solver's continuous answer), and the
   wall-time ratio of the two measured side by side on each set. Bars: the solver is never more than 1 % worse on
   any set, and at least 100x faster in total.
2. **Solver vs scipy SLSQP** on a subset, both on a shared 0.05 ratio grid: largest loss difference.
3. **Baselines** over a latency × energy sweep in several scenarios (privacy floor, SNR): per baseline, the points
   where the joint design is strictly better or feasible alone, and where it is worse (must be none). Bars: every
   baseline is beaten somewhere; the joint design never loses where a baseline is feasible.

Writes ``random_sets.parquet``, ``scipy_sets.parquet``, ``sweep.parquet``, ``baselines.csv``, ``random_sets.png``
and per-scenario sweep plots under ``--out`` (default ``runs/bench/co_opt``). Timings on a shared machine mean
something only as ratios measured side by side.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from edgesplit.cost import DEVICE_PRESETS, LINK_PRESETS, ModelProfile
from edgesplit.pruning.co_opt import CoOptProblem, solve
from edgesplit.pruning.co_opt_reference import GridSpec, brute_force, scipy_reference
from edgesplit.pruning.co_opt_sweep import budget_sweep, plot_sweep, versus_baselines
from edgesplit.pruning.curves import BoundObjective, QualityCurves

PROJECT_SWEEP = Path("runs/prune_sweep/cells.parquet")
PREFERRED = ("structured", "wanda", "sparsegpt", "magnitude")
SCENARIOS = {"open": {"min_device_layers": 0, "snr_db": 10.0}, "private-k1": {"min_device_layers": 1, "snr_db": 10.0},
             "private-k8": {"min_device_layers": 8, "snr_db": 10.0},
             "poor-link-k1": {"min_device_layers": 1, "snr_db": 0.0},
             "private-k20": {"min_device_layers": 20, "snr_db": 5.0}}
"""Budget-sweep scenarios: privacy floor (the UE keeps at least that many layers) and SNR; phone-soc, 5G 20 MHz."""
QUICK_SCENARIOS = ("open", "private-k8", "private-k20")


def _profile() -> ModelProfile:
    from transformers import AutoConfig, LlamaConfig

    try:
        from edgesplit.models import builtin_dir

        return ModelProfile.from_config(AutoConfig.from_pretrained(builtin_dir("smollm2-135m")))
    except (OSError, FileNotFoundError):  # the same shape as the built-in, from its published config
        print("note: built-in weights unavailable; using SmolLM2-135M's config numbers")
        return ModelProfile.from_config(LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                                    tie_word_embeddings=True))


def _measure_small_table(out: Path, num_layers: int) -> pd.DataFrame:
    from edgesplit.pruning.sweep import PruneSweepConfig, load_sweep_inputs, run_sweep

    ks = tuple(range(5, num_layers + 1, 5))
    config = PruneSweepConfig(out=out, methods=("magnitude",), ratios=(0.1, 0.3, 0.5, 0.7, 0.9), ks=ks,
                              eval_tokens=512, context=256, calib_tokens=2048, calib_windows=8, calib_length=128,
                              wall_tokens=0)
    print(f"measuring a small table now: magnitude at k={ks}, 5 ratios, 512 tokens (slow on a CPU) into {out}")
    return run_sweep(config, load_sweep_inputs(config), plots=False).cells


def _synthetic_table(num_layers: int) -> pd.DataFrame:
    rows = [{"method": "magnitude", "pattern": None, "side": "device", "k": k, "ratio": r, "ppl_dense": 30.0,
             "ppl": 30.0 * math.exp(0.01 * k * (4 * r) ** 2)}
            for k in range(0, num_layers + 1, 5) for r in np.round(np.arange(0, 0.91, 0.1), 2)]
    return pd.DataFrame(rows)


def load_table(path: Path | None, out: Path, num_layers: int) -> tuple[pd.DataFrame, str]:
    """The quality table and where it came from (module docstring)."""
    cached = out / "table" / "cells.parquet"
    for candidate, label in ((path, "given"), (PROJECT_SWEEP, "project sweep"), (cached, "cached")):
        if candidate is not None and Path(candidate).is_file():
            return pd.read_parquet(candidate), f"{label} {candidate}"
    try:
        return _measure_small_table(out / "table", num_layers), f"measured now into {cached}"
    except ImportError:
        banner = "!" * 100
        print(f"{banner}\nWARNING: edgesplit.pruning.sweep is missing: using a SYNTHETIC quality curve\n{banner}")
        return _synthetic_table(num_layers), "SYNTHETIC (no sweep module)"


def pick_method(table: pd.DataFrame, method: str | None) -> str:
    """The asked method, else the first of :data:`PREFERRED` whose device-side rows reach ratio 0.5 at every
    measured split (else the one reaching furthest)."""
    rows = table[(table["side"] == "device") & table["pattern"].isna() & (table["k"] > 0)]
    reach = rows.groupby(["method", "k"])["ratio"].max().groupby("method").min()
    if method is not None:
        if method not in reach.index:
            raise SystemExit(f"the table has no device-side rows for {method!r}; it has {sorted(reach.index)}")
        return method
    if reach.empty:
        raise SystemExit("the table has no unpatterned device-side rows to fit")
    return next((m for m in PREFERRED if reach.get(m, 0.0) >= 0.5), str(reach.idxmax()))


def random_problem(rng, profile: ModelProfile, method: str, rho_max: float) -> CoOptProblem:
    device = DEVICE_PRESETS[rng.choice(sorted(DEVICE_PRESETS))]
    link = LINK_PRESETS[rng.choice(sorted(LINK_PRESETS))]
    return CoOptProblem.from_presets(
        profile, device=device, link=link, latency_budget_s=float(10 ** rng.uniform(-2, 0.3)),
        energy_budget_j=float(10 ** rng.uniform(-3.3, 0.3)), snr_db=float(rng.uniform(-5, 25)),
        tokens=int(rng.choice([64, 128, 256])), p_max_w=float(link.tx_power_w * rng.uniform(0.1, 1.0)),
        f_max_hz=float(device.f_min_hz + (device.f_max_hz - device.f_min_hz) * rng.uniform(0.3, 1.0)),
        min_device_layers=int(rng.integers(0, profile.num_layers + 1)), method=method, sparse_kernel=True,
        rho_max=rho_max)


def _ppl(objective, result) -> float:
    return objective.ppl_dense * math.exp(result.design.loss) if result.feasible else math.nan


def solver_vs_brute(problems, objective, grid: GridSpec) -> pd.DataFrame:
    rows = []
    for i, problem in enumerate(problems):
        exact = solve(problem, objective)
        brute = brute_force(problem, objective, grid)
        exact_again = solve(problem, objective)  # time the solver on both sides of the brute force (load drifts)
        solver_s = 0.5 * (exact.solve_s + exact_again.solve_s)
        d = exact.design
        rows.append({"set": i, "device": problem.device.name, "link": problem.link.name,
                     "snr_db": problem.channel.snr_db, "latency_budget_s": problem.latency_budget_s,
                     "energy_budget_j": problem.energy_budget_j, "min_device_layers": problem.min_device_layers,
                     "tokens": problem.tokens, "solver_feasible": exact.feasible, "brute_feasible": brute.feasible,
                     "solver_k": d.k if d else -1, "solver_rho": d.rho if d else math.nan,
                     "brute_rho": brute.design.rho if brute.feasible else math.nan,
                     "solver_ppl": _ppl(objective, exact), "brute_ppl": _ppl(objective, brute),
                     "solver_s": solver_s, "brute_s": brute.solve_s})
    frame = pd.DataFrame(rows)
    frame["gap"] = frame["solver_ppl"] / frame["brute_ppl"] - 1.0
    return frame


def report_random(frame: pd.DataFrame) -> dict[str, bool]:
    both = frame[frame["solver_feasible"] & frame["brute_feasible"]]
    missed = int((~frame["solver_feasible"] & frame["brute_feasible"]).sum())
    grid_missed = int((frame["solver_feasible"] & ~frame["brute_feasible"]).sum())
    ratio = frame["brute_s"].sum() / frame["solver_s"].sum()
    print(f"\n[1] solver vs brute force on {len(frame)} random constraint sets")
    print(f"    feasible for both: {len(both)}; infeasible for both: "
          f"{int((~frame['solver_feasible'] & ~frame['brute_feasible']).sum())}; only the solver: {grid_missed} "
          f"(brute-force grid too coarse); only brute force: {missed} (must be 0)")
    print(f"    designs with pruning: {int((both['solver_rho'] > 0).sum())}; fully on-server: "
          f"{int((both['solver_k'] == 0).sum())}; predicted ppl {both['solver_ppl'].min():.3g}.."
          f"{both['solver_ppl'].max():.3g}")
    print(f"    gap solver/brute - 1: max {both['gap'].max():+.3%}, median {both['gap'].median():+.3%}, min "
          f"{both['gap'].min():+.3%} (negative: the solver's continuous optimum beats the grid)")
    print(f"    time: solver median {frame['solver_s'].median() * 1e3:.2f} ms, brute force median "
          f"{frame['brute_s'].median():.2f} s; total ratio {ratio:.0f}x, per-set median "
          f"{(frame['brute_s'] / frame['solver_s']).median():.0f}x")
    bars = {"solver within 1% of brute force on every set": bool((both["gap"] <= 0.01).all() and missed == 0),
            "solver >= 100x faster than brute force": bool(ratio >= 100)}
    return bars


def solver_vs_scipy(problems, objective) -> pd.DataFrame:
    rows = []
    for i, problem in enumerate(problems):
        grid_problem = replace(problem, rho_step=0.05)
        exact, ref = solve(grid_problem, objective), scipy_reference(grid_problem, objective, rho_step=0.05)
        rows.append({"set": i, "solver_feasible": exact.feasible, "scipy_feasible": ref.feasible,
                     "solver_loss": exact.design.loss if exact.feasible else math.nan,
                     "scipy_loss": ref.design.loss if ref.feasible else math.nan,
                     "solver_s": exact.solve_s, "scipy_s": ref.solve_s})
    frame = pd.DataFrame(rows)
    diff = (frame["solver_loss"] - frame["scipy_loss"]).abs()
    print(f"\n[2] solver vs scipy SLSQP (shared ratio grid 0.05) on {len(frame)} sets: feasibility agrees on "
          f"{int((frame['solver_feasible'] == frame['scipy_feasible']).sum())}; largest |loss difference| "
          f"{diff.max():.2e}; solver lower on {int((frame['solver_loss'] < frame['scipy_loss'] - 1e-9).sum())}, "
          f"scipy lower on {int((frame['scipy_loss'] < frame['solver_loss'] - 1e-9).sum())}; time ratio "
          f"{frame['scipy_s'].sum() / frame['solver_s'].sum():.0f}x")
    return frame


def baselines(profile, objective, method, scenarios, latencies, energies, out: Path):
    bound = BoundObjective.from_profile(profile, "device")
    frames = []
    for name, options in scenarios.items():
        problem = CoOptProblem.from_presets(profile, latency_budget_s=0.2, energy_budget_j=0.05, method=method,
                                            sparse_kernel=True, tokens=128, **options)
        frame = budget_sweep(problem, objective, latencies, energies, bound=bound).assign(scenario=name)
        plot_sweep(frame, out / name, title=f"{name}: {objective.name}, {options}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def report_baselines(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, bool]]:
    per_scenario = pd.concat([versus_baselines(group).assign(scenario=name)
                              for name, group in frame.groupby("scenario", sort=False)], ignore_index=True)
    total = per_scenario.groupby("baseline", sort=False)[["points", "both_feasible", "joint_better", "joint_worse",
                                                            "only_joint_feasible", "only_baseline_feasible"]].sum()
    total["beaten_somewhere"] = (total["joint_better"] + total["only_joint_feasible"]) > 0
    total["never_loses"] = (total["joint_worse"] == 0) & (total["only_baseline_feasible"] == 0)
    print(f"\n[3] joint design vs baselines, {frame['scenario'].nunique()} scenarios x "
          f"{frame.groupby('scenario')['latency_budget_s'].nunique().iloc[0]} x "
          f"{frame.groupby('scenario')['energy_budget_j'].nunique().iloc[0]} budgets")
    print(per_scenario[["scenario", "baseline", "both_feasible", "joint_better", "joint_worse",
                        "only_joint_feasible", "only_baseline_feasible"]].to_string(index=False))
    print(total.to_string())
    bars = {"joint beats every baseline somewhere": bool(total["beaten_somewhere"].all()),
            "joint never loses where a baseline is feasible": bool(total["never_loses"].all())}
    return per_scenario, bars


def plot_random(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = frame[frame["solver_feasible"] & frame["brute_feasible"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.scatter(both["brute_ppl"], both["solver_ppl"], s=12)
    lims = [both[["brute_ppl", "solver_ppl"]].min().min(), both[["brute_ppl", "solver_ppl"]].max().max()]
    left.plot(lims, lims, "k--", lw=0.8)
    left.set(xscale="log", yscale="log", xlabel="brute-force predicted ppl", ylabel="solver predicted ppl",
             title="optimum per random constraint set")
    right.hist(np.log10(frame["brute_s"] / frame["solver_s"]), bins=20)
    right.set(xlabel="log10(brute-force time / solver time)", ylabel="sets", title="speed ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 sets, 3 scenarios, 8x8 budgets")
    parser.add_argument("--table", type=Path, default=None, help="A pruning sweep's cells.parquet.")
    parser.add_argument("--method", default=None, help="Method of the table to optimise (default: best present).")
    parser.add_argument("--sets", type=int, default=None, help="Random constraint sets (default 100; quick 12).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/co_opt"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    profile = _profile()
    table, source = load_table(args.table, args.out, profile.num_layers)
    method = pick_method(table, args.method)
    objective = QualityCurves.fit(table, profile.num_layers, source=source).objective(method, "device")
    rho_max = min(0.95, objective.rho_limit(profile.num_layers))
    print(f"quality table: {source}; objective {objective.name}, measured splits {objective.measured_splits}, "
          f"ratios up to {rho_max:g}, dense ppl {objective.ppl_dense:.3f}; cost: "
          f"{'structured' if method == 'structured' else 'unstructured with an ASSUMED ideal sparse kernel'}")
    rng = np.random.default_rng(args.seed)
    count = args.sets or (12 if args.quick else 100)
    problems = [random_problem(rng, profile, method, rho_max) for _ in range(count)]
    grid = GridSpec()  # the same fine grid in --quick: the speed bar is about this grid
    print(f"brute-force grid: ratio step {grid.rho_step}, {grid.f_points} clocks x {grid.p_points} powers, every k")
    started = time.perf_counter()
    random_frame = solver_vs_brute(problems, objective, grid)
    bars = report_random(random_frame)
    scipy_frame = solver_vs_scipy(problems[: 3 if args.quick else 10], objective)
    scenarios = {name: SCENARIOS[name] for name in QUICK_SCENARIOS} if args.quick else SCENARIOS
    n = 8 if args.quick else 12
    sweep = baselines(profile, objective, method, scenarios, np.geomspace(0.01, 3.0, n), np.geomspace(5e-4, 2.0, n),
                      args.out)
    verdicts, more = report_baselines(sweep)
    bars.update(more)
    random_frame.to_parquet(args.out / "random_sets.parquet", index=False)
    scipy_frame.to_parquet(args.out / "scipy_sets.parquet", index=False)
    sweep.to_parquet(args.out / "sweep.parquet", index=False)
    verdicts.to_csv(args.out / "baselines.csv", index=False)
    plot_random(random_frame, args.out / "random_sets.png")
    print(f"\nbars ({time.perf_counter() - started:.0f} s; outputs in {args.out}):")
    for name, ok in bars.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


if __name__ == "__main__":
    main()
