"""The grader's end of the channel: call what a student's notebook defined, in its own process.

A check never holds a student's object. It holds a ``RemoteObject`` (a handle): calling it sends
the arguments to the student's process as data, runs the call there, and returns the result as
data rebuilt in the grader (``tinyir.grading.protocol``); an object that is not data (a model, a
FAISS index) comes back as another handle. Functions of the check passed as arguments (a fake
reranker, an ``evaluate`` callback) stay in the grader: the student's side gets a stub that calls
back. ``Remote`` (the ``remote`` parameter of a check) builds objects in the student's process:
``remote.new("torch.optim:SGD", model.parameters(), lr=0.5)``.

Every wait has a deadline. When the student's process runs past it, dies, or breaks the
protocol, the process tree is killed and ``ProcessStopped`` says why (timeout, memory, crashed);
when the student's code raises, ``StudentError`` carries its kind and message.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from tinyir.grading.protocol import (
    ProtocolError,
    decode,
    encode,
    read_message,
    write_message,
)
from tinyir.grading.sandbox import Process

PROTOCOL_VIOLATION = "the process broke the grading protocol"


class CannotSend(Exception):
    """A check tried to pass the student's process something that is not data or a handle."""


class StudentError(Exception):
    """The student's code raised: kind is "error", "not_implemented", "memory", "missing" ..."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


class ProcessStopped(StudentError):
    """The student's process is gone (timeout, memory, crashed): the notebook must restart."""


class RemoteObject:
    """A handle to an object in the student's process (a function, a model, an index ...)."""

    __slots__ = ("_session", "_ref", "_type", "_module", "_callable")

    def __init__(self, session: Session, ref: int, type_name: str, module: str, is_callable: bool):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_callable", is_callable)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._session.request({"op": "getattr", "name": name}, target=self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("objects in the student's process are read-only from the grader")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self, args, kwargs)

    def __len__(self) -> int:
        return self._session.call_builtin("builtins:len", self)

    def __iter__(self):
        return iter(self._session.call_builtin("builtins:list", self))

    def __getitem__(self, key: Any) -> Any:
        return self._session.call_builtin("operator:getitem", self, key)

    def __repr__(self) -> str:
        return f"<{self._type} object in the student's process>"

    @property
    def type_name(self) -> str:
        """The qualified name of the object's class, as the student's process reports it."""
        return self._type


class Remote:
    """What a check may do in the student's process besides calling the student's objects."""

    def __init__(self, session: Session):
        self._session = session

    def get(self, path: str) -> Any:
        """``remote.get("torch:is_grad_enabled")``: a module attribute, by "module:name"."""
        return self._session.request({"op": "import", "path": path})

    def new(self, path: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``path`` ("module:callable") there: ``remote.new("torch.optim:SGD", params)``."""
        return self._session.call(self.get(path), args, kwargs)


class Session:
    """One student process and its two pipes; requests wait at most until ``deadline``."""

    def __init__(self, process: Process, to_student: int, from_student: int):
        self.process = process
        self.to_fd, self.from_fd = to_student, from_student
        self.deadline = float("inf")  # time.monotonic() value; set per cell / check
        self.next_id = 0
        self.callbacks: dict[int, Callable[..., Any]] = {}
        self.callback_error: BaseException | None = None
        self.stopped: ProcessStopped | None = None
        self._builtins: dict[str, RemoteObject] = {}

    # -- low level -----------------------------------------------------------------------------

    def _read_exact(self, fd: int, n: int) -> bytes:
        chunks, left = [], n
        while left:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(wait, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def send(self, header: dict[str, Any], blobs: list[bytes] = ()) -> None:
        if self.stopped is not None:
            raise self.stopped
        try:
            write_message(self.to_fd, header, list(blobs))
        except OSError:  # the pipe is closed: the process died
            self._stop(None)

    def receive(self) -> tuple[dict[str, Any], list[bytes]]:
        if self.stopped is not None:
            raise self.stopped
        try:
            return read_message(self.from_fd, read_exact=self._read_exact)
        except TimeoutError:
            self._stop("timeout")
        except (EOFError, OSError):
            self._stop(None)
        except ProtocolError as err:
            self._stop("protocol", str(err))
        raise AssertionError("not reached")

    def _stop(self, why: str | None, detail: str = "") -> None:
        """Kill the process tree and raise ``ProcessStopped`` with the reason."""
        code = self.process.kill(grace=0 if why == "timeout" else 2.0)
        if why == "timeout":
            kind, message = "timeout", "ran past its time limit"
        elif why == "protocol":
            kind, message = "crashed", f"{PROTOCOL_VIOLATION} ({detail})"
        elif self.process.over_limit == "memory":
            kind, message = "memory", "its processes used more memory than the limit"
        elif self.process.over_limit == "processes":
            kind, message = "crashed", "it started more processes than the limit"
        elif code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            if -code == signal.SIGKILL:
                kind, message = "memory", ("the process was killed (SIGKILL), most likely for "
                                           "using too much memory")
            else:
                kind, message = "crashed", f"the interpreter crashed ({name})"
        else:
            kind, message = "crashed", f"the interpreter exited (exit code {code})"
        self.stopped = ProcessStopped(kind, message)
        raise self.stopped

    def close(self) -> None:
        if self.stopped is None:
            try:
                write_message(self.to_fd, {"op": "exit"})
            except OSError:
                pass
        self.process.kill()
        for fd in (self.to_fd, self.from_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- values --------------------------------------------------------------------------------

    def _make_ref(self, value: Any) -> dict[str, Any]:
        if isinstance(value, RemoteObject):
            if value._session is not self:
                raise CannotSend("a handle from another student's process")
            return {"$ref": value._ref}
        if callable(value):
            key = len(self.callbacks) + 1
            self.callbacks[key] = value
            return {"$callback": key}
        raise CannotSend(f"cannot send a {type(value).__name__} to the student's process "
                         "(data, handles and functions only)")

    def _resolve(self, tag: dict[str, Any]) -> RemoteObject:
        if "$ref" not in tag or type(tag["$ref"]) is not int:
            raise ProtocolError("the student's process sent a function reference")
        return RemoteObject(self, tag["$ref"], str(tag.get("type", "?"))[:200],
                            str(tag.get("module", ""))[:200], bool(tag.get("callable")))

    # -- requests ------------------------------------------------------------------------------

    def request(self, header: dict[str, Any], **values: Any) -> Any:
        """Send one request; serve callbacks until its reply; return the value or raise."""
        self.next_id += 1
        request_id = self.next_id
        blobs: list[bytes] = []
        message = dict(header, id=request_id)
        for key, value in values.items():
            message[key] = encode(value, blobs, self._make_ref)
        self.send(message, blobs)
        while True:
            reply, in_blobs = self.receive()
            kind = reply.get("type")
            if kind == "reply" and reply.get("id") == request_id:
                break
            if kind == "callback":
                self._serve_callback(reply, in_blobs)
            elif kind != "event":
                self._stop("protocol", f"unexpected message {str(kind)[:40]!r}")
        error, self.callback_error = self.callback_error, None
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            kind = str(err.get("kind", "error"))
            if kind not in ("error", "not_implemented", "memory", "crashed", "missing"):
                kind = "error"
            if error is not None:
                raise error
            raise StudentError(kind, str(err.get("message", ""))[:2000])
        try:
            value = decode(reply.get("value"), in_blobs, self._resolve)
        except ProtocolError as err:
            raise StudentError("error", f"the result could not be read as data: {err}") from None
        if error is not None:
            raise error
        return value

    def _serve_callback(self, message: dict[str, Any], blobs: list[bytes]) -> None:
        call = message.get("call")
        func = self.callbacks.get(message.get("id"))  # type: ignore[arg-type]
        out: list[bytes] = []
        try:
            if func is None:
                raise ProtocolError("an unknown callback")
            args = decode(message.get("args"), blobs, self._resolve)
            kwargs = decode(message.get("kwargs"), blobs, self._resolve)
            if type(args) is not list or type(kwargs) is not dict or any(
                    type(k) is not str for k in kwargs):
                raise ProtocolError("callback arguments that are not a list and a dict")
            result = func(*args, **kwargs)
            reply = {"op": "callback_reply", "call": call,
                     "value": encode(result, out, self._make_ref)}
        except ProcessStopped:
            raise
        except Exception as exc:  # noqa: BLE001 - the check's function failed: tell both sides
            if self.callback_error is None:
                self.callback_error = exc
            out = []
            reply = {"op": "callback_reply", "call": call, "error": type(exc).__name__}
        self.send(reply, out)

    def call(self, target: RemoteObject, args: tuple, kwargs: dict[str, Any]) -> Any:
        return self.request({"op": "call"}, target=target, args=list(args), kwargs=dict(kwargs))

    def call_builtin(self, path: str, *args: Any) -> Any:
        if path not in self._builtins:
            self._builtins[path] = self.request({"op": "import", "path": path})
        return self.call(self._builtins[path], args, {})

    def lookup(self, name: str) -> Any:
        return self.request({"op": "lookup", "name": name})
