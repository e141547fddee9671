"""Grading tests: how they are written, found, and how results are compared.

A grading-test module is a plain Python file that names the notebook it grades and registers
checks with the ``@check`` decorator (the built-in ones live in ``tinyir/grading/tests/``; a
private folder passed as ``extra_tests`` holds more in the same format)::

    NOTEBOOK = "01_pooling.ipynb"

    @check("pooling.mean_pooling",
           cases={"3x7x5": {"shape": (3, 7, 5)}, "1x1x4": {"shape": (1, 1, 4)}})
    def right_padding(mean_pooling, shape):
        '''Random right-padded batches against a reference.'''
        hidden, mask = ...
        assert_close(mean_pooling(hidden.clone(), mask.clone()), reference(hidden, mask), "output")

Each parameter of a check is filled, by name, from the case's keyword arguments; ``remote``
is the ``tinyir.grading.remote.Remote`` of the student's process (to build a model or an optimizer
there); any other parameter without a default comes from what the student's notebook defined (its
top-level names), so ``mean_pooling`` above is the student's function. Checks run in the grader's
process: the student's function is a handle, and calling it runs it in the student's sandboxed
process on a copy of the arguments (data in, data out: tensors, arrays, numbers, strings, lists,
dicts; other objects as handles). A check passes when it returns and fails on an
``AssertionError`` it raises itself (its message is the feedback the student reads); an exception
in the student's code is an error of the student's code.

A module may also list ``REFERENCES = ["tinyir.module:function", ...]``: tinyir's own answers to
its exercises, which the student's process cannot call while this notebook is graded, and
``PRELOAD = ["torch._dynamo", ...]``: modules the student's process imports before its job (it
is started ahead of its turn; a slow first-use import then costs no grading time). ``weight`` sets a check's share of the exercise's points (default 1 per
case); the points of an exercise are split over its checks in proportion to their weights.

The same comparison (``describe_difference``) drives the visible ``self_check`` in the notebooks
and ``assert_close`` in the hidden tests, so both speak the same language to the student.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

CHECKS_ATTR = "__tinyir_checks__"


@dataclass(frozen=True)
class Check:
    """One grading test of one exercise (one case of a parametrized check function)."""

    exercise: str
    name: str
    func: Callable[..., Any] = field(repr=False, compare=False)
    kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    weight: float = 1.0

    @property
    def description(self) -> str:
        """The first line of the check function's docstring ("" if it has none)."""
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else ""

    def parameters(self) -> list[tuple[str, bool]]:
        """(name, needed) for each parameter of ``func``; needed: it has no default."""
        return [(p.name, p.default is inspect.Parameter.empty)
                for p in inspect.signature(self.func).parameters.values()]


def check(
    exercise: str,
    *,
    weight: float = 1.0,
    cases: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as grading test(s) of ``exercise``.

    exercise: the exercise id of the notebook cell metadata, e.g. "pooling.mean_pooling".
    weight: the share of the exercise's points of each case (all checks of an exercise are
        normalized together).
    cases: {case name: keyword arguments}; each case is reported as ``func_name[case name]``.
        Without cases, the function is one check named after itself.
    """
    if not isinstance(exercise, str) or not exercise:
        raise ValueError(f"exercise: expected a non-empty exercise id, got {exercise!r}")
    if not isinstance(weight, (int, float)) or not weight > 0:
        raise ValueError(f"weight: expected a number > 0, got {weight!r}")
    if cases is not None and (not isinstance(cases, Mapping) or not cases):
        raise ValueError(f"cases: expected a non-empty {{name: kwargs}} mapping, got {cases!r}")

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        found = list(getattr(func, CHECKS_ATTR, []))
        if cases is None:
            found.append(Check(exercise, func.__name__, func, {}, float(weight)))
        else:
            for case, kwargs in cases.items():
                found.append(Check(exercise, f"{func.__name__}[{case}]", func, dict(kwargs),
                                   float(weight)))
        setattr(func, CHECKS_ATTR, found)
        return func

    return register


def module_notebook(path: str | Path) -> str | None:
    """The ``NOTEBOOK = "..."`` constant of a grading-test module, read without importing it."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "NOTEBOOK" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


def find_test_modules(folders: Iterable[str | Path]) -> dict[str, list[Path]]:
    """Map notebook name -> grading-test modules, from every ``*.py`` in ``folders``.

    Files whose name starts with "_" are helpers, not test modules. A test module without a
    ``NOTEBOOK`` constant raises ``ValueError`` (it would silently grade nothing).
    """
    by_notebook: dict[str, list[Path]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"tests folder: expected a directory, got {str(folder)!r}")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            notebook = module_notebook(path)
            if notebook is None:
                raise ValueError(
                    f"{path}: expected a NOTEBOOK = \"NN_name.ipynb\" constant naming the "
                    "notebook it grades, found none"
                )
            by_notebook.setdefault(notebook, []).append(path.resolve())
    return by_notebook


def load_module(path: str | Path) -> ModuleType:
    """Import a grading-test module from its file path under a unique, private module name."""
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(f"_tinyir_grading_{digest}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"path: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect_references(modules: Iterable[ModuleType]) -> list[str]:
    """Every module's ``REFERENCES`` ("tinyir.module:name" strings), in order, without repeats."""
    found: list[str] = []
    for module in modules:
        refs = getattr(module, "REFERENCES", [])
        if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"{module.__file__}: REFERENCES must be a list of "
                             "'tinyir.module:name' strings")
        found += [r for r in refs if r not in found]
    return found


def collect_preload(modules: Iterable[ModuleType]) -> list[str]:
    """Every module's ``PRELOAD`` (module names the student's process imports before its job,
    while it waits for its turn: slow first-use imports such as ``torch._dynamo``)."""
    found: list[str] = []
    for module in modules:
        names = getattr(module, "PRELOAD", [])
        if not isinstance(names, (list, tuple)) or not all(
                isinstance(n, str) and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", n)
                for n in names):
            raise ValueError(f"{module.__file__}: PRELOAD must be a list of module names")
        found += [n for n in names if n not in found]
    return found


def collect_checks(modules: Iterable[ModuleType]) -> dict[str, list[Check]]:
    """{exercise id: [Check, ...]} in module order, then definition order, then case order."""
    by_exercise: dict[str, list[Check]] = {}
    for module in modules:
        for value in vars(module).values():
            for found in getattr(value, CHECKS_ATTR, []):
                by_exercise.setdefault(found.exercise, []).append(found)
    for exercise, found in by_exercise.items():
        names = [c.name for c in found]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"checks of {exercise!r}: expected unique names, got {duplicates}")
    return by_exercise


# ----------------------------------------------------------------------------------------------
# Comparing what came out with what was expected.


def show(value: Any, max_items: int = 12) -> str:
    """A short, deterministic text for a value: small tensors in full, big ones by shape."""
    if _is_torch_tensor(value):
        value = value.detach().cpu()
        dtype = str(value.dtype).replace("torch.", "")
        head = f"tensor of shape {tuple(value.shape)}, dtype {dtype}"
        if value.numel() <= max_items:
            return f"{head}: {_round_list(value.tolist())}"
        return f"{head}, first values {_round_list(value.flatten()[:max_items].tolist())}"
    if _is_numpy_array(value):
        if value.size <= max_items:
            return f"array of shape {value.shape}: {_round_list(value.tolist())}"
        first = _round_list(value.ravel()[:max_items].tolist())
        return f"array of shape {value.shape}, first values {first}"
    if isinstance(value, float):
        return f"{value + 0.0:.6g}"  # + 0.0 turns -0.0 into 0.0
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _round_list(values: Any) -> Any:
    if isinstance(values, list):
        return [_round_list(v) for v in values]
    if isinstance(values, float):
        return float(f"{values + 0.0:.5g}")
    return values


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _is_numpy_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def _as_real(value: Any) -> float | None:
    """A Python float for a real number (int, float, NumPy scalar, 0-d tensor); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if (_is_torch_tensor(value) or _is_numpy_array(value)) and getattr(value, "ndim", 1) == 0:
        if "bool" in str(value.dtype) or "complex" in str(value.dtype):
            return None
        return float(value.item())
    return None


STUDENT_DEPTH = 4  # a student's code is another code path, of a few chained reductions


def _default_tolerance(got: Any, expected: Any) -> tuple[float, float]:
    """(atol, rtol) by tinyir.testing's rule at depth 4, atol scaled by the magnitude of
    ``expected`` (an exact base type: the grader rebuilt it; ``got`` may be anything)."""
    from tinyir.testing import default_scale, least_precise, tolerance

    atol, rtol = tolerance(least_precise(got, expected), STUDENT_DEPTH)
    try:
        import numpy as np

        values = np.asarray(expected.detach().cpu() if _is_torch_tensor(expected) else expected,
                            dtype=np.float64)
    except (TypeError, ValueError, AttributeError):
        return atol, rtol
    return atol * default_scale(values), rtol


def describe_difference(
    got: Any, expected: Any, atol: float | None = None, rtol: float | None = None
) -> str | None:
    """None when ``got`` matches ``expected``; else one sentence saying how it differs.

    Tensors and arrays: same type, same shape, no NaN where none is expected, values within
    ``atol + rtol * |expected|``. Real numbers: the same tolerance (ints and 0-d tensors are
    accepted for floats). Booleans, strings and other values: equality. Without atol/rtol, the
    tolerance follows the course's one rule (``tinyir.testing``): machine epsilon of the less
    precise dtype, times 16, times the depth (``STUDENT_DEPTH``), relative to max |expected|.
    """
    if atol is None or rtol is None:
        default_atol, default_rtol = _default_tolerance(got, expected)
        atol = default_atol if atol is None else atol
        rtol = default_rtol if rtol is None else rtol
    if _is_torch_tensor(expected):
        return _tensor_difference(got, expected, atol, rtol)
    if _is_numpy_array(expected):
        if not _is_numpy_array(got):
            return f"expected a NumPy array, got {type(got).__name__}"
        import torch

        return _tensor_difference(torch.from_numpy(got), torch.from_numpy(expected), atol, rtol)
    if isinstance(expected, bool):
        is_bool = isinstance(got, bool) or type(got).__name__ == "bool_" or (
            _is_torch_tensor(got) and got.ndim == 0 and str(got.dtype) == "torch.bool"
        )
        if not is_bool:
            return f"expected a bool ({expected}), got {type(got).__name__} {show(got)}"
        return None if bool(got) == expected else f"expected {expected}, got {bool(got)}"
    if isinstance(expected, numbers.Real):
        value = _as_real(got)
        if value is None:
            return f"expected a number ({show(expected)}), got {type(got).__name__} {show(got)}"
        if math.isnan(value) and not math.isnan(expected):
            return f"expected {show(float(expected))}, got NaN"
        if not math.isclose(value, expected, rel_tol=rtol, abs_tol=atol):
            return f"expected {show(float(expected))}, got {show(value)}"
        return None
    if got != expected:
        return f"expected {show(expected)}, got {show(got)}"
    return None


def _tensor_difference(got: Any, expected: Any, atol: float, rtol: float) -> str | None:
    import torch

    if not _is_torch_tensor(got):
        return f"expected a torch.Tensor, got {type(got).__name__} {show(got)}"
    got, expected = got.detach().cpu(), expected.detach().cpu()
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}"
    if expected.dtype == torch.bool or not expected.is_floating_point():
        if got.is_floating_point() and expected.dtype != torch.bool:
            got = got.round()
        if got.to(expected.dtype).eq(expected).all():
            return None
        where = tuple(torch.nonzero(got.to(expected.dtype) != expected)[0].tolist())
        return (f"values differ at index {where}: expected {expected[where].item()}, "
                f"got {got[where].item()}")
    if not (got.is_floating_point() or got.dtype in (torch.int32, torch.int64)):
        return f"expected a floating-point tensor, got dtype {str(got.dtype).replace('torch.', '')}"
    g, e = got.double(), expected.double()
    bad_nan = torch.isnan(g) & ~torch.isnan(e)
    if bad_nan.any():
        where = tuple(torch.nonzero(bad_nan)[0].tolist())
        return f"got NaN at index {where} (expected {e[where].item():.6g})"
    close = torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    if close.numel() == 1:
        return f"expected {e.item():.6g}, got {g.item():.6g}"
    diff = (g - e).abs()
    where = tuple(torch.nonzero(~close)[0].tolist())
    return (
        f"{int((~close).sum())} of {close.numel()} values differ (largest difference "
        f"{diff[~close].max().item():.3g}); at index {where}: expected {e[where].item():.6g}, "
        f"got {g[where].item():.6g}"
    )


def assert_close(
    got: Any, expected: Any, what: str, atol: float | None = None, rtol: float | None = None
) -> None:
    """Raise ``AssertionError("what: how it differs")`` unless ``got`` matches ``expected``."""
    reason = describe_difference(got, expected, atol=atol, rtol=rtol)
    if reason is not None:
        raise AssertionError(f"{what}: {reason}")


def self_check(
    name: str, got: Any, expected: Any, hint: str, atol: float | None = None,
    rtol: float | None = None
) -> None:
    """The visible check after an exercise: print expected and got; fail with ``hint`` if unequal.

    name: what is being checked, e.g. "mean_pooling, left padding".
    hint: one sentence pointing at the usual mistake, shown only on failure.
    """
    print(f"{name}\n  expected: {show(expected)}\n  got:      {show(got)}")
    reason = describe_difference(got, expected, atol=atol, rtol=rtol)
    if reason is not None:
        print(f"  FAILED: {reason}\n  HINT: {hint}")
        raise AssertionError(f"{name}: {reason}. HINT: {hint}")
    print("  passed")
