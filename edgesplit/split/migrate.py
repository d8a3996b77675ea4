"""Move a live split generation from split ``k`` to ``k'`` by handing KV-cache layers across the link.

Protocol (KV migration, no recomputation): the layers between the two splits change owner. When ``k' < k`` the UE
hands the KV-cache entries of layers ``[k', k)`` for every past token to the edge (they would cross the uplink);
when ``k' > k`` the edge hands layers ``[k, k')`` to the UE (downlink). Every other layer stays where it was and
is not copied. Nothing is recomputed, so the continued generation is exactly the one a session opened at ``k'``
would produce on the same history: a decoder layer's keys and values do not depend on which machine ran it.

Design decisions:

- Only key/value tensors cross. The receiver rebuilds its cache layer from them and from its own mask history
  (both sides hold the same ``[batch, seen]`` mask, since both saw every step), so positions, rotary phases and
  the seen-token count of a sliding-window layer follow from state it already has.
- Sliding-window layers (Mistral, Gemma 3) migrate exactly: transformers' ``DynamicSlidingWindowLayer`` keeps the
  last ``window - 1`` positions and a running length, and both are rebuilt on the receiver. Only those positions
  cross, so the element count of such a layer is ``min(seen, window - 1)`` positions, not ``seen``.
- Any other cache-layer class (quantised, offloaded, static, recording its past for assisted decoding ...) is
  refused with a ``ValueError`` naming the family: its state is more than keys + values and a partial copy would
  silently change the results.
- The element count comes from the moved tensors themselves (``numel``), batch and left padding included (padded
  positions are cached like any other), so it can be checked against a cost model's formula.
- The given sessions are handed over, not copied: the returned sessions share the layers that stay put with
  them, so the old sessions must not be used again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from transformers import DynamicCache
from transformers.cache_utils import CacheLayerMixin, DynamicLayer, DynamicSlidingWindowLayer

from edgesplit.models import LoadedModel
from edgesplit.models.adapters import DecoderAdapter
from edgesplit.split.device_head import DeviceHead, _adapter, check_split
from edgesplit.split.edge_tail import EdgeTail
from edgesplit.split.session import SideSession

Direction = Literal["to_edge", "to_ue", "none"]
DIRECTIONS: tuple[str, ...] = ("to_edge", "to_ue", "none")

_MOVABLE_LAYERS: tuple[type[CacheLayerMixin], ...] = (DynamicLayer, DynamicSlidingWindowLayer)
"""Cache-layer classes whose whole state is keys, values and the seen-token count (exact type, not subclasses:
``QuantizedLayer`` subclasses ``DynamicLayer`` but keeps a quantised copy besides)."""


@dataclass(frozen=True)
class Migration:
    """What one move of the split sent over the link."""

    k_from: int
    """Split the generation ran at before the move."""
    k_to: int
    """Split it runs at after the move."""
    direction: Direction
    """``to_edge`` (k' < k, uplink), ``to_ue`` (k' > k, downlink) or ``none`` (k' == k)."""
    layers: tuple[int, ...]
    """Indices of the decoder layers whose KV cache changed side, ascending (empty for ``none``)."""
    past_tokens: int
    """Positions each side had processed at the move (mask columns, left padding included)."""
    batch: int
    """Sequences in the session batch (0 for a session that had not started)."""
    kv_elements: int
    """Key + value elements actually moved, counted from the tensors (summed over batch, heads, positions)."""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        expected = "to_edge" if self.k_to < self.k_from else "to_ue" if self.k_to > self.k_from else "none"
        if self.direction != expected:
            raise ValueError(f"a move from k={self.k_from} to k={self.k_to} is {expected!r}, not {self.direction!r}")
        if self.layers != tuple(range(min(self.k_from, self.k_to), max(self.k_from, self.k_to))):
            raise ValueError(f"layers must be the range between the two splits, got {self.layers}")
        for name in ("past_tokens", "batch", "kv_elements"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def num_layers_moved(self) -> int:
        """How many decoder layers changed side (``|k' - k|``)."""
        return len(self.layers)

    def payload_bytes(self, bits_per_element: float) -> float:
        """Bytes on the link for the moved KV entries at ``bits_per_element`` (16 for fp16, 8 for int8 ...)."""
        if isinstance(bits_per_element, bool) or not bits_per_element > 0:
            raise ValueError(f"bits_per_element must be > 0, got {bits_per_element!r}")
        return self.kv_elements * bits_per_element / 8


@dataclass(frozen=True)
class MovedSplit:
    """The two sides of the generation after the move, ready to continue, and what the move sent."""

    head: DeviceHead
    """UE side at the new split."""
    tail: EdgeTail
    """Edge side at the new split."""
    head_session: SideSession
    """UE decoding state at the new split (holds layers ``0..k'-1``)."""
    tail_session: SideSession
    """Edge decoding state at the new split (holds layers ``k'..L-1``)."""
    migration: Migration
    """What crossed the link."""


@torch.inference_mode()
def move_split(model: LoadedModel | DecoderAdapter, k: int, head_session: SideSession, tail_session: SideSession,
               new_k: int) -> MovedSplit:
    """Move a live generation at split ``k`` to split ``new_k`` by KV migration; see the module docstring.

    ``head_session`` / ``tail_session`` are the UE and edge sessions of the generation at ``k`` (they are consumed).
    Raises ``ValueError`` for a ``new_k`` outside ``0..L``, sessions that do not look like the two sides of one
    generation at ``k``, or a cache layer that cannot be migrated exactly.
    """
    adapter = _adapter(model)
    num_layers = adapter.num_layers
    check_split(k, num_layers)
    _check_new_split(new_k, num_layers)
    seen, batch = _check_sessions(adapter, k, head_session, tail_session)
    head, tail = DeviceHead(adapter, new_k), EdgeTail(adapter, new_k)
    low, high = min(k, new_k), max(k, new_k)
    moved = tuple(range(low, high))
    direction: Direction = "to_edge" if new_k < k else "to_ue" if new_k > k else "none"
    if not moved:
        return MovedSplit(head, tail, head_session, tail_session, Migration(k, new_k, direction, moved, seen, batch, 0))
    source = head_session.cache if new_k < k else tail_session.cache
    _check_movable(adapter, source, moved)
    new_head, new_tail = head.new_session(), tail.new_session()
    for session in (new_head, new_tail):
        session.attention_mask = head_session.attention_mask
    for index in range(low):  # layers that stay on their side change session object only: no copy
        new_head.cache.layers[index] = head_session.cache.layers[index]
    for index in range(high, num_layers):
        new_tail.cache.layers[index] = tail_session.cache.layers[index]
    target = new_tail.cache if new_k < k else new_head.cache
    elements = sum(_hand_over(source.layers[i], target.layers[i], seen) for i in moved)
    migration = Migration(k, new_k, direction, moved, seen, batch, elements)
    return MovedSplit(head, tail, new_head, new_tail, migration)


def _check_new_split(new_k: int, num_layers: int) -> None:
    if isinstance(new_k, bool) or not isinstance(new_k, int) or not 0 <= new_k <= num_layers:
        raise ValueError(f"new split k' must be an integer in 0..{num_layers} (number of layers), got {new_k!r}")


def _check_sessions(adapter: DecoderAdapter, k: int, head_session: SideSession,
                    tail_session: SideSession) -> tuple[int, int]:
    """``(seen_tokens, batch)`` of two sessions that are the UE and edge sides of one generation at ``k``.

    Both masks must be equal (each side extends its mask every step) and each side must hold exactly its own
    layers at that length: this catches a wrong ``k`` or sessions of two different generations before anything moves.
    """
    head_mask, tail_mask = head_session.attention_mask, tail_session.attention_mask
    if (head_mask is None) != (tail_mask is None) or (
            head_mask is not None and (head_mask.shape != tail_mask.shape or not torch.equal(head_mask, tail_mask))):
        raise ValueError(f"the head and tail sessions have different mask histories (seen "
                         f"{head_session.seen_tokens} vs {tail_session.seen_tokens} tokens): they are not the two "
                         f"sides of one generation")
    seen = head_session.seen_tokens
    num_layers = adapter.num_layers
    _check_side("head (UE)", head_session.cache, range(0, k), k, num_layers, seen)
    _check_side("tail (edge)", tail_session.cache, range(k, num_layers), k, num_layers, seen)
    return seen, 0 if head_mask is None else int(head_mask.shape[0])


def _check_side(side: str, cache: DynamicCache | None, own: range, k: int, num_layers: int, seen: int) -> None:
    if len(own) == 0:
        if cache is not None and any(layer.is_initialized for layer in cache.layers):
            raise ValueError(f"the {side} session holds KV layers but runs none at k={k}: was it opened at k={k}?")
        return
    if cache is None or len(cache.layers) != num_layers:
        raise ValueError(f"the {side} session at k={k} needs a {num_layers}-layer KV cache for layers "
                         f"{own.start}..{own.stop - 1}; was it opened at k={k}?")
    for index, layer in enumerate(cache.layers):
        held = layer.get_seq_length() if layer.is_initialized else 0
        want = seen if index in own else 0
        if held != want:
            raise ValueError(f"the {side} session does not match a generation at k={k} after {seen} tokens: layer "
                             f"{index} holds {held} positions, expected {want}; pass the split it was opened at")


def _check_movable(adapter: DecoderAdapter, cache: DynamicCache, moved: tuple[int, ...]) -> None:
    for index in moved:
        layer = cache.layers[index]
        if type(layer) not in _MOVABLE_LAYERS or getattr(layer, "record_past", False):
            raise ValueError(
                f"cannot migrate the KV cache of {adapter.config.model_type!r} exactly: layer {index} is a "
                f"{type(layer).__name__}{' recording its past' if getattr(layer, 'record_past', False) else ''} "
                f"(only {', '.join(c.__name__ for c in _MOVABLE_LAYERS)} can be handed over); open a new session at "
                f"the new split and prefill it from the history instead")


def _hand_over(source: CacheLayerMixin, target: CacheLayerMixin, seen: int) -> int:
    """Rebuild ``target`` from ``source``'s keys and values (what crosses the link); returns the elements moved."""
    if not source.is_initialized:  # a session that has not started (checked: seen == 0) has nothing to send
        return 0
    keys, values = source.keys.clone(), source.values.clone()  # compact copies, as if received off the wire
    target.lazy_initialization(keys, values)
    target.keys, target.values = keys, values
    if isinstance(target, DynamicSlidingWindowLayer):
        target.cumulative_length = seen  # the receiver knows it from its own mask history
    return keys.numel() + values.numel()
