"""Quality of a split under an impaired link: perplexity, KL to the clean distribution, top-1 agreement.

For every window the UE head runs once; the tail runs on the clean hidden state (the unsplit model's output,
exactly) and on the impaired one, and the two next-token distributions are compared on the scored targets only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from edgesplit.models import LoadedModel
from edgesplit.quality.windows import Window, batch_windows, make_windows, scored_slice
from edgesplit.split import DeviceHead, EdgeTail

Link = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class QualityResult:
    """Quality of one split under one link over a token stream."""

    perplexity: float
    """exp(mean NLL) of the impaired split on the scored targets."""
    clean_perplexity: float
    """exp(mean NLL) of the unsplit model on the same targets."""
    kl_nats: float
    """Mean KL(clean ‖ impaired) of the next-token distributions, in nats per scored token."""
    top1_agreement: float
    """Fraction of scored positions where the impaired argmax equals the clean argmax."""
    scored_tokens: int
    """Exact number of targets scored."""
    nll_sum: float
    """Sum of impaired NLLs (nats), so results can be pooled exactly."""
    clean_nll_sum: float
    """Sum of clean NLLs (nats)."""

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for parquet rows and JSON."""
        return asdict(self)


@dataclass
class _Accumulator:
    nll: float = 0.0
    clean_nll: float = 0.0
    kl: float = 0.0
    agree: int = 0
    count: int = 0

    def add(self, clean: torch.Tensor, noisy: torch.Tensor, targets: torch.Tensor) -> None:
        clean_logp = F.log_softmax(clean.float(), dim=-1)
        noisy_logp = F.log_softmax(noisy.float(), dim=-1)
        self.clean_nll -= clean_logp.gather(-1, targets[:, None]).sum().item()
        self.nll -= noisy_logp.gather(-1, targets[:, None]).sum().item()
        self.kl += F.kl_div(noisy_logp, clean_logp, log_target=True, reduction="sum").item()
        self.agree += int((clean.argmax(-1) == noisy.argmax(-1)).sum())
        self.count += int(targets.numel())

    def result(self) -> QualityResult:
        n = self.count
        return QualityResult(perplexity=math.exp(self.nll / n), clean_perplexity=math.exp(self.clean_nll / n),
                             kl_nats=self.kl / n, top1_agreement=self.agree / n, scored_tokens=n,
                             nll_sum=self.nll, clean_nll_sum=self.clean_nll)


def _scored(logits: torch.Tensor, ids: torch.Tensor, batch: list[Window]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten the logits/targets of the scored positions of a batch of windows."""
    rows_logits, rows_targets = [], []
    for row, window in enumerate(batch):
        rows_logits.append(logits[row, scored_slice(window)])
        rows_targets.append(ids[window.first_target:window.end])
    return torch.cat(rows_logits), torch.cat(rows_targets)


@torch.inference_mode()
def evaluate_split(model: LoadedModel, token_ids: torch.Tensor, k: int, link: Link | None = None, *,
                   context: int = 512, stride: int | None = None, batch_size: int = 4,
                   progress: bool = False) -> QualityResult:
    """Perplexity, KL and top-1 agreement of split ``k`` with ``link`` applied to what crosses it.

    ``link`` maps the head's payload to what the edge receives (``None``: ideal channel). Nothing crosses the link
    at ``k = L``, and at ``k = 0`` token ids cross losslessly, so the link is applied only for ``0 < k < L``.
    """
    if token_ids.ndim != 1:
        raise ValueError(f"token_ids must be a 1-D stream, got shape {tuple(token_ids.shape)}")
    head, tail = DeviceHead(model, k), EdgeTail(model, k)
    impaired = link is not None and head.sends == "hidden"
    windows = make_windows(int(token_ids.numel()), context, stride)
    acc = _Accumulator()
    for batch in tqdm(batch_windows(windows, batch_size), desc=f"quality k={k}", disable=not progress, leave=False):
        ids = torch.stack([token_ids[w.begin:w.end] for w in batch])
        payload = head(ids)
        clean = tail(payload)
        noisy = tail(link(payload)) if impaired else clean
        clean_scored, targets = _scored(clean, token_ids, batch)
        noisy_scored, _ = _scored(noisy, token_ids, batch)
        acc.add(clean_scored, noisy_scored, targets)
    return acc.result()
