"""The configuration of one profile run: model, channel grid, splits, corpus window, seeds, cost presets, output.

A run sweeps the cells ``split k × channel setting × seed``. The channel grid depends on the kind:

- ``ideal``: one setting (lossless float32 link, unless ``encoding`` is lossy);
- ``dropout``: one setting per ``p`` (the reference paper's channel); ``snr_db`` must hold one value, which only
  prices the uplink in the cost columns;
- ``awgn``: one setting per ``snr_db``;
- ``digital``: ``bits × modulations × snr_db``;
- ``coded``: ``bits × snr_db`` over the 5G NR link (:mod:`edgesplit.channel.nr`) with the run's fixed NR options
  (``mcs_table``, ``target_bler``, ``harq_transmissions``, ``coded_path``, ``coded_channel``; they join the run's
  identity). The NR carrier is the link preset's bandwidth (``5g-nr-20mhz``: 20 MHz at 30 kHz SCS), so the
  impairment and the cost columns (priced by the NR cost model, :mod:`edgesplit.cost.coded_uplink`) see the same
  carrier.

Reference paper (arXiv 2406.02616): its code zeroes elements of the output of decoder layer index ``n`` (counting
from 0), i.e. the state after ``n + 1`` layers, which is what crosses our link at split ``k = n + 1``; its sweep
``n = 1..9`` is ``k = 2..10`` here, and its p grid 0.02..0.30 step 0.04 is this config's default ``p``. Our dropout
is the same plain mask without 1/(1-p) rescaling (:mod:`edgesplit.channel.dropout`).

``fading="rayleigh"`` draws one block-fading power gain ``|h|² ~ Exp(1)`` per seed (see
:mod:`edgesplit.profile.cells`); it lowers the instantaneous SNR the impairment sees and the uplink rate the cost
model charges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgesplit.channel import MODULATIONS
from edgesplit.cost import get_device, get_edge, get_link
from edgesplit.models.device import DTYPES, check_device_name
from edgesplit.scenario import CHANNEL_KINDS, CODED_DEFAULTS, ENCODING_BITS, ChannelSetting

FADINGS = ("none", "rayleigh")
DEFAULT_SNR_DB = {"awgn": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0), "digital": (0.0, 5.0, 10.0, 15.0, 20.0),
                  "coded": tuple(float(s) for s in range(0, 31, 2)), "dropout": (30.0,), "ideal": (30.0,)}
"""SNR grid per channel kind when none is given (dropout/ideal: the SNR that prices the uplink; coded: every 2 dB,
about the spacing of the MCS steps, so the cost columns show link adaptation's staircase)."""
IDENTITY_FIELDS = ("model", "corpus", "tokens", "context", "stride", "channel", "fading", "encoding", "device", "edge",
                   "link", "dtype")
"""Fields that must match for two runs to share an output directory (the grids, splits and seeds may grow; the
torch device may change: float32 on CPU and on CUDA differ by rounding only, a dtype changes the numbers)."""
CODED_FIELDS = ("mcs_table", "target_bler", "harq_transmissions", "coded_path", "coded_channel")
"""The coded link's fixed options: part of the identity of a coded run (only: other runs' identities are as before)."""


@dataclass(frozen=True)
class ProfileConfig:
    """Everything that defines a profile run (validated on construction)."""

    out: Path
    """Output directory (``cells.parquet``, ``config.json``, ``summary.csv``, PNG plots)."""
    model: str = "smollm2-135m"
    """Built-in model name, local directory or hub id."""
    channel: str = "awgn"
    """Channel kind: ideal, dropout, awgn, digital or coded."""
    snr_db: tuple[float, ...] | None = None
    """Mean SNR grid in dB (awgn, digital); one value pricing the uplink for dropout/ideal. None: per-kind default."""
    p: tuple[float, ...] = (0.02, 0.06, 0.10, 0.14, 0.18, 0.22, 0.26, 0.30)
    """Dropout probability grid (dropout only), each in [0, 1)."""
    bits: tuple[int, ...] = (8,)
    """Quantiser bits grid (digital and coded), each in 1..16."""
    modulations: tuple[str, ...] = ("qpsk",)
    """Modulation grid (digital only)."""
    mcs_table: int = 1
    """Coded only: TS 38.214 MCS table 1 (up to 64QAM) or 2 (up to 256QAM)."""
    target_bler: float = 0.1
    """Coded only: link adaptation's first-transmission TB error rate target, in (0, 1)."""
    harq_transmissions: int = 4
    """Coded only: HARQ transmissions per TB at most (1 = no HARQ)."""
    coded_path: str = "abstracted"
    """Coded only: ``abstracted`` (BLER tables, fast) or ``bit_true`` (Sionna's LDPC chain, slow)."""
    coded_channel: str = "awgn"
    """Coded only: per-transmission channel, ``awgn``, ``rayleigh`` (flat per slot) or ``tdl`` (TR 38.901 TDL)."""
    fading: str = "none"
    """Block fading per seed: none or rayleigh."""
    splits: tuple[int, ...] | None = None
    """Split points to profile; None means every k in 0..L."""
    corpus: str = "default"
    """Corpus spec for :func:`edgesplit.quality.load_corpus` (default, wikitext2 or a file path)."""
    tokens: int = 2048
    """Corpus tokens evaluated (the first ``tokens`` of the corpus)."""
    context: int = 512
    """Evaluation window length in tokens (never the model's max_length)."""
    stride: int | None = None
    """Window stride in tokens (None: equal to context, non-overlapping windows)."""
    seeds: int = 3
    """Number of seeds per (k, setting): seeds first_seed .. first_seed + seeds - 1."""
    first_seed: int = 0
    """The first seed."""
    encoding: str = "float32"
    """Packet encoding of hidden states for the analog kinds (float32 is lossless)."""
    device: str = "phone-soc"
    """Device (UE) preset for the cost columns."""
    edge: str = "a100"
    """Edge-server preset for the cost columns."""
    link: str = "5g-nr-20mhz"
    """Radio-link preset for the cost columns."""
    batch_size: int = 4
    """Rows (windows in the clean pass; noisy copies of one window in the tails) per forward call."""
    workers: int = 0
    """Ray workers to fan cells out to (0: evaluate in this process)."""
    torch_device: str = "cpu"
    """Torch device of the model: cpu, cuda or cuda:N (the command resolves ``auto``; Ray workers run on CPU)."""
    dtype: str = "float32"
    """Weight dtype: float32, bfloat16 or float16 (the command resolves ``auto``)."""
    allow_cpu_half: bool = False
    """Accept float16/bfloat16 on CPU (refused otherwise, see :mod:`edgesplit.models.device`)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form notes recorded in config.json (e.g. the command line)."""

    def __post_init__(self) -> None:
        if self.channel not in CHANNEL_KINDS:
            raise ValueError(f"unknown channel kind {self.channel!r}; accepted: {', '.join(CHANNEL_KINDS)}")
        if self.fading not in FADINGS:
            raise ValueError(f"unknown fading {self.fading!r}; accepted: {', '.join(FADINGS)}")
        if self.encoding not in ENCODING_BITS:
            raise ValueError(f"unknown encoding {self.encoding!r}; accepted: {', '.join(ENCODING_BITS)}")
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "snr_db", tuple(self.snr_db) if self.snr_db is not None
                           else DEFAULT_SNR_DB[self.channel])
        self._check_grids()
        self._check_window()
        self._check_counts()
        for lookup, name in ((get_device, self.device), (get_edge, self.edge), (get_link, self.link)):
            lookup(name)
        self._check_torch()
        self.settings()  # every setting of the grid must be a valid ChannelSetting

    def _check_grids(self) -> None:
        grids = {"snr_db": self.snr_db, "p": self.p, "bits": self.bits, "modulations": self.modulations}
        used = {"ideal": ("snr_db",), "dropout": ("snr_db", "p"), "awgn": ("snr_db",),
                "digital": ("snr_db", "bits", "modulations"), "coded": ("snr_db", "bits")}[self.channel]
        for name in used:
            if len(grids[name]) == 0:
                raise ValueError(f"the {name} grid is empty; give at least one value")
        if self.channel in ("ideal", "dropout") and len(self.snr_db) != 1:
            raise ValueError(f"channel {self.channel!r} has no SNR axis: give one snr_db value (it prices the "
                             f"uplink), got {len(self.snr_db)}")
        if any(not math.isfinite(v) for v in self.snr_db):
            raise ValueError(f"snr_db values must be finite, got {self.snr_db}")
        bad = [m for m in self.modulations if m not in MODULATIONS]
        if bad:
            raise ValueError(f"unknown modulation {bad[0]!r}; accepted: {', '.join(MODULATIONS)}")
        if self.channel != "coded":
            changed = [name for name in CODED_FIELDS if getattr(self, name) != CODED_DEFAULTS[name]]
            if changed:
                raise ValueError(f"{', '.join(changed)} applies to channel 'coded' only (this run is "
                                 f"{self.channel!r}); leave the default or use --channel coded")

    def _check_window(self) -> None:
        if self.tokens < 2:
            raise ValueError(f"tokens must be at least 2, got {self.tokens}")
        if self.context < 2:
            raise ValueError(f"context must be at least 2 tokens, got {self.context}")
        if self.stride is not None and not 1 <= self.stride <= self.context:
            raise ValueError(f"stride must be in 1..context ({self.context}), got {self.stride}")

    def _check_counts(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if self.first_seed < 0:
            raise ValueError(f"first_seed must be >= 0, got {self.first_seed}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.splits is not None and (not self.splits or any(k < 0 for k in self.splits)):
            raise ValueError(f"splits must be non-empty and >= 0, got {self.splits}")

    def _check_torch(self) -> None:
        device = check_device_name(self.torch_device)
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; accepted: {', '.join(DTYPES)}")
        if device == "auto":
            raise ValueError("torch_device must be resolved (cpu, cuda or cuda:N), got 'auto'")
        if self.workers > 0 and device != "cpu":
            raise ValueError(f"workers={self.workers} evaluates on Ray CPU workers; use torch device cpu with "
                             f"workers, or workers 0 to evaluate on {device} in this process")
        if device == "cpu" and self.dtype != "float32" and not self.allow_cpu_half:
            raise ValueError(f"dtype {self.dtype} on CPU is refused unless allowed (allow_cpu_half / "
                             f"--allow-cpu-half); use float32")

    def settings(self) -> list[ChannelSetting]:
        """The channel grid, in sweep order (nominal settings: no fading gain applied)."""
        common = {"encoding": self.encoding}
        if self.channel == "ideal":
            return [ChannelSetting("ideal", snr_db=self.snr_db[0], **common)]
        if self.channel == "dropout":
            return [ChannelSetting("dropout", snr_db=self.snr_db[0], p=p, **common) for p in self.p]
        if self.channel == "awgn":
            return [ChannelSetting("awgn", snr_db=s, **common) for s in self.snr_db]
        if self.channel == "coded":
            coded = {name: getattr(self, name) for name in CODED_FIELDS}
            return [ChannelSetting("coded", snr_db=s, bits=b, carrier_bandwidth_hz=get_link(self.link).bandwidth_hz,
                                   **coded, **common) for b in self.bits for s in self.snr_db]
        return [ChannelSetting("digital", snr_db=s, bits=b, modulation=m, **common)
                for b in self.bits for m in self.modulations for s in self.snr_db]

    def resolve_splits(self, num_layers: int) -> tuple[int, ...]:
        """The split points for an ``num_layers``-layer model; ValueError when one is out of 0..L."""
        if self.splits is None:
            return tuple(range(num_layers + 1))
        bad = [k for k in self.splits if not 0 <= k <= num_layers]
        if bad:
            raise ValueError(f"split k={bad[0]} is out of range: the model has {num_layers} layers, so k must be "
                             f"in 0..{num_layers}")
        return tuple(sorted(self.splits))

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The seeds of the run."""
        return tuple(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def effective_stride(self) -> int:
        """The window stride actually used."""
        return self.context if self.stride is None else self.stride

    def identity(self) -> dict[str, Any]:
        """The fields two runs must share to write into one output directory."""
        values = {name: getattr(self, name) for name in IDENTITY_FIELDS}
        values["stride"] = self.effective_stride
        if self.channel == "coded":
            values |= {name: getattr(self, name) for name in CODED_FIELDS}
        return values

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["out"] = str(self.out)
        data = {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileConfig:
        """Inverse of :meth:`to_dict` (unknown keys are rejected)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ProfileConfig field(s) {unknown}")
        tuples = {"snr_db", "p", "bits", "modulations", "splits"}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()})


__all__ = ["CODED_FIELDS", "DEFAULT_SNR_DB", "FADINGS", "IDENTITY_FIELDS", "ProfileConfig"]
