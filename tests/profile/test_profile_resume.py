"""Resumability: an interrupted run keeps only complete rows, a rerun computes only what is missing, and the final
table equals an uninterrupted run's; a run with a different identity is refused."""

from __future__ import annotations

import pytest
import torch

from edgesplit.profile import ProfileConfig, ProfileInputs, RunStore, run_profile

VALUE_COLUMNS_TO_IGNORE = ["wall_s"]  # timing differs between runs; every other column must be identical


class Interrupt(Exception):
    pass


def _config(out, **overrides) -> ProfileConfig:
    fields = {"model": "tiny-llama", "channel": "awgn", "snr_db": (0.0, 10.0), "splits": (0, 1, 3, 4), "seeds": 2,
              "tokens": 64, "context": 32, "batch_size": 2}
    return ProfileConfig(out=out, **{**fields, **overrides})


@pytest.fixture(scope="module")
def inputs(tiny_llama) -> ProfileInputs:
    ids = torch.randint(2, 128, (64,), generator=torch.Generator().manual_seed(3))
    return ProfileInputs(tiny_llama, ids, "synthetic")


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    return run_profile(_config(tmp_path_factory.mktemp("ref")), inputs, progress=False, plots=False).cells


def _same(a, b) -> None:
    assert a.drop(columns=VALUE_COLUMNS_TO_IGNORE).equals(b.drop(columns=VALUE_COLUMNS_TO_IGNORE))


def test_interrupted_run_resumes_to_the_uninterrupted_table(inputs, reference, tmp_path):
    config, seen = _config(tmp_path), []

    def stop_after_three(results):
        seen.append([r.cell.key for r in results])
        if len(seen) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_profile(config, inputs, progress=False, plots=False, on_group=stop_after_three)
    saved = RunStore(tmp_path).load()
    assert set(saved[["k", "setting", "fading", "seed"]].itertuples(index=False, name=None)) == {
        key for group in seen for key in group}
    assert saved["perplexity"].notna().all() and len(saved) < len(reference)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())

    computed = []
    outcome = run_profile(config, inputs, progress=False, plots=False,
                          on_group=lambda rs: computed.extend(r.cell.key for r in rs))
    assert outcome.skipped == len(saved) and outcome.computed == len(reference) - len(saved)
    assert not set(computed) & {key for group in seen for key in group}
    _same(outcome.cells, reference)


def test_deleted_rows_are_recomputed_and_nothing_else(inputs, reference, tmp_path):
    config = _config(tmp_path)
    run_profile(config, inputs, progress=False, plots=False)
    store = RunStore(tmp_path)
    table = store.load()
    dropped = table[(table["k"] == 3) & (table["seed"] == 1)]
    store.save(table.drop(index=dropped.index))
    computed = []
    outcome = run_profile(config, inputs, progress=False, plots=False,
                          on_group=lambda rs: computed.extend(r.cell.key for r in rs))
    assert sorted(computed) == sorted(dropped[["k", "setting", "fading", "seed"]].itertuples(index=False, name=None))
    _same(outcome.cells, reference)
    again = run_profile(config, inputs, progress=False, plots=False)
    assert again.computed == 0 and again.skipped == len(reference)


def test_growing_the_grid_only_adds_cells(inputs, reference, tmp_path):
    run_profile(_config(tmp_path, snr_db=(0.0,)), inputs, progress=False, plots=False)
    outcome = run_profile(_config(tmp_path), inputs, progress=False, plots=False)
    assert outcome.skipped == len(reference) // 2
    history = RunStore(tmp_path).existing_config()["history"]
    assert [h["config"]["snr_db"] for h in history] == [[0.0]]
    _same(outcome.cells, reference)


def test_a_different_run_in_the_same_directory_is_refused(inputs, tmp_path):
    run_profile(_config(tmp_path, splits=(0, 4), seeds=1), inputs, progress=False, plots=False)
    before = RunStore(tmp_path).load()
    with pytest.raises(ValueError, match=r"holds a different run \(context: 32 there, 16 now"):
        run_profile(_config(tmp_path, splits=(0, 4), seeds=1, context=16), inputs, progress=False, plots=False)
    with pytest.raises(ValueError, match="channel: 'awgn' there, 'dropout' now"):
        run_profile(_config(tmp_path, channel="dropout", snr_db=None, splits=(0, 4), seeds=1), inputs,
                    progress=False, plots=False)
    assert RunStore(tmp_path).load().equals(before)
