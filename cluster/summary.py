"""Summary table of a fleet run (one row per split point used, plus ``all``) and its rich rendering.

Per-token figures divide request totals by the tokens generated; ``tok_per_s`` is the mean over requests of
``new_tokens / wall_s`` (what one UE experiences, while other UEs share the machine).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = {
    "requests": "requests",
    "ok": "ok",
    "failed": "failed",
    "retries": "retries",
    "new_tokens": "tokens",
    "tok_per_s": "tok/s/UE",
    "head_ms_per_tok": "head ms/tok",
    "edge_ms_per_tok": "edge ms/tok",
    "overhead_ms_per_tok": "call ovh ms/tok",
    "sim_link_ms_per_tok": "sim link ms/tok",
    "sim_total_ms_per_tok": "sim total ms/tok",
    "ue_energy_mj_per_req": "UE mJ/req",
    "kb_sent_per_req": "kB sent/req",
    "snr_db_mean": "SNR dB",
    "greedy_match": "greedy match",
    "clean_logprob": "clean logprob",
}
"""Summary columns and their short display headers."""


def _summarise(group: pd.DataFrame) -> dict[str, float]:
    ok = group[group["status"] == "ok"]
    tokens = max(int(ok["new_tokens"].sum()), 1)
    per_tok = {name: 1e3 * ok[col].sum() / tokens for name, col in (
        ("head_ms_per_tok", "head_s"), ("edge_ms_per_tok", "edge_compute_s"),
        ("overhead_ms_per_tok", "call_overhead_s"), ("sim_link_ms_per_tok", "sim_link_s"),
        ("sim_total_ms_per_tok", "sim_total_s"))}
    return {
        "requests": len(group),
        "ok": len(ok),
        "failed": int((group["status"] != "ok").sum()),
        "retries": int(group["retries"].sum()),
        "new_tokens": int(ok["new_tokens"].sum()),
        "tok_per_s": float((ok["new_tokens"] / ok["wall_s"]).mean()) if len(ok) else float("nan"),
        **per_tok,
        "ue_energy_mj_per_req": 1e3 * float(ok["ue_energy_j"].mean()) if len(ok) else float("nan"),
        "kb_sent_per_req": float(ok["bytes_sent"].mean()) / 1e3 if len(ok) else float("nan"),
        "snr_db_mean": float(group["snr_db_mean"].mean()),
        "greedy_match": float(ok["greedy_match_frac"].mean()) if "greedy_match_frac" in ok else float("nan"),
        "clean_logprob": float(ok["clean_logprob_mean"].mean()) if "clean_logprob_mean" in ok else float("nan"),
    }


def summarize(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per split ``k`` used, then an ``all`` row."""
    rows = [{"k": str(k), **_summarise(group)} for k, group in requests.groupby("k", sort=True)]
    rows.append({"k": "all", **_summarise(requests)})
    return pd.DataFrame(rows, columns=["k", *SUMMARY_COLUMNS])


def print_summary(summary: pd.DataFrame, title: str, console=None) -> None:
    """Render the summary as a rich table: one column per split point (and ``all``), one row per figure."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("k")
    for k in summary["k"]:
        table.add_column(str(k), justify="right")
    for name, header in SUMMARY_COLUMNS.items():
        table.add_row(header, *[_cell(value) for value in summary[name]])
    (console or Console()).print(table)


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "-" if value != value else f"{value:.3g}"
    return str(value)
