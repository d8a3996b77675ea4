"""Fixtures shared by the fleet tests."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_tiny


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny matmuls on a shared, loaded machine: one thread is ~50x faster than two contending ones.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llama():
    """A tiny random Llama (seed 1) for the fleet mechanics tests."""
    return make_tiny("llama", seed=1)
