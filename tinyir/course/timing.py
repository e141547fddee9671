"""Timing for the lessons: the fastest of a few calls, synchronized on CUDA.

The fastest run is the one least disturbed by the rest of the machine, so it is the number to
compare (as ``timeit`` reports). GPU kernels run asynchronously: when CUDA is in use the clock is
read only after ``torch.cuda.synchronize()``. Lessons print these numbers and assert only ratios
of 3x or more (CONTRIBUTING.md, "Timing").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch

from tinyir.validate import check_positive

T = TypeVar("T")


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_time_with_result(fn: Callable[[], T], repeats: int = 3, warmup: int = 0) -> tuple[float, T]:
    """(seconds of the fastest of ``repeats`` calls of ``fn()``, what the last call returned),
    after ``warmup`` untimed calls."""
    check_positive("repeats", repeats)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an int >= 0, got {warmup!r}")
    for _ in range(warmup):
        fn()
    best, result = float("inf"), None
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        result = fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best, result


def best_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 0) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    return best_time_with_result(fn, repeats, warmup)[0]
