"""Profile cells (split ``k`` × channel setting × seed) and the seeding that makes every cell reproducible alone.

Seeding scheme (the contract that makes resumed, reordered and distributed runs give identical numbers):

- The noise a cell adds to one evaluation window is drawn by an :class:`~edgesplit.link.ImpairedLink` seeded with
  :func:`window_seed` ``(seed, k, setting, window)``: a hash of the cell's seed, its split, its nominal channel
  setting and the window's token span. It does not depend on which other cells run, in which order, in which
  process, or how windows are batched.
- With ``fading="rayleigh"`` the block gain ``|h|² ~ Exp(1)`` is :func:`fading_gain` ``(seed)``: one channel
  realisation per seed, shared by every split and setting of that seed (common random numbers across the grid).

:class:`WindowSeededLink` is the same per-window noise as a ``link`` callable for
:func:`edgesplit.quality.evaluate_split`, so a direct evaluation reproduces a profiled cell's draws exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np
import torch

from edgesplit.link import ImpairedLink, LinkLog
from edgesplit.quality import Window
from edgesplit.scenario import ChannelSetting

LOSSLESS_ENCODINGS = ("float32",)
"""Packet encodings that carry float32 hidden states bit-exactly."""


def _setting_key(setting: ChannelSetting) -> str:
    fields = setting.to_dict()
    fields.pop("fading_gain")  # the gain is a function of the seed, not part of the nominal setting
    return json.dumps(fields, sort_keys=True)


def window_seed(seed: int, k: int, setting: ChannelSetting, window: Window) -> int:
    """The 63-bit seed of the noise that cell ``(seed, k, setting)`` adds to ``window``."""
    text = f"edgesplit-profile|{seed}|{k}|{_setting_key(setting)}|{window.begin}|{window.end}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def fading_gain(seed: int, fading: str) -> float:
    """The block power gain ``|h|²`` of seed ``seed`` (1.0 without fading; Exp(1) draws for rayleigh)."""
    if fading == "none":
        return 1.0
    if fading == "rayleigh":
        return float(np.random.default_rng([int(seed), 0xFAD1]).exponential(1.0))
    raise ValueError(f"unknown fading {fading!r}; accepted: none, rayleigh")


@dataclass(frozen=True)
class ProfileCell:
    """One cell of the sweep."""

    k: int
    """Split point: the UE runs layers 0..k-1."""
    setting: ChannelSetting
    """Nominal channel setting (fading gain 1; see :attr:`channel`)."""
    seed: int
    """Seed of the cell's random draws."""
    fading: str = "none"
    """Block fading mode of the run: none or rayleigh."""

    @property
    def gain(self) -> float:
        """This seed's block fading gain."""
        return fading_gain(self.seed, self.fading)

    @property
    def channel(self) -> ChannelSetting:
        """The setting the link actually sees: the nominal one with this seed's fading gain."""
        return replace(self.setting, fading_gain=self.gain)

    @property
    def key(self) -> tuple[int, str, str, int]:
        """What identifies the cell in the output table: (k, setting label, fading, seed)."""
        return (self.k, self.setting.label, self.fading, self.seed)

    def lossless(self, num_layers: int) -> bool:
        """True when nothing lossy crosses the link, so quality equals the clean model's (no compute needed)."""
        if self.k in (0, num_layers):
            return True  # token ids cross losslessly (k = 0) or nothing crosses (k = L)
        return self.setting.kind == "ideal" and self.setting.encoding in LOSSLESS_ENCODINGS


def enumerate_cells(splits: tuple[int, ...], settings: list[ChannelSetting], seeds: tuple[int, ...],
                    fading: str = "none") -> list[ProfileCell]:
    """Every cell, ``k`` outermost (cells sharing ``k`` are batched together), then setting, then seed."""
    return [ProfileCell(k=k, setting=s, seed=seed, fading=fading) for k in splits for s in settings for seed in seeds]


def impair_window(cell: ProfileCell, window: Window, payload: torch.Tensor,
                  log: LinkLog | None = None) -> torch.Tensor:
    """What the edge receives for one window's ``[1, tokens, hidden]`` payload in ``cell`` (packet + channel)."""
    channel = cell.channel
    link = ImpairedLink(channel.impairment(), channel.state(), seed=window_seed(cell.seed, cell.k, cell.setting,
                                                                                window),
                        encoding=channel.encoding, session_id="profile", split_k=cell.k)
    received = link(payload)
    if log is not None:
        log.packets += link.log.packets
        log.frame_bytes += link.log.frame_bytes
        log.payload_bytes += link.log.payload_bytes
        log.tokens += link.log.tokens
        log.stats.extend(link.log.stats)
    return received


class WindowSeededLink:
    """A ``link`` for :func:`edgesplit.quality.evaluate_split` that adds exactly the profiler's noise.

    ``evaluate_split`` visits windows in order, a batch of rows at a time; this link impairs each row with the
    seed of the window it belongs to, so any ``batch_size`` gives the draws of :func:`impair_window`.
    """

    def __init__(self, cell: ProfileCell, windows: list[Window]) -> None:
        self.cell = cell
        self.windows = windows
        self.log = LinkLog()
        self._next = 0

    def __call__(self, payload: torch.Tensor) -> torch.Tensor:
        rows = []
        for row in range(payload.shape[0]):
            if self._next >= len(self.windows):
                raise ValueError(f"more payload rows than the {len(self.windows)} windows this link was built for")
            rows.append(impair_window(self.cell, self.windows[self._next], payload[row:row + 1], self.log))
            self._next += 1
        return torch.cat(rows)
