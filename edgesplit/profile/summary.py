"""``summary.csv``: per split × channel setting, mean and spread over seeds of quality and cost."""

from __future__ import annotations

import pandas as pd

GROUP_COLUMNS = ["k", "channel", "setting", "fading", "snr_db", "p", "bits_per_element", "modulation"]
"""One summary row per distinct value of these columns."""
SPREAD_COLUMNS = ["perplexity", "kl_nats", "top1_agreement", "prefill_latency_s", "prefill_ue_energy_j"]
"""Columns summarised with mean, median, std (over seeds, ddof=1), min and max (perplexity is heavy-tailed)."""
MEAN_COLUMNS = ["clean_perplexity", "payload_bits_per_token", "prefill_device_s", "prefill_uplink_s",
                "prefill_edge_s", "prefill_downlink_s", "device_memory_bytes", "link_mse"]
"""Columns summarised with their mean only."""
CODED_MEAN_COLUMNS = ["nr_mean_mcs", "nr_code_rate", "nr_erased_tb_fraction", "nr_transmissions_per_tb",
                      "nr_erased_fraction", "prefill_shannon_uplink_s", "prefill_nr_mcs", "prefill_nr_num_tbs",
                      "prefill_nr_residual_tb_loss"]
"""Coded-link columns summarised with their mean, only when the table holds coded cells (other summaries keep
their columns)."""


def setting_order(cells: pd.DataFrame) -> list[str]:
    """Setting labels in grid order (bits, modulation, p, SNR), not alphabetical."""
    keys = cells.drop_duplicates("setting")[["setting", "bits_per_element", "modulation", "p", "snr_db"]]
    keys = keys.assign(modulation=keys["modulation"].fillna(""), p=keys["p"].fillna(-1.0))
    return list(keys.sort_values(["bits_per_element", "modulation", "p", "snr_db"], kind="stable")["setting"])


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """Aggregate the per-cell table over seeds, ordered by setting then split."""
    if cells.empty:
        raise ValueError("no cells to summarise")
    grouped = cells.groupby(GROUP_COLUMNS, dropna=False, sort=False)
    spread = grouped[SPREAD_COLUMNS].agg(["mean", "median", "std", "min", "max"])
    spread.columns = [f"{name}_{stat}" for name, stat in spread.columns]
    coded = [c for c in CODED_MEAN_COLUMNS if c in cells.columns and cells[c].notna().any()]
    means = grouped[[*MEAN_COLUMNS, *coded]].mean()
    extra = grouped.agg(seeds=("seed", "nunique"), feasible=("feasible", "all"), wall_s=("wall_s", "sum"))
    table = pd.concat([extra, spread, means], axis=1).reset_index()
    rank = {label: i for i, label in enumerate(setting_order(cells))}
    table = table.assign(_rank=table["setting"].map(rank)).sort_values(["_rank", "k"], kind="stable")
    return table.drop(columns="_rank").reset_index(drop=True)
