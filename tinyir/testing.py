"""Comparing floats: the one tolerance rule of the course, its tests and its notebooks.

The rule
--------
1. **Same code path: exact.** The same function on the same inputs, on the same device, with
   the same thread count, gives the same bits. Compare with ``==`` / ``torch.equal``; a
   difference is a bug (a seed not set, state leaking between calls).
2. **Different code paths: a tolerance from the dtype, the magnitude and the depth.** SDPA vs
   the explicit softmax, tinyir vs transformers, batched vs one by one, chunked vs whole, one
   machine vs another: each sums in a different order, and float addition is not associative.
   The error a path adds is a few units of the dtype's machine epsilon *relative to the size of
   the values it sums* and it grows with every layer the values pass through. So::

       |actual - expected| <= atol * scale + rtol * |expected|        (elementwise)
       atol = rtol = C * eps(dtype) * depth,    C = 16

   - ``eps``: the machine epsilon, 1.2e-7 for float32 (2.2e-16 float64, 9.8e-4 float16,
     7.8e-3 bfloat16).
   - ``scale``: the magnitude the error is relative to, by default ``max |expected|``: an
     element near 0 in a layer's output carries the rounding of the large numbers summed to
     make it, so a purely elementwise ``rtol`` would be far too strict there. Pass
     ``scale=1.0`` for unit-normalized embeddings (the norm is the magnitude).
   - ``depth``: how many layers or chained reductions lie between the shared inputs and the
     compared outputs: 1 for a matmul, a softmax or a loss over a similarity matrix, 2 for a
     pooled-and-normalized embedding of given token vectors, ``num_layers`` for a whole
     Transformer (one block counts as one: its rounding errors are not all of one sign).

Why C = 16. On all-MiniLM-L6-v2 (6 layers, hidden values up to about 6), SDPA and the explicit
softmax differ by at most 3.8e-6 on real tokens, about 5 eps relative, over 8 batches. A report
from another x86 CPU, ``max |diff| = 2.1e-5`` against ``atol=1e-5, rtol=0``, came from the
``[PAD]`` positions of the batch, whose vectors no real token reads (pad positions differ by up
to 1.1e-4 here). The rule at depth 6 allows ``16 * 1.2e-7 * 6 * 6 = 6.9e-5``: 18x what real
tokens showed, 3x the padded 2.1e-5, so a different CPU, BLAS or thread count stays inside it,
while a real bug (a wrong mask, a missing scale, a swapped LayerNorm) is off by 1e-2 or more.
Compare the positions that carry meaning: mask out padding before comparing encoder outputs.

Which dtype: the least precise of the inputs; Python numbers and lists count as float32 (the
course computes in float32; ``loss.item()`` is a float32 result). Pass ``dtype="float64"`` to
hold a float64 computation to float64.

>>> tolerance("float32", depth=6)
(1.1444091796875e-05, 1.1444091796875e-05)
>>> assert_close(torch.tensor([1.0, 2.0]) + 1e-6, torch.tensor([1.0, 2.0]), depth=2)  # max diff
9.5367431640625e-07
>>> assert_close(1.01, 1.0, what="loss")  # doctest: +ELLIPSIS
Traceback (most recent call last):
AssertionError: loss: |actual - expected| = 1.00e-02 (actual 1.01, expected 1) exceeds the ...
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

TOLERANCE_FACTOR = 16  # C in the rule above: units of eps per layer of depth

_NUMPY_OF = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.bfloat16: "bfloat16",
}
_EPS = {
    "float64": float(np.finfo(np.float64).eps),
    "float32": float(np.finfo(np.float32).eps),
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": float(torch.finfo(torch.bfloat16).eps),
}


def _dtype_name(dtype: Any) -> str:
    """'float32' from "float32", torch.float32, np.float32 or np.dtype('float32')."""
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = repr(dtype)
    if name not in _EPS:
        raise ValueError(f"dtype: expected one of {sorted(_EPS)}, got {dtype!r}")
    return name


def tolerance(dtype: Any = "float32", depth: int = 1) -> tuple[float, float]:
    """(atol, rtol) for two code paths of a ``depth``-deep computation in ``dtype``.

    Both are ``16 * eps(dtype) * depth``. ``atol`` is for values of magnitude about 1: multiply
    it by the magnitude of your values (``assert_close`` does, with its ``scale``).
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth: expected an int >= 1 (layers or chained reductions), got {depth!r}")
    value = TOLERANCE_FACTOR * _EPS[_dtype_name(dtype)] * depth
    return value, value


def dtype_of(value: Any) -> str:
    """The precision the rule holds ``value`` to: a floating tensor's or array's dtype name;
    anything else (Python numbers, lists, integer tensors, unknown objects) counts as float32.
    It reads only the type and dtype of tensors and arrays: safe on any object."""
    if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
        return _dtype_name(value.dtype)
    if isinstance(value, np.ndarray | np.generic) and np.issubdtype(value.dtype, np.floating):
        return _dtype_name(value.dtype)
    return "float32"


def least_precise(*values: Any) -> str:
    """The dtype a comparison of ``values`` is held to: the least precise of their dtypes."""
    return max((dtype_of(v) for v in values), key=lambda name: _EPS[name])


def _as_array(value: Any, name: str) -> np.ndarray:
    """A float64 numpy copy of a tensor (any device), an array or numbers."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name}: expected a torch tensor, a numpy array or numbers, got {type(value).__name__}"
        ) from error


def default_scale(expected_values: np.ndarray) -> float:
    """The magnitude errors are relative to by default: ``max |expected|``, or 1 when all zero."""
    return float(np.abs(expected_values).max(initial=0.0)) or 1.0


def assert_close(
    actual: Any,
    expected: Any,
    *,
    depth: int = 1,
    scale: float | None = None,
    what: str = "",
    dtype: Any = None,
) -> float:
    """Assert that two code paths agree under the rule of this module; return max |difference|.

    actual, expected: torch tensors (any device), numpy arrays or Python numbers, same shape.
    depth: layers or chained reductions between the shared inputs and these outputs.
    scale: the magnitude the error is relative to; default ``max |expected|`` (1 if all zero).
    what: names the comparison in the error message. dtype: the precision to hold them to;
    default the least precise of the inputs (Python numbers count as float32).
    Raises AssertionError with the worst element, its index, both values and the tolerance.
    """
    actual_values = _as_array(actual, "actual")
    expected_values = _as_array(expected, "expected")
    label = f"{what}: " if what else ""
    if actual_values.shape != expected_values.shape:
        raise AssertionError(
            f"{label}shapes differ: actual {actual_values.shape}, expected {expected_values.shape}"
        )
    if dtype is None:
        dtype = least_precise(actual, expected)
    atol, rtol = tolerance(dtype, depth)
    if np.isnan(actual_values).any() or np.isnan(expected_values).any():
        raise AssertionError(f"{label}NaN in {'actual' if np.isnan(actual_values).any() else 'expected'}")
    if scale is None:
        scale = default_scale(expected_values)
    difference = np.abs(actual_values - expected_values)
    allowed = atol * scale + rtol * np.abs(expected_values)
    max_difference = float(difference.max(initial=0.0))
    over = difference > allowed
    if over.any():
        worst = np.unravel_index(int(np.argmax(difference - allowed)), difference.shape)
        where = f" at index {tuple(int(i) for i in worst)}" if difference.ndim else ""
        raise AssertionError(
            f"{label}|actual - expected| = {float(difference[worst]):.2e}{where} "
            f"(actual {float(actual_values[worst]):.6g}, expected {float(expected_values[worst]):.6g}) "
            f"exceeds the tolerance {float(allowed[worst]):.2e} = {atol:.2e} * scale {scale:.3g} "
            f"+ {rtol:.2e} * |expected| ({dtype}, depth {depth}); "
            f"{int(over.sum()):,} of {over.size:,} elements over; max |difference| {max_difference:.2e}"
        )
    return max_difference
