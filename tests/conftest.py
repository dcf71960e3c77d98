"""Shared test setup: one torch thread, deterministic algorithms where cheap."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def synthetic_class():
    """The tiny synthetic benchmark, class-incremental (3 experiences of 2 classes)."""
    from lifelong.data import get_benchmark

    return get_benchmark("synthetic", "class")
