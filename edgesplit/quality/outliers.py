"""Outlier ("massive activation") channels of a model's hidden states, found by a calibration pass.

**Rule**, per split ``k`` (the hidden state entering decoder layer ``k``, i.e. what crosses the link at split ``k``):
``peak[c]`` is the largest ``|x[..., c]|`` over every calibration token; the reference is the median of ``peak`` over
channels; channel ``c`` is an outlier if ``peak[c] > tau · median``. At most ``max_channels`` are kept, largest peak
first (that order is the protected part's order on the wire).

**Defaults, measured on SmolLM2-135M** (WikiText-2 test, first 512 tokens, two 256-token windows; ``peak / median``):
from k = 12 to 28 channel 507 peaks at ~490x (≈2.4·10⁴, the first token of each window), then 247 (~36x), 14
(~19x), 100 (~16x), 260, 230 and 59 (~10–11x), then a continuum from 9.4x down (308, ...); k = 3..9: 507 (70–130x),
260 and 247 (12–23x), then ≤ 6x; k = 1: nothing above 7.2x. Dropping the top one or two channels is what makes
dropout catastrophic (perplexity 10³–10⁶ at k = 12–20); protecting 1, 2 and 7 channels at k = 12, p = 0.3 gave
perplexity ~80, ~55 and ~50 (clean 27.7). ``tau = 10`` takes the whole 10x+ tier (≤ 7 channels on SmolLM2, none
on a random-weight model, whose peaks stay within ~2x of the median), and ``max_channels = 8`` bounds the overhead:
3 copies of 8 of 576 channels cost 2.8 % more bits, 16-bit BPSK instead of 8-bit QPSK for them 4.2 % more airtime.

**Repair values** (:func:`repair_values`): per split, the per-channel median of the calibration states at
positions >= 1 and of the position-0 state (the attention sink, over single-token inputs) — what the erasure-repair
rule of :class:`~edgesplit.channel.uep.ProtectedImpairment` writes in place of a lost element.

The result is an :class:`OutlierTable`, saved as JSON beside a profile (``outliers.json``) with the model, the
calibration corpus and token count, the rule and, per split, the channels with their peaks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgesplit.channel.uep import RepairValues
from edgesplit.models import LoadedModel
from edgesplit.quality.windows import batch_windows, make_windows

FORMAT = "edgesplit-outlier-channels"
"""The ``format`` field of an outlier table's JSON."""
FORMAT_VERSION = 1
"""The only version of that JSON this module writes and reads."""


@dataclass(frozen=True)
class OutlierRule:
    """Which channels count as outliers (see the module docstring for the measured defaults)."""

    tau: float = 10.0
    """Threshold on ``peak[c] / median over channels of peak``; > 1."""
    max_channels: int = 8
    """Most channels flagged per split (the largest peaks win); >= 1."""

    def __post_init__(self) -> None:
        if isinstance(self.tau, bool) or not isinstance(self.tau, int | float) or not (math.isfinite(self.tau)
                                                                                       and self.tau > 1.0):
            raise ValueError(f"tau must be a finite number > 1, got {self.tau!r}")
        if isinstance(self.max_channels, bool) or not isinstance(self.max_channels, int) or self.max_channels < 1:
            raise ValueError(f"max_channels must be an int >= 1, got {self.max_channels!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the statistic spelled out."""
        return {"statistic": "max_abs_over_tokens", "reference": "median_over_channels", "tau": float(self.tau),
                "max_channels": self.max_channels}


@dataclass(frozen=True)
class OutlierChannel:
    """One flagged channel at one split."""

    channel: int
    """Index in the hidden dimension."""
    peak_abs: float
    """Largest |value| over the calibration tokens."""
    ratio: float
    """``peak_abs`` over the split's median channel peak."""


@dataclass
class OutlierTable:
    """Outlier channels per split, with what they were measured on."""

    model: str
    """Model name as loaded."""
    hidden_size: int
    """Width of the hidden state."""
    num_layers: int
    """Decoder layers L."""
    corpus: str
    """Calibration text (a corpus name)."""
    calibration_tokens: int
    """Tokens in the calibration pass."""
    context: int
    """Window length of the calibration pass, in tokens."""
    rule: OutlierRule = field(default_factory=OutlierRule)
    """The rule that flagged the channels."""
    splits: dict[int, tuple[OutlierChannel, ...]] = field(default_factory=dict)
    """Per split k: the flagged channels, largest peak first (empty: nothing to protect)."""
    median_peak_abs: dict[int, float] = field(default_factory=dict)
    """Per split k: the median over channels of the channel peaks (the rule's reference)."""

    def channels(self, k: int) -> tuple[int, ...]:
        """The flagged channel indices at split ``k``; ValueError if ``k`` was not calibrated."""
        if k not in self.splits:
            raise ValueError(f"split {k} is not in the outlier table (calibrated: {sorted(self.splits)})")
        return tuple(c.channel for c in self.splits[k])

    def channels_by_split(self) -> dict[int, tuple[int, ...]]:
        """``{k: indices}``, the form :class:`~edgesplit.channel.uep.ProtectedImpairment` takes."""
        return {k: self.channels(k) for k in sorted(self.splits)}

    def to_json(self) -> dict[str, Any]:
        """The JSON object (split keys as strings)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "model": self.model, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers,
                "calibration": {"corpus": self.corpus, "tokens": self.calibration_tokens, "context": self.context},
                "rule": self.rule.to_dict(),
                "splits": {str(k): {"median_peak_abs": self.median_peak_abs.get(k, math.nan),
                                    "channels": [vars(c) for c in self.splits[k]]} for k in sorted(self.splits)}}

    def save(self, path: str | Path) -> Path:
        """Write the JSON to ``path`` (e.g. ``runs/profile/outliers.json``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, obj: Any) -> OutlierTable:
        """Parse and validate :meth:`to_json` output; ValueError says what is wrong."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("version") != FORMAT_VERSION:
            raise ValueError(f"not an outlier table: expected format {FORMAT!r} version {FORMAT_VERSION}")
        try:
            rule = OutlierRule(tau=obj["rule"]["tau"], max_channels=obj["rule"]["max_channels"])
            cal, hidden = obj["calibration"], int(obj["hidden_size"])
            splits, medians = {}, {}
            for key, entry in obj["splits"].items():
                k = int(key)
                splits[k] = tuple(OutlierChannel(int(c["channel"]), float(c["peak_abs"]), float(c["ratio"]))
                                  for c in entry["channels"])
                medians[k] = float(entry["median_peak_abs"])
                if any(not 0 <= c.channel < hidden for c in splits[k]):
                    raise ValueError(f"split {k} lists a channel outside [0, {hidden})")
            return cls(model=str(obj["model"]), hidden_size=hidden, num_layers=int(obj["num_layers"]),
                       corpus=str(cal["corpus"]), calibration_tokens=int(cal["tokens"]), context=int(cal["context"]),
                       rule=rule, splits=splits, median_peak_abs=medians)
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"malformed outlier table: {err!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> OutlierTable:
        """Read a table written by :meth:`save`."""
        return cls.from_json(json.loads(Path(path).read_text()))


def select_outliers(peaks: torch.Tensor, rule: OutlierRule) -> tuple[tuple[OutlierChannel, ...], float]:
    """(flagged channels, largest first; the median peak) for one split's per-channel peaks ``[hidden]``."""
    if peaks.ndim != 1 or peaks.numel() == 0:
        raise ValueError(f"peaks must be a non-empty 1-D tensor [hidden], got shape {tuple(peaks.shape)}")
    peaks = peaks.double()
    median = float(peaks.median())
    if not median > 0:  # an all-zero state has no outliers; neither does one with NaNs
        return (), median
    order = torch.argsort(peaks, descending=True, stable=True)[:rule.max_channels]
    flagged = tuple(OutlierChannel(int(c), float(peaks[c]), float(peaks[c]) / median) for c in order
                    if float(peaks[c]) > rule.tau * median)
    return flagged, median


def _check_splits(splits: tuple[int, ...] | None, num_layers: int) -> tuple[int, ...]:
    chosen = tuple(range(1, num_layers)) if splits is None else tuple(sorted(set(splits)))
    if not chosen or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < num_layers for k in chosen):
        raise ValueError(f"splits must be ints in 1..{num_layers - 1} (where a hidden state crosses the link), "
                         f"got {splits!r}")
    return chosen


def _split_states(model: LoadedModel, ids: torch.Tensor, chosen: tuple[int, ...]):
    """Yield ``(k, hidden state entering layer k)`` of a batch ``ids`` ``[B, T]`` for each split in ``chosen``."""
    adapter = model.adapter
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    hidden = adapter.embed_tokens(ids, positions)
    inputs = adapter.prepare(hidden, None, positions, None, 0, adapter.num_layers)
    for index in range(max(chosen)):
        hidden = adapter.run_layers(hidden, index, index + 1, inputs, None)
        if index + 1 in chosen:
            yield index + 1, hidden.detach().float()


@torch.inference_mode()
def channel_peaks(model: LoadedModel, token_ids: torch.Tensor, splits: tuple[int, ...] | None = None, *,
                  context: int = 256, batch_size: int = 2) -> dict[int, torch.Tensor]:
    """Per split k: ``[hidden]`` float32 max |x| over the calibration tokens of the state entering layer k.

    One forward over ``token_ids`` (1-D) in windows of ``context`` tokens, layer by layer (the ops of
    :class:`~edgesplit.split.DeviceHead`); only layers up to the last requested split run.
    """
    if token_ids.ndim != 1:
        raise ValueError(f"token_ids must be a 1-D stream, got shape {tuple(token_ids.shape)}")
    chosen = _check_splits(splits, model.num_layers)
    peaks = {k: torch.zeros(model.hidden_size) for k in chosen}
    for batch in batch_windows(make_windows(int(token_ids.numel()), context), batch_size):
        ids = torch.stack([token_ids[w.begin:w.end] for w in batch]).to(model.model.device)
        for k, hidden in _split_states(model, ids, chosen):
            peaks[k] = torch.maximum(peaks[k], hidden.abs().amax(dim=tuple(range(hidden.ndim - 1))).cpu())
    return peaks


@torch.inference_mode()
def repair_values(model: LoadedModel, token_ids: torch.Tensor, splits: tuple[int, ...] | None = None, *,
                  context: int = 256, batch_size: int = 2, sink_tokens: int = 64,
                  corpus: str = "unnamed") -> RepairValues:
    """The erasure-repair values (:class:`~edgesplit.channel.uep.RepairValues`) of ``model`` on ``token_ids``.

    ``body[k]``: per-channel median of the states entering layer k over every calibration token at positions >= 1
    (windows of ``context``); ``sink[k]``: per-channel median of the state at position 0 over the first
    ``sink_tokens`` distinct calibration tokens, each run alone (position 0 sees only its own token, so a one-token
    forward is exact). The edge runs this itself: the values cost no bits on the link.
    """
    if token_ids.ndim != 1 or token_ids.numel() < 2:
        raise ValueError(f"token_ids must be a 1-D stream of >= 2 tokens, got shape {tuple(token_ids.shape)}")
    if isinstance(sink_tokens, bool) or not isinstance(sink_tokens, int) or sink_tokens < 1:
        raise ValueError(f"sink_tokens must be an int >= 1, got {sink_tokens!r}")
    chosen, device = _check_splits(splits, model.num_layers), model.model.device
    rows: dict[int, list[torch.Tensor]] = {k: [] for k in chosen}
    for batch in batch_windows(make_windows(int(token_ids.numel()), context), batch_size):
        ids = torch.stack([token_ids[w.begin:w.end] for w in batch]).to(device)
        for k, hidden in _split_states(model, ids, chosen):
            rows[k].append(hidden[:, 1:].reshape(-1, hidden.shape[-1]).cpu())
    firsts = list(dict.fromkeys(int(t) for t in token_ids))[:sink_tokens]
    sink = {k: h[:, 0].cpu().median(0).values for k, h in
            _split_states(model, torch.tensor(firsts, device=device)[:, None], chosen)}
    body = {k: torch.cat(rows[k]).median(0).values for k in chosen}
    return RepairValues(body=body, sink=sink, source=f"{corpus}, {int(token_ids.numel())} tokens, "
                                                      f"{len(firsts)} sink tokens")


def detect_outliers(model: LoadedModel, token_ids: torch.Tensor, rule: OutlierRule | None = None, *,
                    splits: tuple[int, ...] | None = None, context: int = 256, batch_size: int = 2,
                    corpus: str = "unnamed") -> OutlierTable:
    """The outlier table of ``model`` on calibration ``token_ids`` (every split 1..L-1 unless ``splits``)."""
    rule = rule or OutlierRule()
    peaks = channel_peaks(model, token_ids, splits, context=context, batch_size=batch_size)
    table = OutlierTable(model=model.name, hidden_size=model.hidden_size, num_layers=model.num_layers, corpus=corpus,
                         calibration_tokens=int(token_ids.numel()), context=context, rule=rule)
    for k, peak in peaks.items():
        table.splits[k], table.median_peak_abs[k] = select_outliers(peak, rule)
    return table
