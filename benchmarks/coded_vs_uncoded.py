"""The coded 5G NR link against the uncoded digital link: the best split per SNR, where HARQ latency decides, NR vs
Shannon.

    .venv/bin/python benchmarks/coded_vs_uncoded.py           # 256 tokens, 5 splits, 2 seeds (~20 min, 2 cores)
    .venv/bin/python benchmarks/coded_vs_uncoded.py --quick   # CI-sized: 64 tokens, 2 splits, 1 seed (~4 min)
    .venv/bin/python benchmarks/coded_vs_uncoded.py --replot  # reprint and redraw from the saved tables

SmolLM2-135M (30 layers) on WikiText-2 test (``../shared/data/wikitext-2-raw/wiki.test.raw`` when present, else the
default corpus). Three profiler runs (:func:`edgesplit.profile.run_profile`, resumable, under ``--out``): the uncoded
``digital`` link (8-bit codes, QPSK and 16QAM, bit errors at the closed-form BER), the ``coded`` link (8-bit,
abstracted, MCS link adaptation at target BLER 0.1, 4 HARQ transmissions, 20 MHz: the ``5g-nr-20mhz`` preset's
carrier) and the same coded link under Rayleigh fading per slot (``coded_channel="rayleigh"``, every 5 dB:
``--rayleigh-snr-db``; link adaptation on the mean SNR, so some transport blocks fail all 4 transmissions), every
split of ``--splits`` (plus the lossless k = 0 and k = L) × SNR × seed; seeds are pooled exactly
(:func:`surrogate.dataset.pool_seeds`). Splits: 1 and 4 are where every preset's offload / UE-compute terms put the
optimum; 8, 16 and 29 tell whether a deeper boundary survives bit errors better; k = 30 is local execution. SNRs:
the digital link every 5 dB (``--snr-db``: its quality falls off a cliff somewhere in 0..30 dB); the coded link every
10 dB (``--coded-snr-db``): with 4 HARQ transmissions no transport block is lost anywhere in 0..30 dB, so its cells
are the same 8-bit quantisation at every SNR (the run prints the measured erased-TB fraction and the spread of its
quality over SNR to show it) and the coded variants take the quality of the nearest measured coded SNR, priced at
the SNR itself; this spends the ~20-minute budget on the link whose quality does change.

Rewards (:mod:`edgesplit.reward`, scored from profile rows as :mod:`rllib_env` scores them: ``SplitReward.rewards``
over the rows' settings and log-perplexity ratios): ``paper`` (the RL default: 10.5·(PPL0−PPL)/PPL0 + (L−k)/L; no
latency term), ``latency-energy`` (−10·log(PPL/PPL0) − latency_s − UE energy_j, phone-soc) and ``latency-orin``
(``latency-energy`` on a jetson-agx-orin UE, energy weight 0, quality metric ``kl``: −10·KL(clean‖split) −
latency_s). The last asks the question the presets cannot: on a phone the UE's layers cost ~25 ms + 20 mJ each, so
local execution (0.74 s, 0.59 J) never competes with an uplink of at most ~0.1 s, and the uplink message is the same
for every 1 ≤ k < L, so its time shifts every offloading split alike; on the Orin the whole prefill runs in ~27 ms,
as long as the uplink. KL because perplexity on a few hundred tokens can reward a distortion (8-bit quantisation
at k = 16 lowered perplexity 8 % on the default run's 254 scored tokens with KL 0.05 nats and top-1 89 %), which
would then decide instead of latency.

For each reward, variant and SNR it finds the best feasible split; for the coded link it also re-prices the same
measured quality with the Shannon uplink (an 8-bit digital setting's cost: same bits) — an SNR where the two best
splits differ is one where the NR link's latency (MCS granularity, DMRS, HARQ retransmissions and round trips), not
quality, decides. The fine grid (``--fine-step-db``) prices the same way.

Writes under ``--out``: ``digital/``, ``coded/`` and ``coded_rayleigh/`` (profiler runs), ``best_splits.parquet``,
``link_costs.parquet`` (fine grid: NR vs Shannon throughput and prefill uplink time, HARQ share), ``config.json``
(arguments, seeds, reward configs, versions) and ``best_split_vs_snr.png``, ``quality_vs_snr.png``,
``nr_vs_shannon.png``, ``harq_decides.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coded_vs_uncoded_plots as plots  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from edgesplit.channel.nr import nr_throughput_bps, nr_uplink_cost  # noqa: E402
from edgesplit.cost import ModelProfile, get_link, hidden_payload_bits  # noqa: E402
from edgesplit.profile import ProfileConfig, ProfileInputs, run_profile  # noqa: E402
from edgesplit.profile.grid import parse_float_grid, parse_int_grid  # noqa: E402
from edgesplit.profile.store import RunStore, package_versions  # noqa: E402
from edgesplit.reward import SplitReward, reward_preset  # noqa: E402
from edgesplit.scenario import ChannelSetting  # noqa: E402
from surrogate.dataset import add_targets, pool_seeds  # noqa: E402
from surrogate.features import settings_of  # noqa: E402

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
MODEL, LINK = "smollm2-135m", "5g-nr-20mhz"
REWARDS = {"paper": reward_preset("paper"), "latency-energy": reward_preset("latency-energy"),
           "latency-orin": reward_preset("latency-energy", device="jetson-agx-orin", energy_weight=0.0,
                                         quality_metric="kl")}
CODED = {"mcs_table": 1, "target_bler": 0.1, "harq_transmissions": 4, "coded_path": "abstracted"}
CODED_LINK2 = {"mcs_table": 2, "target_bler": 0.1, "max_transmissions": 4}
"""The same link on MCS table 2 (up to 256QAM), for the goodput curve."""
VARIANTS = ("digital qpsk", "digital 16qam", "coded", "coded, Shannon-priced", "coded rayleigh")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (64 tokens, 2 splits, 3 SNRs, 1 seed)")
    parser.add_argument("--replot", action="store_true", help="only reprint and redraw from the saved runs")
    parser.add_argument("--out", type=Path, default=None, help="default runs/coded_vs_uncoded[_quick]")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--splits", default="1,4,8,16,29", help="noisy splits (k = 0 and k = L are added)")
    parser.add_argument("--snr-db", default="0:30:5", help="SNR grid of the digital link (and of the decisions)")
    parser.add_argument("--coded-snr-db", default="0:30:10", help="SNR grid the coded link is measured at")
    parser.add_argument("--rayleigh-snr-db", default="0:30:5",
                        help="SNR grid of the coded link under Rayleigh fading per slot (its quality does change)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--fine-step-db", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.context, args.splits, args.seeds = 64, 32, "1,15", 1
        args.snr_db, args.coded_snr_db, args.rayleigh_snr_db = "0,15,30", "0,30", "0,15,30"
    args.out = args.out or Path("runs/coded_vs_uncoded" + ("_quick" if args.quick else ""))
    return args


def _corpus_spec() -> str:
    if WIKITEXT.is_file():
        print(f"corpus: {WIKITEXT}")
        return str(WIKITEXT)
    print(f"corpus: {WIKITEXT} not found, using the default corpus instead")
    return "default"


def configs(args: argparse.Namespace, corpus: str, num_layers: int = 30) -> dict[str, ProfileConfig]:
    splits = tuple(sorted({0, num_layers, *parse_int_grid(args.splits, "--splits", 0, num_layers)}))
    common = {"model": MODEL, "bits": (8,), "splits": splits, "corpus": corpus, "tokens": args.tokens,
              "context": args.context, "seeds": args.seeds, "link": LINK}
    return {"digital": ProfileConfig(out=args.out / "digital", channel="digital", modulations=("qpsk", "16qam"),
                                     snr_db=parse_float_grid(args.snr_db, "--snr-db"), **common),
            "coded": ProfileConfig(out=args.out / "coded", channel="coded", **CODED,
                                   snr_db=parse_float_grid(args.coded_snr_db, "--coded-snr-db"), **common),
            "coded_rayleigh": ProfileConfig(out=args.out / "coded_rayleigh", channel="coded", **CODED,
                                            coded_channel="rayleigh", **common,
                                            snr_db=parse_float_grid(args.rayleigh_snr_db, "--rayleigh-snr-db"))}


def profile(args: argparse.Namespace, runs: dict[str, ProfileConfig]) -> None:
    """Run (or resume) both profiler runs on one loaded model and token stream."""
    from edgesplit.models import load_model
    from edgesplit.quality import load_corpus, tokenize_corpus

    model = load_model(MODEL)
    corpus = load_corpus(runs["coded"].corpus)
    inputs = ProfileInputs(model, tokenize_corpus(corpus, model.tokenizer, args.tokens), corpus.name)
    for name, config in runs.items():
        start = time.perf_counter()
        outcome = run_profile(config, inputs, progress=True)
        print(f"{name}: {outcome.computed} cells computed, {outcome.skipped} resumed, "
              f"{time.perf_counter() - start:.0f} s")


def quality_table(runs: dict[str, ProfileConfig]) -> pd.DataFrame:
    """Both runs' cells, seeds pooled, with ``variant`` and ``log_ppl_ratio``."""
    cells = pd.concat([RunStore(c.out).load() for c in runs.values()], ignore_index=True)
    pooled = add_targets(pool_seeds(cells))
    faded = pooled["coded_channel"].astype(str) == "rayleigh"
    variant = np.where(pooled["channel"] == "coded", np.where(faded, "coded rayleigh", "coded"),
                       "digital " + pooled["modulation"].astype(str))
    return pooled.assign(variant=variant, measured_snr_db=pooled["snr_db"])


def coded_at(coded: pd.DataFrame, snrs: np.ndarray) -> pd.DataFrame:
    """Coded rows at every SNR of ``snrs``: the nearest measured SNR's quality, ``snr_db`` (what prices it) the SNR
    itself; ``measured_snr_db`` says where the quality was measured."""
    measured = np.array(sorted(coded["measured_snr_db"].unique()))
    parts = [coded[coded["measured_snr_db"] == measured[np.argmin(np.abs(measured - s))]].assign(snr_db=float(s))
             for s in snrs]
    return pd.concat(parts, ignore_index=True)


def _shannon_twin(setting: ChannelSetting) -> ChannelSetting:
    """The uncoded setting with the coded one's bits and SNR: the same payload priced at the Shannon rate."""
    return ChannelSetting("digital", snr_db=setting.snr_db, bits=setting.bits)


def best_splits(table: pd.DataFrame, profile_: ModelProfile) -> pd.DataFrame:
    """Per reward, variant and SNR: the best feasible split, its reward, and the best offloading split's margin
    over local execution (k = L)."""
    rows = []
    digital = table[table["variant"].str.startswith("digital")]
    coded = coded_at(table[table["variant"] == "coded"], np.union1d(digital["snr_db"], table["snr_db"]))
    frames = ({v: digital[digital["variant"] == v] for v in VARIANTS[:2]} | {v: coded for v in VARIANTS[2:4]}
              | {VARIANTS[4]: table[table["variant"] == VARIANTS[4]]})
    for name, config in REWARDS.items():
        reward = SplitReward(config, profile_)
        for variant, frame in frames.items():
            settings = settings_of(frame)
            if variant == VARIANTS[3]:
                settings = [_shannon_twin(s) for s in settings]
            r, feasible = reward.rewards(frame["k"].to_numpy(), settings, frame["log_ppl_ratio"].to_numpy(),
                                         frame["kl_nats"].to_numpy(), frame["top1_agreement"].to_numpy())
            scored = frame.assign(reward=np.where(feasible, r, -np.inf))
            for snr, part in scored.groupby("snr_db"):
                rows.append(_decision(name, variant, float(snr), part, profile_.num_layers))
    return pd.DataFrame(rows)


def _decision(reward: str, variant: str, snr: float, part: pd.DataFrame, num_layers: int) -> dict:
    best = part.loc[part["reward"].idxmax()]
    offload = part[part["k"] < num_layers]
    local = part[part["k"] == num_layers]["reward"]
    margin = float(offload["reward"].max() - local.iloc[0]) if len(local) and len(offload) else np.nan
    return {"reward": reward, "variant": variant, "snr_db": snr, "best_k": int(best["k"]),
            "best_reward": float(best["reward"]), "best_offload_k": int(offload.loc[offload["reward"].idxmax(), "k"]),
            "offload_margin": margin, "best_log_ppl_ratio": float(best["log_ppl_ratio"])}


def link_costs(table: pd.DataFrame, profile_: ModelProfile, step_db: float) -> pd.DataFrame:
    """Fine SNR grid: NR goodput vs Shannon, the prefill message's NR and Shannon uplink times and HARQ's share, and
    the ``latency-orin`` offload margin under both pricings (coded quality from the nearest measured SNR)."""
    link, tokens = get_link(LINK), REWARDS["latency-orin"].tokens
    message = link.on_air_bits(hidden_payload_bits(tokens, profile_.hidden_size, 8))
    reward = SplitReward(REWARDS["latency-orin"], profile_)
    rows = []
    for snr in np.round(np.arange(0.0, 30.0 + 1e-9, step_db), 6):
        setting = ChannelSetting("coded", snr_db=float(snr), bits=8, **CODED)
        nr = nr_uplink_cost(message, float(snr), setting.nr_link(), link.tx_power_w)
        first_tx_s = nr.num_tbs * setting.nr_link().carrier.slot_s
        quality = coded_at(table[table["variant"] == "coded"], np.array([snr]))
        margins = {}
        for pricing, priced in (("nr", setting), ("shannon", _shannon_twin(setting))):
            r, ok = reward.rewards(quality["k"].to_numpy(), [priced] * len(quality), quality["log_ppl_ratio"],
                                   quality["kl_nats"], quality["top1_agreement"])
            r = np.where(ok, r, -np.inf)
            local = quality["k"].to_numpy() == profile_.num_layers
            margins[f"orin_margin_{pricing}"] = float(r[~local].max() - r[local].max())
        rows.append({"snr_db": float(snr), "nr_mcs": nr.mcs, "nr_goodput_bps": nr_throughput_bps(float(snr),
                     setting.nr_link()), "nr_goodput_table2_bps": nr_throughput_bps(float(snr), {**CODED_LINK2}),
                     "shannon_bps": nr.shannon_rate_bps, "message_bits": message, "nr_uplink_s": nr.latency_s,
                     "shannon_uplink_s": nr.shannon_time_s, "nr_over_shannon": nr.latency_over_shannon,
                     "harq_share": 1.0 - first_tx_s / nr.latency_s, **margins})
    return pd.DataFrame(rows)


def crossover(costs: pd.DataFrame, column: str) -> float:
    """Highest fine-grid SNR at which local execution beats offloading (NaN when it never does)."""
    below = costs[costs[column] < 0]
    return float(below["snr_db"].max()) if len(below) else float("nan")


def report(table: pd.DataFrame, best: pd.DataFrame, costs: pd.DataFrame) -> None:
    coded = table[(table["variant"] == "coded") & (table["k"] > 0) & (table["k"] < table["num_layers"])]
    spread = coded.groupby("k")["log_ppl_ratio"].agg(lambda v: v.max() - v.min()).max()
    print(f"coded link, measured at {[float(x) for x in sorted(coded['snr_db'].unique())]} dB: erased-TB fraction "
          f"{coded['nr_erased_tb_fraction'].max():.3g} at most, mean MCS {coded['nr_mean_mcs'].min():g}.."
          f"{coded['nr_mean_mcs'].max():g}, largest spread of log(PPL/PPL0) over SNR at one split {spread:.3g}")
    print("log(PPL/PPL0) per split (seeds pooled):")
    print(table[(table["k"] > 0) & (table["k"] < table["num_layers"])].pivot_table(
        index=["variant", "snr_db"], columns="k", values="log_ppl_ratio").to_string(float_format="%.4f"))
    for name in REWARDS:
        part = best[best["reward"] == name].pivot(index="snr_db", columns="variant", values="best_k")
        print(f"\nbest split k per SNR, reward {name!r} (k = 30: run locally)")
        print(part[[v for v in VARIANTS if v in part.columns]].to_string())
        coded = best[(best["reward"] == name) & (best["variant"] == "coded")].set_index("snr_db")["best_k"]
        shannon = best[(best["reward"] == name) & (best["variant"] == VARIANTS[3])].set_index("snr_db")["best_k"]
        differ = [f"{s:g}" for s in coded.index if coded[s] != shannon[s]]
        print(f"  NR vs Shannon pricing of the coded link changes the best split at: {', '.join(differ) or 'no SNR'}")
    nr_x, sh_x = crossover(costs, "orin_margin_nr"), crossover(costs, "orin_margin_shannon")
    print(f"\nlatency-orin, coded quality: local beats offloading up to {nr_x:g} dB with NR pricing, up to {sh_x:g} dB "
          f"with Shannon pricing (fine grid; NaN: never) — in between the NR link's latency decides")
    print("\nNR (table 1, HARQ 4, BLER 0.1, 20 MHz) vs Shannon at the same SNR; prefill message "
          f"{int(costs['message_bits'].iloc[0])} bits")
    picks = costs[np.isclose(costs["snr_db"] % 5, 0)]
    for _, row in picks.iterrows():
        print(f"  {row['snr_db']:4.0f} dB  MCS {int(row['nr_mcs']):2d}  goodput {row['nr_goodput_bps'] / 1e6:6.1f} "
              f"(table 2 {row['nr_goodput_table2_bps'] / 1e6:6.1f}) vs Shannon {row['shannon_bps'] / 1e6:6.1f} Mbit/s"
              f"  uplink {row['nr_uplink_s'] * 1e3:6.1f} vs {row['shannon_uplink_s'] * 1e3:5.1f} ms "
              f"(x{row['nr_over_shannon']:.2f}, HARQ {100 * row['harq_share']:.0f} %)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    runs = configs(args, _corpus_spec())
    if not args.replot:
        profile(args, runs)
    from surrogate.dataset import model_profile

    profile_ = model_profile(MODEL)
    table = quality_table(runs)
    best = best_splits(table, profile_)
    costs = link_costs(table, profile_, args.fine_step_db)
    best.to_parquet(args.out / "best_splits.parquet")
    costs.to_parquet(args.out / "link_costs.parquet")
    facts = {"args": {k: str(v) for k, v in vars(args).items()}, "seeds": list(runs["coded"].seed_list),
             "rewards": {name: c.to_dict() for name, c in REWARDS.items()}, "coded": CODED,
             "profiles": {name: c.to_dict() for name, c in runs.items()}, "versions": package_versions()}
    (args.out / "config.json").write_text(json.dumps(facts, indent=2, default=str))
    report(table, best, costs)
    paths = plots.write_plots(table, best, costs, args.out)
    print(f"\nwrote {', '.join(p.name for p in paths)} and tables under {args.out} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
