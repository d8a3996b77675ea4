"""Fit the abstracted link's per-MCS BLER calibration (SNR shift, steepness) on Sionna's bit-true chain.

    .venv/bin/python benchmarks/calibrate_bler.py --out runs/bler_calibration            # fit, report, plot
    .venv/bin/python benchmarks/calibrate_bler.py --out runs/bler_calibration --install  # ... and ship the fit
    .venv/bin/python benchmarks/calibrate_bler.py --mcs 1:20,2:24 --tbs 100 --out runs/cal_quick  # a few MCSs
    .venv/bin/python benchmarks/calibrate_bler.py --quick --out runs/cal_quick      # CI-sized (~30 s): 2 MCSs, 60 TBs
    .venv/bin/python benchmarks/calibrate_bler.py --large-cbs --out runs/bler_calibration_large --install

For every MCS with a shipped curve (tables 1 and 2) on the smallest allocation that codes it (2 PRB: one code
block of 168..2232 bits; 3 PRB for table 2 MCS 27), TBs of random bits go through the bit-true chain
(:mod:`edgesplit.channel.nr.bit_true`: Sionna TBEncoder / QAM / APP demapper / 20-iteration TBDecoder, AWGN, one
transmission) at the SNRs where the *uncalibrated* abstraction predicts a TB error rate of 0.9 / 0.7 / 0.5 / 0.3 /
0.1 / 0.03, then at 3 more SNRs where a first fit puts the bit-true rate at 0.7 / 0.4 / 0.15 (so the points cover
the real waterfall even where the table's is off). (delta, kappa) of
:mod:`edgesplit.channel.nr.calibration` are fitted by maximum likelihood on the binomial counts (Nelder-Mead
from several starts). Printed per MCS: delta, kappa, points inside the 99 % Clopper-Pearson interval before
and after, and the deviance's chi-square p-value (dof = points - 2). The fit is in-sample; the held-out check is
``benchmarks/coded_link_check.py`` (other seeds, other SNRs, HARQ and Rayleigh points, larger code blocks).

Writes points.parquet, fits.csv, config.json (arguments, seed, versions) and calibration.png (predicted vs
bit-true, log-log) to ``--out``; with ``--install`` also the package's ``edgesplit/channel/nr/bler_calibration.json``
(atomically; with ``--mcs`` only those MCSs' entries are replaced). ~15 min on one core. Code blocks above 2000 bits
(table 2 MCS 23..27 here) are predicted with the shipped large-block rule, so refit those after changing it.

``--large-cbs`` fits the :class:`~edgesplit.channel.nr.calibration.LargeBlockRule` instead (code blocks above the
tables' 2000 bits): one code block of ~4,000 or ~8,200 bits for each MCS of :data:`LARGE_FIT_SET`, TBs at the SNRs
where the current prediction (per-MCS calibration + the sqrt(n) prior) says 0.9 / 0.7 / 0.5 / 0.3 / 0.1 / 0.03,
then (exponent, shift per doubling) by maximum likelihood over all points jointly. The MCSs of
``coded_link_check.py``'s part (b) (table 1 MCS 13 and 20) are left out of the fit: they are its held-out check.
``--install`` adds the rule to the shipped file (keeping its per-MCS entries). ~20 min on one core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesplit.channel.nr import CarrierConfig, available_mcs, transport_block  # noqa: E402
from edgesplit.channel.nr.bit_true import bit_true_link  # noqa: E402
from edgesplit.channel.nr.bler import bler_tables, rate_shift_db  # noqa: E402
from edgesplit.channel.nr.calibration import (  # noqa: E402
    CALIBRATION_FILE,
    DELTA_RANGE_DB,
    FORMAT_VERSION,
    KAPPA_RANGE,
    CurveCalibration,
    LargeBlockRule,
    calibration_for,
    midpoint_db,
)
from edgesplit.outdir import check_writable_dir  # noqa: E402

FIRST_TARGETS = (0.9, 0.7, 0.5, 0.3, 0.1, 0.03)
"""Uncalibrated-prediction TB error rates of the first pass's SNRs."""
SECOND_TARGETS = (0.7, 0.4, 0.15)
"""First-fit TB error rates of the second pass's SNRs."""
LARGE_FIT_SET = ((1, 9, 8216), (1, 17, 4000), (1, 24, 7704), (2, 15, 4000), (2, 22, 8216))
"""(table, MCS, target code-block bits) of the large-block fit (one code block per TB)."""
LARGE_PRIOR = LargeBlockRule(0.5, 0.0)
"""The large-block rule the fit's SNR points are placed with (the normal approximation's sqrt(n), no shift)."""


def allocation(mcs_table: int, mcs: int):
    """The smallest PRB count (2..8) whose TB the LDPC chain codes at this MCS, and that TB."""
    for prbs in range(2, 9):
        info = transport_block(CarrierConfig(num_prbs=prbs), mcs_table, mcs, check=False)
        if info.codable:
            return prbs, info
    raise ValueError(f"MCS {mcs} of table {mcs_table} is not codable on 2..8 PRB")


def predicted(info, snr_db: np.ndarray, cal: CurveCalibration | None,
              large: LargeBlockRule | None | str = "shipped") -> np.ndarray:
    """TB error rate of one AWGN transmission from the tables, with a candidate calibration (None = raw) and, for
    code blocks above 2000 bits, a large-block rule (default: the shipped one; None = clamped)."""
    tables = bler_tables()
    s = np.asarray(snr_db, dtype=float) - rate_shift_db(info)
    curve = tables.curve(info.mcs_table, info.mcs, info.code_block_bits, large)
    if cal is not None:
        s = cal.table_snr(s, midpoint_db(tables.snr_grid_db, curve))
    bler = np.interp(s, tables.snr_grid_db, curve)
    return 1.0 - (1.0 - bler) ** info.num_code_blocks


def snr_at(info, target: float, cal: CurveCalibration | None, large: LargeBlockRule | None | str = "shipped"
           ) -> float:
    """SNR (dB, 0.01 dB) where the prediction equals ``target``."""
    return round(optimize.brentq(lambda s: float(predicted(info, s, cal, large)) - target, -15.0, 45.0,
                                 xtol=1e-4), 2)


def neg_log_lik(params: np.ndarray, info, snr: np.ndarray, k: np.ndarray, n: np.ndarray) -> float:
    delta, log_kappa = params
    kappa = math.exp(log_kappa)
    if not (DELTA_RANGE_DB[0] <= delta <= DELTA_RANGE_DB[1] and KAPPA_RANGE[0] <= kappa <= KAPPA_RANGE[1]):
        return 1e12
    p = np.clip(predicted(info, snr, CurveCalibration(float(delta), kappa)), 1e-12, 1.0 - 1e-12)
    return float(-(k * np.log(p) + (n - k) * np.log1p(-p)).sum())


def fit(info, points: pd.DataFrame) -> CurveCalibration:
    """Maximum-likelihood (delta, kappa) on the binomial counts of ``points``."""
    snr, k, n = (points[c].to_numpy(dtype=float) for c in ("snr_db", "failed", "tbs"))
    best = None
    for start in ((0.0, 0.0), (0.2, 0.5), (-0.2, 0.5), (0.0, -0.4), (0.3, 1.0), (-0.3, 1.0)):
        res = optimize.minimize(neg_log_lik, np.array(start), args=(info, snr, k, n), method="Nelder-Mead",
                                options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    return CurveCalibration(round(float(best.x[0]), 4), round(math.exp(float(best.x[1])), 4))


def simulate(info, snr_db: float, n_tbs: int, seed: int) -> int:
    """TB errors among ``n_tbs`` bit-true transmissions at ``snr_db`` (AWGN, one transmission)."""
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n_tbs, info.tbs_bits), generator=gen)
    _, outcome, _ = bit_true_link(info).send(bits, snr_db, 1, "awgn", gen)
    return int(outcome.erased.sum())


def in_ci(k: int, n: int, p: float) -> bool:
    ci = stats.binomtest(k, n).proportion_ci(0.99, method="exact")
    return bool(ci.low <= p <= ci.high)


def deviance(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(k > 0, k * np.log(k / (n * p)), 0.0)
        b = np.where(n - k > 0, (n - k) * np.log((n - k) / (n * (1.0 - p))), 0.0)
    return float(2.0 * (a + b).sum())


def large_allocation(mcs_table: int, mcs: int, target_bits: int):
    """The PRB count (2..51) whose TB is one code block closest to ``target_bits``, and that TB."""
    best = None
    for prbs in range(2, 52):
        info = transport_block(CarrierConfig(num_prbs=prbs), mcs_table, mcs, check=False)
        if info.codable and info.num_code_blocks == 1 and info.code_block_bits > 2000 and (
                best is None or abs(info.code_block_bits - target_bits) < abs(best[1].code_block_bits - target_bits)):
            best = (prbs, info)
    if best is None:
        raise ValueError(f"MCS {mcs} of table {mcs_table} has no one-code-block TB above 2000 bits on 2..51 PRB")
    return best


def large_neg_log_lik(params: np.ndarray, frames: list[tuple], calibrated: bool = True) -> float:
    exponent, shift = params
    try:
        rule = LargeBlockRule(float(exponent), float(shift))
    except ValueError:
        return 1e12
    total = 0.0
    for info, frame in frames:
        cal = calibration_for(info.mcs_table, info.mcs) if calibrated else None
        p = np.clip(predicted(info, frame["snr_db"].to_numpy(), cal, rule), 1e-12, 1.0 - 1e-12)
        k, n = frame["failed"].to_numpy(), frame["tbs"].to_numpy()
        total -= float((k * np.log(p) + (n - k) * np.log1p(-p)).sum())
    return total


def fit_large(args: argparse.Namespace) -> None:
    """``--large-cbs``: fit, report and (with --install) ship the large-block rule."""
    t0 = time.perf_counter()
    frames, rows = [], []
    for table, mcs, target in tqdm(LARGE_FIT_SET, desc="MCS (large code blocks)"):
        prbs, info = large_allocation(table, mcs, target)
        cal = calibration_for(table, mcs)
        pts = [{"mcs_table": table, "mcs": mcs, "prbs": prbs, "code_block_bits": info.code_block_bits,
                "tbs": args.tbs, "snr_db": s, "failed": simulate(info, s, args.tbs, args.seed + 7_000_000 + 100_000
                                                                 * table + 100 * mcs + i)}
               for i, s in enumerate(snr_at(info, t, cal, LARGE_PRIOR) for t in FIRST_TARGETS)]
        frames.append((info, pd.DataFrame(pts)))
    best = None
    for start in ((0.5, 0.0), (0.3, -0.1), (0.7, 0.1), (0.5, -0.2), (1.0, 0.0)):
        res = optimize.minimize(large_neg_log_lik, np.array(start), args=(frames,), method="Nelder-Mead",
                                options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    rule = LargeBlockRule(round(float(best.x[0]), 4), round(float(best.x[1]), 4))
    for info, frame in frames:
        cal = calibration_for(info.mcs_table, info.mcs)
        frame["rate"] = frame["failed"] / frame["tbs"]
        for name, candidate in (("clamped", None), ("prior", LARGE_PRIOR), ("fitted", rule)):
            frame[name] = predicted(info, frame["snr_db"].to_numpy(), cal, candidate)
        rows.append(frame)
    points = pd.concat(rows, ignore_index=True)
    k, n = points["failed"].to_numpy(), points["tbs"].to_numpy()
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(points.round(3).to_string(index=False))
    for name in ("clamped", "prior", "fitted"):
        inside = sum(in_ci(a, b, p) for a, b, p in zip(k, n, points[name], strict=True))
        print(f"{name:8s}: {inside}/{len(points)} points inside the bit-true 99 % CI (in-sample for 'fitted'), "
              f"deviance {deviance(k, n, points[name].to_numpy()):.1f}")
    print(f"fitted rule: exponent {rule.exponent}, shift {rule.shift_db_per_doubling} dB per doubling")
    elapsed = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    points.to_parquet(args.out / "points.parquet", index=False)
    config = {"mode": "large_cbs", "seed": args.seed, "tbs_per_point": args.tbs, "fit_set": LARGE_FIT_SET,
              "targets": FIRST_TARGETS, "rule": asdict(rule), "elapsed_s": elapsed, "torch": torch.__version__,
              "sionna": metadata.version("sionna-no-rt")}
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    if args.install:
        doc = json.loads(CALIBRATION_FILE.read_text())
        doc["large_cbs"] = {**asdict(rule), "command": f"benchmarks/calibrate_bler.py --large-cbs --install --seed "
                            f"{args.seed} --tbs {args.tbs}", "fit_set": [list(v) for v in LARGE_FIT_SET],
                            "points": len(points)}
        tmp = CALIBRATION_FILE.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
        os.replace(tmp, CALIBRATION_FILE)
        print(f"installed the large-block rule in {CALIBRATION_FILE}")
    print(f"saved {args.out} ({elapsed:.0f} s)")


def parse_mcs(text: str | None) -> list[tuple[int, int]]:
    if text is None:
        return [(t, m) for t in (1, 2) for m in available_mcs(t)]
    out = []
    for item in text.split(","):
        try:
            table, mcs = (int(v) for v in item.split(":"))
        except ValueError as exc:
            raise SystemExit(f"--mcs: {item!r} is not TABLE:MCS (e.g. 1:20,2:24)") from exc
        if mcs not in available_mcs(table):
            raise SystemExit(f"--mcs: MCS {mcs} of table {table} has no shipped curve; valid: "
                             f"{list(available_mcs(table))}")
        out.append((table, mcs))
    return out


def plot(points: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = 3e-3
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.plot([lo, 1], [lo, 1], color="0.6", lw=1)
    rate = points["rate"].clip(lower=lo)
    ax.scatter(rate, points["raw"].clip(lower=lo), marker="x", color="0.5", s=18, label="Sionna tables (probit)")
    ax.scatter(rate, points["calibrated"].clip(lower=lo), marker="o", s=14, color="C0", label="calibrated")
    ax.set(xscale="log", yscale="log", xlim=(lo, 1.2), ylim=(lo, 1.2), xlabel="bit-true TB error rate",
           ylabel="predicted TB error rate", title="BLER calibration points (in-sample)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bler_calibration"))
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--tbs", type=int, default=150, help="TBs per SNR point (default 150)")
    parser.add_argument("--mcs", default=None, help="TABLE:MCS,... (default: every MCS with a shipped curve)")
    parser.add_argument("--quick", action="store_true", help="CI-sized: table 1 MCS 4 and 20, 60 TBs per point")
    parser.add_argument("--large-cbs", action="store_true",
                        help="fit the rule for code blocks above 2000 bits instead of the per-MCS calibration")
    parser.add_argument("--install", action="store_true",
                        help=f"write the fit to {CALIBRATION_FILE.name} in the package (needs every MCS)")
    args = parser.parse_args()
    if args.quick:
        if args.install or args.large_cbs:
            raise SystemExit("--quick is a smoke run: it cannot --install or fit --large-cbs")
        args.mcs, args.tbs = args.mcs or "1:4,1:20", 60
    if args.tbs < 20:
        raise SystemExit(f"--tbs must be >= 20, got {args.tbs}")
    if args.large_cbs:
        check_writable_dir(args.out, "--out")
        torch.set_num_threads(1)
        fit_large(args)
        return
    todo = parse_mcs(args.mcs)
    check_writable_dir(args.out, "--out")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows, fits = [], []
    for table, mcs in tqdm(todo, desc="MCS"):
        prbs, info = allocation(table, mcs)
        base = {"mcs_table": table, "mcs": mcs, "prbs": prbs, "code_block_bits": info.code_block_bits,
                "tbs_bits": info.tbs_bits, "tbs": args.tbs}
        pts = []
        for i, target in enumerate(FIRST_TARGETS):
            s = snr_at(info, target, None)
            pts.append({**base, "pass": 1, "snr_db": s,
                        "failed": simulate(info, s, args.tbs, args.seed + 100_000 * table + 100 * mcs + i)})
        first = fit(info, pd.DataFrame(pts))
        for i, target in enumerate(SECOND_TARGETS):
            s = snr_at(info, target, first)
            pts.append({**base, "pass": 2, "snr_db": s,
                        "failed": simulate(info, s, args.tbs, args.seed + 100_000 * table + 100 * mcs + 50 + i)})
        frame = pd.DataFrame(pts)
        cal = fit(info, frame)
        frame["rate"] = frame["failed"] / frame["tbs"]
        frame["raw"] = predicted(info, frame["snr_db"].to_numpy(), None)
        frame["calibrated"] = predicted(info, frame["snr_db"].to_numpy(), cal)
        k, n = frame["failed"].to_numpy(), frame["tbs"].to_numpy()
        dev = deviance(k, n, frame["calibrated"].to_numpy())
        fits.append({**{key: base[key] for key in ("mcs_table", "mcs", "prbs", "code_block_bits")},
                     "delta_db": cal.delta_db, "kappa": cal.kappa, "points": len(frame),
                     "raw_in_ci": sum(in_ci(a, b, p) for a, b, p in zip(k, n, frame["raw"], strict=True)),
                     "cal_in_ci": sum(in_ci(a, b, p) for a, b, p in zip(k, n, frame["calibrated"], strict=True)),
                     "deviance": dev, "p_value": float(stats.chi2.sf(dev, len(frame) - 2))})
        rows.append(frame)
    points, fits_df = pd.concat(rows, ignore_index=True), pd.DataFrame(fits)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(fits_df.round(3).to_string(index=False))
    print(f"\npoints inside the bit-true 99 % CI (in-sample): tables {int(fits_df['raw_in_ci'].sum())}/{len(points)}, "
          f"calibrated {int(fits_df['cal_in_ci'].sum())}/{len(points)}; MCSs with fit p < 0.01: "
          f"{int((fits_df['p_value'] < 0.01).sum())}/{len(fits_df)}")
    delta, kappa = fits_df["delta_db"].abs(), fits_df["kappa"]
    print(f"|delta| median {delta.median():.3f} dB, max {delta.max():.3f} dB; kappa median {kappa.median():.2f}, "
          f"range {kappa.min():.2f}..{kappa.max():.2f}")
    elapsed = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    points.to_parquet(args.out / "points.parquet", index=False)
    fits_df.to_csv(args.out / "fits.csv", index=False)
    sionna_version = metadata.version("sionna-no-rt")
    config = {"seed": args.seed, "tbs_per_point": args.tbs, "mcs": todo, "first_targets": FIRST_TARGETS,
              "second_targets": SECOND_TARGETS, "num_bp_iter": 20, "channel": "awgn", "elapsed_s": elapsed,
              "torch": torch.__version__, "sionna": sionna_version}
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    plot(points, args.out / "calibration.png")
    if args.install:
        previous = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
        new = [{key: row[key] for key in ("mcs_table", "mcs", "prbs", "code_block_bits", "delta_db", "kappa",
                                          "points", "p_value")} | {"seed": args.seed, "tbs_per_point": args.tbs}
               for row in fits_df.to_dict("records")]
        refit = {(e["mcs_table"], e["mcs"]) for e in new}
        if args.mcs is not None and not previous:
            raise SystemExit("--install with --mcs updates a shipped calibration, and there is none: drop --mcs")
        kept = [e for e in previous.get("entries", []) if (e["mcs_table"], e["mcs"]) not in refit] \
            if args.mcs is not None else []
        command = f"benchmarks/calibrate_bler.py --install --seed {args.seed} --tbs {args.tbs}" + (
            f" --mcs {args.mcs}" if args.mcs else "")
        doc = {"format_version": FORMAT_VERSION,
               "command": previous.get("command", command) if args.mcs else command,
               "updates": [*previous.get("updates", []), command] if args.mcs else [],
               "seed": previous.get("seed", args.seed) if args.mcs else args.seed,
               "tbs_per_point": previous.get("tbs_per_point", args.tbs) if args.mcs else args.tbs,
               "sionna": sionna_version, "num_bp_iter": 20,
               "rule": "edgesplit.channel.nr.calibration (s' = s50 + kappa (s - delta - s50))",
               "entries": sorted([*kept, *new], key=lambda e: (e["mcs_table"], e["mcs"])),
               "large_cbs": previous.get("large_cbs")}
        tmp = CALIBRATION_FILE.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
        os.replace(tmp, CALIBRATION_FILE)
        print(f"installed {CALIBRATION_FILE}")
    print(f"saved {args.out} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
