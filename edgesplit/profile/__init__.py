"""The split-point profiler: quality and cost of every split ``k`` × channel setting × seed, saved and plotted.

from edgesplit.profile import ProfileConfig, load_inputs, run_profile
config = ProfileConfig(out="runs/awgn", channel="awgn", snr_db=(0, 10, 20), tokens=1024, context=256, seeds=2)
outcome = run_profile(config, load_inputs(config))   # cells.parquet, config.json, summary.csv, PNG plots

The engine (:mod:`edgesplit.profile.engine`) runs the clean model once per window and only the tail from ``k`` per
noisy cell; :mod:`edgesplit.profile.cells` defines the per-window seeding that makes every cell reproducible on
its own. The ``edgesplit profile`` command lives in :mod:`edgesplit.profile.command`.

Names are imported lazily (PEP 562), so importing the command for ``edgesplit --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "edgesplit.profile.cells": ("ProfileCell", "WindowSeededLink", "enumerate_cells", "fading_gain", "window_seed"),
    "edgesplit.profile.config": ("ProfileConfig",),
    "edgesplit.profile.engine": ("CellResult", "PreparedWindows", "evaluate_cells", "evaluate_group", "group_cells",
                                 "prepare_windows"),
    "edgesplit.profile.grid": ("parse_float_grid", "parse_int_grid", "parse_splits", "parse_str_grid"),
    "edgesplit.profile.rows": ("KEY_COLUMNS", "SCHEMA", "CostContext"),
    "edgesplit.profile.runner": ("ProfileInputs", "ProfileOutcome", "load_inputs", "local_evaluator", "run_profile"),
    "edgesplit.profile.store": ("RunStore",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'edgesplit.profile' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
