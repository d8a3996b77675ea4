"""The end-to-end example behind ``make demo`` / ``edgesplit demo``, on the built-in SmolLM2-135M.

1. Load the built-in model (converted once into the edgesplit cache).
2. Split it at several k and check head → tail against the unsplit model (max-abs logit error).
3. Push one prompt through split generation over an ideal, an AWGN, an uncoded digital and a coded 5G NR uplink
   (LDPC, link adaptation, HARQ; Sionna's abstracted path) — at 5 dB the uncoded link garbles the text and the coded
   one does not.
4. Profile a reduced grid (every split × AWGN SNR 0/10/20/30 dB, one window, one seed) on the offline default
   corpus with the profiler: ``<out>/profile/`` gets the parquet table, summary, config and plots; the terminal gets the
   perplexity per split and SNR and the fastest split whose perplexity stays within 5% of the clean model.
5. Price each split with the cost model (phone SoC UE, A100 edge, 5G NR uplink; Shannon's rate for the analog rows,
   the NR transport blocks, MCS and HARQ for the coded ones): ``<out>/demo_costs.parquet``.

``make demo`` then runs a short Ray fleet (``python -m cluster.run_fleet``): the core package never imports Ray.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from edgesplit.clierrors import require_writable_dir
from edgesplit.cost import ModelProfile, get_device, get_edge, get_link, split_costs
from edgesplit.link import ImpairedLink, LinkLog
from edgesplit.models import LoadedModel, load_model
from edgesplit.profile.config import ProfileConfig
from edgesplit.profile.runner import ProfileInputs, run_profile
from edgesplit.profile.summary import summarize
from edgesplit.quality import load_corpus, tokenize_corpus
from edgesplit.scenario import ChannelSetting
from edgesplit.split import DeviceHead, EdgeTail, split_generate

PROMPT = "The wireless edge server receives the hidden states and"
DEMO_CHANNELS = (
    ChannelSetting("ideal"),
    ChannelSetting("awgn", snr_db=20.0),
    ChannelSetting("awgn", snr_db=5.0),
    ChannelSetting("digital", snr_db=10.0, bits=8, modulation="qpsk"),
    ChannelSetting("digital", snr_db=5.0, bits=8, modulation="qpsk"),
    ChannelSetting("coded", snr_db=5.0, bits=8),
)
COST_CHANNELS = (
    ChannelSetting("awgn", snr_db=20.0, encoding="float16"),
    ChannelSetting("awgn", snr_db=0.0, encoding="float16"),
    ChannelSetting("coded", snr_db=20.0, bits=8),
    ChannelSetting("coded", snr_db=0.0, bits=8),
)


def generate_through_channel(model: LoadedModel, prompt: str, k: int, setting: ChannelSetting,
                             max_new_tokens: int, seed: int) -> tuple[str, LinkLog]:
    """Greedy split generation of ``prompt`` at split ``k`` over ``setting``; returns (continuation, link log)."""
    tok = model.tokenizer
    ids = tok(prompt, return_tensors="pt").input_ids
    link = ImpairedLink(setting.impairment(), setting.state(), seed=seed, encoding=setting.encoding, split_k=k)
    new = split_generate(DeviceHead(model, k), EdgeTail(model, k), ids, max_new_tokens=max_new_tokens, link=link,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(new[0], skip_special_tokens=True), link.log


def _exactness(model: LoadedModel, splits: list[int]) -> list[tuple[int, float]]:
    ids = model.tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.inference_mode():
        reference = model.model(input_ids=ids).logits
    return [(k, (EdgeTail(model, k)(DeviceHead(model, k)(ids)) - reference).abs().max().item()) for k in splits]


def _profile(model: LoadedModel, out: Path, tokens: int, seed: int) -> pd.DataFrame:
    """A reduced profile grid (AWGN SNR × every 5th split, one seed) with the profiler; returns its summary."""
    corpus = load_corpus("default")
    config = ProfileConfig(out=out, model=model.name, channel="awgn", snr_db=(0.0, 10.0, 20.0, 30.0),
                           splits=None, tokens=tokens, context=tokens, seeds=1, first_seed=seed)
    inputs = ProfileInputs(model, tokenize_corpus(corpus, model.tokenizer, tokens), corpus.name)
    return summarize(run_profile(config, inputs).cells)


def _cost_rows(model: LoadedModel, prompt_tokens: int) -> pd.DataFrame:
    profile = ModelProfile.from_config(model.model.config)
    device, edge, link = get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz")
    rows = []
    for setting in COST_CHANNELS:
        for k in range(0, model.num_layers + 1, 5):
            cost = split_costs(profile, k, device, edge, link, setting.state(), tokens=prompt_tokens,
                               bits=setting.bits_per_element, nr_link=setting.nr_link())
            rows.append({"k": k, "channel": setting.label, **cost.to_dict()})
    return pd.DataFrame(rows)


def _print_profile(console: Console, summary: pd.DataFrame, out: Path) -> None:
    table = Table(title=f"Profile (AWGN, per-token SNR): perplexity per split; clean "
                        f"{summary['clean_perplexity'].iloc[0]:.2f} — plots in {out}")
    splits = sorted(summary["k"].unique())[::5]
    table.add_column("SNR", justify="right")
    for k in splits:
        table.add_column(f"k={k}", justify="right")
    table.add_column("fastest private split", justify="right")
    for snr, rows in summary.groupby("snr_db"):
        ppl = dict(zip(rows["k"], rows["perplexity_mean"], strict=True))
        # k = 0 ships the raw token ids to the edge; "private" splits keep the text on the UE (k >= 1).
        good = rows[(rows["k"] >= 1) & (rows["perplexity_mean"] <= 1.05 * rows["clean_perplexity"])]
        best = good.loc[good["prefill_latency_s_mean"].idxmin()]
        table.add_row(f"{snr:g} dB", *(f"{ppl[k]:.1f}" for k in splits),
                      f"k={int(best['k'])} ({best['prefill_latency_s_mean'] * 1e3:.1f} ms)")
    console.print(table)
    console.print("fastest private split: the least prefill latency among k >= 1 (the text never leaves the UE) whose "
                  "perplexity stays within 5% of the clean model; k = L always qualifies.")


def _print_costs(console: Console, df: pd.DataFrame, prompt_tokens: int) -> None:
    table = Table(title=f"Cost of a {prompt_tokens}-token prefill: phone-soc UE, a100 edge, 5G NR 20 MHz "
                        "(awgn: fp16 at Shannon's rate; coded: 8 bit over NR transport blocks + HARQ)")
    for col in ("channel", "k", "device ms", "uplink ms", "edge ms", "total ms", "UE mJ", "UE MB"):
        table.add_column(col, justify="right")
    for row in df.itertuples():
        table.add_row(row.channel, str(row.k), f"{row.device_compute_s * 1e3:.2f}", f"{row.uplink_s * 1e3:.2f}",
                      f"{row.edge_compute_s * 1e3:.3f}", f"{row.total_latency_s * 1e3:.2f}",
                      f"{row.ue_energy_j * 1e3:.2f}", f"{row.device_memory_bytes / 2**20:.0f}")
    console.print(table)


def run_demo(out: Path, tokens: int = 256, seed: int = 0, model_name: str = "smollm2-135m") -> None:
    """Run the demo end to end, print its tables and write its results under ``out`` (exit 2 if it cannot)."""
    require_writable_dir(out)
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    with console.status(f"loading {model_name} (first run converts the GGUF, ~30 s)"):
        model = load_model(model_name)
    L = model.num_layers
    splits = [0, 1, L // 2, L - 1, L]
    console.rule(f"{model_name}: {L} layers, hidden {model.hidden_size}")
    for k, err in _exactness(model, splits):
        console.print(f"split k={k:2d}: head → tail vs unsplit, max-abs logit error {err:.2e}")
    console.rule(f"split generation at k={L // 3}, 24 new tokens")
    console.print(f"prompt: {PROMPT!r}")
    for setting in DEMO_CHANNELS:
        text, log = generate_through_channel(model, PROMPT, L // 3, setting, 24, seed)
        console.print(f"[bold]{setting.label:>24}[/]: {text!r}  ({log.frame_bytes} B on the wire)")
    console.rule("profile: split × AWGN SNR on the default corpus")
    _print_profile(console, _profile(model, out / "profile", tokens, seed), out / "profile")
    prompt_tokens = model.tokenizer(PROMPT, return_tensors="pt").input_ids.shape[1]
    costs = _cost_rows(model, prompt_tokens)
    _print_costs(console, costs, prompt_tokens)
    costs.to_parquet(out / "demo_costs.parquet")
    config = {"model": model_name, "tokens": tokens, "seed": seed, "splits": splits,
              "python": platform.python_version(), "torch": torch.__version__,
              "channels": [s.to_dict() for s in DEMO_CHANNELS]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    console.print(f"results written to {out}/")
