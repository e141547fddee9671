"""Argument checks shared by the package: one line at the top of a function, a clear error.

Each raises ``ValueError`` naming the argument and what was expected, so the function body can go
straight to the formula.
"""

from __future__ import annotations

import numbers


def check_positive(name: str, value: object, integer: bool = True) -> None:
    """``value`` is a positive int (``integer``) or a positive real number; bools are not."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        expected = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
