"""One parquet row per cell: identity, channel parameters, quality, cost columns, wall time.

Cost columns (prefix ``prefill_``) price **one prefill request of one evaluation window**: a prompt of
``prefill_tokens = min(context, tokens)`` tokens, the UE running layers ``0..k-1`` over all of them, one uplink
message carrying their layer-``k`` states (token ids at ``k = 0``, nothing at ``k = L``), the edge running the
rest and returning the next token (:func:`edgesplit.cost.split_costs` with ``phase="prefill"``), on the run's
device/edge/link presets and the cell's channel state (its SNR and, with fading, its seed's gain).
``payload_bits_per_token`` is that uplink message (headers included) divided by ``prefill_tokens``.

Coded cells (columns appended after ``wall_s``, null for the other kinds and in tables written before them; old
files load with them null). Channel: ``mcs_table``, ``target_bler``, ``harq_transmissions``, ``coded_path``,
``carrier_bandwidth_hz``, ``coded_channel`` (awgn / rayleigh / tdl; null in tables written before it, which were
awgn). Measured over the cell's packets (:func:`edgesplit.profile.engine.coded_link_stats`; null
for lossless cells, ``k = 0`` and ``k = L``): ``nr_mean_mcs``, ``nr_code_rate`` (target rate of the MCS),
``nr_erased_tb_fraction``, ``nr_transmissions_per_tb``, ``nr_erased_fraction`` (of the elements). Cost model (the
priced prefill; null at ``k = L``, which sends nothing): ``prefill_nr_mcs``, ``prefill_nr_num_tbs``,
``prefill_nr_residual_tb_loss`` (expected erased-TB rate after HARQ). For every kind: ``prefill_shannon_uplink_s``
(the Shannon time of the same bits: equal to ``prefill_uplink_s`` except for coded cells, whose uplink time is the
NR cost model's) and ``prefill_uplink_airtime_s`` (time the UE transmits; a coded link is silent in HARQ round
trips). ``uplink_rate_bps`` is the Shannon rate for every kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from edgesplit.cost import DeviceProfile, EdgeProfile, LinkProfile, ModelProfile, get_device, get_edge, get_link
from edgesplit.cost import split_costs as price_split
from edgesplit.profile.cells import ProfileCell
from edgesplit.profile.engine import CODED_STATS, CellResult
from edgesplit.scenario import CODED_DEFAULTS

KEY_COLUMNS = ("k", "setting", "fading", "seed")
"""Columns that identify a cell within a run (model and corpus are fixed per output directory)."""

SCHEMA = pa.schema([
    ("model", pa.string()), ("corpus", pa.string()), ("k", pa.int64()), ("num_layers", pa.int64()),
    ("sends", pa.string()), ("channel", pa.string()), ("setting", pa.string()), ("snr_db", pa.float64()),
    ("p", pa.float64()), ("bits_per_element", pa.int64()), ("modulation", pa.string()), ("encoding", pa.string()),
    ("fading", pa.string()), ("fading_gain", pa.float64()), ("seed", pa.int64()),
    ("perplexity", pa.float64()), ("clean_perplexity", pa.float64()), ("kl_nats", pa.float64()),
    ("top1_agreement", pa.float64()), ("scored_tokens", pa.int64()), ("nll_sum", pa.float64()),
    ("clean_nll_sum", pa.float64()), ("link_mse", pa.float64()), ("link_ber", pa.float64()),
    ("prefill_tokens", pa.int64()), ("prefill_payload_bits", pa.int64()), ("payload_bits_per_token", pa.float64()),
    ("uplink_rate_bps", pa.float64()), ("prefill_device_s", pa.float64()), ("prefill_uplink_s", pa.float64()),
    ("prefill_edge_s", pa.float64()), ("prefill_downlink_s", pa.float64()), ("prefill_latency_s", pa.float64()),
    ("prefill_ue_compute_energy_j", pa.float64()), ("prefill_ue_tx_energy_j", pa.float64()),
    ("prefill_ue_energy_j", pa.float64()), ("device_memory_bytes", pa.float64()), ("feasible", pa.bool_()),
    ("wall_s", pa.float64()),
    ("mcs_table", pa.int64()), ("target_bler", pa.float64()), ("harq_transmissions", pa.int64()),
    ("coded_path", pa.string()), ("carrier_bandwidth_hz", pa.float64()), ("coded_channel", pa.string()),
    *((name, pa.float64()) for name in CODED_STATS),
    ("prefill_shannon_uplink_s", pa.float64()), ("prefill_uplink_airtime_s", pa.float64()),
    ("prefill_nr_mcs", pa.float64()), ("prefill_nr_num_tbs", pa.float64()),
    ("prefill_nr_residual_tb_loss", pa.float64()),
])
"""The column names and types of ``cells.parquet`` (in order)."""


@dataclass(frozen=True)
class CostContext:
    """What the cost columns are priced on."""

    profile: ModelProfile
    """FLOP/byte profile of the model."""
    device: DeviceProfile
    """UE preset."""
    edge: EdgeProfile
    """Edge preset."""
    link: LinkProfile
    """Radio-link preset."""
    prefill_tokens: int
    """Prompt tokens of the priced request (one evaluation window)."""

    def __post_init__(self) -> None:
        if self.prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1, got {self.prefill_tokens}")

    @classmethod
    def build(cls, model_config: Any, device: str, edge: str, link: str, prefill_tokens: int) -> CostContext:
        """From a transformers config and preset names."""
        return cls(ModelProfile.from_config(model_config), get_device(device), get_edge(edge), get_link(link),
                   prefill_tokens)

    def columns(self, cell: ProfileCell) -> dict[str, Any]:
        """The ``prefill_*`` cost columns of ``cell``."""
        channel = cell.channel
        cost = price_split(self.profile, cell.k, self.device, self.edge, self.link, channel.state(),
                           self.prefill_tokens, channel.bits_per_element, phase="prefill", nr_link=channel.nr_link())
        nr = cost.nr_uplink
        return {"prefill_tokens": self.prefill_tokens, "prefill_payload_bits": cost.payload_bits,
                "payload_bits_per_token": cost.payload_bits / self.prefill_tokens,
                "uplink_rate_bps": cost.uplink_rate_bps, "prefill_device_s": cost.device_compute_s,
                "prefill_uplink_s": cost.uplink_s, "prefill_edge_s": cost.edge_compute_s,
                "prefill_downlink_s": cost.downlink_s, "prefill_latency_s": cost.total_latency_s,
                "prefill_ue_compute_energy_j": cost.ue_compute_energy_j,
                "prefill_ue_tx_energy_j": cost.ue_tx_energy_j, "prefill_ue_energy_j": cost.ue_energy_j,
                "device_memory_bytes": cost.device_memory_bytes, "feasible": cost.feasible,
                "prefill_shannon_uplink_s": cost.shannon_uplink_s, "prefill_uplink_airtime_s": cost.uplink_airtime_s,
                "prefill_nr_mcs": None if nr is None else float(nr.mcs),
                "prefill_nr_num_tbs": None if nr is None else float(nr.num_tbs),
                "prefill_nr_residual_tb_loss": None if nr is None else nr.residual_tb_loss}


def _sends(k: int, num_layers: int) -> str:
    return "token_ids" if k == 0 else "nothing" if k == num_layers else "hidden"


def cell_columns(cell: ProfileCell) -> dict[str, Any]:
    """Identity and channel-parameter columns (``p`` NaN unless dropout; ``modulation`` null unless digital)."""
    s = cell.setting
    coded = {name: getattr(s, name) if s.kind == "coded" else None for name in CODED_DEFAULTS}
    return {"k": cell.k, "channel": s.kind, "setting": s.label, "snr_db": float(s.snr_db),
            "p": float(s.p) if s.kind == "dropout" else math.nan, "bits_per_element": s.bits_per_element,
            "modulation": s.modulation if s.kind == "digital" else None, "encoding": s.encoding,
            "fading": cell.fading, "fading_gain": cell.gain, "seed": cell.seed, **coded}


def make_row(result: CellResult, *, model: str, corpus: str, num_layers: int, costs: CostContext) -> dict[str, Any]:
    """The full parquet row of one evaluated cell."""
    q = result.quality
    row = {"model": model, "corpus": corpus, "num_layers": num_layers, "sends": _sends(result.cell.k, num_layers),
           **cell_columns(result.cell), "perplexity": q.perplexity, "clean_perplexity": q.clean_perplexity,
           "kl_nats": q.kl_nats, "top1_agreement": q.top1_agreement, "scored_tokens": q.scored_tokens,
           "nll_sum": q.nll_sum, "clean_nll_sum": q.clean_nll_sum, "link_mse": result.link_mse,
           "link_ber": result.link_ber, **costs.columns(result.cell), "wall_s": result.wall_s,
           **{name: result.link_stats.get(name) for name in CODED_STATS}}
    return {name: row[name] for name in SCHEMA.names}
