"""The student's side of grading: run one notebook's cells, then answer the grader's calls.

    python -P -c "...; from tinyir.grading.student import main; main()" IN_FD OUT_FD

The grader (``tinyir.grading.grader``) starts this process inside the sandbox, one per notebook,
and talks to it over two pipes in the data-only format of :mod:`tinyir.grading.protocol`. This
process never sees a check, an expected value or a tolerance: the grader asks it to look up a
name the notebook defined, to call it on inputs the grader made, to read an attribute; it sends
back what came out. Everything here is student-controlled once the first cell has run, so the
grader believes nothing it says except values it can compare with its own.

Before any student code runs, the process limits itself: address space (``RLIMIT_AS``: an
allocation past it raises ``MemoryError``), file size (``RLIMIT_FSIZE``, ``SIGXFSZ`` ignored),
no core dumps. ``sys.stdout``/``sys.stderr`` stop forwarding after ``max_output_bytes``.

Messages this side sends: {"type": "event", "event": "cell_start"|"cell_end"|"ready", ...},
{"type": "reply", "id": n, "value": ...} or {"type": "reply", "id": n, "error": {"kind",
"message"}}, and {"type": "callback", "call": n, "id": callback id, "args", "kwargs"} when student
code calls a function the grader passed in (the grader answers with {"op": "callback_reply"}).
Error kinds: "not_implemented", "memory", "crashed" (``SystemExit``), "missing", "error".
"""

from __future__ import annotations

import builtins
import faulthandler
import importlib
import io
import linecache
import os
import random
import re
import shutil
import signal
import sys
import traceback
from typing import Any

from tinyir.grading.protocol import ProtocolError, decode, encode, read_message, write_message

MESSAGE_CHARS = 600
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


def clean(text: str, work_dir: str = "", limit: int = MESSAGE_CHARS) -> str:
    """Messages short, single-line and identical from run to run."""
    if work_dir:
        text = text.replace(work_dir + os.sep, "").replace(work_dir, ".")
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


def classify(exc: BaseException, work_dir: str = "") -> dict[str, str]:
    """{"kind", "message"} for an exception raised by student code."""
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        return {"kind": "crashed", "message": clean(
            f"called sys.exit({exc.code!r}), which ends the interpreter{_cell_location(exc)}",
            work_dir)}
    if isinstance(exc, NotImplementedError):
        kind = "not_implemented"
    elif isinstance(exc, MemoryError) or _ALLOCATION_FAILED.search(str(exc)):
        kind = "memory"
    else:
        kind = "error"
    try:
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    except Exception:  # noqa: BLE001 - a __str__ that raises
        detail = ""
    text = f"{name}: {detail}" if detail else name
    return {"kind": kind, "message": clean(text + _cell_location(exc), work_dir)}


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


class GraderCallbackError(Exception):
    """A function the grader passed in raised (in the grader) when student code called it."""


class Student:
    """The namespace of one notebook and the objects handed to the grader by reference."""

    def __init__(self, in_fd: int, out_fd: int, streams: tuple[Any, Any], work_dir: str):
        self.in_fd, self.out_fd = in_fd, out_fd
        self.streams = streams
        self.work_dir = work_dir
        self.namespace: dict[str, Any] = {
            "__name__": "__main__", "__builtins__": builtins, "display": _display,
        }
        self.objects: dict[int, Any] = {}
        self.next_call = 0

    # -- the channel ---------------------------------------------------------------------------

    def send(self, header: dict[str, Any], blobs: list[bytes] = ()) -> None:
        write_message(self.out_fd, header, list(blobs))

    def event(self, event: str, **fields: Any) -> None:
        self.send({"type": "event", "event": event, **fields})

    def make_ref(self, obj: Any) -> dict[str, Any]:
        key = id(obj)
        self.objects[key] = obj
        cls = type(obj)
        return {"$ref": key, "type": f"{getattr(cls, '__module__', '?')}."
                                     f"{getattr(cls, '__qualname__', '?')}",
                "module": str(getattr(obj, "__module__", "") or ""),
                "callable": callable(obj)}

    def resolve(self, tag: dict[str, Any]) -> Any:
        if "$ref" in tag:
            if tag["$ref"] not in self.objects:
                raise ProtocolError(f"an unknown object reference {tag['$ref']!r}")
            return self.objects[tag["$ref"]]
        return self._callback(tag["$callback"])

    def _callback(self, callback_id: Any) -> Any:
        def call_grader(*args: Any, **kwargs: Any) -> Any:
            self.next_call += 1
            call = self.next_call
            blobs: list[bytes] = []
            header = {"type": "callback", "call": call, "id": callback_id,
                      "args": encode(list(args), blobs, self.make_ref),
                      "kwargs": encode(dict(kwargs), blobs, self.make_ref)}
            self.send(header, blobs)
            while True:  # serve the grader's requests until it answers this call
                message, in_blobs = read_message(self.in_fd)
                if message.get("op") == "callback_reply" and message.get("call") == call:
                    if "error" in message:
                        raise GraderCallbackError(str(message["error"]))
                    return decode(message.get("value"), in_blobs, self.resolve)
                self.handle(message, in_blobs)

        call_grader.__name__ = call_grader.__qualname__ = f"grader_function_{callback_id}"
        return call_grader

    # -- cells ---------------------------------------------------------------------------------

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

    def run_cells(self, cells: list[dict[str, Any]]) -> None:
        from tinyir.grading.build import python_source

        for cell in cells:
            index = cell["index"]
            self.event("cell_start", cell=index)
            before = dict(self.namespace)
            filename = f"<cell {index + 1}>"
            code_text = python_source(cell["source"])
            error = None
            if code_text is None:
                error = {"kind": "error", "message": "cell magic not supported by the grader; "
                                                     "skipped"}
            else:
                linecache.cache[filename] = (len(code_text), None, code_text.splitlines(True),
                                             filename)
                try:
                    exec(compile(code_text, filename, "exec"), self.namespace)
                except BaseException as exc:  # noqa: BLE001 - every error is recorded
                    error = classify(exc, self.work_dir)
            self._restore()
            defined = [k for k, v in self.namespace.items()
                       if not k.startswith("_") and before.get(k, _MISSING) is not v][:50]
            self.event("cell_end", cell=index, error=error, defined=defined)

    # -- requests ------------------------------------------------------------------------------

    def handle(self, message: dict[str, Any], blobs: list[bytes]) -> None:
        op, request_id = message.get("op"), message.get("id")
        if op == "exit":
            _leave(0)
        try:
            value = self._perform(op, message, blobs)
            out: list[bytes] = []
            reply = {"type": "reply", "id": request_id, "value": encode(value, out, self.make_ref)}
        except BaseException as exc:  # noqa: BLE001 - reported to the grader, never raised
            if isinstance(exc, KeyboardInterrupt):
                raise
            out = []
            reply = {"type": "reply", "id": request_id, "error": classify(exc, self.work_dir)}
            if isinstance(exc, _Missing):
                reply["error"]["kind"] = "missing"
        finally:
            self._restore()
        self.send(reply, out)

    def _perform(self, op: Any, message: dict[str, Any], blobs: list[bytes]) -> Any:
        if op == "lookup":
            name = message["name"]
            if name not in self.namespace:
                raise _Missing(f"`{name}` is not defined")
            return self.namespace[name]
        if op == "getattr":
            return getattr(decode(message["target"], blobs, self.resolve), str(message["name"]))
        if op == "call":
            target = decode(message["target"], blobs, self.resolve)
            args = decode(message["args"], blobs, self.resolve)
            kwargs = decode(message["kwargs"], blobs, self.resolve)
            return target(*args, **kwargs)
        if op == "seed":  # before each check: the same global random state every run
            _seed()
            return None
        if op == "import":
            module, _, attr = str(message["path"]).partition(":")
            value = importlib.import_module(module)
            for part in filter(None, attr.split(".")):
                value = getattr(value, part)
            return value
        raise ProtocolError(f"unknown operation {op!r}")


class _Missing(Exception):
    pass


def _leave(code: int) -> None:
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)  # threads the student started must not keep the process alive


def _copy_submission(source: str, target: str, max_bytes: int) -> None:
    """The sandbox's private, writable copy of the student's folder (small files only)."""
    total = 0
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
        rel = os.path.relpath(root, source)
        os.makedirs(os.path.join(target, rel), exist_ok=True)
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            size = os.path.getsize(path)
            total += size
            if total > max_bytes:
                return
            shutil.copyfile(path, os.path.join(target, rel, name))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    in_fd, out_fd = int(argv[0]), int(argv[1])
    # The grader may start this process ahead of its turn: the slow imports every exercise
    # needs happen while it waits for the job, before any of the student's code runs.
    for name in ("numpy", "torch", *filter(None, os.environ.get(
            "TINYIR_GRADING_PRELOAD", "").split(","))):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the cell that imports it reports the error
            pass

    job, _ = read_message(in_fd)
    set_limits(job["memory_mb"], job["fsize_bytes"])
    faulthandler.enable()
    if job.get("copy_from"):
        _copy_submission(job["copy_from"], job["work_dir"], job.get("copy_max_bytes", 50_000_000))
    os.chdir(job["work_dir"])
    budget = _Budget(job["max_output_bytes"])
    streams = (CappedStream(sys.stdout, budget), CappedStream(sys.stderr, budget))
    sys.stdout, sys.stderr = streams
    sys.stdin = io.StringIO("")
    sys.argv = [job["notebook"]]
    student = Student(in_fd, out_fd, streams, os.getcwd())
    sys.path.insert(0, os.getcwd())  # as in Jupyter: the notebook's folder is importable
    student.run_cells(job["cells"])
    student.event("ready")
    while True:
        try:
            message, blobs = read_message(in_fd)
        except (EOFError, OSError, ProtocolError):
            _leave(0)
        student.handle(message, blobs)


if __name__ == "__main__":
    main()
