"""Batch one decoding step of several sessions into a single tail forward, exactly (no padding).

Sessions can share a forward when they sit at the same split ``k``, have seen the same number of tokens and send
the same number of new tokens: their KV caches then have equal lengths, so stacking them along the batch dimension
needs no padding and no mask changes, and every row computes what it would alone (up to float summation order).
Sessions that differ are run in separate groups. The stacking itself is :mod:`edgesplit.split.padded_batch` (which
pads when lengths differ; here they never do). Only plain growing caches (``DynamicLayer``) are stacked; models
with sliding-window cache layers (Mistral, Gemma 3) keep their own state per layer and run one session at a time.
"""

from __future__ import annotations

from edgesplit.split import EdgeTail, SideSession
from edgesplit.split.padded_batch import can_pad_stack, stack_padded, unstack_padded

can_stack = can_pad_stack
"""True when the tail's cache layers are plain growing caches that stack along the batch dimension."""


def stack_sessions(tail: EdgeTail, sessions: list[SideSession]) -> SideSession:
    """One session whose cache and mask are the given sessions' stacked along the batch dimension."""
    seen = {s.seen_tokens for s in sessions}
    if len(seen) != 1:
        raise ValueError(f"sessions must have seen the same number of tokens to stack, got {sorted(seen)}")
    if seen == {0}:
        return tail.new_session()
    return stack_padded(tail, sessions)[0]


def unstack_session(tail: EdgeTail, merged: SideSession, sessions: list[SideSession]) -> None:
    """Write each row of ``merged`` back into its session."""
    unstack_padded(tail, merged, sessions, [s.seen_tokens for s in sessions])
