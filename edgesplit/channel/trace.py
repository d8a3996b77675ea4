"""Replay of a recorded SNR trace (CSV or parquet) as a channel process.

The file needs a column ``snr_db`` (the measured received SNR of each block, fading included, so
states carry ``fading_gain = 1``) and may have a column ``loss_rate``. A recorded ``loss_rate`` wins
over the config's loss fields; without it the config's fixed or SNR-derived loss applies. Bad files
(missing, unreadable, no ``snr_db`` column, empty, non-finite values, loss outside [0, 1)) raise
ValueError naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgesplit.channel.process import ChannelProcess, LossConfig
from edgesplit.channel.state import ChannelState

if TYPE_CHECKING:
    import pandas as pd

TRACE_SUFFIXES = (".csv", ".parquet", ".pq")
"""File suffixes the trace reader understands."""


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd  # deferred: pandas costs ~0.4 s and only trace replay needs it

    if not path.is_file():
        raise ValueError(f"trace file {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in TRACE_SUFFIXES:
        raise ValueError(f"trace file {str(path)!r} has suffix {suffix!r}; valid: {list(TRACE_SUFFIXES)}")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise many types; callers want one clear error
        raise ValueError(f"could not read trace file {str(path)!r}: {exc}") from exc


def _column(table: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    import pandas as pd

    try:
        values = pd.to_numeric(table[name], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"trace {str(path)!r}: column {name!r} is not numeric ({exc})") from exc
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"trace {str(path)!r}: column {name!r} has non-finite values at rows {bad[:5].tolist()}")
    return values


def load_snr_trace(
    path: str | Path, snr_column: str = "snr_db", loss_column: str = "loss_rate"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and validate a trace; returns (snr_db per block, loss_rate per block or None)."""
    path = Path(path)
    table = _read_table(path)
    if snr_column not in table.columns:
        raise ValueError(f"trace {str(path)!r} has no column {snr_column!r}; columns: {list(table.columns)}")
    if len(table) == 0:
        raise ValueError(f"trace {str(path)!r} has no rows")
    snr = _column(table, snr_column, path)
    if loss_column not in table.columns:
        return snr, None
    loss = _column(table, loss_column, path)
    if np.any((loss < 0.0) | (loss >= 1.0)):
        raise ValueError(f"trace {str(path)!r}: column {loss_column!r} must lie in [0, 1)")
    return snr, loss


@dataclass(kw_only=True)
class TraceConfig(LossConfig):
    """Replay of a recorded per-block SNR trace."""

    path: str = ""
    """CSV or parquet file with a ``snr_column`` column and optionally a ``loss_column`` column."""
    loop: bool = True
    """Wrap around at the end of the trace; if False, stepping past the end raises RuntimeError."""
    random_start: bool = False
    """Start at a seeded random row (different seeds replay different segments); else at row 0."""
    snr_column: str = "snr_db"
    """Name of the SNR column (dB)."""
    loss_column: str = "loss_rate"
    """Name of the optional loss-rate column."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ValueError("TraceConfig.path must name a CSV or parquet trace file")


class TraceProcess(ChannelProcess):
    """Steps through the trace row by row; the file is read and validated once, at construction."""

    config: TraceConfig

    def __init__(self, config: TraceConfig, seed: int | None = None) -> None:
        self.snr_db, self.loss_rate = load_snr_trace(config.path, config.snr_column, config.loss_column)
        super().__init__(config, seed)

    def __len__(self) -> int:
        return len(self.snr_db)

    def _reset_state(self) -> None:
        self.start = int(self.rng.integers(len(self))) if self.config.random_start else 0

    def _next(self) -> ChannelState:
        row = self.start + self.t
        if row >= len(self) and not self.config.loop:
            raise RuntimeError(f"trace {self.config.path!r} exhausted after {len(self) - self.start} blocks")
        row %= len(self)
        if self.loss_rate is None:
            return self._state(self.snr_db[row])
        return ChannelState(mean_snr_db=float(self.snr_db[row]), loss_rate=float(self.loss_rate[row]))
