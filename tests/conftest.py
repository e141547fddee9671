"""Shared test settings: CUDA tests skip cleanly on machines without a GPU."""

from __future__ import annotations

import pytest
import torch
from toy_retrieval import bm25, dense, ds  # noqa: F401  (fixtures of the toy retrieval tests)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


def pytest_configure(config):
    # Tests must be repeatable and fit a 2-core machine.
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
