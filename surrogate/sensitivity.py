"""First-order sensitivity of a model to a perturbed split boundary: one cheap clean pass, every split at once.

Why. A split's quality under a lossy link is, for small perturbations, a quadratic form of the perturbation with the
Fisher information of the tail: for an unbiased perturbation ``δ`` of the boundary state ``h_k`` (every token ``t``)

    E[KL(clean ‖ perturbed)] ≈ ½ Σ_t tr(F_t · Cov δ_t),          F_t = E_y[g_t g_tᵀ],  g_t = ∇_{h_t} Σ_s log p(y_s)

with labels ``y`` drawn from the model itself (so ``F`` is the Fisher of the whole window's prediction). For the
link models of :mod:`edgesplit.channel` the covariance has a closed form, so a handful of per-split numbers (the
*profile*) give a linearised KL for every cell without running the tail:

- AWGN at per-token SNR ``s`` (``δ_t ~ N(0, ‖h_t‖²/(d·s))``): ``iso_k / s`` with ``iso_k = ½ Σ_t ‖h_t‖²/d · ‖g_t‖²``;
- element dropout ``p`` without rescale (``δ = −h ⊙ m``, biased): ``p(1−p)·diag_k + p²·dir_k`` with
  ``diag_k = ½ Σ_t Σ_i h_ti² g_ti²`` and ``dir_k = ½ (Σ_t g_t·h_t)²``;
- absmax quantisation to ``b`` bits with two's-complement bit errors at BER ``β`` (digital, or an int encoding):
  per-element variance ``scale_t²·(1/12 + β(4^b − 1)/3)`` with ``scale_t = absmax_t/(2^(b−1) − 1)``, so
  ``absmax_k · (1/12 + β(4^b − 1)/3)/(2^(b−1) − 1)²`` with ``absmax_k = ½ Σ_t absmax_t²·‖g_t‖²``;
- fragment loss at rate ``r`` (zeroed): as dropout with ``p = r``; float16/bfloat16 rounding: ``iso_k·u²/3``;
- the coded NR link: the ``b``-bit quantiser without bit errors (``β = 0``: a CRC catches every failed TB) plus the
  elements of erased TBs zeroed at the TB erasure rate after HARQ (the caller passes it as the loss rate,
  :func:`surrogate.features.linearised_kl_of`).

All sums are per scored token (divided by the token count). One forward and one backward pass per window and label
draw give ``g`` at every boundary at once (``k = 1..L−1``; ``k = 0`` ships token ids and ``k = L`` ships nothing,
both lossless). On SmolLM2-135M over 512 WikiText-2 tokens the AWGN prediction is within 0.08 dex (std) of the
measured KL at SNR ≥ 20 dB, and its rank correlation with log(PPL/PPL0) over 0..32.5 dB is 0.97; the surrogate
learns the saturation at low SNR. It is a *feature* (see :func:`surrogate.features.feature_matrix`), not a
prediction: the measured cells stay the ground truth.

Cost. Counted and reported (``wall_s``, ``passes``): one forward and backward over ``tokens`` — for SmolLM2-135M, 512
tokens cost about 2.5 real cell evaluations of 1,024 tokens by FLOPs (:func:`equivalent_cells`) — spent once per
model and corpus, whatever the grid.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgesplit.cost import ModelProfile
from edgesplit.models import LoadedModel

FLOOR = 1e-6
"""Smallest linearised KL (nats per token) the feature takes: lossless cells and vanishing noise sit here."""
PROFILE_FILE = "sensitivity.json"
"""Name a profile takes beside the cells it describes (what ``--sensitivity auto`` looks for)."""
FORMAT = "edgesplit-sensitivity"
VERSION = 1
TERMS = ("iso", "diag", "dir", "absmax")
"""Per-split sums of a profile (see the module docstring)."""
FLOAT_UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


@dataclass(frozen=True)
class SensitivityProfile:
    """Per-split Fisher sums of one model on one token stream (index ``k = 0..L``; 0 at the lossless ends)."""

    model: str
    """Model name as written in cell tables."""
    num_layers: int
    """Decoder layers L."""
    iso: tuple[float, ...]
    """``½ Σ_t ‖h_t‖²/d·‖g_t‖²`` per token, per split: isotropic noise scaled to each token's power."""
    diag: tuple[float, ...]
    """``½ Σ_t Σ_i h_ti² g_ti²`` per token: independent zeroing of elements."""
    dir: tuple[float, ...]
    """``½ (Σ_t g_t·h_t)²`` per token: the mean shift of unrescaled dropout (the state scaled by 1 − p)."""
    absmax: tuple[float, ...]
    """``½ Σ_t absmax_t²·‖g_t‖²`` per token: noise scaled to each token's absmax (quantisation, bit errors)."""
    tokens: int
    """Tokens the sums were taken over."""
    samples: int
    """Label draws per window."""
    seed: int
    """Seed of the label draws."""
    corpus: str = "custom"
    """Where the tokens came from."""
    wall_s: float = 0.0
    """Wall time of the measurement."""
    passes: int = 0
    """Forward + backward passes run (windows × samples)."""

    def __post_init__(self) -> None:
        for name in TERMS:
            values = getattr(self, name)
            if len(values) != self.num_layers + 1:
                raise ValueError(f"sensitivity {name} needs {self.num_layers + 1} values (k = 0..L), got "
                                 f"{len(values)}")
            if not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"sensitivity {name} values must be finite and >= 0")

    def term(self, name: str, ks: np.ndarray) -> np.ndarray:
        """One sum at splits ``ks`` (ValueError for a split outside 0..L)."""
        ks = np.asarray(ks, dtype=int)
        if ks.size and (ks.min() < 0 or ks.max() > self.num_layers):
            raise ValueError(f"split k={int(ks.max() if ks.max() > self.num_layers else ks.min())} is outside "
                             f"0..{self.num_layers} of the sensitivity profile of {self.model!r}")
        return np.asarray(getattr(self, name), dtype=float)[ks]

    def to_dict(self) -> dict:
        """JSON-ready dict (with format and version)."""
        return {"format": FORMAT, "version": VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, data: dict) -> SensitivityProfile:
        """Inverse of :meth:`to_dict`; ValueError naming what is wrong."""
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a sensitivity profile (format {data.get('format')!r} v{data.get('version')}; "
                             f"expected {FORMAT} v{VERSION})")
        fields = {k: v for k, v in data.items() if k not in ("format", "version")}
        try:
            for name in TERMS:
                fields[name] = tuple(float(v) for v in fields[name])
            return cls(**fields)
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed sensitivity profile: {err}") from None

    def save(self, path: Path) -> Path:
        """Write as JSON (atomically: a temp file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> SensitivityProfile:
        """Read a JSON profile; ValueError if missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"sensitivity profile {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"sensitivity profile {path} is not JSON: {err}") from None
        return cls.from_dict(data)


def find_profiles(specs: list[str] | tuple[str, ...], data: Path | None = None) -> dict[str, SensitivityProfile]:
    """Profiles by model name from JSON paths, or ``auto`` (every ``sensitivity.json`` under ``data``); ValueError
    when ``auto`` finds none or two profiles describe one model."""
    paths: list[Path] = []
    for spec in specs:
        if spec == "auto":
            found = sorted(Path(data).rglob(PROFILE_FILE)) if data is not None and Path(data).is_dir() else []
            if not found:
                raise ValueError(f"--sensitivity auto found no {PROFILE_FILE} under {data}; make one with "
                                 f"`edgesplit sensitivity --out {data}/{PROFILE_FILE}`")
            paths += found
        else:
            paths.append(Path(spec))
    profiles: dict[str, SensitivityProfile] = {}
    for path in paths:
        profile = SensitivityProfile.load(path)
        if profile.model in profiles:
            raise ValueError(f"two sensitivity profiles for model {profile.model!r} ({path} and another)")
        profiles[profile.model] = profile
    return profiles


def measure_sensitivity(model: LoadedModel, token_ids: torch.Tensor, *, context: int = 256, tokens: int = 512,
                        samples: int = 1, seed: int = 0, corpus: str = "custom",
                        progress: bool = False) -> SensitivityProfile:
    """The profile of ``model`` over the first ``tokens`` of ``token_ids`` in windows of ``context`` tokens (the
    passes run on the model's device)."""
    if token_ids.ndim != 1 or token_ids.numel() < 2:
        raise ValueError(f"token_ids must be a 1-D stream of at least 2 tokens, got {tuple(token_ids.shape)}")
    if context < 2 or tokens < 2 or samples < 1:
        raise ValueError(f"context and tokens must be >= 2 and samples >= 1, got {context}, {tokens}, {samples}")
    adapter, layers = model.adapter, model.num_layers
    stream = token_ids[:tokens]
    starts = list(range(0, max(int(stream.numel()) - 1, 1), context))
    sums = {name: np.zeros(layers + 1) for name in TERMS}
    generator = torch.Generator().manual_seed(seed)
    count, passes, start = 0, 0, time.perf_counter()
    windows = [stream[b:b + context] for b in starts if stream[b:b + context].numel() >= 2]
    iterator = windows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(windows, desc="sensitivity", unit="window")
    for window in iterator:
        ids = window.unsqueeze(0).to(model.model.device)
        for _ in range(samples):
            _accumulate(adapter, layers, ids, generator, sums)
            passes += 1
        count += int(ids.shape[1])
    values = {name: tuple(float(v) / (2.0 * count * samples) for v in sums[name]) for name in TERMS}
    return SensitivityProfile(model=model.name, num_layers=layers, tokens=count, samples=samples, seed=seed,
                              corpus=corpus, wall_s=time.perf_counter() - start, passes=passes, **values)


def _accumulate(adapter, layers: int, ids: torch.Tensor, generator: torch.Generator, sums: dict) -> None:
    """One forward + backward: add every boundary's sums for one label draw (the same ops as the split engine).

    Gradients are taken with :func:`torch.autograd.grad` for the boundary states only: the model's parameters get
    no ``.grad`` (the model is left as it was found, whatever its ``requires_grad`` flags).
    """
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    with torch.enable_grad():
        hidden = adapter.embed_tokens(ids, positions).detach().requires_grad_(True)
        inputs = adapter.prepare(hidden, None, positions, None, 0, layers)
        states = [hidden]
        for index in range(layers):
            states.append(adapter.run_layers(states[-1], index, index + 1, inputs, None))
        logp = F.log_softmax(adapter.final_norm_and_head(states[-1]).float()[0], dim=-1)
        with torch.no_grad():  # drawn on the CPU generator wherever the model runs: same seed, same labels
            labels = torch.multinomial(logp.exp().cpu(), 1, generator=generator).to(logp.device)
        grads = torch.autograd.grad(logp.gather(-1, labels).sum(), states[1:layers]) if layers > 1 else ()
    with torch.no_grad():
        for k, grad in enumerate(grads, start=1):
            h, g = states[k].detach()[0].double(), grad[0].double()
            grad_sq = g.pow(2).sum(-1)
            sums["iso"][k] += float((h.pow(2).mean(-1) * grad_sq).sum())
            sums["diag"][k] += float((h.pow(2) * g.pow(2)).sum())
            sums["dir"][k] += float((h * g).sum()) ** 2
            sums["absmax"][k] += float((h.abs().amax(-1).pow(2) * grad_sq).sum())


BACKWARD_FACTOR = 3.0
"""Forward + backward FLOPs over forward FLOPs (the usual 1 + 2)."""


def equivalent_cells(profile: ModelProfile, sensitivity_tokens: int, cell_tokens: int, context: int,
                     ks: np.ndarray) -> float:
    """The profile's compute in real cell evaluations, by FLOPs: forward + backward over every layer and the head for
    ``sensitivity_tokens``, against the mean over splits ``ks`` of one cell's tail (layers k..L−1 and the head) over
    ``cell_tokens`` (both in windows of ``context``). Deterministic, unlike a wall-clock ratio on a shared machine."""
    ks = np.asarray(ks, dtype=int)
    if ks.size == 0:
        raise ValueError("need at least one split to price a cell")
    window = min(context, max(sensitivity_tokens, cell_tokens))
    full = profile.edge_flops(0, window, logits_tokens=window)
    tail = float(np.mean([profile.edge_flops(int(k), window, logits_tokens=window) for k in ks]))
    return BACKWARD_FACTOR * full * (sensitivity_tokens / window) / (tail * (cell_tokens / window))


def quantisation_factor(bits: np.ndarray, ber: np.ndarray) -> np.ndarray:
    """Per-element error variance of absmax ``bits``-bit two's-complement codes with bit errors at ``ber``, in units
    of absmax² (``bits = 1``, the sign quantiser, uses the ``b = 2`` step: a coarse but monotone stand-in)."""
    bits = np.asarray(bits, dtype=float)
    levels = 2.0 ** (np.maximum(bits, 2.0) - 1.0) - 1.0
    return (1.0 / 12.0 + np.asarray(ber, dtype=float) * (4.0**bits - 1.0) / 3.0) / levels**2


def linearised_kl(profile: SensitivityProfile, ks: np.ndarray, kind: np.ndarray, snr_db: np.ndarray, p: np.ndarray,
                  bits: np.ndarray, ber: np.ndarray, loss_rate: np.ndarray, encoding: np.ndarray) -> np.ndarray:
    """First-order KL (nats per token, ≥ :data:`FLOOR`) of every cell (arrays of equal length; see the module
    docstring for the formulas). ``ber`` is the raw bit error rate of digital cells (ignored elsewhere); for coded
    cells ``loss_rate`` is the TB erasure rate after HARQ."""
    ks = np.asarray(ks, dtype=int)
    kind, encoding = np.asarray(kind, dtype=object), np.asarray(encoding, dtype=object)
    iso, diag = profile.term("iso", ks), profile.term("diag", ks)
    direction, absmax = profile.term("dir", ks), profile.term("absmax", ks)
    p, loss = np.asarray(p, dtype=float), np.asarray(loss_rate, dtype=float)
    kl = np.zeros(len(ks))
    awgn = kind == "awgn"
    kl += np.where(awgn, iso * 10.0 ** (-np.asarray(snr_db, dtype=float) / 10.0), 0.0)
    drop = np.where(kind == "dropout", p, 0.0)
    kl += drop * (1 - drop) * diag + drop**2 * direction
    kl += loss * (1 - loss) * diag + loss**2 * direction
    quantised = np.isin(kind, ("digital", "coded"))
    kl += np.where(quantised, absmax * quantisation_factor(bits, np.where(kind == "digital", ber, 0.0)), 0.0)
    int_bits = np.array([8 if e == "int8" else 4 if e == "int4" else 0 for e in encoding])
    cast = (int_bits > 0) & ~quantised
    kl += np.where(cast, absmax * quantisation_factor(np.where(cast, int_bits, 8), 0.0), 0.0)
    roundoff = np.array([FLOAT_UNIT_ROUNDOFF.get(e, 0.0) for e in encoding])
    kl += iso * roundoff**2 / 3.0
    return np.maximum(kl, FLOOR)


__all__ = ["BACKWARD_FACTOR", "FLOOR", "PROFILE_FILE", "TERMS", "SensitivityProfile", "equivalent_cells",
           "find_profiles", "linearised_kl",
           "measure_sensitivity", "quantisation_factor"]
