"""The profiler's engine: one clean forward per window, then only the tail from ``k`` for every noisy cell.

:func:`prepare_windows` runs the unsplit model once over every evaluation window and keeps (a) the hidden state at
every layer boundary ``0..L`` and (b) the clean next-token log-probabilities, targets and argmax at the scored
positions. :func:`evaluate_cells` then prices each noisy cell with one :class:`~edgesplit.split.EdgeTail` run from
``k`` over the impaired boundary state (stateless over the window, exactly as
:func:`edgesplit.quality.evaluate_split` does), with the noisy copies of one window for several cells of the same
``k`` (seeds, settings) stacked along the batch dimension. Lossless cells (``k = 0``: token ids cross; ``k = L``:
nothing crosses; an ideal float32 link) cost no compute: their quality is the clean model's.

Memory: ``windows · (L + 1) · context · hidden`` floats for the boundary states plus ``scored tokens · vocab``
floats for the clean log-probabilities (SmolLM2-135M, 2,048 tokens: ~150 MB + ~400 MB).

The numbers equal ``evaluate_split(model, ids, k, WindowSeededLink(cell, windows), batch_size=1)`` bit for bit
(the batched tail is row-invariant on CPU; the tests check it), and agree to float rounding for other batch sizes.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from edgesplit.link import LinkLog
from edgesplit.models import LoadedModel
from edgesplit.profile.cells import ProfileCell, impair_window
from edgesplit.quality import QualityResult, Window, make_windows
from edgesplit.quality.windows import batch_windows, scored_slice
from edgesplit.split import EdgeTail


@dataclass
class CleanWindow:
    """What the clean pass keeps for one window."""

    window: Window
    """The window."""
    hidden: torch.Tensor
    """``[L + 1, tokens, hidden]`` float32: the state entering layer 0 (index 0) … after layer L-1 (index L)."""
    clean_logp: torch.Tensor
    """``[scored, vocab]`` clean next-token log-probabilities at the scored positions."""
    clean_argmax: torch.Tensor
    """``[scored]`` argmax of the clean logits."""
    targets: torch.Tensor
    """``[scored]`` the scored target token ids."""
    clean_nll: float
    """Sum of the clean NLLs of this window's targets (nats)."""


@dataclass
class PreparedWindows:
    """The clean pass over a token stream: every window's boundary states and clean scored distributions."""

    windows: list[CleanWindow]
    """One entry per evaluation window, in order."""
    clean_pass_s: float = 0.0
    """Wall time of the clean pass."""

    @property
    def scored_tokens(self) -> int:
        """Targets scored over all windows."""
        return sum(int(w.targets.numel()) for w in self.windows)

    @property
    def clean_nll_sum(self) -> float:
        """Sum of clean NLLs over all windows (nats)."""
        return sum(w.clean_nll for w in self.windows)

    def to_numpy(self) -> dict[str, list]:
        """Plain numpy arrays (for a shared object store) — inverse of :meth:`from_numpy`."""
        rows = [(w.window.begin, w.window.end, w.window.first_target, w.clean_nll) for w in self.windows]
        return {"rows": rows, "hidden": [w.hidden.numpy() for w in self.windows],
                "clean_logp": [w.clean_logp.numpy() for w in self.windows],
                "clean_argmax": [w.clean_argmax.numpy() for w in self.windows],
                "targets": [w.targets.numpy() for w in self.windows]}

    @classmethod
    def from_numpy(cls, data: dict[str, list]) -> PreparedWindows:
        """Rebuild from :meth:`to_numpy` output without copying (read-only arrays are only ever read)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            windows = [CleanWindow(window=Window(begin, end, first), hidden=torch.from_numpy(h),
                                   clean_logp=torch.from_numpy(lp), clean_argmax=torch.from_numpy(am),
                                   targets=torch.from_numpy(t), clean_nll=nll)
                       for (begin, end, first, nll), h, lp, am, t in zip(
                           data["rows"], data["hidden"], data["clean_logp"], data["clean_argmax"], data["targets"],
                           strict=True)]
        return cls(windows=windows)


@dataclass
class CellResult:
    """The quality of one cell, with what its link saw and what it cost to compute."""

    cell: ProfileCell
    """The cell."""
    quality: QualityResult
    """Perplexity, KL, top-1 agreement over all windows."""
    wall_s: float
    """Wall time of the cell's tails (a batched group's time split evenly over its cells)."""
    link_mse: float = 0.0
    """Mean squared error the link added, averaged over windows (0 for lossless cells)."""
    link_ber: float = math.nan
    """Measured bit error rate (digital only; NaN otherwise)."""
    link_stats: dict[str, float] = field(default_factory=dict)
    """The coded link's measured figures over the cell's packets (:func:`coded_link_stats`; empty otherwise)."""


CODED_STATS = ("nr_mean_mcs", "nr_code_rate", "nr_erased_tb_fraction", "nr_transmissions_per_tb", "nr_erased_fraction")
"""What :func:`coded_link_stats` reports (the profiler's measured coded-link columns)."""


def coded_link_stats(log: LinkLog) -> dict[str, float]:
    """Mean MCS and code rate over the packets of a coded link, its erased-TB fraction and transmissions per TB
    (over all TBs) and the mean fraction of erased elements; empty when no packet came through a coded link."""
    packets = [stats for stats in log.stats if "mcs" in stats and "num_tbs" in stats]
    if not packets:
        return {}
    tbs = sum(stats["num_tbs"] for stats in packets)

    def per_tb(key: str) -> float:
        return sum(stats[key] for stats in packets) / tbs if tbs else math.nan

    return {"nr_mean_mcs": log.mean_stat("mcs"), "nr_code_rate": log.mean_stat("code_rate"),
            "nr_erased_tb_fraction": per_tb("failed_tbs"), "nr_transmissions_per_tb": per_tb("transmissions"),
            "nr_erased_fraction": log.mean_stat("erased_fraction")}


def _boundaries(model: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """``[L + 1, batch, tokens, hidden]`` states at every layer boundary (same ops as DeviceHead, layer by layer)."""
    adapter = model.adapter
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    hidden = adapter.embed_tokens(ids, positions)
    inputs = adapter.prepare(hidden, None, positions, None, 0, adapter.num_layers)
    states = [hidden]
    for index in range(adapter.num_layers):
        states.append(adapter.run_layers(states[-1], index, index + 1, inputs, None))
    return torch.stack(states)


@torch.inference_mode()
def prepare_windows(model: LoadedModel, token_ids: torch.Tensor, context: int, stride: int | None = None,
                    batch_size: int = 4) -> PreparedWindows:
    """The clean pass: one forward per window (``batch_size`` windows per call) keeping every boundary state.

    The forwards run on the model's device; what is kept lives in host memory (it is what the link impairs)."""
    if token_ids.ndim != 1:
        raise ValueError(f"token_ids must be a 1-D stream, got shape {tuple(token_ids.shape)}")
    start = time.perf_counter()
    prepared: dict[Window, CleanWindow] = {}
    for batch in batch_windows(make_windows(int(token_ids.numel()), context, stride), batch_size):
        ids = torch.stack([token_ids[w.begin:w.end] for w in batch]).to(model.model.device)
        states = _boundaries(model, ids)
        logits = model.adapter.final_norm_and_head(states[-1])
        for row, window in enumerate(batch):
            scored = logits[row, scored_slice(window)].float()
            logp = F.log_softmax(scored, dim=-1)
            targets = token_ids[window.first_target:window.end].long()
            nll = -logp.gather(-1, targets[:, None].to(logp.device)).sum().item()
            prepared[window] = CleanWindow(window=window, hidden=states[:, row].float().to("cpu", copy=True),
                                           clean_logp=logp.cpu(), clean_argmax=scored.argmax(-1).cpu(),
                                           targets=targets, clean_nll=nll)
    ordered = [prepared[w] for w in sorted(prepared, key=lambda w: w.begin)]
    return PreparedWindows(windows=ordered, clean_pass_s=time.perf_counter() - start)


@dataclass
class _Sums:
    nll: float = 0.0
    kl: float = 0.0
    agree: int = 0
    log: LinkLog = field(default_factory=LinkLog)

    def add(self, logits: torch.Tensor, clean: CleanWindow) -> None:
        noisy_logp = F.log_softmax(logits.float(), dim=-1)
        self.nll -= noisy_logp.gather(-1, clean.targets[:, None]).sum().item()
        self.kl += F.kl_div(noisy_logp, clean.clean_logp, log_target=True, reduction="sum").item()
        self.agree += int((clean.clean_argmax == logits.argmax(-1)).sum())


def _on_device(clean: CleanWindow, device: torch.device) -> CleanWindow:
    """``clean`` with the tensors the scores compare against on ``device`` (itself on CPU: no copy)."""
    if device.type == "cpu":
        return clean
    return CleanWindow(window=clean.window, hidden=clean.hidden, clean_logp=clean.clean_logp.to(device),
                       clean_argmax=clean.clean_argmax.to(device), targets=clean.targets.to(device),
                       clean_nll=clean.clean_nll)


def _quality(prepared: PreparedWindows, nll: float, kl: float, agree: int) -> QualityResult:
    n, clean_nll = prepared.scored_tokens, prepared.clean_nll_sum
    return QualityResult(perplexity=math.exp(nll / n), clean_perplexity=math.exp(clean_nll / n), kl_nats=kl / n,
                         top1_agreement=agree / n, scored_tokens=n, nll_sum=nll, clean_nll_sum=clean_nll)


def _clean_result(cell: ProfileCell, prepared: PreparedWindows) -> CellResult:
    quality = _quality(prepared, prepared.clean_nll_sum, 0.0, prepared.scored_tokens)
    return CellResult(cell=cell, quality=quality, wall_s=0.0)


@torch.inference_mode()
def _noisy_group(model: LoadedModel, prepared: PreparedWindows, cells: Sequence[ProfileCell]) -> list[CellResult]:
    """Cells sharing ``k``: for each window, their noisy copies stacked along the batch, one tail call."""
    k = cells[0].k
    tail, sums = EdgeTail(model, k), [_Sums() for _ in cells]
    start = time.perf_counter()
    for clean in prepared.windows:
        payload = clean.hidden[k].unsqueeze(0)
        rows = torch.cat([impair_window(cell, clean.window, payload, s.log) for cell, s in zip(cells, sums,
                                                                                               strict=True)])
        logits = tail(rows)[:, scored_slice(clean.window)]
        scored = _on_device(clean, logits.device)
        for row, acc in enumerate(sums):
            acc.add(logits[row], scored)
    wall = (time.perf_counter() - start) / len(cells)
    return [CellResult(cell=cell, quality=_quality(prepared, s.nll, s.kl, s.agree), wall_s=wall,
                       link_mse=s.log.mean_stat("mse") or 0.0,
                       link_ber=_or_nan(s.log.mean_stat("bit_error_rate")), link_stats=coded_link_stats(s.log))
            for cell, s in zip(cells, sums, strict=True)]


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def group_cells(cells: Sequence[ProfileCell], num_layers: int, batch_size: int) -> list[list[ProfileCell]]:
    """Consecutive cells with the same ``k`` and losslessness, at most ``batch_size`` per noisy group.

    A group is the unit of work (one batched tail per window) and of saving: its rows are written together.
    """
    groups: list[list[ProfileCell]] = []
    for cell in cells:
        last = groups[-1] if groups else None
        same = last is not None and last[0].k == cell.k and last[0].lossless(num_layers) == cell.lossless(num_layers)
        if same and (cell.lossless(num_layers) or len(last) < batch_size):
            last.append(cell)
        else:
            groups.append([cell])
    return groups


def evaluate_group(model: LoadedModel, prepared: PreparedWindows, cells: Sequence[ProfileCell]) -> list[CellResult]:
    """Quality of one group from :func:`group_cells` (all lossless, or all noisy with one ``k``)."""
    if not cells:
        return []
    if len({cell.k for cell in cells}) != 1:
        raise ValueError("a group of cells must share one split k")
    if cells[0].lossless(model.num_layers):
        return [_clean_result(cell, prepared) for cell in cells]
    return _noisy_group(model, prepared, cells)


def evaluate_cells(model: LoadedModel, prepared: PreparedWindows, cells: Sequence[ProfileCell],
                   batch_size: int = 4) -> Iterator[list[CellResult]]:
    """Evaluate ``cells`` group by group (see :func:`group_cells`), yielding each group's results when done."""
    for group in group_cells(cells, model.num_layers, batch_size):
        yield evaluate_group(model, prepared, group)

