"""Where a student's process runs: a bubblewrap sandbox, caps on all its processes, a clean end.

    box = choose_sandbox("auto")          # Sandbox("bwrap") where it works, else Sandbox("none")
    proc = box.start(package_dir, submission_dir, scratch, limits, fds, stdout, stderr)
    ...
    proc.kill()                           # every process it started, setsid or not

``bwrap`` (Debian/Ubuntu package ``bubblewrap``; works unprivileged where user namespaces are
enabled) gives the student's process a read-only view of the system and of the Python
installation, the grader's redacted copy of tinyir, the submission read-only, and two private
size-capped tmpfs mounts: the work folder (its copy of the submission, the
only place it may write besides /tmp) and /tmp. No network, its own PID namespace (when its first
process dies, the kernel kills the rest), no view of the repository, solutions/, the grading
tests, grades, feedback or other students.

Caps on the whole process tree: with a writable cgroup hierarchy (v1 ``memory``/``pids``, or v2)
the tree's memory and number of processes are capped by the kernel; otherwise a watchdog thread
sums the resident memory of every process of the tree and kills the tree past the cap. Each
process also has ``RLIMIT_AS`` (set by the student's side) so a big allocation fails with
``MemoryError`` first.

``Sandbox("none")`` runs the process directly (macOS, or no user namespaces): limits still apply,
but the student's code can read and write whatever the grader's user can. The grader says so in
the summary, the CSV and the feedback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyir.validate import check_choice

SANDBOX_KINDS = ("auto", "bwrap", "none")
MAX_PROCESSES = 64
TMPFS_BYTES = 256 * 2**20
WORK_DIR = "/tinyir-work"  # inside the sandbox: the writable copy of the submission
PACKAGE_MOUNT = "/tinyir-package"
SUBMISSION_MOUNT = "/tinyir-submission"
INSTALL_HINT = "apt-get install bubblewrap  (or dnf install bubblewrap; brew has none: use Docker)"
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
             "from tinyir.grading.student import main; main()")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_probe_cache: dict[str, str | None] = {}


def bwrap_problem() -> str | None:
    """None when bubblewrap runs here; else one line saying why not."""
    if "bwrap" not in _probe_cache:
        exe = shutil.which("bwrap")
        if exe is None:
            _probe_cache["bwrap"] = f"bubblewrap is not installed ({INSTALL_HINT})"
        else:
            try:
                done = subprocess.run(
                    [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                     "--unshare-all", "--die-with-parent", "true"],
                    capture_output=True, timeout=30)
                _probe_cache["bwrap"] = None if done.returncode == 0 else (
                    "bubblewrap cannot create namespaces here: "
                    + (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1])
            except (OSError, subprocess.TimeoutExpired) as err:
                _probe_cache["bwrap"] = f"bubblewrap failed to start: {err}"
    return _probe_cache["bwrap"]


@dataclass(frozen=True)
class Sandbox:
    """kind: "bwrap" or "none"; why: for "none", why there is no sandbox ("" when asked for)."""

    kind: str
    why: str = ""

    @property
    def warning(self) -> str:
        if self.kind == "bwrap":
            return ""
        reason = self.why or "--sandbox none was asked for"
        return (f"NOT SANDBOXED ({reason}): student code ran with the grader's permissions and "
                "could read or change files outside its folder; grade untrusted work inside a "
                "sandbox or a container (docs/instructors.md)")

    def start(self, package_dir: Path, submission_dir: Path, scratch: Path, memory_mb: int,
              fds: tuple[int, int], stdout: Any, stderr: Any, env: dict[str, str]) -> Process:
        """Start the student's process; it reads its job from fds[0] and writes to fds[1]."""
        cgroup = CGroup.create(memory_mb * 2**20 + TMPFS_BYTES, MAX_PROCESSES)
        if self.kind == "bwrap":
            argv = _bwrap_argv(package_dir, submission_dir, env)
            argv += [sys.executable, "-P", "-c", BOOTSTRAP, PACKAGE_MOUNT, *map(str, fds)]
            child_env = {"PATH": "/usr/bin:/bin"}
            cwd = "/"
        else:
            argv = [sys.executable, "-P", "-c", BOOTSTRAP, str(package_dir), *map(str, fds)]
            child_env, cwd = env, str(scratch / "work")
        if cgroup is not None:
            argv = ["/bin/sh", "-c", cgroup.enter_script() + 'exec "$@"', "sh", *argv]
        popen = subprocess.Popen(argv, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=stderr, pass_fds=fds,
                                 start_new_session=True)
        return Process(popen, cgroup, memory_mb * 2**20 + TMPFS_BYTES, self.kind == "bwrap")


def choose_sandbox(requested: str = "auto") -> Sandbox:
    """The sandbox for ``--sandbox requested``; "bwrap" raises when bubblewrap does not work."""
    check_choice("sandbox", requested, SANDBOX_KINDS)
    if requested == "none":
        return Sandbox("none")
    if sys.platform != "linux":
        problem = f"namespaces need Linux; this is {sys.platform}"
    else:
        problem = bwrap_problem()
    if problem is None:
        return Sandbox("bwrap")
    if requested == "bwrap":
        raise RuntimeError(f"sandbox: bwrap was asked for, but {problem}")
    return Sandbox("none", problem)


def _bwrap_argv(package_dir: Path, submission_dir: Path, env: dict[str, str]) -> list[str]:
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent",
            "--new-session", "--proc", "/proc", "--dev", "/dev",
            # tmpfs first: a Python installed under /tmp is bound over it below
            "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
            "--size", str(TMPFS_BYTES), "--tmpfs", WORK_DIR]
    for top in ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    hidden = Path(__file__).resolve().parents[2]  # the repository: solutions/, tests, data
    for path in {sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix}:
        real = os.path.realpath(path)
        if real.startswith(("/usr/", "/etc/")) or not os.path.isdir(real):
            continue
        if Path(real) == hidden or Path(real) in hidden.parents:
            continue  # would show the repository; a venv inside it is bound alone
        argv += ["--ro-bind", real, real]
        if real != path:
            argv += ["--ro-bind", real, path]
    argv += ["--ro-bind", str(package_dir), PACKAGE_MOUNT,
             "--ro-bind", str(submission_dir), SUBMISSION_MOUNT,
             "--chdir", WORK_DIR]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv + ["--"]


class CGroup:
    """A cgroup (v1 memory + pids, or v2) capping a process tree; None where none can be made."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs

    @classmethod
    def create(cls, memory_bytes: int, max_processes: int) -> CGroup | None:
        if os.environ.get("TINYIR_GRADE_NO_CGROUP") or not _CGROUP_ROOT.is_dir():
            return None
        name = f"tinyir-grade-{uuid.uuid4().hex[:12]}"
        made: list[Path] = []
        try:
            v2 = _CGROUP_ROOT / "cgroup.controllers"
            if v2.is_file() and {"memory", "pids"} <= set(v2.read_text().split()):
                d = _CGROUP_ROOT / name
                d.mkdir()
                made.append(d)
                (d / "memory.max").write_text(str(memory_bytes))
                if (d / "memory.swap.max").exists():
                    (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(max_processes))
            else:
                mem, pids = _CGROUP_ROOT / "memory" / name, _CGROUP_ROOT / "pids" / name
                for d in (mem, pids):
                    d.mkdir()
                    made.append(d)
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                (pids / "pids.max").write_text(str(max_processes))
        except OSError:
            for d in reversed(made):
                try:
                    d.rmdir()
                except OSError:
                    pass
            return None
        return cls(made)

    def enter_script(self) -> str:
        return "".join(f"echo $$ > {d / 'cgroup.procs'} && " for d in self.dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                pass
        return found

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


def _descendants(root: int) -> dict[int, int]:
    """{pid: resident bytes} for ``root`` and every process below it (read from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * page
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in tree:
                tree.add(child)
                frontier.append(child)
    return {pid: rss.get(pid, 0) for pid in tree if pid in rss}


class Process:
    """The student's running process tree: poll, wait, and kill every process of it."""

    def __init__(self, popen: subprocess.Popen, cgroup: CGroup | None, memory_bytes: int,
                 bwrap: bool = False):
        self.popen = popen
        self.bwrap = bwrap
        self.cgroup = cgroup
        self.memory_bytes = memory_bytes
        self.over_limit = ""  # set by the watchdog when it killed the tree
        self._stop = threading.Event()
        if cgroup is None and sys.platform == "linux":
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            tree = _descendants(self.popen.pid)
            if not tree:
                return
            if sum(tree.values()) > self.memory_bytes:
                self.over_limit = "memory"
            elif len(tree) > MAX_PROCESSES:
                self.over_limit = "processes"
            if self.over_limit:
                self._kill_tree(tree)
                return

    def _kill_tree(self, tree: dict[int, int] | None = None) -> None:
        tree = _descendants(self.popen.pid) if tree is None and sys.platform == "linux" else tree
        for pid in (tree or {}):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self, grace: float = 0.0) -> int:
        """Kill every process of the tree (the cgroup's, the group's, the descendants').

        grace: seconds to wait first for the process to end by itself (to read its exit code).
        Returns the exit code; a death by signal N is -N (bwrap reports it as 128 + N).
        """
        if grace > 0:
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._stop.set()
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._kill_tree()
        if self.cgroup is not None:
            self.cgroup.kill_all()
        code = self.popen.wait()
        if self.bwrap and 128 < code <= 128 + 64:
            code = 128 - code
        return code
