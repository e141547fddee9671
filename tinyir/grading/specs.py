"""The instructor's side of grading: which notebooks have exercises, which hidden checks test
each exercise, and the limits a student's run gets. Read from the exercise notebooks and the
grading test modules (``tinyir/grading/tests/`` plus an instructor's private folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tinyir.grading.build import EXERCISES_DIR, Exercise, read_exercises
from tinyir.grading.checks import (
    Check,
    collect_checks,
    collect_preload,
    collect_references,
    find_test_modules,
    load_module,
)

BUILTIN_TESTS_DIR = Path(__file__).resolve().parent / "tests"


@dataclass(frozen=True)
class NotebookSpec:
    """What the instructor's release says about one notebook: its exercises and their tests."""

    name: str
    exercises: tuple[Exercise, ...]
    check_modules: tuple[str, ...]
    # exercise id -> ((check name, weight, description), ...), in the order they run
    checks: dict[str, tuple[tuple[str, float, str], ...]]
    # exercise id -> the Check objects themselves (loaded in the grader's process only)
    check_objects: dict[str, tuple[Check, ...]] = field(default_factory=dict, compare=False)
    # tinyir's own answers to these exercises: not importable by the student while grading
    references: tuple[str, ...] = ()
    # modules the student's process imports before its job (the tests' PRELOAD)
    preload: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    timeout: float  # seconds for a whole notebook: cells, checks and restarts together
    memory_mb: int  # all the processes of one notebook's run together
    max_output_bytes: int
    threads: int = 1  # OMP/torch threads of the student's process


def load_specs(
    exercises_dir: str | Path = EXERCISES_DIR, extra_tests: str | Path | None = None
) -> list[NotebookSpec]:
    """Read every exercise notebook's exercises and match them with their grading tests.

    Raises ``ValueError`` when an exercise has no test, a test names an unknown exercise, or a
    test module names a notebook that ``exercises_dir`` lacks.
    """
    exercises_dir = Path(exercises_dir)
    if not exercises_dir.is_dir():
        raise ValueError(f"exercises_dir: expected a directory of exercise notebooks, got "
                         f"{str(exercises_dir)!r}")
    folders = [BUILTIN_TESTS_DIR] + ([Path(extra_tests)] if extra_tests is not None else [])
    modules_by_notebook = find_test_modules(folders)
    notebooks = sorted(exercises_dir.glob("*.ipynb"))
    unknown = sorted(set(modules_by_notebook) - {p.name for p in notebooks})
    if unknown:
        raise ValueError(f"grading tests name notebooks that {exercises_dir} lacks: {unknown}")
    specs = []
    for path in notebooks:
        exercises = tuple(read_exercises(path))
        if not exercises:
            continue
        modules = tuple(str(p) for p in modules_by_notebook.get(path.name, []))
        loaded = [load_module(p) for p in modules]
        checks = collect_checks(loaded)
        ids = {e.id for e in exercises}
        stray = sorted(set(checks) - ids)
        if stray:
            raise ValueError(f"{path.name}: grading tests for unknown exercises: {stray}")
        untested = [e.id for e in exercises if not checks.get(e.id)]
        if untested:
            raise ValueError(f"{path.name}: exercises without grading tests: {untested}")
        specs.append(NotebookSpec(
            path.name, exercises, modules,
            {ex: tuple((c.name, c.weight, c.description) for c in found)
             for ex, found in checks.items()},
            {ex: tuple(found) for ex, found in checks.items()},
            tuple(collect_references(loaded)),
            tuple(collect_preload(loaded)),
        ))
    if not specs:
        raise ValueError(
            f"exercises_dir: expected notebooks with exercises in {str(exercises_dir)!r}"
        )
    return specs
