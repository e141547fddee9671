"""Pick a device and seed every random number generator the course uses.

Every notebook starts with ``device = get_device(); seed_everything(0)``: it runs on a CUDA GPU
when there is one and on the CPU otherwise, and gives the same numbers on every run.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return ``prefer`` if given, else CUDA when available, else CPU.

    ``prefer`` may be "cpu", "cuda", "cuda:1" or a ``torch.device``; asking for CUDA on a machine
    without it raises ``ValueError`` instead of failing later inside a kernel.
    """
    if prefer is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"prefer: expected 'cpu', 'cuda' or 'cuda:N', got {prefer!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"prefer: {prefer!r} asked for CUDA, but torch.cuda.is_available() is False")
    return device


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
