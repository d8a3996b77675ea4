"""Next-token choice per session: greedy, or temperature / top-p sampling from the session's own seeded generator.

The draw for the token at position ``t`` uses a generator seeded from ``(seed, t)``, so a session's tokens depend only
on its own logits, seed and position — never on which other sessions shared its forward, and not on whether the
session was re-prefilled on another replica after a failure (a resumed generation samples exactly what an
uninterrupted one would).
Log-probabilities are those of the model's distribution (before temperature and top-p), as the OpenAI API reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sampler:
    """How one session picks its tokens."""

    temperature: float = 0.0
    """0 for greedy (argmax); otherwise logits are divided by it before sampling."""
    top_p: float = 1.0
    """Nucleus: sample from the smallest set of tokens whose probability reaches ``top_p``."""
    seed: int = 0
    """Seed of this session's draws (combined with each token's position)."""
    logprobs: int = 0
    """How many top log-probabilities to return per token (0: none)."""
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 10.0:
            raise ValueError(f"temperature must be in [0, 10] (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.logprobs <= 20:
            raise ValueError(f"logprobs must be in 0..20, got {self.logprobs}")
        self.generator = torch.Generator()

    def choose(self, logits: torch.Tensor, position: int) -> int:
        """The token at ``position`` for one row of logits ``[vocab]``."""
        if self.temperature == 0.0:
            return int(logits.argmax())
        # drawn on the CPU generator wherever the logits live: same seed and position, same token on every device
        probs = torch.softmax(logits.double().cpu() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            ordered, order = probs.sort(descending=True)
            keep = ordered.cumsum(-1) - ordered < self.top_p  # always keeps the most likely token
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        self.generator.manual_seed((self.seed * 1_000_003 + position) % 2**63)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def report(self, logits: torch.Tensor, token: int) -> dict:
        """The chosen token, its log-probability and the top-``logprobs`` alternatives."""
        out: dict = {"token": token}
        if self.logprobs:
            logp = torch.log_softmax(logits.float(), dim=-1)
            top = logp.topk(self.logprobs)
            out["logprob"] = float(logp[token])
            out["top_logprobs"] = [[int(i), float(v)] for v, i in zip(top.values, top.indices, strict=True)]
        return out
