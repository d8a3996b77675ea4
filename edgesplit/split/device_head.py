"""The UE side of a split: embedding and decoder layers ``0..k-1``."""

from __future__ import annotations

import torch

from edgesplit.models import LoadedModel
from edgesplit.models.adapters import DecoderAdapter
from edgesplit.split.session import SideSession, resolve_mask_and_positions


def _adapter(model: LoadedModel | DecoderAdapter) -> DecoderAdapter:
    return model.adapter if isinstance(model, LoadedModel) else model


def check_split(k: int, num_layers: int) -> int:
    """``k`` if it is a valid split for an ``num_layers``-layer model, else ``ValueError``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= num_layers:
        raise ValueError(f"split k must be an integer in 0..{num_layers} (number of layers), got {k!r}")
    return k


class DeviceHead:
    """Runs on the UE: token ids → hidden state after layer ``k`` (or the token ids themselves when ``k = 0``).

    At ``k = 0`` the UE only tokenises and the ids cross the link; at ``k = L`` the UE runs every layer (the
    matching :class:`~edgesplit.split.edge_tail.EdgeTail` then holds only the final norm and LM head, which also run
    on the UE, and nothing crosses the link).
    """

    def __init__(self, model: LoadedModel | DecoderAdapter, k: int) -> None:
        self.adapter = _adapter(model)
        self.k = check_split(k, self.adapter.num_layers)

    @property
    def sends(self) -> str:
        """What crosses the uplink: ``token_ids``, ``hidden`` or ``nothing`` (k = L)."""
        if self.k == 0:
            return "token_ids"
        return "nothing" if self.k == self.adapter.num_layers else "hidden"

    def new_session(self) -> SideSession:
        """Fresh decoding state (KV cache for layers ``0..k-1``) for one batch of sequences."""
        return SideSession(cache=self.adapter.new_cache() if self.k > 0 else None)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                session: SideSession | None = None) -> torch.Tensor:
        """Process the current tokens ``[batch, tokens]``; ``attention_mask`` covers the current tokens only.

        With a ``session`` the KV cache and mask history are kept for incremental decoding; without one the call
        is stateless. Returns token ids for ``k = 0``, else the ``[batch, tokens, hidden]`` state after layer k, on
        the model's device.
        """
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}")
        if self.k > 0:  # the layers run where the weights are (ids may come from the CPU tokenizer)
            input_ids = input_ids.to(self.adapter.model.device)
        full_mask, positions = resolve_mask_and_positions(tuple(input_ids.shape), attention_mask, session,
                                                          input_ids.device)
        if self.k == 0:
            return input_ids
        cache = session.cache if session is not None else None
        hidden = self.adapter.embed_tokens(input_ids, positions)
        inputs = self.adapter.prepare(hidden, full_mask, positions, cache, 0, self.k)
        return self.adapter.run_layers(hidden, 0, self.k, inputs, cache)

    __call__ = forward
