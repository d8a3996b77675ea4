"""The edge side of a split: decoder layers ``k..L-1``, final norm and LM head."""

from __future__ import annotations

import torch

from edgesplit.models import LoadedModel
from edgesplit.models.adapters import DecoderAdapter
from edgesplit.split.device_head import _adapter, check_split
from edgesplit.split.session import SideSession, resolve_mask_and_positions


class EdgeTail:
    """Runs on the edge server: what crossed the link → next-token logits.

    Takes token ids when ``k = 0`` (the edge embeds them) and the ``[batch, tokens, hidden]`` state after layer k
    otherwise. At ``k = L`` only the final norm and LM head remain (they run on the UE in that case).
    """

    def __init__(self, model: LoadedModel | DecoderAdapter, k: int) -> None:
        self.adapter = _adapter(model)
        self.k = check_split(k, self.adapter.num_layers)

    @property
    def runs_on_device(self) -> bool:
        """True at ``k = L``: the remaining norm + LM head are computed on the UE."""
        return self.k == self.adapter.num_layers

    def new_session(self) -> SideSession:
        """Fresh decoding state (KV cache for layers ``k..L-1``) for one batch of sequences."""
        return SideSession(cache=self.adapter.new_cache() if self.k < self.adapter.num_layers else None)

    def _check_payload(self, payload: torch.Tensor) -> None:
        if self.k == 0:
            if payload.ndim != 2 or payload.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"at k=0 the edge expects integer token ids [batch, tokens], got "
                                 f"{payload.dtype} {tuple(payload.shape)}")
        elif payload.ndim != 3 or payload.shape[-1] != self.adapter.hidden_size or not payload.is_floating_point():
            raise ValueError(f"at k={self.k} the edge expects a float hidden state [batch, tokens, "
                             f"{self.adapter.hidden_size}], got {payload.dtype} {tuple(payload.shape)}")

    @torch.inference_mode()
    def forward(self, payload: torch.Tensor, attention_mask: torch.Tensor | None = None,
                session: SideSession | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits ``[batch, tokens, vocab]`` (or ``[batch, 1, vocab]`` with ``last_only``) for the payload, on the
        model's device (the payload and mask may be anywhere)."""
        self._check_payload(payload)
        payload = payload.to(self.adapter.model.device)  # what crossed the link arrives in host memory
        full_mask, positions = resolve_mask_and_positions(tuple(payload.shape[:2]), attention_mask, session,
                                                          payload.device)
        cache = session.cache if session is not None else None
        if self.k == 0:
            hidden = self.adapter.embed_tokens(payload.long(), positions)
        else:
            hidden = payload.to(self.adapter.model.dtype)
        inputs = self.adapter.prepare(hidden, full_mask, positions, cache, self.k, self.adapter.num_layers)
        hidden = self.adapter.run_layers(hidden, self.k, self.adapter.num_layers, inputs, cache)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.adapter.final_norm_and_head(hidden)

    __call__ = forward
