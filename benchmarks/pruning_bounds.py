"""The paper's pruning claims against the built-in model: are its weights Laplacian, how do the magnitude-pruning
closed forms and the rate-distortion lower bounds compare with measured distortion, and how tight is
``output <= c · parameter distortion`` over a pruning sweep.

Run:  .venv/bin/python benchmarks/pruning_bounds.py [--sweep runs/prune_sweep] [--out runs/bench/pruning_bounds]
      .venv/bin/python benchmarks/pruning_bounds.py --smoke-test          # tiny random model, seconds

Writes into ``--out``: ``fits.parquet`` (per weight matrix: Gaussian / Laplacian / generalised-Gaussian MLE, KS,
log-likelihoods, differential entropy), ``curves.parquet`` (relative distortion vs ratio: measured magnitude
pruning of every matrix, the closed forms with each matrix's fitted scale, the RD bounds), ``bounds.parquet`` (c per
output measure, overall and per method), ``summary.json`` and four PNGs; prints the findings. The sweep table is
optional (without it the c fit is skipped). Rate–ratio mapping: see :mod:`edgesplit.pruning.bounds`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

from edgesplit.pruning import bounds as B  # noqa: E402
from edgesplit.pruning.linear import prunable_linears  # noqa: E402

RATIOS = np.round(np.arange(0.05, 0.951, 0.05), 4)
OUTPUTS = ("logits_mse", "kl", "hidden_mse")


def matrices(model):
    """(layer, module, weights as a float64 array) of every prunable projection."""
    for index in range(model.num_layers):
        for lin in prunable_linears(model.adapter.layers[index]):
            yield index, lin.name, lin.weight(torch.float64).numpy().ravel()


def fit_and_curve(model, max_samples: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per matrix: distribution fits and entropy; per (matrix, ratio): measured and closed-form distortion."""
    fits, curves = [], []
    for index, name, w in matrices(model):
        fit = B.fit_distribution(w, max_samples=max_samples, seed=seed + index)
        sample = np.random.default_rng(seed).choice(w, min(w.size, max_samples), replace=False)
        h_bits = float(stats.differential_entropy(sample, base=2))
        mean_sq = float(np.mean(w ** 2))
        fits.append({"layer": index, "module": name, **fit.to_dict(), "entropy_bits": h_bits, "mean_sq": mean_sq,
                     "slb_constant": 2 ** (2 * h_bits) / (2 * math.pi * math.e) / mean_sq})
        measured = B.magnitude_curve(w, RATIOS)
        laplace = B.magnitude_distortion_laplacian(RATIOS, fit.laplace_b) / mean_sq
        gauss = B.magnitude_distortion_gaussian(RATIOS, math.sqrt(mean_sq))
        curves += [{"layer": index, "module": name, "ratio": r, "weight_sq": mean_sq * w.size, "measured": m,
                    "laplace": lap, "gauss": g / mean_sq} for r, m, lap, g in zip(RATIOS, measured, laplace, gauss,
                                                                                    strict=True)]
    return pd.DataFrame(fits), pd.DataFrame(curves)


def model_curve(curves: pd.DataFrame, fits: pd.DataFrame, bits: float) -> pd.DataFrame:
    """Whole-model relative distortion per ratio (weighted by ||W||²) with the RD bounds at that ratio's rate."""
    weighted = curves.assign(**{c: curves[c] * curves["weight_sq"] for c in ("measured", "laplace", "gauss")})
    sums = weighted.groupby("ratio")[["measured", "laplace", "gauss", "weight_sq"]].sum()
    frame = sums[["measured", "laplace", "gauss"]].div(sums["weight_sq"], axis=0).reset_index()
    energy = fits["mean_sq"] * fits["numel"]
    slb_constant = float((fits["slb_constant"] * energy).sum() / energy.sum())
    for mapping in B.MAPPINGS:
        rate = B.rate_from_ratio(frame["ratio"], bits, mapping)
        frame[f"rate_{mapping}"] = rate
        frame[f"gauss_rd_{mapping}"] = B.gaussian_rd(rate)
        frame[f"laplace_slb_{mapping}"] = B.SLB_LAPLACE / 2 * np.exp2(-2 * rate)  # Laplacian of equal variance
        frame[f"empirical_slb_{mapping}"] = slb_constant * np.exp2(-2 * rate)
    frame["effective_rate"] = B.effective_rate(frame["measured"], slb_constant)
    frame.attrs["slb_constant"] = slb_constant
    return frame


def magnitude_crosscheck(cells: pd.DataFrame, curves: pd.DataFrame, num_layers: int) -> float:
    """Largest relative gap between the sweep's magnitude cells and this script's per-matrix curve, same layers."""
    from edgesplit.pruning.spec import PruneConfig

    gaps = []
    rows = cells[(cells["method"] == "magnitude") & cells["pattern"].isna() & (cells["param_dist_sq"] > 0)]
    for _, row in rows.iterrows():
        layers = PruneConfig("magnitude", row["ratio"], int(row["k"]), row["side"]).layers(num_layers)
        part = curves[curves["layer"].isin(list(layers)) & np.isclose(curves["ratio"], row["ratio"])]
        if part.empty:
            continue
        predicted = float((part["measured"] * part["weight_sq"]).sum() / part["weight_sq"].sum())
        gaps.append(abs(predicted / row["param_dist_rel"] - 1))
    return max(gaps) if gaps else float("nan")


def bound_table(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """c per output (overall and per method) and the per-row tightness."""
    rows, tight = [], []
    for output in OUTPUTS:
        subset = cells if output != "hidden_mse" else cells[cells["side"] == "device"]
        for method, group in [("all", subset), *subset.groupby("method")]:
            try:
                fit = B.fit_bound_constant(group, output, "param_dist_sq")
            except ValueError:
                continue
            rows.append({"output": output, "method": method, **fit.summary()})
            if method == "all":
                tight.append(group.loc[fit.tightness.index, ["method", "pattern", "side", "k", "ratio"]].assign(
                    output=output, tightness=fit.tightness.values))
    return pd.DataFrame(rows), pd.concat(tight, ignore_index=True) if tight else pd.DataFrame()


# ---- plots -------------------------------------------------------------------------------------------------------
def plot_histograms(model, fits: pd.DataFrame, path: Path) -> None:
    picks = fits.iloc[np.linspace(0, len(fits) - 1, 4).round().astype(int)]
    fig = Figure(figsize=(14, 3.8))
    weights = {(i, n): w for i, n, w in matrices(model)}
    for ax, (_, fit) in zip(fig.subplots(1, 4), picks.iterrows(), strict=True):
        w = weights[(fit["layer"], fit["module"])]
        edges = np.linspace(*np.quantile(w, [0.0005, 0.9995]), 161)
        density, _, _ = ax.hist(w, bins=edges, density=True, color="lightgray", label="weights")
        x = 0.5 * (edges[1:] + edges[:-1])
        alpha = (fit["gennorm_beta"] * np.mean(np.abs(w - fit["laplace_loc"]) ** fit["gennorm_beta"])) ** (
            1 / fit["gennorm_beta"])
        for label, pdf in (("Gaussian", stats.norm.pdf(x, fit["mean"], fit["std"])),
                           ("Laplacian", stats.laplace.pdf(x, fit["laplace_loc"], fit["laplace_b"])),
                           (f"gen. Gaussian β={fit['gennorm_beta']:.2f}",
                            stats.gennorm.pdf(x, fit["gennorm_beta"], fit["laplace_loc"], alpha))):
            ax.plot(x, pdf, lw=1, label=label)
        ax.set_yscale("log")
        ax.set_ylim(bottom=density[density > 0].min() / 3)
        ax.set_title(f"layer {fit['layer']} {fit['module']}", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle("weight histograms (log density) with maximum-likelihood fits", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_fits(fits: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(14, 4))
    axes = fig.subplots(1, 3)
    for module, group in fits.groupby("module"):
        axes[0].plot(group["layer"], group["gennorm_beta"], marker="o", ms=2, lw=1, label=module)
        axes[1].plot(group["layer"], group["ll_laplace"] - group["ll_gauss"], marker="o", ms=2, lw=1)
        axes[2].plot(group["layer"], group["ks_laplace"] / group["ks_gauss"], marker="o", ms=2, lw=1)
    axes[0].axhline(1, color="black", ls="--", lw=1)
    axes[0].axhline(2, color="black", ls=":", lw=1)
    axes[1].axhline(0, color="black", lw=1)
    axes[2].axhline(1, color="black", lw=1)
    for ax, label in zip(axes, ("generalised-Gaussian shape β (1 Laplace, 2 Gauss)",
                                "log-likelihood Laplace − Gauss (nats/weight)", "KS Laplace / KS Gauss"), strict=True):
        ax.set_xlabel("layer")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.suptitle("are the weights Laplacian? per matrix, by layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_distortion(curve: pd.DataFrame, cells: pd.DataFrame | None, bits: float, path: Path) -> None:
    fig = Figure(figsize=(13, 4.8))
    ax, ax_rate = fig.subplots(1, 2)
    ax.plot(curve["ratio"], curve["measured"], color="black", lw=2, label="magnitude, every matrix (measured)")
    ax.plot(curve["ratio"], curve["laplace"], "--", label="closed form, Laplacian(b̂) per matrix")
    ax.plot(curve["ratio"], curve["gauss"], ":", label="closed form, Gaussian(σ̂) per matrix")
    for mapping, style in (("memory", "-"), ("values", "-.")):
        ax.plot(curve["ratio"], curve[f"gauss_rd_{mapping}"], style, color="tab:red", lw=3, alpha=0.4,
                label=f"Gaussian RD σ²2^(-2R), R = {mapping} rate (B={bits:g})")
        ax.plot(curve["ratio"], curve[f"empirical_slb_{mapping}"], style, color="tab:purple", lw=1,
                label=f"Shannon lower bound (weights' entropy), {mapping} rate")
    if cells is not None:
        for method, group in cells[cells["param_dist_sq"] > 0].groupby("method"):
            ax.scatter(group["achieved_ratio"], group["param_dist_rel"], s=10, alpha=0.7, label=f"sweep: {method}")
    ax.set_yscale("log")
    ax.set_xlabel("pruning ratio ρ")
    ax.set_ylabel("relative parameter distortion ||ΔW||² / ||W||²")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    ax_rate.plot(curve["ratio"], curve["rate_memory"], label=f"memory rate (1-ρ)·{bits:g} + H2(ρ)")
    ax_rate.plot(curve["ratio"], curve["rate_values"], label=f"values rate (1-ρ)·{bits:g}")
    ax_rate.plot(curve["ratio"], curve["effective_rate"], color="black", lw=2,
                 label="effective rate of magnitude pruning (SLB matched)")
    ax_rate.set_xlabel("pruning ratio ρ")
    ax_rate.set_ylabel("bits per weight")
    ax_rate.grid(alpha=0.3)
    ax_rate.legend(fontsize=7)
    fig.suptitle("parameter distortion vs pruning ratio: measured, closed forms, rate-distortion lower bounds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_tightness(tight: pd.DataFrame, path: Path) -> None:
    outputs = list(dict.fromkeys(tight["output"]))
    fig = Figure(figsize=(4.6 * len(outputs), 4.2))
    for ax, output in zip(np.atleast_1d(fig.subplots(1, len(outputs))), outputs, strict=True):
        rows = tight[tight["output"] == output]
        for method, group in rows.groupby("method"):
            ax.scatter(group["ratio"] + 0.004 * group["k"] / 30, group["tightness"], s=10, alpha=0.7, label=method)
        ax.set_yscale("log")
        ax.set_xlabel("pruning ratio")
        ax.set_ylabel(f"{output} / (c · ||ΔW||²)  (1 = tight)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    fig.suptitle("where output ≤ c·parameter distortion is tight (one c per output over every cell)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---- main --------------------------------------------------------------------------------------------------------
def _extremes(tight: pd.DataFrame) -> dict:
    """Per output: the cell where the bound is tight and the loosest one."""
    label = "{method} {pattern} {side} k={k} ratio={ratio:g}"
    out = {}
    for output, rows in tight.groupby("output"):
        best, worst = rows.loc[rows["tightness"].idxmax()], rows.loc[rows["tightness"].idxmin()]
        out[output] = {"tight_at": label.format(**best.to_dict()),
                       "loosest_at": label.format(**worst.to_dict()), "loosest_tightness": worst["tightness"]}
    return out


def summarize(fits: pd.DataFrame, curve: pd.DataFrame, bounds: pd.DataFrame | None,
              tight: pd.DataFrame | None = None) -> dict:
    at = curve.set_index("ratio")
    half = at.loc[0.5]
    out = {
        "matrices": len(fits), "laplace_better_by_likelihood": int((fits["better"] == "laplace").sum()),
        "laplace_better_by_ks": int((fits["ks_laplace"] < fits["ks_gauss"]).sum()),
        "gennorm_beta_quartiles": fits["gennorm_beta"].quantile([0.25, 0.5, 0.75]).round(3).tolist(),
        "excess_kurtosis_median": float(fits["excess_kurtosis"].median()),
        "slb_constant_weighted": curve.attrs["slb_constant"],
        "at_ratio_0.5": {"measured": half["measured"], "laplace_closed_form": half["laplace"],
                         "gauss_closed_form": half["gauss"], "gauss_rd_memory": half["gauss_rd_memory"],
                         "empirical_slb_memory": half["empirical_slb_memory"],
                         "gap_decades_memory": math.log10(half["measured"] / half["empirical_slb_memory"]),
                         "effective_rate_bits": half["effective_rate"], "memory_rate_bits": half["rate_memory"]},
        "closed_form_error_decades": {
            name: float(np.abs(np.log10(curve[name] / curve["measured"])).max()) for name in ("laplace", "gauss")},
    }
    if bounds is not None:
        out["c"] = bounds[bounds["method"] == "all"].set_index("output")[
            ["c", "rows", "slack_decades_median", "slack_decades_max", "loglog_slope"]].to_dict("index")
        out["c_by_method"] = bounds.pivot(index="method", columns="output", values="c").to_dict()
    if tight is not None and len(tight):
        out["tightness_extremes"] = _extremes(tight.assign(pattern=tight["pattern"].fillna("none")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--sweep", type=Path, default=Path("runs/prune_sweep"), help="a prune sweep directory")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/pruning_bounds"))
    parser.add_argument("--bits", type=float, default=16.0, help="bits per kept weight in the rate mapping")
    parser.add_argument("--max-samples", type=int, default=100_000, help="weights per matrix used by the fits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-test", action="store_true", help="tiny random Llama, no sweep")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.smoke_test:
        from transformers import AutoModelForCausalLM, LlamaConfig

        from edgesplit.models import from_model

        torch.manual_seed(args.seed)
        model = from_model(AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)), name="tiny-llama")
        args.sweep, args.max_samples = None, 5000
    else:
        from edgesplit.models import load_model

        model = load_model(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    fits, curves = fit_and_curve(model, args.max_samples, args.seed)
    curve = model_curve(curves, fits, args.bits)
    cells = None
    if args.sweep is not None and (args.sweep / "cells.parquet").is_file():
        cells = pd.read_parquet(args.sweep / "cells.parquet")
    elif args.sweep is not None:
        print(f"no sweep table at {args.sweep / 'cells.parquet'}: the c fit is skipped")
    bounds, tight = bound_table(cells) if cells is not None else (None, None)
    fits.to_parquet(args.out / "fits.parquet", index=False)
    curves.merge(curve[["ratio", *[c for c in curve.columns if c.startswith(("rate", "gauss_rd", "empirical",
                                                                               "laplace_slb"))]]], on="ratio"
                 ).to_parquet(args.out / "curves.parquet", index=False)
    plot_histograms(model, fits, args.out / "weight_histograms.png")
    plot_fits(fits, args.out / "fits_by_layer.png")
    plot_distortion(curve, cells, args.bits, args.out / "magnitude_distortion.png")
    if bounds is not None and len(tight):
        bounds.to_parquet(args.out / "bounds.parquet", index=False)
        plot_tightness(tight, args.out / "bound_tightness.png")
    summary = summarize(fits, curve, bounds, tight)
    if cells is not None:
        summary["sweep_magnitude_vs_per_matrix_max_rel_gap"] = magnitude_crosscheck(cells, curves, model.num_layers)
    summary.update(model=model.name, bits_per_kept_weight=args.bits, sweep=str(args.sweep), seed=args.seed)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(json.dumps(summary, indent=2, default=float))
    if bounds is not None:
        print(bounds.drop(columns="param").to_string(index=False, float_format="%.4g"))


if __name__ == "__main__":
    main()
