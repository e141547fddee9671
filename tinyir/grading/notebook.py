"""Grade one notebook of one student: run its cells in the sandbox, then the checks, from outside.

The student's process (``tinyir.grading.student``) runs the notebook's code cells in order
(except cells tagged ``skip_in_grading``, heavy demos, and the visible ``self_check`` cells, which
compare with tinyir's reference and are for the student) and then waits. The checks run here, in
the grader's process: they look up the exercise's names there and call them through handles
(``tinyir.grading.remote``), so expected values, tolerances and verdicts never enter the
student's process, and a grade is what this process computed.

Time: one cap for the whole notebook (all cells, checks and restarts together), and a cap per
cell and per check call (a quarter of it), so four endless cells cost the notebook's cap, once.
When the process dies or runs out of time in a cell, that cell is marked and the notebook runs
again without it; in a check, that check is marked and the exercise's remaining checks are not
run; at most ``MAX_ATTEMPTS`` runs.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyir.grading.build import cell_source, cell_tags, python_source, skipped_in_grading
from tinyir.grading.checks import Check
from tinyir.grading.protocol import write_message
from tinyir.grading.remote import ProcessStopped, Remote, RemoteObject, Session, StudentError
from tinyir.grading.sandbox import SUBMISSION_MOUNT, WORK_DIR, Sandbox

MAX_ATTEMPTS = 6  # runs of a notebook; the time cap bounds timeouts, this bounds crashes
ITEM_SHARE = 0.25  # a cell or a check call may use this share of the notebook's time cap
FSIZE_RESERVE_BYTES = 4 * 2**20
HARD_KINDS = ("timeout", "memory", "crashed")
_OUTCOME_STATUS = {"fail": "failed", "error": "error", "not_implemented": "not_implemented",
                   "missing": "error", "skipped": "failed", "timeout": "timeout",
                   "memory": "memory", "crashed": "crashed"}


class Cancelled(Exception):
    pass


@dataclass
class CellInfo:
    index: int
    source: str
    exercise: str | None
    error: dict[str, str] | None = None
    defined: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"cell {self.index + 1}" + (f" (exercise {self.exercise})" if self.exercise else "")


def _tag_text(tags: dict[str, Any], key: str) -> str | None:
    value = tags.get(key)
    return value if isinstance(value, str) and value else None


class NotebookRun:
    """Runs one notebook (restarting past what kills it) and records cells and check outcomes."""

    def __init__(self, spec: Any, nb: dict[str, Any], limits: Any, sandbox: Sandbox,
                 package_dir: Path, submission_dir: Path, scratch: Path,
                 cancel: threading.Event):
        self.spec, self.limits, self.sandbox = spec, limits, sandbox
        self.package_dir, self.submission_dir, self.scratch = package_dir, submission_dir, scratch
        self.cancel = cancel
        self.cells: dict[int, CellInfo] = {}
        for i, c in enumerate(nb["cells"]):
            if not isinstance(c, dict) or c.get("cell_type") != "code" or skipped_in_grading(c):
                continue
            tags = cell_tags(c)
            if _tag_text(tags, "self_check") and not _tag_text(tags, "exercise"):
                continue  # the student's own check against tinyir: not graded, not run
            self.cells[i] = CellInfo(i, cell_source(c), _tag_text(tags, "exercise"))
        self.skipped_cells: set[int] = set()
        self.stopped: set[str] = set()  # exercises whose remaining checks are not run again
        self.looked_up: dict[str, dict[str, Any]] = {}  # exercise id -> {"missing", "oracle"}
        self.outcomes: dict[tuple[str, str], tuple[str, str]] = {}
        self.aborted: tuple[str, str] | None = None
        self.notes: list[str] = []
        self.deadline = 0.0
        self.attempts = 0
        self._pending: Session | None = None  # a process started ahead by prestart()
        self._spawns = 0  # processes started, for their stdout/stderr file names

    # -- the process ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        sandboxed = self.sandbox.kind == "bwrap"
        tmp = "/tmp" if sandboxed else str(self.scratch / "tmp")
        threads = getattr(self.limits, "threads", 1)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp,
            "MPLCONFIGDIR": tmp, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0",
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads), "MALLOC_ARENA_MAX": "2",
            "OMP_WAIT_POLICY": "PASSIVE",  # no spinning threads when jobs share the cores
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "LANG": "C.UTF-8",
            "TINYIR_GRADING_PRELOAD": ",".join(getattr(self.spec, "preload", ())),
        }
        return env

    def _spawn(self) -> Session:
        """A student process that imports torch, then waits for its job (no student code yet)."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._spawns += 1
        n = self._spawns
        try:
            with open(self.scratch / f"stdout-{n}.txt", "wb") as out, \
                    open(self.scratch / f"stderr-{n}.txt", "wb") as err:
                process = self.sandbox.start(
                    self.package_dir, self.submission_dir, self.scratch, self.limits.memory_mb,
                    (to_child_r, from_child_w), out, err, self._env())
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        return Session(process, to_child_w, from_child_r)

    def prestart(self) -> None:
        """Start the first attempt's process now, so that it imports torch while the grader is
        busy with the previous notebook. Its time does not count against this notebook's cap;
        it runs nothing of the student's until :meth:`run` sends the job."""
        if self._pending is None:
            self._pending = self._spawn()

    def discard(self) -> None:
        """Kill a prestarted process that will not be used."""
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def _start(self) -> Session:
        self.attempts += 1
        if self._pending is not None and self._pending.process.popen.poll() is not None:
            self.discard()  # it died before its job (nothing of the student's ran): start anew
        session, self._pending = (self._pending or self._spawn()), None
        sandboxed = self.sandbox.kind == "bwrap"
        work = WORK_DIR if sandboxed else str(self.scratch / "work")
        job = {
            "notebook": self.spec.name,
            "cells": [{"index": c.index, "source": c.source} for c in self.cells.values()
                      if c.index not in self.skipped_cells],
            "memory_mb": self.limits.memory_mb,
            "max_output_bytes": self.limits.max_output_bytes,
            "fsize_bytes": self.limits.max_output_bytes + FSIZE_RESERVE_BYTES,
            "work_dir": work,
            "copy_from": SUBMISSION_MOUNT if sandboxed else None,
        }
        try:
            write_message(session.to_fd, job)
        except OSError:
            pass  # the process died at once: the first receive says how
        return session

    def _item_deadline(self) -> float:
        return min(time.monotonic() + self.limits.timeout * ITEM_SHARE, self.deadline)

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.discard()

    def _run(self) -> None:
        self.deadline = time.monotonic() + self.limits.timeout
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            if time.monotonic() >= self.deadline:
                self.aborted = ("timeout", f"the notebook's time limit ({self.limits.timeout:g} s, "
                                           "all cells and checks together) ran out")
                return
            if self.attempts >= MAX_ATTEMPTS:
                self.aborted = self.aborted or ("crashed", f"gave up after {MAX_ATTEMPTS} runs")
                return
            session = self._start()
            try:
                if not self._run_cells(session):
                    continue
                if self._run_checks(session):
                    return
            finally:
                session.close()

    def _run_cells(self, session: Session) -> bool:
        """Read the cell events until "ready"; False when the process stopped in a cell."""
        running: CellInfo | None = None
        session.deadline = self._item_deadline()
        try:
            while True:
                message, _ = session.receive()
                if self.cancel.is_set():
                    raise Cancelled()
                event = message.get("event") if message.get("type") == "event" else None
                cell = self.cells.get(message.get("cell")) if isinstance(
                    message.get("cell"), int) else None
                if event == "cell_start" and cell is not None:
                    running = cell
                    session.deadline = self._item_deadline()
                elif event == "cell_end" and cell is not None:
                    error = message.get("error")
                    cell.error = _clean_error(error)
                    defined = message.get("defined")
                    cell.defined = [str(d)[:100] for d in defined[:50]] if isinstance(
                        defined, list) else []
                    running = None
                elif event == "ready":
                    return True
                else:
                    session._stop("protocol", "an unexpected message while the cells ran")
        except ProcessStopped as stop:
            if running is None:
                self.aborted = (stop.kind, "the notebook's process stopped outside any cell: "
                                           f"{stop.message}")
                self.attempts = MAX_ATTEMPTS  # nothing to skip: do not run it again
                return False
            running.error = {"kind": stop.kind, "message": stop.message}
            self.skipped_cells.add(running.index)
            self.notes.append(f"{running.label}: {stop.message}; the notebook was run again "
                              "without it")
            return False

    def _run_checks(self, session: Session) -> bool:
        """Run every check not yet run; False when the process stopped (run again)."""
        remote = Remote(session)
        for exercise in self.spec.exercises:
            if exercise.id in self.stopped or self._hard_failure(exercise.id):
                continue
            try:
                session.deadline = self._item_deadline()
                values, info = self._lookup(session, exercise)
            except ProcessStopped as stop:
                self.outcomes.setdefault((exercise.id, "lookup"), (stop.kind, stop.message))
                self.stopped.add(exercise.id)
                return False
            self.looked_up[exercise.id] = info
            if info["missing"] or info["oracle"]:
                continue
            for found in self.spec.check_objects[exercise.id]:
                key = (exercise.id, found.name)
                if key in self.outcomes:
                    continue
                if self.cancel.is_set():
                    raise Cancelled()
                session.deadline = self._item_deadline()
                try:
                    self.outcomes[key] = self._run_check(found, values, remote)
                except ProcessStopped as stop:
                    self.outcomes[key] = (stop.kind, stop.message)
                    self.stopped.add(exercise.id)
                    self.notes.append(f"check {found.name} of {exercise.id}: {stop.message}; "
                                      "the notebook was run again without this exercise's "
                                      "remaining checks")
                    return False
        return True

    def _lookup(self, session: Session, exercise: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        values: dict[str, Any] = {}
        missing, oracle = [], []
        for name in exercise.names:
            try:
                values[name] = session.lookup(name)
            except ProcessStopped:
                raise
            except StudentError:
                missing.append(name)
                continue
            if isinstance(values[name], RemoteObject) and values[name]._callable and \
                    values[name]._module.startswith("tinyir."):
                oracle.append(name)
        return values, {"missing": missing, "oracle": oracle}

    def _run_check(self, found: Check, values: dict[str, Any], remote: Remote) -> tuple[str, str]:
        kwargs: dict[str, Any] = {}
        for name, needed in found.parameters():
            if name in found.kwargs:
                kwargs[name] = found.kwargs[name]
            elif name == "remote":
                kwargs[name] = remote
            elif name in values:
                kwargs[name] = values[name]
            elif needed:
                try:
                    kwargs[name] = remote._session.lookup(name)
                except ProcessStopped:
                    raise
                except StudentError:
                    return "error", f"`{name}` is not defined"
        try:
            remote._session.request({"op": "seed"})
            found.func(**kwargs)
        except ProcessStopped:
            raise
        except StudentError as err:
            return err.kind, err.message
        except AssertionError as err:
            return "fail", _one_line(str(err) or "assertion failed", 600)
        except Exception as err:  # noqa: BLE001 - the check itself could not run
            return "error", f"the check could not run ({type(err).__name__}); tell your instructor"
        return "pass", ""

    def _hard_failure(self, exercise_id: str) -> tuple[CellInfo, dict[str, str]] | None:
        for cell in self.cells.values():
            if cell.exercise == exercise_id and cell.error and cell.error["kind"] in HARD_KINDS:
                return cell, cell.error
        return None

    # -- rows ----------------------------------------------------------------------------------

    def rows(self, student: str, row_type: Any) -> list[Any]:
        rows = []
        for exercise in self.spec.exercises:
            row = dict(student=student, notebook=self.spec.name, exercise=exercise.id,
                       max_points=exercise.points)
            hard = self._hard_failure(exercise.id)
            info = self.looked_up.get(exercise.id)
            lookup_stop = self.outcomes.get((exercise.id, "lookup"))
            if hard is not None:
                cell, error = hard
                rows.append(row_type(**row, points=0.0, status=error["kind"],
                                     message=f"{cell.label}: {error['message']}"))
            elif lookup_stop is not None:
                rows.append(row_type(**row, points=0.0, status=lookup_stop[0],
                                     message=lookup_stop[1]))
            elif info is not None and info["missing"]:
                status, message = self._missing(exercise, info["missing"])
                rows.append(row_type(**row, points=0.0, status=status, message=message))
            elif info is not None and info["oracle"]:
                rows.append(row_type(**row, points=0.0, status="failed", message=(
                    f"`{info['oracle'][0]}` is tinyir's own implementation (imported from the "
                    "tinyir package), not yours")))
            elif info is not None or any(k[0] == exercise.id for k in self.outcomes):
                rows.append(self._from_checks(row, exercise, row_type))
            elif self.aborted is not None:
                rows.append(row_type(**row, points=0.0, status=self.aborted[0],
                                     message=self.aborted[1]))
            else:
                rows.append(row_type(**row, points=0.0, status="error",
                                     message="the grader did not reach this exercise"))
        return rows

    def _missing(self, exercise: Any, missing: list[str]) -> tuple[str, str]:
        name = missing[0]
        related = [c for c in self.cells.values()
                   if c.exercise == exercise.id or any(_defines(c.source, n) for n in missing)]
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

    def _from_checks(self, row: dict[str, Any], exercise: Any, row_type: Any) -> Any:
        if exercise.id in self.stopped or self.aborted is None:
            not_run = ("skipped", "not run: an earlier check of this exercise stopped the notebook")
        else:
            not_run = self.aborted
        results = []
        for found in self.spec.check_objects[exercise.id]:
            outcome, message = self.outcomes.get((exercise.id, found.name), not_run)
            results.append((found.name, found.weight, found.description, outcome, message))
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
            return row_type(**row, points=points, status="ok",
                            message="the check passed" if n == 1 else f"all {n} checks passed",
                            details=details)
        hard = [r for r in bad if r[3] in HARD_KINDS]
        first = hard[0] if hard else bad[0]
        if hard:
            status = first[3]
        elif n_pass:
            status = "partial"
        else:
            status = _OUTCOME_STATUS.get(first[3], "error")
        if status == "not_implemented" and all(r[3] == "not_implemented" for r in bad):
            message = f"not implemented yet ({first[4]})"
        else:
            message = f"{n_pass}/{n} checks passed; {first[0]}: {first[4]}"
        return row_type(**row, points=points, status=status, message=message, details=details)


def _clean_error(error: Any) -> dict[str, str] | None:
    if not isinstance(error, dict):
        return None
    kind = str(error.get("kind", "error"))
    if kind not in ("error", "not_implemented", "memory", "crashed"):
        kind = "error"
    return {"kind": kind, "message": _one_line(str(error.get("message", "")), 600)}


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _defines(source: str, name: str) -> bool:
    """Whether a cell binds ``name`` at its top level (def, class, assignment, import ... as)."""
    try:
        tree = ast.parse(python_source(source) or "")
    except (SyntaxError, ValueError):  # it cannot run, but may still be meant to define it
        pattern = rf"^(?:async\s+)?def\s+{re.escape(name)}\b|^class\s+{re.escape(name)}\b|" \
                  rf"^{re.escape(name)}\s*(?::[^=\n]*)?=(?!=)"
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


def make_scratch(parent: str | Path | None, submission_dir: Path, copy: bool) -> Path:
    """A private scratch folder: tmp/, and (without a sandbox) work/, a copy of the submission."""
    scratch = Path(tempfile.mkdtemp(prefix="tinyir-grade-", dir=parent))
    (scratch / "tmp").mkdir()
    if copy:
        shutil.copytree(submission_dir, scratch / "work", symlinks=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return scratch
