"""Trace replay: CSV / parquet round trips and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgesplit.channel import TraceConfig, TraceProcess, load_snr_trace, make_process


def _frame(n: int = 25, with_loss: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {"snr_db": rng.normal(10.0, 4.0, n), "extra": np.arange(n)}
    if with_loss:
        data["loss_rate"] = rng.uniform(0.0, 0.3, n)
    return pd.DataFrame(data)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tmp_path, suffix: str) -> None:
    frame = _frame()
    path = tmp_path / f"trace{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    states = make_process("trace", path=str(path)).sample(len(frame) + 3)
    np.testing.assert_allclose([s.mean_snr_db for s in states[: len(frame)]], frame["snr_db"], rtol=1e-12)
    np.testing.assert_allclose([s.loss_rate for s in states[: len(frame)]], frame["loss_rate"], rtol=1e-12)
    assert all(s.fading_gain == 1.0 for s in states)
    assert states[len(frame) :] == states[:3]  # loops by default


def test_without_loss_column_uses_config_loss(tmp_path) -> None:
    path = tmp_path / "t.csv"
    _frame(with_loss=False).to_csv(path, index=False)
    assert {s.loss_rate for s in make_process("trace", path=str(path), loss_rate=0.1).sample(5)} == {0.1}
    snr, loss = load_snr_trace(path)
    assert loss is None and snr.shape == (25,)


def test_no_loop_raises_at_end_and_random_start_is_seeded(tmp_path) -> None:
    path = tmp_path / "t.parquet"
    _frame(10).to_parquet(path)
    proc = TraceProcess(TraceConfig(path=str(path), loop=False), seed=0)
    proc.sample(10)
    with pytest.raises(RuntimeError, match="exhausted"):
        proc.step()
    starts = {TraceProcess(TraceConfig(path=str(path), random_start=True), seed=s).start for s in range(20)}
    assert len(starts) > 3
    a = TraceProcess(TraceConfig(path=str(path), random_start=True), seed=7).sample(4)
    assert a == TraceProcess(TraceConfig(path=str(path), random_start=True), seed=7).sample(4)


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("missing.csv", None, "does not exist"),
        ("t.txt", "snr_db\n1\n", "suffix"),
        ("t.csv", "snr\n1\n2\n", r"no column 'snr_db'.*\['snr'\]"),
        ("t.csv", "snr_db\n", "no rows"),
        ("t.csv", "snr_db\n1\nnan\n3\n", r"non-finite values at rows \[1\]"),
        ("t.csv", "snr_db\n1\ninf\n", "non-finite"),
        ("t.csv", "snr_db\n1\nabc\n", "not numeric"),
        ("t.csv", "snr_db,loss_rate\n1,0.1\n2,1.0\n", r"'loss_rate' must lie in \[0, 1\)"),
        ("t.parquet", "this is not parquet", "could not read"),
    ],
)
def test_bad_files_raise_clear_value_error(tmp_path, name: str, text: str | None, match: str) -> None:
    path = str(tmp_path / name) if text is None else _write(tmp_path, name, text)
    with pytest.raises(ValueError, match=match):
        make_process("trace", path=path)


def test_empty_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="path"):
        TraceConfig()
