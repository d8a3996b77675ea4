"""The end-to-end example behind ``make demo`` / ``edgesplit demo``, on the built-in SmolLM2-135M.

1. Load the built-in model (converted once into the edgesplit cache).
2. Split it at several k and check head → tail against the unsplit model (max-abs logit error).
3. Push one prompt through split generation over an ideal, an AWGN and a digital uplink.
4. Measure quality (perplexity, KL, top-1 agreement) per split and channel on the offline default corpus.
5. Price each split with the cost model (phone SoC UE, A100 edge, 5G NR uplink).

Results go to ``<out>/demo_quality.parquet`` and ``<out>/demo_costs.parquet`` with ``<out>/config.json``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from edgesplit.cost import ModelProfile, get_device, get_edge, get_link, split_costs
from edgesplit.link import ImpairedLink, LinkLog
from edgesplit.models import LoadedModel, load_model
from edgesplit.quality import evaluate_split, load_corpus, tokenize_corpus
from edgesplit.scenario import ChannelSetting
from edgesplit.split import DeviceHead, EdgeTail, split_generate

PROMPT = "The wireless edge server receives the hidden states and"
DEMO_CHANNELS = (
    ChannelSetting("ideal"),
    ChannelSetting("awgn", snr_db=20.0),
    ChannelSetting("awgn", snr_db=5.0),
    ChannelSetting("digital", snr_db=10.0, bits=8, modulation="qpsk"),
    ChannelSetting("dropout", p=0.1),
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


def _quality_rows(model: LoadedModel, splits: list[int], tokens: int, seed: int, console: Console) -> pd.DataFrame:
    corpus = load_corpus("default")
    ids = tokenize_corpus(corpus, model.tokenizer, max_tokens=tokens)
    rows = []
    with console.status("measuring quality per split and channel") as status:
        for setting in DEMO_CHANNELS:
            for k in splits:
                status.update(f"quality: k={k}, {setting.label}")
                link = ImpairedLink(setting.impairment(), setting.state(), seed=seed, encoding=setting.encoding,
                                    split_k=k)
                result = evaluate_split(model, ids, k, link, context=min(256, tokens), batch_size=2)
                rows.append({"k": k, "channel": setting.label, **setting.to_dict(), **result.to_dict(),
                             "corpus": corpus.name})
    return pd.DataFrame(rows)


def _cost_rows(model: LoadedModel, prompt_tokens: int) -> pd.DataFrame:
    profile = ModelProfile.from_config(model.model.config)
    device, edge, link = get_device("phone-soc"), get_edge("a100"), get_link("5g-nr-20mhz")
    rows = []
    for setting in (ChannelSetting("awgn", snr_db=20.0, encoding="float16"), ChannelSetting("awgn", snr_db=0.0,
                                                                                            encoding="float16")):
        for k in range(0, model.num_layers + 1, 5):
            cost = split_costs(profile, k, device, edge, link, setting.state(), tokens=prompt_tokens,
                               bits=setting.bits_per_element)
            rows.append({"k": k, "channel": setting.label, **cost.to_dict()})
    return pd.DataFrame(rows)


def _print_quality(console: Console, df: pd.DataFrame) -> None:
    table = Table(title=f"Quality on {df['corpus'].iloc[0]} ({int(df['scored_tokens'].iloc[0])} scored tokens)")
    for col in ("channel", "k", "perplexity", "KL (nats)", "top-1 agree"):
        table.add_column(col, justify="right")
    for row in df.itertuples():
        table.add_row(row.channel, str(row.k), f"{row.perplexity:.2f}", f"{row.kl_nats:.4f}",
                      f"{row.top1_agreement:.3f}")
    console.print(table)


def _print_costs(console: Console, df: pd.DataFrame, prompt_tokens: int) -> None:
    table = Table(title=f"Cost of a {prompt_tokens}-token prefill: phone-soc UE, a100 edge, 5G NR 20 MHz, fp16")
    for col in ("channel", "k", "device ms", "uplink ms", "edge ms", "total ms", "UE mJ", "UE MB"):
        table.add_column(col, justify="right")
    for row in df.itertuples():
        table.add_row(row.channel, str(row.k), f"{row.device_compute_s * 1e3:.2f}", f"{row.uplink_s * 1e3:.2f}",
                      f"{row.edge_compute_s * 1e3:.3f}", f"{row.total_latency_s * 1e3:.2f}",
                      f"{row.ue_energy_j * 1e3:.2f}", f"{row.device_memory_bytes / 2**20:.0f}")
    console.print(table)


def run_demo(out: Path, tokens: int = 512, seed: int = 0, model_name: str = "smollm2-135m") -> None:
    """Run the demo end to end, print its tables and write its results under ``out``."""
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
    for setting in DEMO_CHANNELS[:4]:
        text, log = generate_through_channel(model, PROMPT, L // 3, setting, 24, seed)
        console.print(f"[bold]{setting.label:>24}[/]: {text!r}  ({log.frame_bytes} B on the wire)")
    quality = _quality_rows(model, [1, L // 3, 2 * L // 3, L - 1], tokens, seed, console)
    _print_quality(console, quality)
    prompt_tokens = model.tokenizer(PROMPT, return_tensors="pt").input_ids.shape[1]
    costs = _cost_rows(model, prompt_tokens)
    _print_costs(console, costs, prompt_tokens)
    quality.to_parquet(out / "demo_quality.parquet")
    costs.to_parquet(out / "demo_costs.parquet")
    config = {"model": model_name, "tokens": tokens, "seed": seed, "splits": splits,
              "python": platform.python_version(), "torch": torch.__version__,
              "channels": [s.to_dict() for s in DEMO_CHANNELS]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    console.print(f"results written to {out}/")
