"""A synthetic quality grid with the shape of real profiles, for tests and smoke runs (no LLM needed).

``synthetic_cells(seed=0)`` returns a table in the format of :func:`surrogate.dataset.load_cells` for a fictitious
8-layer model: AWGN and dropout settings × every split, with a smooth degradation that grows as SNR drops or ``p``
grows and peaks in the middle layers (as the built-in model's does), plus a little seeded noise. ``coded_snr_db``
adds coded (5G NR, 8-bit, default options) settings: a small flat quantisation loss that grows steeply below 0 dB,
where HARQ starts giving transport blocks up (the shape measured on the built-in model).
:func:`synthetic_profile` is the matching cost profile, so rewards can be computed on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgesplit.cost import ModelProfile

MODEL_NAME = "synthetic-8l"
NUM_LAYERS = 8
HIDDEN_SIZE = 64


def synthetic_profile() -> ModelProfile:
    """Cost profile of the synthetic model (a tiny Llama config)."""
    from transformers import LlamaConfig

    return ModelProfile.from_config(LlamaConfig(hidden_size=HIDDEN_SIZE, intermediate_size=128,
                                                num_hidden_layers=NUM_LAYERS, num_attention_heads=4,
                                                num_key_value_heads=2, vocab_size=128))


def synthetic_cells(seed: int = 0, snr_db: tuple[float, ...] = (0, 5, 10, 15, 20, 25),
                    p: tuple[float, ...] = (0.05, 0.15, 0.3), noise: float = 0.01,
                    coded_snr_db: tuple[float, ...] = ()) -> pd.DataFrame:
    """The grid (every k × every setting), with quality columns and descriptors."""
    rng = np.random.default_rng(seed)
    profile = synthetic_profile()
    rows = []
    settings = [("awgn", s, np.nan) for s in snr_db] + [("dropout", 30.0, q) for q in p]
    settings += [("coded", s, np.nan) for s in coded_snr_db]
    for kind, snr, prob in settings:
        for k in range(NUM_LAYERS + 1):
            severity = {"awgn": 10 ** (-snr / 10), "dropout": 2.0 * prob,
                        "coded": 0.002 + 1.0 / (1.0 + np.exp(2.0 * (snr + 4.0)))}[kind]
            hump = 0.5 + np.sin(np.pi * k / NUM_LAYERS)  # the middle layers suffer most
            lossless = k in (0, NUM_LAYERS)
            log_ratio = 0.0 if lossless else 2.0 * severity * hump + noise * rng.standard_normal()
            rows.append({"model": MODEL_NAME, "num_layers": NUM_LAYERS, "hidden_size": HIDDEN_SIZE,
                         "num_params": profile.total_params, "k": k, "channel": kind, "snr_db": float(snr),
                         "p": prob, "bits_per_element": 8 if kind == "coded" else 32, "modulation": None,
                         "encoding": "float32", "fading": "none", "fading_gain": 1.0, "loss_rate": 0.0, "seed": 0,
                         "setting": {"awgn": f"awgn {snr:g} dB", "dropout": f"dropout p={prob:g}",
                                     "coded": f"coded 8b {snr:g} dB"}[kind],
                         "perplexity": 20.0 * np.exp(log_ratio), "clean_perplexity": 20.0,
                         "log_ppl_ratio": log_ratio, "kl_nats": max(0.0, 1.2 * log_ratio),
                         "top1_agreement": float(np.exp(-log_ratio)), "wall_s": 0.0 if lossless else 0.1})
    return pd.DataFrame(rows)


__all__ = ["HIDDEN_SIZE", "MODEL_NAME", "NUM_LAYERS", "synthetic_cells", "synthetic_profile"]
