"""The output directory of a profile run: ``cells.parquet`` (written atomically), ``config.json``, resumption.

Every save writes the whole table to a temporary file and ``os.replace``-s it over ``cells.parquet``, so an
interrupted run leaves the last complete table and never a partial row. A rerun with the same identity
(:data:`edgesplit.profile.config.IDENTITY_FIELDS`) skips the cells already present; a different identity is refused
rather than mixing results from different models or corpora in one table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edgesplit.profile.config import ProfileConfig
from edgesplit.profile.rows import KEY_COLUMNS, SCHEMA

CELLS_FILE = "cells.parquet"
CONFIG_FILE = "config.json"
SORT_COLUMNS = ["k", "bits_per_element", "modulation", "p", "snr_db", "fading", "seed"]
"""Row order of the saved table (so resumed and uninterrupted runs save identical tables)."""
PACKAGES = ("torch", "transformers", "ray", "edgesplit", "numpy", "pyarrow", "pandas", "matplotlib")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that shape the numbers (None when not installed); never imports them."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.cells_path = self.out / CELLS_FILE
        self.config_path = self.out / CONFIG_FILE

    def existing_config(self) -> dict[str, Any] | None:
        """The saved ``config.json``, or None for a fresh directory."""
        if not self.config_path.is_file():
            return None
        return json.loads(self.config_path.read_text())

    def check_identity(self, config: ProfileConfig) -> None:
        """ValueError when the directory holds a run with a different identity (model, corpus, window, …)."""
        saved = self.existing_config()
        if saved is None:
            if self.cells_path.exists():
                raise ValueError(f"{self.cells_path} exists without {CONFIG_FILE}; use another --out")
            return
        # runs written before the dtype joined the identity were float32; coded runs before coded_channel, awgn
        before, now = {"dtype": "float32", **saved.get("identity", {})}, json.loads(json.dumps(config.identity()))
        if "mcs_table" in before:
            before.setdefault("coded_channel", "awgn")
        diffs = [f"{key}: {before.get(key)!r} there, {now[key]!r} now" for key in now if before.get(key) != now[key]]
        if diffs:
            raise ValueError(f"{self.out} holds a different run ({'; '.join(diffs)}); use another --out or the "
                             f"same settings to resume")

    def write_config(self, config: ProfileConfig, **facts: Any) -> None:
        """Write ``config.json``: the config, its identity, the resolved facts, package versions and, when this run
        resumes or extends an earlier one, the earlier invocations' configs under ``history``."""
        self.out.mkdir(parents=True, exist_ok=True)
        before = self.existing_config()
        history = [] if before is None else [*before.get("history", []), {
            key: before.get(key) for key in ("config", "seeds", "versions", "written_at")}]
        data = {"config": config.to_dict(), "identity": config.identity(), "seeds": list(config.seed_list),
                **facts, "versions": package_versions(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "history": history}
        _atomic_write_bytes(self.config_path, json.dumps(data, indent=2, default=str).encode())

    def load(self) -> pd.DataFrame:
        """The saved table (empty with the right columns when there is none)."""
        if not self.cells_path.is_file():
            return SCHEMA.empty_table().to_pandas()
        return pq.read_table(self.cells_path, schema=SCHEMA).to_pandas()

    def done_keys(self) -> set[tuple]:
        """Keys (:data:`KEY_COLUMNS`) of the cells already saved."""
        table = self.load()
        return set(table[list(KEY_COLUMNS)].itertuples(index=False, name=None))

    def save(self, table: pd.DataFrame) -> None:
        """Atomically replace ``cells.parquet`` with ``table`` (sorted, schema enforced)."""
        self.out.mkdir(parents=True, exist_ok=True)
        ordered = table.sort_values(SORT_COLUMNS, kind="stable", na_position="first").reset_index(drop=True)
        arrow = pa.Table.from_pandas(ordered, schema=SCHEMA, preserve_index=False)
        tmp = self.cells_path.with_name(f".{CELLS_FILE}.{os.getpid()}.tmp")
        pq.write_table(arrow, tmp)
        os.replace(tmp, self.cells_path)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts from :func:`edgesplit.profile.rows.make_row`) as a DataFrame with the schema's dtypes."""
    return pa.Table.from_pylist(rows, schema=SCHEMA).to_pandas()
