"""The grader against hostile students: nothing a submission does raises its grade, touches
another student's, leaves a process behind, or stops the run.

One grading run (module fixture, 2 jobs, so attacks run beside honest work) over a class of
students built from exercises/01_pooling.ipynb (the blank stubs) with attack cells:

    patcher     patches describe_difference/assert_close/torch.allclose, walks gc for Check
                objects, writes forged "pass" events to every file descriptor
    liar        returns a torch.Tensor subclass whose comparisons always say "equal"
    borrower    wraps tinyir's own mean_pooling (alias, partial, lambda), reads solutions/
    snooper     reads the hidden and private tests, writes into other students' folders, the
                package's test file, grades.csv, its resume state and the feedback folder, and
                fills /tmp
    survivor    a double-forked setsid process that outlives the notebook to rewrite grades.csv
    killer      kills its parent and every process it can see, in a cell and in a check
    forkbomb    forks 500 sleepers;  memfork: right answers, and 4 children of 700 MB each
    endless     four endless cells;   malformed: notebooks that are not notebooks

Every attacked exercise must score 0; the honest student graded in the same run keeps full
marks; no process survives; the files outside the scratch copy are byte-for-byte unchanged; the
CSV is complete. These tests need the bubblewrap sandbox (`make test` installs it when run as
root); elsewhere they skip, saying how to install it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tinyir.grading import EXERCISES_DIR, SOLUTIONS_DIR, STATUSES, grade, read_exercises
from tinyir.grading.build import cell_tags
from tinyir.grading.sandbox import INSTALL_HINT, bwrap_problem, choose_sandbox
from tinyir.grading.specs import BUILTIN_TESTS_DIR

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None,
    reason=f"the grading sandbox does not work here ({bwrap_problem()}); {INSTALL_HINT}",
)

POOLING, COSTS = "01_pooling.ipynb", "04_costs.ipynb"
TIMEOUT = 40
MARKER = "31337"  # the survivor's sleep argument: found in `ps` if it outlived the run
N_POOLING = len(read_exercises(EXERCISES_DIR / POOLING))
NOTEBOOKS = sorted(p.name for p in SOLUTIONS_DIR.glob("*.ipynb"))
N_EXERCISES = sum(len(read_exercises(EXERCISES_DIR / n)) for n in NOTEBOOKS)


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def code_cell(source: str, **tags) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tinyir": tags} if tags
            else {}, "outputs": [], "source": source}


def with_cells(base: dict, sources: dict[str, str], extra: list[str] = ()) -> dict:
    """``base`` with exercise cells replaced (by exercise id) and extra code cells appended."""
    nb = json.loads(json.dumps(base))
    for cell in nb["cells"]:
        ex = cell_tags(cell).get("exercise")
        if ex in sources:
            cell["source"] = sources[ex]
    nb["cells"] += [code_cell(s) for s in extra]
    return nb


ZEROS = {
    "pooling.mean_pooling": "def mean_pooling(hidden, mask):\n"
                            "    return torch.zeros(hidden.shape[0], hidden.shape[2])\n",
    "pooling.last_token_pooling": "def last_token_pooling(hidden, mask):\n"
                                  "    return torch.zeros(hidden.shape[0], hidden.shape[2])\n",
}


# Four children of 700 MB each: more than the notebook's cap for all its processes together, so
# at least one must be stopped (killed by the cgroup or the watchdog, or refused by RLIMIT_AS).
MEMFORK = """import os, time
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        try:
            hog = bytearray(700_000_000)
            time.sleep(4)
            os._exit(0)
        except BaseException:
            os._exit(3)
    pids.append(pid)
codes = [os.waitpid(p, 0)[1] for p in pids]
if all(c == 0 for c in codes):
    raise RuntimeError("MEMORY CAP NOT ENFORCED")
"""


def build_class(root: Path, paths: dict[str, Path]) -> Path:
    sub = root / "submissions"
    blank, solved = load(EXERCISES_DIR / POOLING), load(SOLUTIONS_DIR / POOLING)
    save(solved, sub / "honest" / POOLING)
    save(load(SOLUTIONS_DIR / COSTS), sub / "honest" / COSTS)

    save(with_cells(blank, ZEROS, [
        "import gc, os, torch\n"
        "import tinyir.grading.checks as c\n"
        "c.describe_difference = lambda *a, **k: None\n"
        "c.assert_close = lambda *a, **k: None\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\n"
        "torch.Tensor.__eq__ = lambda *a, **k: True\n"
        "for o in gc.get_objects():\n"
        "    if type(o).__name__ in ('Check', 'NotebookRun', 'Session'):\n"
        "        try:\n            object.__setattr__(o, 'func', lambda **k: None)\n"
        "        except Exception:\n            pass\n"
        "forged = b'{\"type\": \"check_end\", \"outcome\": \"pass\"}\\n'\n"
        "for fd in range(1, 20):\n"
        "    try:\n        os.write(fd, forged)\n    except OSError:\n        pass\n",
    ]), sub / "patcher" / POOLING)

    liar = ("class Liar(torch.Tensor):\n"
            "    def __eq__(self, other): return True\n"
            "    def allclose(self, *a, **k): return True\n"
            "    @classmethod\n"
            "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
            "        return True\n")
    save(with_cells(blank, {
        "pooling.mean_pooling": liar + "def mean_pooling(hidden, mask):\n"
        "    return torch.zeros(hidden.shape[0], hidden.shape[2]).as_subclass(Liar)\n",
        "pooling.last_token_pooling": "class Fake:\n    shape = (0,)\n"
        "    def tolist(self): return []\n"
        "def last_token_pooling(hidden, mask):\n    return Fake()\n",
    }), sub / "liar" / POOLING)

    save(with_cells(blank, {
        "pooling.mean_pooling": "import functools\nimport tinyir.pooling as tp\n"
        "mean_pooling = functools.partial(tp.mean_pooling)\n",
        "pooling.last_token_pooling": "import json\n"
        f"_nb = json.load(open({str(paths['solutions'] / POOLING)!r}))\n"
        "for _c in _nb['cells']:\n"
        "    if 'last_token_pooling' in ''.join(_c['source']) and _c['cell_type'] == 'code':\n"
        "        exec(''.join(_c['source']))\n",
    }, ["import tinyir.pooling as tp2\n"
        "def last_token_pooling(hidden, mask):\n"
        "    return tp2.last_token_pooling(hidden, mask)\n"]), sub / "borrower" / POOLING)

    writes = "\n".join(
        f"try:\n    open({str(p)!r}, 'w').write('forged by snooper')\nexcept Exception as e:\n"
        f"    print('blocked', e)" for p in (
            paths["other_notebook"], paths["hidden_test"], paths["csv"], paths["parts"] /
            "honest.json", paths["feedback"] / "honest.md", Path("/tmp") / "tinyir-attack-snoop"))
    save(with_cells(blank, ZEROS, [
        "import os\nstolen = []\n"
        f"for p in ({str(paths['hidden_test'])!r}, {str(paths['private'] / 'secret.py')!r}):\n"
        "    try:\n        stolen.append(open(p).read())\n    except Exception as e:\n"
        "        print('blocked', e)\n" + writes + "\n"
        "try:\n    with open('/tmp/big', 'wb') as f:\n"
        "        for _ in range(1000):\n            f.write(b'x' * 1_000_000)\n"
        "except Exception as e:\n    print('stopped at', e)\n",
    ]), sub / "snooper" / POOLING)

    save(with_cells(blank, ZEROS, [
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{MARKER}'])\n"
        "    os._exit(0)\n"
        "if os.fork() == 0:\n    os.setsid()\n"
        "    if os.fork() == 0:\n        time.sleep(3)\n"
        f"        open({str(paths['csv'])!r}, 'w').write('forged after the run')\n"
        "    os._exit(0)\n",
    ]), sub / "survivor" / POOLING)

    save(with_cells(blank, {
        "pooling.mean_pooling": "import os, signal\n"
        "def mean_pooling(hidden, mask):\n    os.kill(-1, signal.SIGKILL)\n",
        "pooling.last_token_pooling": ZEROS["pooling.last_token_pooling"],
    }, ["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"]), sub / "killer" / POOLING)

    save(with_cells(blank, ZEROS, [
        "import os, time\nfor _ in range(500):\n    if os.fork() == 0:\n"
        "        time.sleep(60)\n        os._exit(0)\n",
    ]), sub / "forkbomb" / POOLING)

    save(with_cells(solved, {}, [MEMFORK]), sub / "memfork" / POOLING)

    nb = with_cells(solved, {})
    nb["cells"][1:1] = [code_cell("while True:\n    pass\n") for _ in range(4)]
    save(nb, sub / "endless" / POOLING)

    bad = sub / "malformed"
    nb = load(SOLUTIONS_DIR / POOLING)
    nb["cells"].append(42)
    save(nb, bad / POOLING)
    nb = load(SOLUTIONS_DIR / "02_infonce.ipynb")
    nb["cells"][1]["source"] = [1, 2]
    nb["cells"][3]["metadata"]["tinyir"] = ["exercise", "x"]
    save(nb, bad / "02_infonce.ipynb")
    (bad / "03_similarity_and_metrics.ipynb").write_text('{"cells": [', encoding="utf-8")
    (bad / COSTS).write_text('{"cells": "not a list", "metadata": 7}', encoding="utf-8")
    (bad / "05_training_loop.ipynb").write_bytes(os.urandom(5000))
    (bad / "06_two_stage_search.ipynb").write_text("[1, 2, 3]", encoding="utf-8")
    return sub


def digest_tree(*roots: Path) -> dict[str, str]:
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")) if Path(root).is_dir() else [Path(root)]:
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def survivors() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"sleep {MARKER}" in line
            or "tinyir.grading.student" in line]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    out = root / "out"
    private = root / "private"
    private.mkdir()
    (private / "secret.py").write_text(
        'from tinyir.grading import check\n\nNOTEBOOK = "01_pooling.ipynb"\n\n\n'
        '@check("pooling.mean_pooling")\ndef private_case(mean_pooling):\n'
        '    raise RuntimeError("SECRET-9731 in the private test")\n')
    other = root / "submissions" / "honest" / POOLING
    paths = {"solutions": SOLUTIONS_DIR, "other_notebook": other,
             "hidden_test": BUILTIN_TESTS_DIR / "nb01_pooling.py", "csv": out / "grades.csv",
             "parts": out / "grades.csv.parts", "feedback": out / "feedback", "private": private}
    sub = build_class(root, paths)
    before = digest_tree(sub, BUILTIN_TESTS_DIR, SOLUTIONS_DIR, private)
    start = time.perf_counter()
    rows = grade(sub, out / "grades.csv", feedback_dir=out / "feedback", jobs=2,
                 timeout=TIMEOUT, memory_mb=1536, extra_tests=private, progress=False)
    seconds = time.perf_counter() - start
    time.sleep(4)  # the survivor's timer: it would have written grades.csv by now
    return {"rows": rows, "out": out, "sub": sub, "before": before, "seconds": seconds,
            "roots": (sub, BUILTIN_TESTS_DIR, SOLUTIONS_DIR, private), "survivors": survivors()}


def rows_of(attacked, student: str, notebook: str = POOLING):
    return [r for r in attacked["rows"] if r.student == student and r.notebook == notebook]


@pytest.mark.slow
@pytest.mark.parametrize("student", ["patcher", "liar", "borrower", "snooper", "survivor",
                                     "killer", "forkbomb", "endless"])
def test_every_attacked_exercise_scores_zero(attacked, student):
    rows = rows_of(attacked, student)
    assert len(rows) == N_POOLING
    assert all(r.points == 0 for r in rows), [(r.exercise, r.status, r.message) for r in rows]
    assert all(r.status in STATUSES for r in rows)


@pytest.mark.slow
def test_honest_student_in_the_same_run_keeps_full_marks(attacked):
    rows = [r for r in attacked["rows"] if r.student == "honest"
            and r.notebook in (POOLING, COSTS)]
    # mean_pooling also has the private check, which always raises: 1 of its checks fails
    by_ex = {r.exercise: r for r in rows}
    assert by_ex["pooling.last_token_pooling"].status == "ok"
    assert all(r.status == "ok" for r in rows if r.notebook == COSTS), rows
    assert by_ex["pooling.mean_pooling"].status == "partial"


@pytest.mark.slow
def test_statuses_say_what_happened(attacked):
    msg = {(r.student, r.exercise): (r.status, r.message) for r in attacked["rows"]}
    assert "reference answer" in msg[("borrower", "pooling.mean_pooling")][1]
    assert msg[("liar", "pooling.mean_pooling")][0] == "failed"
    assert "student's process" in msg[("liar", "pooling.mean_pooling")][1]
    assert msg[("patcher", "pooling.mean_pooling")][0] in ("failed", "partial")
    # memfork's own answers are right: its hog is stopped and its exercises still count
    assert {msg[("memfork", e)][0] for e in ("pooling.mean_pooling",
                                             "pooling.last_token_pooling")} <= {"ok", "partial"}
    assert "MEMORY CAP NOT ENFORCED" not in (attacked["out"] / "feedback" / "memfork.md").read_text()
    assert msg[("endless", "pooling.mean_pooling")][0] == "timeout"


@pytest.mark.slow
def test_no_process_survives(attacked):
    assert attacked["survivors"] == []
    assert survivors() == []


@pytest.mark.slow
def test_files_outside_the_scratch_copy_are_untouched(attacked):
    assert digest_tree(*attacked["roots"]) == attacked["before"]
    assert not Path("/tmp/tinyir-attack-snoop").exists()
    assert not Path("/tmp/big").exists() or Path("/tmp/big").stat().st_size < 1_000_000
    feedback = (attacked["out"] / "feedback" / "honest.md").read_text()
    assert "forged" not in feedback


@pytest.mark.slow
def test_csv_is_complete_and_written_only_by_the_grader(attacked):
    with open(attacked["out"] / "grades.csv", newline="") as f:
        table = list(csv.reader(f))
    students = {p.name for p in attacked["sub"].iterdir()}
    assert len(table) - 1 == len(students) * N_EXERCISES
    assert "forged" not in (attacked["out"] / "grades.csv").read_text()
    assert [r for r in table[1:] if r[5] not in STATUSES] == []


@pytest.mark.slow
def test_private_tests_do_not_leak_into_feedback(attacked):
    text = "".join(p.read_text() for p in (attacked["out"] / "feedback").glob("*.md"))
    text += (attacked["out"] / "grades.csv").read_text()
    assert "SECRET-9731" not in text
    assert "private_case" in text  # the check is named, its internals are not


@pytest.mark.slow
def test_malformed_notebooks_give_error_rows_and_the_run_goes_on(attacked):
    rows = [r for r in attacked["rows"] if r.student == "malformed"]
    assert len(rows) == N_EXERCISES
    by_nb = {}
    for r in rows:
        by_nb.setdefault(r.notebook, set()).add(r.status)
    for name in ("03_similarity_and_metrics.ipynb", COSTS, "05_training_loop.ipynb",
                 "06_two_stage_search.ipynb"):
        assert by_nb[name] == {"error"}, (name, by_nb[name])


@pytest.mark.slow
@pytest.mark.slow
def test_endless_cells_cost_one_notebook_time_cap(tmp_path):
    # Eight endless cells: a per-cell cap alone (a quarter of the notebook's) would sum to
    # 2 x the notebook's cap, and the old per-cell timeout to 8 x. The notebook's one cap holds:
    # graded alone, the notebook costs its cap plus the process start, and nothing more.
    cap = 16
    nb = with_cells(load(SOLUTIONS_DIR / POOLING), {})
    nb["cells"][1:1] = [code_cell("while True:\n    pass\n") for _ in range(8)]
    save(nb, tmp_path / "submissions" / "endless" / POOLING)
    start = time.perf_counter()
    rows = grade(tmp_path / "submissions", tmp_path / "g.csv", feedback_dir=tmp_path / "fb",
                 jobs=1, timeout=cap, memory_mb=1536, progress=False)
    seconds = time.perf_counter() - start
    print(f"8 endless cells, notebook cap {cap} s: graded in {seconds:.1f} s")
    assert cap * 0.9 < seconds < 1.5 * cap + 15, seconds
    assert {r.status for r in rows if r.notebook == POOLING} == {"timeout"}, rows
    assert survivors() == []


@pytest.mark.slow
def test_caps_hold_without_cgroups(tmp_path, monkeypatch):
    """Where no cgroup can be made, the watchdog caps memory and processes of the whole tree."""
    monkeypatch.setenv("TINYIR_GRADE_NO_CGROUP", "1")
    sub = tmp_path / "submissions"
    solved = load(SOLUTIONS_DIR / POOLING)
    save(with_cells(solved, {}, [MEMFORK]), sub / "memfork" / POOLING)
    save(with_cells(solved, {}, ["import os, time\nfor _ in range(500):\n    if os.fork() == 0:\n"
                                 f"        os.execv('/bin/sleep', ['sleep', '{MARKER}'])\n"]),
         sub / "forkbomb" / POOLING)
    rows = grade(sub, tmp_path / "g.csv", feedback_dir=tmp_path / "fb", jobs=2, timeout=TIMEOUT,
                 memory_mb=1536, progress=False)
    assert "MEMORY CAP NOT ENFORCED" not in (tmp_path / "fb" / "memfork.md").read_text()
    assert {r.status for r in rows if r.notebook == POOLING} <= {"ok", "partial"}, rows
    assert survivors() == []


def test_sandbox_argument_is_checked():
    with pytest.raises(ValueError, match="sandbox"):
        choose_sandbox("docker")
    assert choose_sandbox("none").warning.startswith("NOT SANDBOXED")
    assert choose_sandbox("auto").kind == "bwrap"
