"""Batch one decoding step of several sessions into a single tail forward, exactly (no padding).

Sessions can share a forward when they sit at the same split ``k``, have seen the same number of tokens and send
the same number of new tokens: their KV caches then have equal lengths, so stacking them along the batch dimension
needs no padding and no mask changes, and every row computes what it would alone (up to float summation order).
Sessions that differ are run in separate groups. Only plain growing caches (``DynamicLayer``) are stacked; models
with sliding-window cache layers (Mistral, Gemma 3) keep their own state per layer and run one session at a time.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from edgesplit.split import EdgeTail, SideSession


def can_stack(tail: EdgeTail) -> bool:
    """True when the tail's cache layers are plain growing caches that stack along the batch dimension."""
    if tail.runs_on_device:
        return False
    layers = tail.adapter.new_cache().layers
    return all(type(layers[i]) is DynamicLayer for i in range(tail.k, tail.adapter.num_layers))


def stack_sessions(tail: EdgeTail, sessions: list[SideSession]) -> SideSession:
    """One session whose cache and mask are the given sessions' stacked along the batch dimension."""
    merged = tail.new_session()
    seen = {s.seen_tokens for s in sessions}
    if len(seen) != 1:
        raise ValueError(f"sessions must have seen the same number of tokens to stack, got {sorted(seen)}")
    if seen == {0}:
        return merged
    for index in range(tail.k, tail.adapter.num_layers):
        parts = [s.cache.layers[index] for s in sessions]
        layer = merged.cache.layers[index]
        layer.lazy_initialization(parts[0].keys, parts[0].values)
        layer.keys = torch.cat([p.keys for p in parts], dim=0)
        layer.values = torch.cat([p.values for p in parts], dim=0)
    merged.attention_mask = torch.cat([s.attention_mask for s in sessions], dim=0)
    return merged


def unstack_session(tail: EdgeTail, merged: SideSession, sessions: list[SideSession]) -> None:
    """Write each row of ``merged`` back into its session (views; the next cache update copies them)."""
    for row, session in enumerate(sessions):
        for index in range(tail.k, tail.adapter.num_layers):
            source = merged.cache.layers[index]
            target = session.cache.layers[index]
            if not target.is_initialized:
                target.lazy_initialization(source.keys, source.values)
            target.keys = source.keys[row : row + 1]
            target.values = source.values[row : row + 1]
        session.attention_mask = merged.attention_mask[row : row + 1]
