"""Grade student notebooks: one limited process per notebook, hidden tests per exercise, a CSV.

    rows = grade("submissions/", "grades.csv", feedback_dir="feedback/", jobs=4)
    print(format_summary(rows))

``submissions/<student id>/`` holds a student's notebooks, named as in ``exercises/``. For each
(student, notebook) the grader copies the student's folder to a scratch directory and runs
``python -m tinyir.grading.runner`` there (see that module): every code cell in order (except
those tagged ``{"tinyir": {"skip_in_grading": true}}``: heavy demos), errors recorded without
stopping, then the grading tests of each exercise against what the notebook defined. The
process has a wall-clock timeout (its whole process group is killed), an address space limit, a
file size limit and a cap on printed output. When it dies in a cell or a check,
that cell or check is marked (timeout, memory, crashed) and the notebook runs again without it,
up to ``MAX_ATTEMPTS`` runs, so one bad function costs its own points only.

Statuses (one per exercise):
    ok               every check passed: full points
    partial          some checks passed: points in proportion to their weights
    failed           no check passed (wrong answers)
    not_implemented  the stub still raises NotImplementedError
    error            an exception: a syntax error in its cell, a TypeError in the function ...
    timeout          its cell, its self-check or one of its checks ran past the time limit
    memory           it ran out of memory (MemoryError, a failed allocation, or killed)
    crashed          the interpreter exited: sys.exit(), os._exit(), a fatal signal
    missing          the notebook, or the function/variable the exercise asks for, is absent

Outputs: ``out_csv`` (``student,notebook,exercise,points,max_points,status,message``, sorted, no
timings, so two runs give the same bytes), ``feedback_dir/<student>.md`` with every failed check
and why, and a resume state, ``<out_csv>.parts/<student>.json``, written when a student is done:
a rerun skips every student whose submission, tests and limits are unchanged (``force=True``
regrades). Every file is written atomically (a temporary file, then ``os.replace``).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyir.grading.build import (
    EXERCISES_DIR,
    Exercise,
    cell_source,
    cell_tags,
    python_source,
    read_exercises,
    read_notebook_json,
    skipped_in_grading,
    write_atomic,
)
from tinyir.grading.checks import collect_checks, find_test_modules, load_module

STATUSES = ("ok", "partial", "failed", "not_implemented", "error", "timeout", "memory",
            "crashed", "missing")
CSV_HEADER = ("student", "notebook", "exercise", "points", "max_points", "status", "message")
BUILTIN_TESTS_DIR = Path(__file__).resolve().parent / "tests"
MAX_ATTEMPTS = 4  # runs of one notebook: the first, then one per cell/check that killed it
MAX_NOTEBOOK_BYTES = 20_000_000
FSIZE_RESERVE_BYTES = 4 * 2**20  # on top of max_output_bytes, for the runner's events file
CSV_MESSAGE_CHARS = 300
STATE_VERSION = 1
HARD_KINDS = ("timeout", "memory", "crashed")  # the process (or the interpreter) stopped
_OUTCOME_STATUS = {"fail": "failed", "error": "error", "not_implemented": "not_implemented",
                   "skipped": "failed", "timeout": "timeout", "memory": "memory",
                   "crashed": "crashed"}


@dataclass(frozen=True)
class GradeRow:
    """One exercise of one student: a CSV row, plus per-check lines for the feedback file."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str
    details: tuple[str, ...] = field(default=(), compare=False)

    def csv_fields(self) -> list[str]:
        return [self.student, self.notebook, self.exercise, _number(self.points),
                _number(self.max_points), self.status, _one_line(self.message, CSV_MESSAGE_CHARS)]


@dataclass(frozen=True)
class NotebookSpec:
    """What the instructor's release says about one notebook: its exercises and their tests."""

    name: str
    exercises: tuple[Exercise, ...]
    check_modules: tuple[str, ...]
    # exercise id -> ((check name, weight, description), ...), in the order the runner runs them
    checks: dict[str, tuple[tuple[str, float, str], ...]]


@dataclass(frozen=True)
class Limits:
    timeout: float
    memory_mb: int
    max_output_bytes: int


@dataclass
class NotebookResult:
    rows: list[GradeRow]
    notes: list[str]  # cells that raised, runs that were stopped: for the feedback file


class _Cancelled(Exception):
    pass


def _number(x: float) -> str:
    return f"{x:g}"


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# The instructor's side: exercises and tests.


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
        checks = collect_checks(load_module(p) for p in modules)
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
        ))
    if not specs:
        raise ValueError(
            f"exercises_dir: expected notebooks with exercises in {str(exercises_dir)!r}"
        )
    return specs


def _specs_digest(specs: Sequence[NotebookSpec], limits: Limits) -> str:
    h = hashlib.sha256(f"tinyir-grading-{STATE_VERSION}".encode())
    h.update(json.dumps(asdict(limits), sort_keys=True).encode())
    for spec in specs:
        h.update(json.dumps([spec.name, [asdict(e) for e in spec.exercises]]).encode())
        for module in spec.check_modules:
            h.update(Path(module).read_bytes())
    return h.hexdigest()


def _submission_digest(base: str, student_dir: Path) -> str:
    h = hashlib.sha256(base.encode())
    for path in sorted(student_dir.rglob("*")):
        if path.is_file() and ".ipynb_checkpoints" not in path.parts:
            h.update(str(path.relative_to(student_dir)).encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# One notebook of one student.


def _child_env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(
        MPLBACKEND="Agg", PYTHONHASHSEED="0", PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2", TMPDIR=str(scratch / "tmp"), HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
    )
    env.pop("PYTHONSTARTUP", None)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class _Attempt:
    events: list[dict[str, Any]]
    returncode: int
    timed_out: bool
    stderr_tail: str


def _read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:  # a line cut short when the process died
                    continue
                if isinstance(event, dict):
                    events.append(event)
    return events


def _tail(path: Path, size: int = 2000) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode("utf-8", errors="replace")


def _run_attempt(
    job: dict[str, Any], scratch: Path, attempt: int, limits: Limits, cancel: threading.Event
) -> _Attempt:
    """Run the runner once on ``job``; kill its process group at the timeout."""
    events_path = scratch / f"events-{attempt}.jsonl"
    job_path = scratch / f"job-{attempt}.json"
    job = dict(job, events=str(events_path))
    job_path.write_text(json.dumps(job), encoding="utf-8")
    out_path, err_path = scratch / f"stdout-{attempt}.txt", scratch / f"stderr-{attempt}.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # start_new_session: the child leads its own process group, so the timeout kills
        # everything it started. The limits are set by the runner itself, before student code
        # runs: preexec_fn is not safe with the threads of jobs > 1.
        proc = subprocess.Popen(
            # -P: the student's folder is not put first on sys.path, so a stray torch.py or
            # tinyir/ there cannot replace the runner or the tests (the runner adds it later).
            [sys.executable, "-P", "-m", "tinyir.grading.runner", str(job_path)],
            cwd=scratch / "work", env=_child_env(scratch), stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
    deadline = time.monotonic() + limits.timeout
    timed_out = False
    try:
        while True:
            try:
                proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if cancel.is_set():
                    raise _Cancelled() from None
                if time.monotonic() > deadline:
                    timed_out = True
                    break
    finally:
        _kill_group(proc)  # also whatever the student left running in the background
        proc.wait()
    return _Attempt(_read_events(events_path), proc.returncode, timed_out, _tail(err_path))


def _process_failure(attempt: _Attempt, limits: Limits) -> tuple[str, str]:
    """(kind, message) for a run that ended without its "done" event."""
    if attempt.timed_out:
        return "timeout", f"did not finish within {limits.timeout:g} s"
    code = attempt.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return "memory", ("the process was killed (SIGKILL), most likely by the system for "
                              "using too much memory")
        return "crashed", f"the interpreter crashed ({name})"
    return "crashed", f"the interpreter exited (exit code {code})"


@dataclass
class _CellInfo:
    index: int
    source: str
    exercise: str | None
    self_check: str | None
    error: dict[str, str] | None = None
    defined: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.exercise:
            return f"cell {self.index + 1} (exercise {self.exercise})"
        if self.self_check:
            return f"cell {self.index + 1} (self-check of {self.self_check})"
        return f"cell {self.index + 1}"


class _NotebookRun:
    """Runs one notebook (restarting past what kills it) and turns the events into rows."""

    def __init__(self, student: str, spec: NotebookSpec, nb: dict[str, Any], limits: Limits):
        self.student, self.spec, self.limits = student, spec, limits
        self.cells = {
            i: _CellInfo(i, cell_source(c), cell_tags(c).get("exercise"),
                         cell_tags(c).get("self_check"))
            for i, c in enumerate(nb["cells"])
            if c.get("cell_type") == "code" and not skipped_in_grading(c)
        }
        self.skipped_cells: set[int] = set()
        self.stopped: set[str] = set()  # exercises whose checks are not run again
        self.exercise_info: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[tuple[str, str], tuple[str, str]] = {}
        self.aborted: tuple[str, str] | None = None
        self.notes: list[str] = []

    def job(self) -> dict[str, Any]:
        return {
            "notebook": self.spec.name,
            "cells": [
                {"index": c.index, "source": c.source, "exercise": c.exercise,
                 "self_check": c.self_check}
                for c in self.cells.values()
            ],
            "skip_cells": sorted(self.skipped_cells),
            "exercises": [{"id": e.id, "names": list(e.names)} for e in self.spec.exercises],
            "skip_exercises": sorted(self.stopped | set(self._hard_failures())),
            "skip_checks": sorted([list(k) for k in self.outcomes]),
            "check_modules": list(self.spec.check_modules),
            "memory_mb": self.limits.memory_mb,
            "max_output_bytes": self.limits.max_output_bytes,
            "fsize_bytes": self.limits.max_output_bytes + FSIZE_RESERVE_BYTES,
        }

    def run(self, scratch: Path, cancel: threading.Event) -> None:
        for attempt_number in range(MAX_ATTEMPTS):
            attempt = _run_attempt(self.job(), scratch, attempt_number, self.limits, cancel)
            culprit = self._absorb(attempt.events)
            if any(e.get("type") == "done" for e in attempt.events):
                return
            fatal = [e for e in attempt.events if e.get("type") == "fatal"]
            if fatal:
                self.aborted = ("error", str(fatal[0].get("message", "")))
                return
            kind, message = _process_failure(attempt, self.limits)
            stderr = attempt.stderr_tail.replace(str(scratch), ".").strip()
            last_line = ""
            if kind == "crashed" and stderr:  # e.g. "Fatal Python error: Segmentation fault"
                last_line = _one_line(re.sub(r"0x[0-9a-fA-F]{4,}", "0x...",
                                             stderr.splitlines()[-1]), 200)
            if culprit is None:
                self.aborted = (kind, f"the notebook's process stopped outside any cell or check: "
                                      f"{message}")
                return
            if culprit[0] == "cell":
                cell = self.cells[culprit[1]]
                cell.error = {"kind": kind, "message": message}
                self.skipped_cells.add(cell.index)
                self.notes.append(f"{cell.label}: {message}; the notebook was run again without it"
                                  + (f" (last line on stderr: {last_line})" if last_line else ""))
            else:
                _, ex_id, check_name = culprit
                self.outcomes[(ex_id, check_name)] = (kind, message)
                self.stopped.add(ex_id)
                self.notes.append(f"check {check_name} of {ex_id}: {message}; the notebook was "
                                  "run again without this exercise's remaining checks")
        self.aborted = (kind, f"{message}; gave up after {MAX_ATTEMPTS} runs of the notebook")

    def _absorb(self, events: list[dict[str, Any]]) -> tuple | None:
        """Record an attempt's events; return what was running when it stopped (or None)."""
        running: tuple | None = None
        for event in events:
            kind = event.get("type")
            if kind == "cell_start" and event.get("cell") in self.cells:
                running = ("cell", event["cell"])
            elif kind == "cell_end" and event.get("cell") in self.cells:
                cell = self.cells[event["cell"]]
                cell.error, cell.defined = event.get("error"), event.get("defined", [])
                running = None
            elif kind == "exercise":
                self.exercise_info[event["exercise"]] = event
            elif kind == "check_start":
                running = ("check", event["exercise"], event["check"])
            elif kind == "check_end":
                key = (event["exercise"], event["check"])
                self.outcomes[key] = (event["outcome"], event.get("message", ""))
                running = None
        return running

    def _hard_failures(self) -> dict[str, tuple[_CellInfo, dict[str, str]]]:
        """Exercises whose own cell or self-check timed out, ran out of memory or exited."""
        found: dict[str, tuple[_CellInfo, dict[str, str]]] = {}
        for cell in self.cells.values():
            owner = cell.exercise or cell.self_check
            if owner and cell.error and cell.error["kind"] in HARD_KINDS and owner not in found:
                found[owner] = (cell, cell.error)
        return found

    # -- rows ---------------------------------------------------------------------------------

    def rows(self) -> list[GradeRow]:
        hard = self._hard_failures()
        rows = []
        for exercise in self.spec.exercises:
            row = dict(student=self.student, notebook=self.spec.name, exercise=exercise.id,
                       max_points=exercise.points)
            info = self.exercise_info.get(exercise.id)
            if exercise.id in hard:
                cell, error = hard[exercise.id]
                rows.append(GradeRow(**row, points=0.0, status=error["kind"],
                                     message=f"{cell.label}: {error['message']}"))
            elif info is not None and info.get("missing"):
                status, message = self._missing(exercise, info["missing"])
                rows.append(GradeRow(**row, points=0.0, status=status, message=message))
            elif info is not None and info.get("oracle"):
                name = info["oracle"][0]
                rows.append(GradeRow(**row, points=0.0, status="failed", message=(
                    f"`{name}` is tinyir's own implementation (imported from the tinyir package), "
                    "not yours")))
            elif info is not None or any(k[0] == exercise.id for k in self.outcomes):
                rows.append(self._from_checks(row, exercise))
            elif self.aborted is not None:
                rows.append(GradeRow(**row, points=0.0, status=self.aborted[0],
                                     message=self.aborted[1]))
            else:  # not reached: should not happen, but never silently
                rows.append(GradeRow(**row, points=0.0, status="error",
                                     message="the grader did not reach this exercise"))
        return rows

    def _missing(self, exercise: Exercise, missing: list[str]) -> tuple[str, str]:
        name = missing[0]
        related = [
            c for c in self.cells.values()
            if c.exercise == exercise.id or any(_defines(c.source, n) for n in missing)
        ]
        for cell in related:
            if cell.error:
                kind = cell.error["kind"]
                if kind == "not_implemented":
                    return kind, f"`{name}` is not defined: its cell still raises " \
                                 "NotImplementedError"
                return kind, f"`{name}` is not defined: {cell.label} failed: " \
                             f"{cell.error['message']}"
        message = f"`{name}` is not defined (renamed or deleted?)"
        defined = [d for c in related if c.exercise == exercise.id for d in c.defined]
        if defined:
            message += "; the exercise's cell defines " + ", ".join(f"`{d}`" for d in defined[:5])
        if not any(c.exercise == exercise.id for c in self.cells.values()):
            message += "; no cell carries this exercise's metadata any more"
        return "missing", message

    def _from_checks(self, row: dict[str, Any], exercise: Exercise) -> GradeRow:
        if exercise.id in self.stopped or self.aborted is None:
            not_run = ("skipped", "not run: an earlier check of this exercise stopped the notebook")
        else:
            not_run = self.aborted
        results = []
        for name, weight, description in self.spec.checks[exercise.id]:
            outcome, message = self.outcomes.get((exercise.id, name), not_run)
            results.append((name, weight, description, outcome, message))
        total = sum(r[1] for r in results)
        passed = sum(r[1] for r in results if r[3] == "pass")
        points = round(exercise.points * passed / total, 2)
        n_pass, n = sum(1 for r in results if r[3] == "pass"), len(results)
        details = tuple(
            f"{'PASS' if outcome == 'pass' else outcome.upper()} {name}"
            + (f" ({description})" if description else "") + (f": {message}" if message else "")
            for name, _, description, outcome, message in results
        )
        bad = [r for r in results if r[3] != "pass"]
        if not bad:
            return GradeRow(**row, points=points, status="ok",
                            message="the check passed" if n == 1 else f"all {n} checks passed",
                            details=details)
        hard = [r for r in bad if r[3] in HARD_KINDS]
        first = hard[0] if hard else bad[0]
        if hard:
            status = first[3]
        elif n_pass:
            status = "partial"
        else:
            status = _OUTCOME_STATUS[first[3]]
        if status == "not_implemented" and all(r[3] == "not_implemented" for r in bad):
            message = f"not implemented yet ({first[4]})"
        else:
            message = f"{n_pass}/{n} checks passed; {first[0]}: {first[4]}"
        return GradeRow(**row, points=points, status=status, message=message, details=details)


def _defines(source: str, name: str) -> bool:
    """Whether a cell binds ``name`` at its top level (def, class, assignment, import ... as)."""
    try:
        tree = ast.parse(python_source(source) or "")
    except (SyntaxError, ValueError):  # it cannot run, but may still be meant to define it
        pattern = rf"^(?:async\s+)?def\s+{name}\b|^class\s+{name}\b|^{name}\s*(?::[^=\n]*)?=(?!=)"
        return re.search(pattern, source, re.MULTILINE) is not None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = [a.asname or a.name.split(".")[0] for a in node.names]
        else:
            continue
        if name in bound:
            return True
    return False


def _all_rows(student: str, spec: NotebookSpec, status: str, message: str) -> NotebookResult:
    return NotebookResult([
        GradeRow(student, spec.name, e.id, 0.0, e.points, status, message) for e in spec.exercises
    ], [])


def grade_notebook(
    student: str,
    student_dir: Path,
    spec: NotebookSpec,
    limits: Limits,
    cancel: threading.Event | None = None,
    scratch_parent: str | Path | None = None,
    keep_scratch: bool = False,
) -> NotebookResult:
    """Grade one notebook of one student (``student_dir / spec.name``), in a scratch copy."""
    path = student_dir / spec.name
    if not path.is_file():
        return _all_rows(student, spec, "missing", f"{spec.name} is not in the submission")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return _all_rows(student, spec, "error", f"the notebook is {size / 1e6:.0f} MB; the "
                         f"grader reads notebooks up to {MAX_NOTEBOOK_BYTES / 1e6:.0f} MB")
    try:
        nb = read_notebook_json(path)
    except ValueError as err:
        return _all_rows(student, spec, "error", f"could not read the notebook: {err}")
    run = _NotebookRun(student, spec, nb, limits)
    scratch = Path(tempfile.mkdtemp(prefix="tinyir-grade-", dir=scratch_parent))
    try:
        shutil.copytree(student_dir, scratch / "work", symlinks=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        (scratch / "tmp").mkdir()
        run.run(scratch, cancel or threading.Event())
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    notes = list(run.notes)
    for cell in run.cells.values():
        if cell.error and not any(n.startswith(cell.label + ":") for n in notes):
            notes.append(f"{cell.label}: {cell.error['message']}")
    return NotebookResult(run.rows(), [f"{spec.name}, {n}" for n in notes])


# ----------------------------------------------------------------------------------------------
# Many students.


def _students(submissions_dir: Path) -> list[str]:
    return sorted(
        p.name for p in submissions_dir.iterdir()
        if p.is_dir() and not p.name.startswith((".", "__"))
    )


def _read_part(path: Path, fingerprint: str) -> tuple[list[GradeRow], list[str]] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != fingerprint:
            return None
        rows = [GradeRow(**{**r, "details": tuple(r.get("details", ()))}) for r in state["rows"]]
        return rows, list(state.get("notes", []))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_part(path: Path, student: str, fingerprint: str, rows: list[GradeRow],
                notes: list[str]) -> None:
    state = {"version": STATE_VERSION, "student": student, "fingerprint": fingerprint,
             "rows": [asdict(r) for r in rows], "notes": notes}
    write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")


def _check_args(jobs: int, timeout: float, memory_mb: int, max_output_bytes: int) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, got {jobs!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 256:
        raise ValueError(f"memory_mb: expected an int >= 256 (MiB), got {memory_mb!r}")
    if (isinstance(max_output_bytes, bool) or not isinstance(max_output_bytes, int)
            or max_output_bytes < 1000):
        raise ValueError(f"max_output_bytes: expected an int >= 1000, got {max_output_bytes!r}")


def grade(
    submissions_dir: str | Path,
    out_csv: str | Path,
    *,
    feedback_dir: str | Path | None = None,
    jobs: int = 1,
    timeout: float = 120,
    memory_mb: int = 2048,
    max_output_bytes: int = 1_000_000,
    force: bool = False,
    extra_tests: str | Path | None = None,
    exercises_dir: str | Path = EXERCISES_DIR,
    progress: bool = True,
) -> list[GradeRow]:
    """Grade every ``submissions_dir/<student>/`` and write ``out_csv`` (and feedback files).

    jobs: notebooks graded at once (one process each). timeout: seconds per run of a notebook.
    memory_mb: address-space limit of each process (MiB). max_output_bytes: printed output kept.
    force: regrade students whose results ``<out_csv>.parts/`` already holds.
    extra_tests: a folder of private grading-test modules (the format of ``tinyir/grading/tests``).
    exercises_dir: the released exercise notebooks; they define the exercises and points.
    Returns every row of the CSV, sorted by (student, notebook, exercise).
    """
    submissions_dir, out_csv = Path(submissions_dir), Path(out_csv)
    if not submissions_dir.is_dir():
        raise ValueError(f"submissions_dir: expected a directory of <student>/<notebook>.ipynb, "
                         f"got {str(submissions_dir)!r}")
    if extra_tests is not None and not Path(extra_tests).is_dir():
        raise ValueError(
            f"extra_tests: expected a directory of test modules, got {str(extra_tests)!r}"
        )
    _check_args(jobs, timeout, memory_mb, max_output_bytes)
    limits = Limits(float(timeout), memory_mb, max_output_bytes)
    specs = load_specs(exercises_dir, extra_tests)
    base = _specs_digest(specs, limits)
    state_dir = out_csv.parent / (out_csv.name + ".parts")

    results: dict[str, tuple[list[GradeRow], list[str]]] = {}
    todo: list[tuple[str, str]] = []
    for student in _students(submissions_dir):
        fingerprint = _submission_digest(base, submissions_dir / student)
        done = None if force else _read_part(state_dir / f"{student}.json", fingerprint)
        if done is not None:
            results[student] = done
        else:
            todo.append((student, fingerprint))

    if todo:
        _grade_students(todo, submissions_dir, specs, limits, jobs, progress, state_dir, results)

    rows = sorted((r for rows, _ in results.values() for r in rows),
                  key=lambda r: (r.student, r.notebook, r.exercise))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(r.csv_fields() for r in rows)
    write_atomic(out_csv, buffer.getvalue())
    if feedback_dir is not None:
        for student, (student_rows, notes) in sorted(results.items()):
            write_atomic(Path(feedback_dir) / f"{student}.md",
                         format_feedback(student, student_rows, notes))
    return rows


def _grade_students(
    todo: list[tuple[str, str]],
    submissions_dir: Path,
    specs: list[NotebookSpec],
    limits: Limits,
    jobs: int,
    progress: bool,
    state_dir: Path,
    results: dict[str, tuple[list[GradeRow], list[str]]],
) -> None:
    from tqdm import tqdm

    cancel = threading.Event()
    fingerprints = dict(todo)
    collected: dict[str, dict[str, NotebookResult]] = {student: {} for student, _ in todo}
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(
        total=len(todo) * len(specs), desc="grading", unit="notebook", file=sys.stderr,
        disable=not progress, dynamic_ncols=True,
    ) as bar:
        futures = {
            pool.submit(grade_notebook, student, submissions_dir / student, spec, limits,
                        cancel): (student, spec.name)
            for student, _ in todo for spec in specs
        }
        try:
            for future in as_completed(futures):
                student, name = futures[future]
                collected[student][name] = future.result()
                bar.set_postfix_str(student, refresh=False)
                bar.update()
                if len(collected[student]) == len(specs):
                    parts = [collected[student][s.name] for s in specs]
                    rows = [r for p in parts for r in p.rows]
                    notes = [n for p in parts for n in p.notes]
                    _write_part(state_dir / f"{student}.json", student, fingerprints[student],
                                rows, notes)
                    results[student] = (rows, notes)
        except BaseException:
            cancel.set()  # running children are killed; queued notebooks are dropped
            for future in futures:
                future.cancel()
            raise


# ----------------------------------------------------------------------------------------------
# Reports.


def _escape(text: str) -> str:
    return _one_line(text, 2000).replace("|", "\\|")


def format_feedback(student: str, rows: Sequence[GradeRow], notes: Sequence[str] = ()) -> str:
    """The Markdown feedback file of one student: points, then every failed check and why."""
    total, maximum = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines = [f"# Feedback for {student}", "", f"Total: {_number(round(total, 2))} / "
             f"{_number(maximum)} points.", ""]
    for notebook in sorted({r.notebook for r in rows}):
        nb_rows = sorted((r for r in rows if r.notebook == notebook), key=lambda r: r.exercise)
        got = round(sum(r.points for r in nb_rows), 2)
        lines += [f"## {notebook}: {_number(got)} / {_number(sum(r.max_points for r in nb_rows))}",
                  "", "| exercise | points | status | message |", "|---|---|---|---|"]
        lines += [f"| {r.exercise} | {_number(r.points)} / {_number(r.max_points)} | {r.status} | "
                  f"{_escape(r.message)} |" for r in nb_rows]
        lines.append("")
        for r in nb_rows:
            failed = [d for d in r.details if not d.startswith("PASS ")]
            if r.status not in ("ok", "not_implemented") and failed:
                lines += [f"### {r.exercise}: {r.status}", ""]
                lines += [f"- {_escape(d)}" for d in r.details]
                lines.append("")
    if notes:
        lines += ["## Cells that raised an error or stopped the notebook", ""]
        lines += [f"- {_escape(n)}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def format_summary(rows: Sequence[GradeRow]) -> str:
    """A plain-text table: one line per student, points per notebook and the total."""
    notebooks = sorted({r.notebook for r in rows})
    students = sorted({r.student for r in rows})
    header = ["student"] + [n.removesuffix(".ipynb") for n in notebooks] + ["total"]
    table = [header]
    for student in students:
        mine = [r for r in rows if r.student == student]
        line = [student]
        for notebook in notebooks + [None]:
            sel = [r for r in mine if notebook is None or r.notebook == notebook]
            line.append(f"{_number(round(sum(r.points for r in sel), 2))}/"
                        f"{_number(sum(r.max_points for r in sel))}")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
