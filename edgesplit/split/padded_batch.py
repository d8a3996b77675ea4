"""One decode step of many sessions at the same split, with different cache lengths, in one tail forward.

Each session's KV cache for layers ``k..L-1`` is left-padded with zeros to the longest cache of the group and the
caches are stacked along the batch dimension; the attention mask carries a 0 for every padded column, so no real
token attends to padding. Positions come from ``cumsum(mask) - 1`` (what :class:`~edgesplit.split.SideSession`
does), so every row keeps its own absolute positions and rotary phases. After the forward each row's real part
(its own length + 1) is cut out and written back to its session as a compact tensor, so an idle session does not
pin the batch's memory. Sessions at equal lengths need no padding and take the same path.

Both edges use it: the Serve edge (:mod:`serve_deployments.tail_engine`) batches sessions of any lengths; the
fleet's edge actor (:mod:`cluster.kv_batching`) groups equal lengths and stacks them with the same code (no padding).
Only plain growing cache layers (``DynamicLayer``) are stacked; sliding-window layers keep their own
state and those models decode one session per forward (:func:`can_pad_stack`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

from edgesplit.split import EdgeTail, SideSession


def can_pad_stack(tail: EdgeTail) -> bool:
    """True when every cache layer the tail fills is a plain growing cache (stackable with padding)."""
    if tail.runs_on_device:
        return False
    layers = tail.adapter.new_cache().layers
    return all(type(layers[i]) is DynamicLayer for i in range(tail.k, tail.adapter.num_layers))


def _pad_left(tensor: torch.Tensor, width: int, dim_from_end: int) -> torch.Tensor:
    if width == 0:
        return tensor
    pad = [0, 0] * (dim_from_end - 1) + [width, 0]
    return F.pad(tensor, pad)


def stack_padded(tail: EdgeTail, sessions: list[SideSession]) -> tuple[SideSession, list[int]]:
    """A batch session holding every given session's cache left-padded to the longest; returns it and the lengths."""
    lengths = [s.seen_tokens for s in sessions]
    if min(lengths) == 0:
        raise ValueError("every session in a padded decode batch must have been prefilled (seen_tokens > 0)")
    longest = max(lengths)
    merged = tail.new_session()
    for index in range(tail.k, tail.adapter.num_layers):
        parts = [s.cache.layers[index] for s in sessions]
        layer = merged.cache.layers[index]
        layer.lazy_initialization(parts[0].keys, parts[0].values)
        layer.keys = torch.cat([_pad_left(p.keys, longest - n, 2) for p, n in zip(parts, lengths, strict=True)])
        layer.values = torch.cat([_pad_left(p.values, longest - n, 2) for p, n in zip(parts, lengths, strict=True)])
    merged.attention_mask = torch.cat([_pad_left(s.attention_mask, longest - n, 1)
                                       for s, n in zip(sessions, lengths, strict=True)])
    return merged, lengths


def unstack_padded(tail: EdgeTail, merged: SideSession, sessions: list[SideSession], lengths: list[int]) -> None:
    """Write each row's real (unpadded) cache and mask back into its session after a forward of ``new`` tokens."""
    total = merged.seen_tokens
    for row, (session, length) in enumerate(zip(sessions, lengths, strict=True)):
        grown = length + total - max(lengths)
        for index in range(tail.k, tail.adapter.num_layers):
            source, target = merged.cache.layers[index], session.cache.layers[index]
            if not target.is_initialized:  # a session prefilled inside the batch starts with empty layers
                target.lazy_initialization(source.keys, source.values)
            target.keys = source.keys[row : row + 1, :, -grown:, :].clone()
            target.values = source.values[row : row + 1, :, -grown:, :].clone()
        session.attention_mask = merged.attention_mask[row : row + 1, -grown:].clone()


@torch.inference_mode()
def batched_decode_logits(tail: EdgeTail, payloads: list[torch.Tensor], sessions: list[SideSession]) -> torch.Tensor:
    """Next-token logits ``[batch, vocab]`` for one new token per session, all sessions in one forward.

    ``payloads`` are ``[1, 1, hidden]`` hidden states (``[1, 1]`` token ids at ``k = 0``), one per session, and the
    sessions' caches advance by one token exactly as an unbatched step would advance them.
    """
    if len(payloads) != len(sessions) or not sessions:
        raise ValueError(f"need one payload per session, got {len(payloads)} payloads for {len(sessions)} sessions")
    if len(sessions) == 1:
        return tail(payloads[0], session=sessions[0], last_only=True)[:, -1, :]
    merged, lengths = stack_padded(tail, sessions)
    logits = tail(torch.cat(payloads, dim=0), session=merged, last_only=True)[:, -1, :]
    unstack_padded(tail, merged, sessions, lengths)
    return logits
