"""Per-side decoding state: the KV cache of the layers one side runs and the attention mask seen so far.

Each side of a split keeps its own :class:`SideSession`, so a UE and an edge server decode incrementally without
sharing memory. Both sides derive positions from the same mask history in the same way as transformers'
``generate`` (``cumsum(mask) - 1``, padding at 0), which is what makes split decoding match it token for token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache


def positions_from_mask(full_mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Positions of the last ``new_tokens`` columns of a ``[batch, seen]`` 0/1 mask (left padding aware)."""
    positions = full_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(full_mask == 0, 0)
    return positions[:, -new_tokens:]


@dataclass
class SideSession:
    """Decoding state of one side of a split for one batch of sequences."""

    cache: DynamicCache | None
    """KV cache for this side's layers (``None`` for a side that runs no attention layer)."""
    attention_mask: torch.Tensor | None = field(default=None)
    """``[batch, seen]`` 0/1 mask of every token this side has processed (past and current)."""

    @property
    def seen_tokens(self) -> int:
        """How many token positions this side has processed."""
        return 0 if self.attention_mask is None else int(self.attention_mask.shape[1])

    def extend(self, new_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the mask of the new tokens; return ``(full_mask, positions_of_new_tokens)``."""
        if self.attention_mask is not None and new_mask.shape[0] != self.attention_mask.shape[0]:
            raise ValueError(f"batch size changed within a session: {self.attention_mask.shape[0]} → "
                             f"{new_mask.shape[0]}; start a new session for a new batch")
        full = new_mask if self.attention_mask is None else torch.cat([self.attention_mask, new_mask], dim=1)
        self.attention_mask = full
        return full, positions_from_mask(full, new_mask.shape[1])


def resolve_mask_and_positions(tokens_shape: tuple[int, int], attention_mask: torch.Tensor | None,
                               session: SideSession | None,
                               device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The 2D mask to build attention from and the positions of the current tokens, with or without a session."""
    batch, length = tokens_shape
    if attention_mask is not None and attention_mask.shape != (batch, length):
        raise ValueError(f"attention_mask must have shape {(batch, length)} (the current tokens only), "
                         f"got {tuple(attention_mask.shape)}")
    if session is not None:
        new_mask = attention_mask if attention_mask is not None else torch.ones(batch, length, dtype=torch.long,
                                                                                device=device)
        return session.extend(new_mask.to(device))
    if attention_mask is None:
        return None, torch.arange(length, device=device).unsqueeze(0).expand(batch, -1)
    return attention_mask.to(device), positions_from_mask(attention_mask.to(device), length)
