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


def check_tensor(name: str, x: object, shape: str, *, floating: bool = False,
                 nonempty: bool = False) -> None:
    """``x`` is a torch tensor of one of the ranks ``shape`` names ("(B, D)", or several:
    "(B*K, D) or (B, K, D)"); floating-point when ``floating``; with rows when ``nonempty``."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {shape}, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.dim() not in {len(option.split(",")) for option in shape.split(" or ")}:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
    if nonempty and x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {tuple(x.shape)}")


def check_same_device(**tensors: object) -> None:
    """The tensors (by argument name) are all on one device; the error lists where each is."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"expected all tensors on one device, got {listed}")


def check_choice(name: str, value: object, choices) -> None:
    """``value`` is one of ``choices`` (a tuple, list, set or dict of the allowed values)."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_type(name: str, value: object, cls: type, what: str | None = None) -> None:
    """``value`` is an instance of ``cls``; ``what`` names it in the error (default: its name)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name}: expected {what or cls.__name__}, got {type(value).__name__}")


def check_int_range(name: str, value: object, low: int, high: int, note: str = "") -> None:
    """``value`` is an int in [low, high] (bools are not); ``note`` says what bounds it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name}: expected an int in [{low}, {high}]{note}, got {value!r}")
