"""Diagnose the catastrophic cells left under unequal protection: what was lost, where, and which loss did it.

    .venv/bin/python benchmarks/uep_diagnose.py --method uep_tokens -- --families coded,dropout --seeds 10  # 6 min
    .venv/bin/python benchmarks/uep_diagnose.py --quick        # 256 tokens, 3 splits x 2 seeds

Re-runs one method of :mod:`benchmarks.uep_benefit` with the very same draws (same window seeds, same arguments:
any of its flags after ``--``) and, per cell, compares the received hidden state with the clean one. Per cell it
records the largest damaged elements (position, channel, clean and received value, which part of the scheme carried
it: ``channels`` = protected outlier channels, ``tokens`` = protected leading rows, ``main``), each damaged row's peak
ratio (its max |x| over the window's median row max: massive tokens have ratios of 10-1000), and for catastrophic
cells counterfactual tails: the received state with one thing restored to the clean values: its single largest
damaged element, every massive row (ratio > 10), or one part (channels, tokens, main). Printed: one line per
catastrophic cell and the distribution of the largest lost |x| in catastrophic vs fine cells; written:
``diagnosis.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import uep_benefit as ub  # noqa: E402

from edgesplit.link import ImpairedLink  # noqa: E402
from edgesplit.models import load_model  # noqa: E402
from edgesplit.profile import prepare_windows  # noqa: E402
from edgesplit.quality import load_corpus  # noqa: E402
from edgesplit.quality.windows import scored_slice  # noqa: E402
from edgesplit.split import EdgeTail  # noqa: E402

MASSIVE_RATIO = 10.0
"""A row whose max |x| exceeds this multiple of the window's median row max counts as massive."""


def received_states(prepared, k: int, impairment, state, seed_parts: tuple) -> list[torch.Tensor]:
    """What the edge receives per window, with exactly the draws of ``uep_benefit.evaluate_cell``."""
    out = []
    for clean in prepared.windows:
        link = ImpairedLink(impairment, state, seed=ub.window_seed(*seed_parts, clean.window.begin), split_k=k,
                            session_id="uep")
        out.append(link(clean.hidden[k][None])[0])
    return out


@torch.inference_mode()
def perplexity(model, prepared, k: int, received: list[torch.Tensor]) -> float:
    logits = EdgeTail(model, k)(torch.stack(received))
    nll = count = 0.0
    for row, clean in enumerate(prepared.windows):
        logp = F.log_softmax(logits[row, scored_slice(clean.window)].float(), dim=-1)
        nll -= float(logp.gather(-1, clean.targets[:, None]).sum())
        count += clean.targets.numel()
    return math.exp(nll / count)


def part_of(pos: int, channel: int, channels: tuple[int, ...], tokens: int) -> str:
    return "channels" if channel in channels else ("tokens" if pos < tokens else "main")


def damage(clean: torch.Tensor, recv: torch.Tensor, channels: tuple[int, ...], tokens: int, top: int = 3) -> dict:
    """The largest damaged elements of one window ``[T, hidden]`` and the peak ratio of their rows."""
    err = (recv - clean).abs()
    row_max = clean.abs().amax(-1)
    ratio = row_max / row_max.median()
    lost = (recv == 0) & (clean != 0)
    flat = err.reshape(-1).topk(top)
    hidden = clean.shape[-1]
    items = []
    for value, index in zip(flat.values.tolist(), flat.indices.tolist(), strict=True):
        pos, ch = divmod(index, hidden)
        items.append({"pos": pos, "ch": ch, "clean": float(clean[pos, ch]), "recv": float(recv[pos, ch]),
                      "err": value, "part": part_of(pos, ch, channels, tokens), "row_ratio": float(ratio[pos])})
    massive = ratio > MASSIVE_RATIO
    by_part = {f"lost_{name}": float(lost[m].float().mean()) if bool(m.any()) else 0.0
               for name, m in part_masks(tuple(clean.shape), channels, tokens).items()}
    return {"items": items, "lost_fraction": float(lost.float().mean()), **by_part,
            "massive_rows": massive.nonzero().flatten().tolist(),
            "massive_rows_damaged": int(((err > 0.5 * row_max[:, None]) & massive[:, None]).any(-1).sum()),
            "max_lost_abs": float(clean.abs()[lost].max()) if bool(lost.any()) else 0.0}


def restored(clean: torch.Tensor, recv: torch.Tensor, how: str, channels: tuple[int, ...], tokens: int) -> torch.Tensor:
    """``recv`` with the damage of one part undone: ``top1`` (the largest damaged element), ``massive`` (rows whose
    peak ratio is > 10), ``channels`` / ``tokens`` / ``main`` (a part of the scheme)."""
    out = recv.clone()
    if how == "top1":
        index = (recv - clean).abs().reshape(-1).argmax()
        out.view(-1)[index] = clean.reshape(-1)[index]
        return out
    if how == "massive":
        row_max = clean.abs().amax(-1)
        mask = (row_max / row_max.median() > MASSIVE_RATIO)[:, None].expand_as(clean)
    else:
        mask = part_masks(clean.shape, channels, tokens)[how]
    return torch.where(mask, clean, out)


def part_masks(shape: tuple[int, ...], channels: tuple[int, ...], tokens: int) -> dict[str, torch.Tensor]:
    """Bool ``[T, hidden]`` masks of the elements each part of the scheme carries."""
    in_channels = torch.zeros(shape[-1], dtype=torch.bool)
    in_channels[list(channels)] = True
    in_tokens = (torch.arange(shape[0]) < tokens)[:, None]
    return {"channels": in_channels[None, :].expand(shape), "tokens": in_tokens & ~in_channels,
            "main": ~in_tokens & ~in_channels}


RESTORES = ("top1", "massive", "channels", "tokens", "main")


def diagnose_cell(model, prepared, k, imp, state, seed_parts, channels, tokens, clean_ppl) -> dict:
    recv = received_states(prepared, k, imp, state, seed_parts)
    ppl = perplexity(model, prepared, k, recv)
    row = {"family": seed_parts[0], "k": k, "seed": seed_parts[2], "perplexity": ppl,
           "catastrophic": ppl > 2 * clean_ppl}
    per_window = [damage(c.hidden[k], r, channels, tokens) for c, r in zip(prepared.windows, recv, strict=True)]
    row["max_lost_abs"] = max(d["max_lost_abs"] for d in per_window)
    for name in ("channels", "tokens", "main"):  # the worse window's share of lost elements per part
        row[f"lost_{name}"] = max(d[f"lost_{name}"] for d in per_window)
    row["massive_rows"] = ";".join(str(d["massive_rows"]) for d in per_window)
    row["massive_rows_damaged"] = sum(d["massive_rows_damaged"] for d in per_window)
    worst = max(((w, it) for w, d in enumerate(per_window) for it in d["items"]), key=lambda t: t[1]["err"])
    row |= {f"top_{key}": value for key, value in worst[1].items()} | {"top_window": worst[0]}
    if row["catastrophic"]:
        for how in RESTORES:
            fixed = [restored(c.hidden[k], r, how, channels, tokens)
                     for c, r in zip(prepared.windows, recv, strict=True)]
            row[f"ppl_restore_{how}"] = perplexity(model, prepared, k, fixed)
    return row


def describe(row: dict) -> str:
    """One line per cell: perplexity, and for a catastrophic one what was lost and what restoring it gives."""
    head = f"{row['family']} k={row['k']} s{row['seed']}: ppl {row['perplexity']:.1f}"
    if not row["catastrophic"]:
        return head
    lost = "/".join(f"{row['lost_' + part]:.3f}" for part in ("channels", "tokens", "main"))
    top = (f"pos {row['top_pos']} ch {row['top_ch']} ({row['top_part']}, row ratio {row['top_row_ratio']:.0f}) "
           f"{row['top_clean']:.1f} -> {row['top_recv']:.1f}")
    fixes = ", ".join(f"{how} {row['ppl_restore_' + how]:.1f}" for how in RESTORES)
    return (f"{head} CATASTROPHIC; lost channels/tokens/main {lost}; top damage {top}; massive rows "
            f"{row['massive_rows']} damaged {row['massive_rows_damaged']}; restored: {fixes}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="uep_tokens")
    p.add_argument("--out", type=Path, default=Path("runs/uep_diagnose"))
    own, rest = p.parse_known_args()
    args = ub.parse_args([a for a in rest if a != "--"] + ["--out", str(own.out), "--no-controls"])
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    own.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    corpus = load_corpus(str(ub.WIKITEXT)) if ub.WIKITEXT.is_file() else load_corpus("default")
    eval_ids, table, fill = ub.calibrate(args, model, corpus)
    prepared = prepare_windows(model, eval_ids, args.context)
    clean_ppl = math.exp(prepared.clean_nll_sum / prepared.scored_tokens)
    rows = []
    for family in [f for f in args.families.split(",") if f]:
        imps, state = ub.methods(args, family, table, {}, fill)
        imp = imps[own.method]
        tokens = getattr(imp, "tokens", 0)
        for k in args.splits:
            for seed in range(args.seed_offset, args.seed_offset + args.seeds):
                row = diagnose_cell(model, prepared, k, imp, state, (family, k, seed), table.get(k, ()), tokens,
                                    clean_ppl)
                rows.append(row)
                print(describe(row), flush=True)
    cells = pd.DataFrame(rows)
    cells.to_csv(own.out / "diagnosis.csv", index=False)
    print(f"clean perplexity {clean_ppl:.2f}; {len(cells)} cells, {int(cells.catastrophic.sum())} catastrophic")
    print(cells.groupby(["family", "catastrophic"]).agg(cells=("k", "size"), max_lost_median=("max_lost_abs", "median"),
                                                       max_lost_max=("max_lost_abs", "max"),
                                                       massive_damaged=("massive_rows_damaged", "sum")).to_string())
    print(f"elapsed {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
