"""The statistics of benchmarks/uep_benefit.py: Clopper-Pearson intervals and the cut's 95 % lower bounds."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from uep_benefit_plots import clopper_pearson, cut_bounds, summarise  # noqa: E402


def _cells(events_per_seed: list[int], cells_per_seed: int = 7, method: str = "m") -> pd.DataFrame:
    rows = [{"family": "f", "method": method, "seed": s, "k": k, "catastrophic": k < e, "perplexity": 1.0,
             "extra_bits_ratio": 0.01, "extra_airtime_ratio": 0.02}
            for s, e in enumerate(events_per_seed) for k in range(cells_per_seed)]
    return pd.DataFrame(rows)


def test_clopper_pearson_known_values() -> None:
    assert clopper_pearson(0, 70)[0] == 0.0 and clopper_pearson(0, 70)[1] == pytest.approx(0.0513, abs=1e-4)
    lo, hi = clopper_pearson(47, 70)
    assert lo == pytest.approx(0.549, abs=2e-3) and hi == pytest.approx(0.781, abs=2e-3)
    with pytest.raises(ValueError, match="0 <= x <= n"):
        clopper_pearson(3, 2)


def test_cut_bounds_no_event_and_events() -> None:
    base = _cells([5] * 10, method="unprotected")
    none = cut_bounds(base, _cells([0] * 10))
    assert none["cut"] == float("inf") and none["cut_lo_boot"] == float("inf")
    assert none["cut_lo"] == none["cut_lo_cp"] == pytest.approx(clopper_pearson(50, 70)[0] / clopper_pearson(0, 70)[1])
    two = cut_bounds(base, _cells([1, 1] + [0] * 8))
    assert two["cut"] == pytest.approx(25.0) and two["cut_lo"] < 10.0 < two["cut"]
    assert cut_bounds(base, _cells([1, 1] + [0] * 8), seed=0) == two  # a fixed bootstrap generator


def test_one_bad_seed_weighs_more_in_the_seed_bootstrap() -> None:
    base = _cells([5] * 10, method="unprotected")
    spread, clustered = cut_bounds(base, _cells([1, 1, 1] + [0] * 7)), cut_bounds(base, _cells([3] + [0] * 9))
    assert spread["cut_lo_cp"] == clustered["cut_lo_cp"] and clustered["cut_lo_boot"] < spread["cut_lo_boot"]


def test_summary_has_the_cut_and_the_worst_seed() -> None:
    cells = pd.concat([_cells([5] * 10, method="unprotected"), _cells([0, 2] + [0] * 8)])
    row = summarise(cells).set_index("method").loc["m"]
    assert row.catastrophic == 2 and row.worst_seed == 1 and row.worst_seed_events == 2 and row.cut == 25.0
