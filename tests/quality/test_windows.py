"""Window bookkeeping: every target scored exactly once, explicit context, clear errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.quality import make_windows


@given(n=st.integers(2, 3000), context=st.integers(2, 600), data=st.data())
def test_each_target_scored_once(n, context, data):
    stride = data.draw(st.integers(1, context))
    windows = make_windows(n, context, stride)
    targets = [t for w in windows for t in range(w.first_target, w.end)]
    assert len(targets) == len(set(targets))
    assert all(w.length <= context and w.first_target > w.begin for w in windows)
    if stride < context:
        assert sorted(targets) == list(range(1, n))  # overlapping windows score every token but the first
    else:  # non-overlapping: each chunk's first token has no context (a trailing 1-token chunk scores nothing)
        assert len(targets) == n - math.ceil(n / context)


def test_non_overlapping_counts():
    windows = make_windows(2048, 512)
    assert [(w.begin, w.end) for w in windows] == [(0, 512), (512, 1024), (1024, 1536), (1536, 2048)]
    assert sum(w.scored for w in windows) == 2048 - 4


@pytest.mark.parametrize(("n", "context", "stride", "match"), [
    (100, 1, None, "context"), (100, 10, 11, "stride"), (100, 10, 0, "stride"), (1, 10, None, "at least 2"),
])
def test_bad_arguments(n, context, stride, match):
    with pytest.raises(ValueError, match=match):
        make_windows(n, context, stride)
