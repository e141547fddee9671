"""The grader's child process: run one notebook's code, then its grading tests.

    python -m tinyir.grading.runner JOB.json

``tinyir.grading.grader`` starts one such process per notebook, in a scratch copy of the
student's folder, and kills its whole process group when it runs out of time. Here, before any
student code runs, the process limits itself: address space (``RLIMIT_AS``, so an allocation past
the limit raises ``MemoryError`` instead of taking the machine), file size (``RLIMIT_FSIZE``, so
no file it writes can fill the disk; ``SIGXFSZ`` is ignored so an oversized write fails with an
``OSError`` instead of killing the process) and core dumps. ``sys.stdout``/``sys.stderr`` are
replaced by streams that stop forwarding after ``max_output_bytes``.

Then, like nbgrader, it runs every code cell of the job in order in one namespace (IPython magics
are stripped; the grader leaves cells tagged ``skip_in_grading`` out of the job), recording each
cell's error without stopping; and runs the grading tests of every
exercise against that namespace, looking the student's objects up by name, so moved or
duplicated cells do not matter (the last definition wins).

Progress goes to an events file, one JSON object per line, written as it happens, so when the
process dies (timeout, ``os._exit``, a crash) the parent knows which cell or check was running,
marks it, and starts the notebook again without it:

    {"type": "cell_start", "cell": 3}
    {"type": "cell_end", "cell": 3, "error": null | {"kind": ..., "message": ...}, "defined": [...]}
    {"type": "exercise", "exercise": "pooling.mean_pooling", "missing": [...], "oracle": [...]}
    {"type": "check_start", "exercise": ..., "check": ...}
    {"type": "check_end", "exercise": ..., "check": ..., "outcome": ..., "message": ...}
    {"type": "fatal", "message": ...}                  the tests could not be loaded
    {"type": "done"}

Error kinds: "not_implemented", "memory", "crashed" (``SystemExit``), "error"; check outcomes
add "pass" and "fail" (an ``AssertionError`` raised by the check itself).
"""

from __future__ import annotations

import builtins
import faulthandler
import io
import json
import linecache
import os
import random
import re
import signal
import sys
import traceback
from typing import Any

from tinyir.grading.build import python_source
from tinyir.grading.checks import Check, collect_checks, load_module

MESSAGE_CHARS = 600
# What a failed allocation says when it is not a MemoryError (torch's CPU allocator, NumPy).
_ALLOCATION_FAILED = re.compile(r"can't allocate memory|not enough memory|out of memory|"
                                r"Unable to allocate|std::bad_alloc", re.IGNORECASE)
_CELL_FILE = re.compile(r"^<cell (\d+)>$")
_MISSING = object()


class _Budget:
    """Characters of output still allowed (about bytes), shared by stdout and stderr."""

    def __init__(self, limit: int):
        self.limit = limit
        self.left = limit


class CappedStream(io.TextIOBase):
    """A text stream that forwards to ``target`` until the shared budget is spent, then drops."""

    def __init__(self, target: Any, budget: _Budget):
        self.target = target
        self.budget = budget

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.budget.left > 0:
            part = text[: self.budget.left]
            self.budget.left -= len(part)
            try:
                self.target.write(part)
                if self.budget.left <= 0:
                    self.target.write(f"\n[output truncated at {self.budget.limit} characters]\n")
            except OSError:
                self.budget.left = 0
        return len(text)

    def flush(self) -> None:
        try:
            self.target.flush()
        except OSError:
            pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()


class _Events:
    """Append one JSON line per event to the events file (each write reaches the OS at once)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def emit(self, **event: Any) -> None:
        os.write(self.fd, (json.dumps(event, ensure_ascii=True) + "\n").encode())


def set_limits(memory_mb: int, fsize_bytes: int) -> None:
    """Cap this process (and anything it starts): address space, file size, no core dumps."""
    import resource

    limits = [(resource.RLIMIT_FSIZE, fsize_bytes), (resource.RLIMIT_CORE, 0)]
    if memory_mb > 0:
        limits.append((resource.RLIMIT_AS, memory_mb * 2**20))
    for which, value in limits:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):  # e.g. RLIMIT_AS on macOS: run without that limit
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class Cleaner:
    """Makes messages short, single-line and identical from run to run."""

    def __init__(self, work_dir: str):
        self.work_dir = work_dir

    def __call__(self, text: str, limit: int = MESSAGE_CHARS) -> str:
        if self.work_dir:
            text = text.replace(self.work_dir + os.sep, "").replace(self.work_dir, ".")
        text = re.sub(r"0x[0-9a-fA-F]{4,}", "0x...", text)
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell_location(exc: BaseException) -> str:
    """' (cell N, line L)' for the innermost frame in a notebook cell, else ''."""
    if isinstance(exc, SyntaxError) and exc.filename and _CELL_FILE.match(exc.filename):
        return f" ({exc.filename[1:-1]}, line {exc.lineno})"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if _CELL_FILE.match(frame.filename):
            return f" ({frame.filename[1:-1]}, line {frame.lineno})"
    return ""


def _raised_in_cell(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and bool(_CELL_FILE.match(frames[-1].filename))


def classify(exc: BaseException, clean: Cleaner) -> dict[str, str]:
    """{"kind", "message"} for an exception raised by student code."""
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        return {"kind": "crashed", "message": clean(
            f"called sys.exit({exc.code!r}), which ends the interpreter{_cell_location(exc)}")}
    if isinstance(exc, NotImplementedError):
        kind = "not_implemented"
    elif isinstance(exc, MemoryError) or _ALLOCATION_FAILED.search(str(exc)):
        kind = "memory"
    else:
        kind = "error"
    detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)  # the location comes next
    text = f"{name}: {detail}" if detail else name
    return {"kind": kind, "message": clean(text + _cell_location(exc))}


def _display(*objects: Any, **_: Any) -> None:
    """Stand-in for IPython's ``display`` outside a kernel: print each object's repr."""
    for obj in objects:
        print(repr(obj))


def _seed() -> None:
    random.seed(0)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


def _from_tinyir(obj: Any) -> bool:
    """True for a function or class that comes from the tinyir package itself (the oracle)."""
    module = getattr(obj, "__module__", None)
    return callable(obj) and isinstance(module, str) and module.startswith("tinyir.")


class Runner:
    """Runs the cells of one notebook in one namespace, then the checks of its exercises."""

    def __init__(self, job: dict[str, Any], events: _Events, streams: tuple[Any, Any]):
        self.job = job
        self.events = events
        self.streams = streams
        self.work_dir = os.getcwd()
        self.clean = Cleaner(self.work_dir)
        self.namespace: dict[str, Any] = {
            "__name__": "__main__", "__builtins__": builtins, "display": _display,
        }
        self.cell_kinds: dict[str, set[str]] = {}  # exercise id -> error kinds of its cells
        self.checks: dict[str, list[Check]] = {}

    def _restore(self) -> None:
        """Undo what a cell may have changed in the process that matters to the next one."""
        sys.stdout, sys.stderr = self.streams
        try:
            os.chdir(self.work_dir)
        except OSError:
            pass
        if "matplotlib.pyplot" in sys.modules:
            try:
                sys.modules["matplotlib.pyplot"].close("all")
            except Exception:  # noqa: BLE001 - a broken pyplot must not stop grading
                pass

    def run_cells(self) -> None:
        skip = set(self.job["skip_cells"])
        for cell in self.job["cells"]:
            index = cell["index"]
            if index in skip:
                continue
            self.events.emit(type="cell_start", cell=index)
            before = dict(self.namespace)
            error = self.run_cell(index, cell["source"])
            self._restore()
            defined = [
                k for k, v in self.namespace.items()
                if not k.startswith("_") and before.get(k, _MISSING) is not v
            ][:50]
            self.events.emit(type="cell_end", cell=index, error=error, defined=defined)
            for role in ("exercise", "self_check"):
                if cell.get(role) and error:
                    self.cell_kinds.setdefault(cell[role], set()).add(error["kind"])

    def run_cell(self, index: int, source: str) -> dict[str, str] | None:
        filename = f"<cell {index + 1}>"
        code_text = python_source(source)
        if code_text is None:
            return {"kind": "error", "message": "cell magic not supported by the grader; skipped"}
        linecache.cache[filename] = (len(code_text), None, code_text.splitlines(True), filename)
        try:
            code = compile(code_text, filename, "exec")
            exec(code, self.namespace)
        except BaseException as exc:  # noqa: BLE001 - every error is recorded, like nbgrader
            return classify(exc, self.clean)
        return None

    def load_checks(self) -> bool:
        """Import the grading tests (before any student code runs); False if they fail to load."""
        try:
            self.checks = collect_checks(load_module(path) for path in self.job["check_modules"])
        except BaseException as exc:  # noqa: BLE001
            self.events.emit(type="fatal", message=self.clean(
                f"the grading tests could not be loaded: {type(exc).__name__}: {exc}"))
            return False
        return True

    def run_tests(self) -> None:
        checks = self.checks
        skip_exercises = set(self.job["skip_exercises"])
        skip_checks = {tuple(pair) for pair in self.job["skip_checks"]}
        for exercise in self.job["exercises"]:
            ex_id = exercise["id"]
            if ex_id in skip_exercises or self.cell_kinds.get(ex_id, set()) & {"crashed", "memory"}:
                continue
            missing = [n for n in exercise["names"] if n not in self.namespace]
            oracle = [n for n in exercise["names"]
                      if n not in missing and _from_tinyir(self.namespace[n])]
            self.events.emit(type="exercise", exercise=ex_id, missing=missing, oracle=oracle)
            if missing or oracle:
                continue
            for found in checks.get(ex_id, []):
                if (ex_id, found.name) in skip_checks:
                    continue
                self.events.emit(type="check_start", exercise=ex_id, check=found.name)
                result = self.run_check(found)
                self._restore()
                self.events.emit(type="check_end", exercise=ex_id, check=found.name, **result)

    def run_check(self, found: Check) -> dict[str, str]:
        try:
            kwargs = found.bind(self.namespace)
        except KeyError as missing:
            return {"outcome": "error", "message": f"`{missing.args[0]}` is not defined"}
        _seed()
        try:
            found.func(**kwargs)
        except AssertionError as exc:
            if not _raised_in_cell(exc):  # the check's own assertion: a wrong answer
                return {"outcome": "fail", "message": self.clean(str(exc) or "assertion failed")}
            result = classify(exc, self.clean)
        except BaseException as exc:  # noqa: BLE001
            result = classify(exc, self.clean)
        else:
            return {"outcome": "pass", "message": ""}
        return {"outcome": result["kind"], "message": result["message"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tinyir.grading.runner JOB.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    set_limits(job["memory_mb"], job["fsize_bytes"])
    faulthandler.enable()
    events = _Events(job["events"])
    budget = _Budget(job["max_output_bytes"])
    streams = (CappedStream(sys.stdout, budget), CappedStream(sys.stderr, budget))
    sys.stdout, sys.stderr = streams
    sys.stdin = io.StringIO("")
    sys.argv = [job["notebook"]]
    runner = Runner(job, events, streams)
    if runner.load_checks():  # before the student's folder is importable (see grader: -P)
        sys.path.insert(0, os.getcwd())  # as in Jupyter: the notebook's folder is importable
        runner.run_cells()
        runner.run_tests()
        events.emit(type="done")
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # Leave at once: threads the student started must not keep the process (or its slot) alive.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
