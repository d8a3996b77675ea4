"""Lazy, RNG-neutral access to NVIDIA Sionna (the ``nr`` extra).

Nothing in :mod:`edgesplit.channel.nr` imports Sionna at import time: :func:`load_sionna` does it on first use,
so ``import edgesplit.channel`` works (and stays fast) without it. Importing ``sionna.phy`` re-seeds torch's
global generators (its config calls ``torch.default_generator.seed()``), which would silently change every
later ``torch.rand`` of the caller; :func:`preserve_global_rng` saves and restores the global torch (CPU and
CUDA), NumPy and Python generator states around the import and around every Sionna object we build. The
link's own randomness never comes from Sionna: the impairment draws noise, fading and block errors from its
own ``torch.Generator``, and uses Sionna only for the deterministic parts (coding, mapping, tables).
"""

from __future__ import annotations

import random
import types
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

INSTALL_HINT = "pip install 'edgesplit[nr]'"
"""How to get Sionna (sionna-no-rt==2.2.0, PyTorch-based, no ray tracer)."""

_MODULES: types.SimpleNamespace | None = None


@contextmanager
def preserve_global_rng() -> Iterator[None]:
    """Restore torch (CPU + CUDA), NumPy and Python global RNG states on exit, whatever ran inside."""
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(np_state)
        random.setstate(py_state)


def load_sionna() -> types.SimpleNamespace:
    """The Sionna modules the NR link uses (imported once, without touching the global RNGs).

    Attributes: ``phy``, ``nr`` (``sionna.phy.nr``), ``nr_utils``, ``mapping``, ``utils`` (``sionna.phy.utils``),
    ``sys`` (``sionna.sys``). Raises ImportError naming ``pip install 'edgesplit[nr]'`` when Sionna is missing.
    """
    global _MODULES
    if _MODULES is None:
        with preserve_global_rng():
            try:
                import sionna.phy
                import sionna.phy.mapping
                import sionna.phy.nr
                import sionna.phy.nr.utils
                import sionna.phy.utils
                import sionna.sys
            except ImportError as err:
                raise ImportError(
                    f"the coded 5G NR link (edgesplit.channel.nr) needs NVIDIA Sionna: {INSTALL_HINT} ({err})"
                ) from err
        _MODULES = types.SimpleNamespace(
            phy=sionna.phy,
            nr=sionna.phy.nr,
            nr_utils=sionna.phy.nr.utils,
            mapping=sionna.phy.mapping,
            utils=sionna.phy.utils,
            sys=sionna.sys,
        )
    return _MODULES
