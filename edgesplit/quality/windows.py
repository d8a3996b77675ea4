"""Strided evaluation windows over a token stream, with exact bookkeeping of which tokens are scored.

Window ``[begin, end)`` feeds ``ids[begin:end]`` to the model and scores the predictions of targets
``t in [max(begin + 1, previous_end), end)``, each predicted from ``ids[begin:t]``. With ``stride == context`` the
windows do not overlap and every window's first token goes unscored (``N - windows`` targets); with a smaller
stride every target after the first is scored once with at least ``context - stride`` tokens of history. The
context length is always explicit: never the model config's ``max_length``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One evaluation window."""

    begin: int
    """Index of the first input token."""
    end: int
    """One past the last input token."""
    first_target: int
    """Index of the first token whose prediction is scored (targets run to ``end - 1``)."""

    @property
    def length(self) -> int:
        """Number of input tokens."""
        return self.end - self.begin

    @property
    def scored(self) -> int:
        """Number of targets scored in this window."""
        return self.end - self.first_target


def make_windows(num_tokens: int, context: int, stride: int | None = None) -> list[Window]:
    """Windows covering ``num_tokens`` tokens with the given context length and stride (default: ``context``)."""
    stride = context if stride is None else stride
    if context < 2:
        raise ValueError(f"context must be at least 2 tokens, got {context}")
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in 1..context ({context}), got {stride}")
    if num_tokens < 2:
        raise ValueError(f"need at least 2 tokens to score anything, got {num_tokens}")
    windows, previous_end, begin = [], 0, 0
    while previous_end < num_tokens:
        end = min(begin + context, num_tokens)
        first_target = max(begin + 1, previous_end)
        if first_target < end:
            windows.append(Window(begin=begin, end=end, first_target=first_target))
        previous_end = end
        begin += stride
    return windows


def batch_windows(windows: list[Window], batch_size: int) -> list[list[Window]]:
    """Group windows of equal length (all but possibly the last) into batches of at most ``batch_size``."""
    groups: dict[int, list[Window]] = {}
    for window in windows:
        groups.setdefault(window.length, []).append(window)
    return [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def scored_slice(window: Window) -> slice:
    """Positions of a window's logits that predict its scored targets (logits at position p predict token p + 1)."""
    return slice(window.first_target - window.begin - 1, window.length - 1)
