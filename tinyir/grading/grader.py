"""Grade student notebooks: a sandboxed process per notebook, hidden checks from outside, a CSV.

    rows = grade("submissions/", "grades.csv", feedback_dir="feedback/", jobs=4)
    print(format_summary(rows))

``submissions/<student id>/`` holds a student's notebooks, named as in ``exercises/``. Each
student's notebooks are graded one after another (``jobs`` students at once); each notebook by
``tinyir.grading.notebook``: its cells run in a sandboxed process (``tinyir.grading.sandbox``),
the checks run here and call the student's objects through handles (``tinyir.grading.remote``).
Nothing a student's process does reaches this process except data, which only the checks judge;
a failure while grading one notebook becomes error rows for that notebook, never the end of the
run.

Statuses (one per exercise):
    ok               every check passed: full points
    partial          some checks passed: points in proportion to their weights
    failed           no check passed (wrong answers)
    not_implemented  the stub still raises NotImplementedError
    error            an exception: a syntax error in its cell, a TypeError in the function ...
    timeout          its cell or one of its checks ran past the time limit
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

import csv
import hashlib
import importlib
import io
import json
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyir.atomic import write_atomic
from tinyir.grading.build import (
    EXERCISES_DIR,
    read_notebook_json,
)
from tinyir.grading.notebook import Cancelled, NotebookRun, make_scratch
from tinyir.grading.package import build_student_package
from tinyir.grading.report import CSV_HEADER, GradeRow, format_feedback
from tinyir.grading.sandbox import Sandbox, choose_sandbox
from tinyir.grading.specs import Limits, NotebookSpec, load_specs

MAX_NOTEBOOK_BYTES = 20_000_000
STATE_VERSION = 2


@dataclass
class NotebookResult:
    rows: list[GradeRow]
    notes: list[str]  # cells that raised, runs that were stopped: for the feedback file


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


def _all_rows(student: str, spec: NotebookSpec, status: str, message: str) -> NotebookResult:
    return NotebookResult([
        GradeRow(student, spec.name, e.id, 0.0, e.points, status, message) for e in spec.exercises
    ], [])


def _grader_failure(student: str, spec: NotebookSpec, err: Exception) -> NotebookResult:
    return _all_rows(student, spec, "error", f"the grader could not grade this notebook "
                     f"({type(err).__name__}: {err})")


def prepare_notebook(
    student: str,
    student_dir: Path,
    spec: NotebookSpec,
    limits: Limits,
    cancel: threading.Event | None = None,
    scratch_parent: str | Path | None = None,
    sandbox: Sandbox | None = None,
    package_dir: Path | None = None,
) -> NotebookResult | tuple[NotebookRun, Path]:
    """Read and check one notebook of one student (``student_dir / spec.name``).

    Returns its rows when it cannot run (missing, too large, not a notebook), else a
    (NotebookRun, scratch folder) pair to :meth:`NotebookRun.run` and :func:`finish_notebook`.
    package_dir: the student's copy of tinyir (``build_student_package``); built if None.
    """
    path = student_dir / spec.name
    if not path.is_file():
        return _all_rows(student, spec, "missing", f"{spec.name} is not in the submission")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return _all_rows(student, spec, "error", f"the notebook is {size / 1e6:.0f} MB; the "
                         f"grader reads notebooks up to {MAX_NOTEBOOK_BYTES / 1e6:.0f} MB")
    try:
        nb = read_notebook_json(path)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except (ValueError, TypeError, AttributeError) as err:
        return _all_rows(student, spec, "error", f"could not read the notebook: {err}")
    sandbox = sandbox or choose_sandbox("auto")
    scratch = make_scratch(scratch_parent, student_dir, copy=sandbox.kind != "bwrap")
    try:
        if package_dir is None:
            package_dir = build_student_package(scratch / "package", spec.references)
        run = NotebookRun(spec, nb, limits, sandbox, package_dir, student_dir.resolve(), scratch,
                          cancel or threading.Event())
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return run, scratch


def finish_notebook(student: str, run: NotebookRun) -> NotebookResult:
    """The rows and notes of a notebook whose run has ended."""
    notes = list(run.notes)
    for cell in run.cells.values():
        if cell.error and not any(n.startswith(cell.label + ":") for n in notes):
            notes.append(f"{cell.label}: {cell.error['message']}")
    if run.sandbox.warning:
        notes.append(run.sandbox.warning)
    return NotebookResult(run.rows(student, GradeRow), [f"{run.spec.name}, {n}" for n in notes])


def grade_notebook(
    student: str,
    student_dir: Path,
    spec: NotebookSpec,
    limits: Limits,
    cancel: threading.Event | None = None,
    scratch_parent: str | Path | None = None,
    keep_scratch: bool = False,
    sandbox: Sandbox | None = None,
    package_dir: Path | None = None,
) -> NotebookResult:
    """Grade one notebook of one student (``student_dir / spec.name``) in a sandboxed process.

    package_dir: the student's copy of tinyir (``build_student_package``); built here if None.
    """
    prepared = prepare_notebook(student, student_dir, spec, limits, cancel, scratch_parent,
                                sandbox, package_dir)
    if isinstance(prepared, NotebookResult):
        return prepared
    run, scratch = prepared
    try:
        run.run()
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return finish_notebook(student, run)


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
    sandbox: str = "auto",
    threads: int = 1,
) -> list[GradeRow]:
    """Grade every ``submissions_dir/<student>/`` and write ``out_csv`` (and feedback files).

    jobs: students graded at once (each student's notebooks one after another, so the memory
    cap holds for all the processes of a submission). timeout: seconds per notebook, all its
    cells, checks and restarts together. memory_mb: memory of all the processes of a notebook's
    run (MiB). max_output_bytes: printed output kept.
    force: regrade students whose results ``<out_csv>.parts/`` already holds.
    extra_tests: a folder of private grading-test modules (the format of ``tinyir/grading/tests``).
    exercises_dir: the released exercise notebooks; they define the exercises and points.
    sandbox: "auto" (bubblewrap when it works here, else none, said in every message), "bwrap"
        (fail when it does not work) or "none".
    threads: OpenMP/torch threads of each student process (results must not depend on it).
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
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
        raise ValueError(f"threads: expected an int from 1 to 64, got {threads!r}")
    box = choose_sandbox(sandbox)
    limits = Limits(float(timeout), memory_mb, max_output_bytes, threads)
    specs = load_specs(exercises_dir, extra_tests)
    base = _specs_digest(specs, limits) + box.kind
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
        import torch

        # The checks' first optimizer imports torch._dynamo (about a second): import it now, in
        # the background, while the first students' cells run.
        threading.Thread(target=importlib.import_module, args=("torch._dynamo",),
                         daemon=True).start()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the references are tiny; a busy machine stalls OpenMP teams
        try:
            with tempfile.TemporaryDirectory(prefix="tinyir-packages-") as packages:
                package_dirs = _Packages(Path(packages), specs)
                _grade_students(todo, submissions_dir, specs, limits, jobs, progress, state_dir,
                                results, box, package_dirs)
        finally:
            torch.set_num_threads(threads)
    if box.warning and progress:
        print(box.warning, file=sys.stderr)

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


# Notebooks of a student whose processes are started ahead of their turn (each imports torch,
# about a second, and then waits for its job with nothing of the student's run).
LOOKAHEAD = 1


class _Packages:
    """The student's copy of tinyir for each notebook (its own references redacted), built on
    first use, so that building the next one overlaps the grading of the current one."""

    def __init__(self, root: Path, specs: Sequence[NotebookSpec]):
        self.root, self.specs = root, {spec.name: spec for spec in specs}
        self.built: dict[str, Path] = {}
        self.lock = threading.Lock()

    def __getitem__(self, name: str) -> Path:
        with self.lock:
            if name not in self.built:
                self.built[name] = build_student_package(self.root / name,
                                                         self.specs[name].references)
            return self.built[name]


def _grade_student(student: str, student_dir: Path, specs: list[NotebookSpec], limits: Limits,
                   cancel: threading.Event, box: Sandbox, package_dirs: _Packages,
                   bar) -> tuple[list[GradeRow], list[str]]:
    """All notebooks of one student, one after another; nothing here may stop the run.

    While one notebook is graded, the next ``LOOKAHEAD`` notebooks' processes are already
    started (each imports torch, and runs nothing of the student's until its turn): their start
    overlaps the grading.
    """
    rows: list[GradeRow] = []
    notes: list[str] = []

    def prepare(spec: NotebookSpec) -> NotebookResult | tuple[NotebookRun, Path]:
        prepared = None
        try:
            prepared = prepare_notebook(student, student_dir, spec, limits, cancel, sandbox=box,
                                        package_dir=package_dirs[spec.name])
            if not isinstance(prepared, NotebookResult):
                prepared[0].prestart()
            return prepared
        except Exception as err:  # noqa: BLE001 - a grader failure costs this notebook only
            if isinstance(prepared, tuple):  # the process did not start: its scratch goes too
                shutil.rmtree(prepared[1], ignore_errors=True)
            if isinstance(err, Cancelled):
                raise
            return _grader_failure(student, spec, err)

    ahead: dict[int, NotebookResult | tuple[NotebookRun, Path]] = {}
    try:
        for i, spec in enumerate(specs):
            for j in range(i, min(i + 1 + LOOKAHEAD, len(specs))):
                if j not in ahead:
                    ahead[j] = prepare(specs[j])
            prepared = ahead.pop(i)
            if isinstance(prepared, NotebookResult):
                result = prepared
            else:
                run, scratch = prepared
                try:
                    run.run()
                    result = finish_notebook(student, run)
                except Cancelled:
                    raise
                except Exception as err:  # noqa: BLE001 - a grader failure costs this notebook
                    result = _grader_failure(student, spec, err)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            if box.warning:
                result.rows[:] = [GradeRow(r.student, r.notebook, r.exercise, r.points,
                                           r.max_points, r.status, f"NOT SANDBOXED; {r.message}",
                                           r.details)
                                  for r in result.rows]
            rows += result.rows
            notes += result.notes
            bar.update()
    finally:
        for upcoming in ahead.values():
            if not isinstance(upcoming, NotebookResult):
                upcoming[0].discard()
                shutil.rmtree(upcoming[1], ignore_errors=True)
    return rows, notes


def _grade_students(
    todo: list[tuple[str, str]],
    submissions_dir: Path,
    specs: list[NotebookSpec],
    limits: Limits,
    jobs: int,
    progress: bool,
    state_dir: Path,
    results: dict[str, tuple[list[GradeRow], list[str]]],
    box: Sandbox,
    package_dirs: _Packages,
) -> None:
    from tqdm import tqdm

    cancel = threading.Event()
    fingerprints = dict(todo)
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(
        total=len(todo) * len(specs), desc="grading", unit="notebook", file=sys.stderr,
        disable=not progress, dynamic_ncols=True,
    ) as bar:
        futures = {
            pool.submit(_grade_student, student, submissions_dir / student, specs, limits,
                        cancel, box, package_dirs, bar): student
            for student, _ in todo
        }
        try:
            for future in as_completed(futures):
                student = futures[future]
                rows, notes = future.result()
                _write_part(state_dir / f"{student}.json", student, fingerprints[student],
                            rows, notes)
                results[student] = (rows, notes)
        except BaseException:
            cancel.set()  # running children are killed; queued students are dropped
            for future in futures:
                future.cancel()
            raise
