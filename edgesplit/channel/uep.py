"""Unequal error protection (UEP): a hidden state's outlier channels and attention-sink token sent apart, stronger.

LLM hidden states carry a few "massive activation" channels (SmolLM2-135M: channel 507 reaches ~2·10⁴ on the first
token from layer 12 on, against a median channel peak of ~50). Losing or corrupting one of those values wrecks the
rest of the forward pass, so an unprotected link fails catastrophically on single draws. :class:`ProtectedImpairment`
(kind ``"protected"``) sends ``x[..., channels]`` through ``protected`` — optionally as ``copies`` repetitions, each its
own transmission (one call of ``protected`` per copy: its own transport blocks on a coded link, its own fragments under
erasures), combined at the receiver — and every other channel through ``main``, then puts each value back at its
channel. Typical uses:

- dropout: ``main=DropoutImpairment(p)``, ``protected=DropoutImpairment(p)``, ``copies=3``: a protected element is lost
  only if all three copies are (probability p³; the receiver keeps the first copy that arrived);
- digital: ``main=DigitalImpairment(bits=8, modulation="qpsk")``, ``protected=DigitalImpairment(bits=16,
  modulation="bpsk")``: more precision and a robust modulation (and/or ``copies``, combined by the median). Taking the
  outliers out of the main stream also shrinks the per-token absmax quantisation step of every other channel;
- the coded NR link: ``main={"kind": "coded", ...}`` and ``protected`` the same link (repetition: each copy in its
  own transport blocks) or a lower MCS (any impairment kind works: specs are built with :func:`make_impairment`).

Token protection: the massive activations sit on the sequence's first token (the attention sink), and the tail
depends on the rest of that token's vector too, so the rows of a packet at sequence positions ``< tokens`` travel
whole through ``protected`` (``copies`` times, the same combining rule): their outlier channels with every row's, in
the channel part, and their other channels as a second protected part (a separate call of ``protected`` per copy,
its own absmax scale per row: one scale over the whole sink vector would be set by its ~10⁴ outlier and quantise
every other channel of it to 0). The other rows keep the per-channel split. Only true leading positions count:
:meth:`ProtectedImpairment.at_position` says where the packet starts (:class:`~edgesplit.link.ImpairedLink` calls it
per packet with its ``position_start``), so a decode step (one token at position > 0) protects no row. Rows are axis
-2 (``[..., tokens, hidden]``); a 1-D vector has no token axis.

Massive rows (``massive_tau``): besides the leading positions, a packet's rows whose max |x| exceeds ``massive_tau``
× the packet's median row max (over every leading dim; at most ``max_massive_rows``) are sent whole the same way —
the sender sees what it sends, so secondary attention sinks of unseen inputs are caught; their positions travel in
the frame (version 4, :class:`~edgesplit.packet.ProtectedPacket`; 32 bits each). A packet of one row (a decode step)
is its own median, so the rule never fires there.

Erasure repair (``fill``, costs no bits): an element every transmission of which was flagged lost (the parts'
:attr:`~edgesplit.channel.impairment.ImpairmentResult.lost`: dropout masks, erased fragments, transport blocks
whose CRC failed) is set to a calibrated per-channel value instead of 0 — :attr:`RepairValues.sink` in the rows
sent whole, :attr:`RepairValues.body` elsewhere (:func:`edgesplit.quality.outliers.repair_values`: the medians the
edge computes from the model itself). Parts that flag nothing (``digital``'s bit errors, AWGN) are left as received;
the result's ``lost`` is the union of the parts' masks, None when a part flagged nothing.

The channels differ per split, so ``channels`` is either one index tuple or a per-split table ``{k: indices}`` (e.g.
:meth:`edgesplit.quality.outliers.OutlierTable.channels_by_split`); :meth:`ProtectedImpairment.for_split` picks the
split, and :class:`~edgesplit.link.ImpairedLink` calls it with the split it carries. Random draws, from the one
generator: ``main`` (the other channels of the unprotected rows), then every copy of the protected channels (every
row), then every copy of the protected rows' other channels: same seed, same result.

Stats: each part's own stats prefixed ``main.`` / ``protected.`` / ``tokens.`` (the mean over copies); ``main_bits``,
``protected_bits`` (every copy of the channels and of the token rows' other channels, with their own scales),
``protected_token_bits`` (the token rows' share), ``side_bits`` (32 bits per protected channel index and per
massive-row position, plus 32 for the protected-token count when a packet has protected rows), ``baseline_bits``
(``main`` alone on every element at the same settings), ``extra_bits_ratio`` (total / baseline - 1) and the same for
channel uses (``extra_airtime_ratio``; pricing in :mod:`edgesplit.channel.uep_cost`), ``protected_channels``,
``protected_tokens`` (rows sent whole), ``protected_erased_fraction`` (protected channel elements with a non-zero
input that arrived as 0; quantising links count values that quantise to 0 too), ``tokens_erased_fraction`` (the same
for the token rows' other channels), ``massive_rows`` (rows the massive-row rule added), ``lost_fraction`` (elements
flagged lost in every copy), ``repaired_fraction`` (those set by ``fill``), ``main_absmax_ratio`` (mean over the main
stream's tokens of its absmax over the whole vector's absmax: how much its quantisation step shrinks) and ``mse``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from edgesplit.channel.awgn import AwgnImpairment
from edgesplit.channel.dropout import DropoutImpairment
from edgesplit.channel.erasure import ErasureImpairment
from edgesplit.channel.impairment import (
    Impairment,
    ImpairmentResult,
    NoImpairment,
    as_generator,
    check_activations,
    mse,
)
from edgesplit.channel.state import ChannelState
from edgesplit.channel.uep_cost import part_cost
from edgesplit.channel.uep_repair import RepairValues, massive_rows, repair, split_key

COMBINE_RULES = ("auto", "first_nonzero", "median", "mean")
"""How repeated copies of a protected element are combined at the receiver."""
PACKET_ENCODINGS = ("float32", "float16", "bfloat16", "int8", "int4")
"""Accepted ``protected_encoding`` values (the packet encodings of a protected part)."""
INDEX_BITS = 32
"""Side information per protected channel and packet (a u32 index in the version-2 frame)."""
TOKEN_COUNT_BITS = 32
"""Side information of a packet with protected token rows (their count, in the version-3 frame's header)."""
TOKENS_DEFAULT = 1
"""Leading positions protected whole by default: SmolLM2's massive activations sit on position 0 alone."""
MAX_MASSIVE_ROWS = 8
"""Most rows the massive-row rule (``massive_tau``) adds to a packet's protected rows."""

Channels = tuple[int, ...] | dict[int, tuple[int, ...]]


def _as_impairment(spec: Impairment | dict[str, Any], name: str) -> Impairment:
    if isinstance(spec, Impairment):
        return spec
    if isinstance(spec, dict) and isinstance(spec.get("kind"), str):
        from edgesplit.channel.factory import make_impairment  # deferred: the factory imports this module

        return make_impairment(spec["kind"], **{key: value for key, value in spec.items() if key != "kind"})
    raise ValueError(f"{name} must be an Impairment or a {{'kind': ..., **params}} dict, got {spec!r}")


def _index_tuple(values: Any, what: str) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a sequence of channel indices, got {values!r}")
    out = tuple(values)
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in out):
        raise ValueError(f"{what} must hold non-negative int channel indices, got {list(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} must not repeat a channel, got {list(out)}")
    return out


def check_channels(channels: Any) -> Channels:
    """Normalise ``channels``: one index sequence, or a ``{k: indices}`` table (string keys ``"12"`` accepted)."""
    if isinstance(channels, dict):
        return {split_key(k): _index_tuple(v, f"channels[{k!r}]") for k, v in channels.items()}
    return _index_tuple(channels, "channels")


def combine_copies(received: torch.Tensor, rule: str) -> torch.Tensor:
    """Combine ``[copies, ...]`` received copies into one tensor ``[...]`` by ``rule`` (not ``auto``)."""
    if rule == "first_nonzero":  # erasure channels: anything non-zero arrived (a zero input stays zero anyway)
        arrived = received != 0
        first = arrived.to(torch.int8).argmax(0, keepdim=True)
        return torch.where(arrived.any(0), received.gather(0, first).squeeze(0), torch.zeros_like(received[0]))
    if rule == "mean":
        return received.mean(0)
    ordered = received.sort(0).values  # median; the mean of the two middle copies for an even count
    return 0.5 * (ordered[(received.shape[0] - 1) // 2] + ordered[received.shape[0] // 2])


def auto_rule(protected: Impairment) -> str:
    """The combining rule that fits an impairment: erasures keep what arrived, AWGN averages, the rest votes."""
    if isinstance(protected, DropoutImpairment | ErasureImpairment | NoImpairment) or protected.kind == "coded":
        return "first_nonzero"  # the coded link erases failed transport blocks (CRC), it never corrupts silently
    return "mean" if isinstance(protected, AwgnImpairment) else "median"


@dataclass
class ProtectedImpairment(Impairment):
    """Send ``channels`` (and the leading ``tokens`` whole) through ``protected``, ``copies`` times; the rest through
    ``main``; reassemble."""

    kind: ClassVar[str] = "protected"
    main: Impairment | dict[str, Any] = field(default_factory=NoImpairment)
    """Impairment of the unprotected channels: an Impairment or a ``{"kind": ..., **params}`` spec."""
    protected: Impairment | dict[str, Any] = field(default_factory=NoImpairment)
    """Impairment every copy of the protected channels (and tokens) goes through (same forms as ``main``)."""
    channels: tuple[int, ...] | dict[int, tuple[int, ...]] = ()
    """Protected channel indices, or a per-split table ``{k: indices}`` resolved by :meth:`for_split`."""
    copies: int = 1
    """Transmissions of each protected element (1: no repetition); copies are combined by ``combine``."""
    combine: str = "auto"
    """'first_nonzero' (erasures), 'median' (bit errors), 'mean' (AWGN) or 'auto' (by the protected impairment)."""
    split_k: int | None = None
    """The split whose table entry applies when ``channels`` is a table (set by :meth:`for_split`)."""
    element_bits: int = 32
    """Bits charged per element for parts that report none (analog kinds: the packet encoding's width)."""
    protected_encoding: str | None = None
    """Packet encoding of the protected part on the wire (None: the link's own encoding)."""
    tokens: int = TOKENS_DEFAULT
    """Sequence positions ``< tokens`` (the attention sink) sent whole (every channel) through the protected path."""
    position_start: int = 0
    """Sequence position of the first row of the next packet (set per packet by :meth:`at_position`)."""
    massive_tau: float | None = None
    """Massive-row rule: rows whose max |x| exceeds ``massive_tau`` × the packet's median row max are sent whole too
    (at most ``max_massive_rows``, largest first; their positions travel in the version-4 frame); None: off."""
    max_massive_rows: int = MAX_MASSIVE_ROWS
    """Most rows the massive-row rule adds per packet."""
    fill: RepairValues | None = None
    """Erasure repair at the receiver: an element flagged lost (in every copy) is set to its calibrated value
    (``fill.sink`` in rows sent whole, ``fill.body`` elsewhere) instead of 0; None: lost elements stay 0."""

    def __post_init__(self) -> None:
        self.main = _as_impairment(self.main, "main")
        self.protected = _as_impairment(self.protected, "protected")
        self.channels = check_channels(self.channels)
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise ValueError(f"copies must be an int >= 1, got {self.copies!r}")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {list(COMBINE_RULES)}, got {self.combine!r}")
        if self.split_k is not None and not _is_count(self.split_k):
            raise ValueError(f"split_k must be None or an int >= 0, got {self.split_k!r}")
        if isinstance(self.element_bits, bool) or not isinstance(self.element_bits, int) or \
                not 1 <= self.element_bits <= 64:
            raise ValueError(f"element_bits must be an int in 1..64, got {self.element_bits!r}")
        if self.protected_encoding is not None and self.protected_encoding not in PACKET_ENCODINGS:
            raise ValueError(f"protected_encoding must be None or one of {list(PACKET_ENCODINGS)}, "
                             f"got {self.protected_encoding!r}")
        for name in ("tokens", "position_start"):
            if not _is_count(getattr(self, name)):
                raise ValueError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        tau = self.massive_tau
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau)
                                or tau <= 1.0):
            raise ValueError(f"massive_tau must be None or a finite number > 1, got {tau!r}")
        if not _is_count(self.max_massive_rows) or self.max_massive_rows < 1:
            raise ValueError(f"max_massive_rows must be an int >= 1, got {self.max_massive_rows!r}")
        if self.fill is not None and not isinstance(self.fill, RepairValues):
            raise ValueError(f"fill must be None or a RepairValues, got {type(self.fill).__name__}")

    def for_split(self, k: int) -> ProtectedImpairment:
        """This impairment for split ``k`` (its table entry is looked up when something is sent)."""
        return replace(self, split_k=k)

    def at_position(self, position_start: int) -> ProtectedImpairment:
        """This impairment for a packet whose first row is sequence position ``position_start``."""
        return self if position_start == self.position_start else replace(self, position_start=position_start)

    def protected_rows(self, shape: tuple[int, ...]) -> int:
        """Leading rows (axis -2) of a ``shape`` packet sent whole: its positions below ``tokens`` (0 for 1-D)."""
        if len(shape) < 2:
            return 0
        return max(0, min(self.tokens - self.position_start, int(shape[-2])))

    def row_indices(self, x: torch.Tensor) -> list[int]:
        """Rows (axis -2) of packet ``x`` sent whole, increasing: the leading ones (:meth:`protected_rows`) and, with
        ``massive_tau``, those whose max |x| (over every leading dim too) exceeds ``massive_tau`` × the median."""
        leading = self.protected_rows(tuple(x.shape))
        if self.massive_tau is None or x.dim() < 2 or x.shape[-2] < 2 or x.numel() == 0:
            return list(range(leading))
        return sorted(set(range(leading)) | set(massive_rows(x, self.massive_tau, self.max_massive_rows)))

    def active_channels(self) -> tuple[int, ...]:
        """The protected channels of the current split; ValueError when a table has no entry for it."""
        if isinstance(self.channels, tuple):
            return self.channels
        if self.split_k is None:
            raise ValueError(f"channels is a per-split table (splits {sorted(self.channels)}); pick one with "
                             "for_split(k) or pass split_k to ImpairedLink")
        if self.split_k not in self.channels:
            raise ValueError(f"no protected channels listed for split {self.split_k}; the table covers splits "
                             f"{sorted(self.channels)} (an empty list means: nothing to protect)")
        return self.channels[self.split_k]

    @property
    def rule(self) -> str:
        """The combining rule in force (``auto`` resolved)."""
        return auto_rule(self.protected) if self.combine == "auto" else self.combine

    def apply(self, x: torch.Tensor, state: ChannelState, generator: torch.Generator | int) -> ImpairmentResult:
        xf = check_activations(x)
        gen = as_generator(generator)
        hidden = int(xf.shape[-1])
        chosen = self.active_channels()
        if any(c >= hidden for c in chosen):
            raise ValueError(f"protected channels {list(chosen)} do not fit a hidden size of {hidden}")
        fill = self._fill_vectors(hidden)
        chosen_set = set(chosen)
        rest = [c for c in range(hidden) if c not in chosen_set]
        rows = self.row_indices(xf)
        n_tok = len(rows)
        body_rows = [r for r in range(int(xf.shape[-2])) if r not in set(rows)] if n_tok else []
        body = xf[..., body_rows, :] if n_tok else xf  # the rows whose other channels go through main
        out, main_stats, lost = torch.empty_like(xf), {}, torch.zeros(xf.shape, dtype=torch.bool, device=xf.device)
        flagged = True  # every part reported its lost elements
        if rest and (body.numel() or not n_tok):  # a packet protected whole sends no main part
            main_result = self.main.apply(body[..., rest], state, gen)
            _put(out, main_result.x.float(), body_rows if n_tok else None, rest)
            main_stats, flagged = main_result.stats, main_result.lost is not None
            if flagged:
                _put(lost, main_result.lost, body_rows if n_tok else None, rest)
        stats = {f"main.{key}": value for key, value in main_stats.items()}
        copy_stats: dict[str, list[dict[str, float]]] = {"protected": [], "tokens": []}
        if chosen:  # every row's outlier channels, the sink's included
            values = xf[..., list(chosen)]
            out[..., list(chosen)], copy_stats["protected"], stats["protected_erased_fraction"], part_lost = \
                self._send_copies(values, state, gen)
            flagged = flagged and part_lost is not None
            if part_lost is not None:
                lost[..., list(chosen)] = part_lost
        if n_tok and rest:  # the sink rows' other channels: the rest of the whole vector, after the channels
            head = xf[..., rows, :][..., rest]
            received, copy_stats["tokens"], stats["tokens_erased_fraction"], part_lost = \
                self._send_copies(head, state, gen)
            _put(out, received, rows, rest)
            flagged = flagged and part_lost is not None
            if part_lost is not None:
                _put(lost, part_lost, rows, rest)
        for name, part_stats in copy_stats.items():
            stats |= {f"{name}.{key}": value for key, value in _mean_stats(part_stats).items()}
        leading = self.protected_rows(tuple(xf.shape))
        stats |= self._costs(_rows(xf), _rows(body), n_tok and _rows(xf) - _rows(body), len(rest), len(chosen),
                             main_stats, copy_stats, state, n_tok - leading)
        if fill is not None:
            out = repair(out, lost, *fill, rows)
        stats |= {"protected_tokens": float(n_tok), "massive_rows": float(n_tok - leading),
                  "lost_fraction": float(lost.float().mean()) if lost.numel() else 0.0,
                  "repaired_fraction": float(lost.float().mean()) if fill is not None and lost.numel() else 0.0,
                  "main_absmax_ratio": _absmax_ratio(body, rest), "mse": mse(out, xf)}
        return ImpairmentResult(x=out.to(x.dtype), stats=stats, lost=lost if flagged else None)

    def _fill_vectors(self, hidden: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(body, sink) repair values of the current split, or None without ``fill``."""
        if self.fill is None:
            return None
        if self.split_k is None:
            raise ValueError("fill holds per-split values; pick the split with for_split(k) or pass split_k to "
                             "ImpairedLink")
        body, sink = self.fill.for_split(self.split_k)
        if body.numel() != hidden:
            raise ValueError(f"fill values have {body.numel()} channels, the hidden state {hidden}")
        return body, sink

    def _send_copies(self, values: torch.Tensor, state: ChannelState, gen: torch.Generator
                     ) -> tuple[torch.Tensor, list[dict[str, float]], float, torch.Tensor | None]:
        """``copies`` transmissions of ``values`` (one call of ``protected`` each), combined by the rule; with the
        fraction of non-zero inputs that arrived as 0 and the elements lost in every copy (None: not reported)."""
        results = [self.protected.apply(values, state, gen) for _ in range(self.copies)]
        received = combine_copies(torch.stack([r.x.float() for r in results]), self.rule)
        masks = [r.lost for r in results]
        lost = torch.stack(masks).all(0) if all(m is not None for m in masks) else None
        return received, [r.stats for r in results], _erased_fraction(values, received), lost

    def _costs(self, rows: int, body_rows: int, head_rows: int, n_rest: int, n_prot: int,
               main_stats: dict[str, float], copy_stats: dict[str, list[dict[str, float]]],
               state: ChannelState, positions: int = 0) -> dict[str, float]:
        """Bits and channel uses of every part, and of ``main`` alone on every element (the baseline)."""
        eb = self.element_bits
        main_bits, main_uses = part_cost(self.main, body_rows, n_rest, main_stats, eb) if n_rest else (0.0, 0.0)
        prot = [part_cost(self.protected, rows, n_prot, st, eb) for st in copy_stats["protected"]]
        tok = [part_cost(self.protected, head_rows, n_rest, st, eb) for st in copy_stats["tokens"]]
        prot_bits, prot_uses = sum(b for b, _ in prot + tok), sum(u for _, u in prot + tok)
        base_bits, base_uses = part_cost(self.main, rows, n_rest + n_prot, main_stats, eb, sent=(body_rows, n_rest),
                                         state=state)
        side = float(INDEX_BITS * (n_prot + positions) + (TOKEN_COUNT_BITS if head_rows else 0))
        total_bits, total_uses = main_bits + prot_bits + side, main_uses + prot_uses + side
        return {"protected_channels": float(n_prot), "copies": float(self.copies), "main_bits": float(main_bits),
                "protected_bits": float(prot_bits), "protected_token_bits": float(sum(b for b, _ in tok)),
                "side_bits": side, "total_bits": float(total_bits), "baseline_bits": float(base_bits),
                "extra_bits_ratio": _ratio(total_bits, base_bits), "main_channel_uses": float(main_uses),
                "protected_channel_uses": float(prot_uses), "extra_airtime_ratio": _ratio(total_uses, base_uses)}


def _put(out: torch.Tensor, values: torch.Tensor, rows: list[int] | None, cols: list[int]) -> None:
    """``out[..., rows, cols] = values`` (rows None: every row), written in place."""
    if rows is None:
        out[..., cols] = values
    else:
        index = torch.tensor(rows, device=out.device)[:, None], torch.tensor(cols, device=out.device)[None, :]
        out[(..., *index)] = values.to(out.dtype)


def _mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the mean over the copies' stats (keys every copy reported; none for no copy)."""
    keys = [key for key in stats[0] if all(key in st for st in stats)] if stats else []
    return {key: float(sum(st[key] for st in stats) / len(stats)) for key in keys}


def _ratio(total: float, baseline: float) -> float:
    return total / baseline - 1.0 if baseline else math.nan


def _erased_fraction(values: torch.Tensor, received: torch.Tensor) -> float:
    live = values != 0
    return float((live & (received == 0)).sum()) / max(int(live.sum()), 1)


def _rows(x: torch.Tensor) -> int:
    """Token vectors in ``x`` (every dimension but the last)."""
    return math.prod(x.shape[:-1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _absmax_ratio(xf: torch.Tensor, rest: list[int]) -> float:
    """Mean over token vectors of absmax(unprotected channels) / absmax(whole vector) (1.0: no shrink)."""
    if xf.numel() == 0 or len(rest) == xf.shape[-1]:
        return 1.0
    whole = xf.abs().amax(-1).reshape(-1)
    rest_max = xf[..., rest].abs().amax(-1).reshape(-1) if rest else torch.zeros_like(whole)
    valid = whole > 0
    return float((rest_max[valid] / whole[valid]).mean()) if bool(valid.any()) else 1.0
