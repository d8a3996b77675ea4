"""Greedy autoregressive generation across a split, with a KV cache on each side and a pluggable link.

The ``link`` callable stands for everything between the UE's head and the edge's tail (packet encoding, channel
impairments, decoding). It sees each payload once per step: the prompt during prefill, then one token per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from edgesplit.split.device_head import DeviceHead
from edgesplit.split.edge_tail import EdgeTail

Link = Callable[[torch.Tensor], torch.Tensor]


def _identity(payload: torch.Tensor) -> torch.Tensor:
    return payload


@torch.inference_mode()
def split_generate(head: DeviceHead, tail: EdgeTail, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None, max_new_tokens: int = 32, link: Link | None = None,
                   eos_token_id: int | None = None, pad_token_id: int | None = None) -> torch.Tensor:
    """Greedy-decode ``max_new_tokens`` through head → link → tail; returns the new tokens ``[batch, new]``.

    Matches ``model.generate(do_sample=False)`` (left padding supported via ``attention_mask``): rows that emit
    ``eos_token_id`` are padded with ``pad_token_id`` afterwards, and decoding stops once every row has finished.
    """
    if head.k != tail.k or head.adapter is not tail.adapter:
        raise ValueError(f"head (k={head.k}) and tail (k={tail.k}) must be the two sides of one split of one model")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    link = link or _identity
    head_session, tail_session = head.new_session(), tail.new_session()
    batch = input_ids.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    step_ids, step_mask, out = input_ids, attention_mask, []
    for _ in range(max_new_tokens):
        payload = link(head(step_ids, step_mask, session=head_session))
        logits = tail(payload, step_mask, session=tail_session, last_only=True)
        next_ids = logits[:, -1, :].argmax(dim=-1)
        if eos_token_id is not None:
            next_ids = torch.where(finished, torch.full_like(next_ids, pad_token_id or 0), next_ids)
            finished |= next_ids == eos_token_id
        out.append(next_ids)
        if eos_token_id is not None and bool(finished.all()):
            break
        step_ids, step_mask = next_ids.unsqueeze(1), None
    return torch.stack(out, dim=1)
