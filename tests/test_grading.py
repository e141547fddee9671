"""The autograder on a class of well- and badly-behaved students.

One grading run (module fixture, 2 jobs, short timeouts) over students built from solutions/
and exercises/: `solutions` (full marks), `blank` (the raw exercises), `loop`, `exit`, `spam`,
`hog`, `syntax`, `renamed`, `moved`. The tests assert the exact status of every exercise, then
that reruns resume, that --force regrades, and that two runs write the same CSV. Cells tagged
`skip_in_grading` (the MiniLM demos of notebooks 05 and 06) are not run by the grader: a small
notebook whose tagged cells would sleep, raise or redefine the answer shows it. Hostile students
are in tests/test_grading_attacks.py.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from tinyir.grading import (
    EXERCISES_DIR,
    SOLUTIONS_DIR,
    STATUSES,
    format_summary,
    grade,
    read_exercises,
)
from tinyir.grading.build import Exercise, cell_tags
from tinyir.grading.checks import collect_checks, load_module
from tinyir.grading.grader import grade_notebook
from tinyir.grading.specs import Limits, NotebookSpec, load_specs

JOBS = 2
TIMEOUT = 60  # seconds per notebook; a cell or check call may take a quarter of it
ITEM = TIMEOUT / 4
MEMORY_MB = 1536
NOTEBOOKS = sorted(p.name for p in SOLUTIONS_DIR.glob("*.ipynb"))
N_EXERCISES = sum(len(read_exercises(EXERCISES_DIR / name)) for name in NOTEBOOKS)
POOLING, COSTS = "01_pooling.ipynb", "04_costs.ipynb"


# -- building students -------------------------------------------------------------------------


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def index_of(nb: dict, **tag: str) -> int:
    """The index of the cell whose tinyir metadata has e.g. exercise="pooling.mean_pooling"."""
    ((key, value),) = tag.items()
    return next(i for i, c in enumerate(nb["cells"]) if cell_tags(c).get(key) == value)


def code_cell(source: str, **tags) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": f"x{abs(hash(source)) % 10**8}",
            "metadata": {"tinyir": tags} if tags else {}, "outputs": [], "source": source}


def solution(name: str) -> dict:
    return load(SOLUTIONS_DIR / name)


def replace_exercise(nb: dict, exercise: str, source: str) -> dict:
    nb["cells"][index_of(nb, exercise=exercise)]["source"] = source
    return nb


def make_class(root: Path) -> Path:
    """Write the students' folders under root/submissions and return it."""
    sub = root / "submissions"
    for name in NOTEBOOKS:
        save(solution(name), sub / "solutions" / name)
        save(load(EXERCISES_DIR / name), sub / "blank" / name)

    # loop: last_token_pooling never returns (its self-check hangs); cross_encoder_seconds
    # passes its self-check but hangs in one hidden check. The rest must still be graded.
    save(replace_exercise(solution(POOLING), "pooling.last_token_pooling",
                          "def last_token_pooling(hidden, mask):\n    while True:\n        pass\n"),
         sub / "loop" / POOLING)
    save(replace_exercise(solution(COSTS), "costs.cross_encoder_seconds",
                          "def cross_encoder_seconds(num_pairs, ms_per_pair):\n"
                          "    while num_pairs == 0:\n        pass\n"
                          "    return num_pairs * ms_per_pair / 1000\n"), sub / "loop" / COSTS)

    # exit: os._exit(1) at the top level of one exercise cell, sys.exit(0) inside a function.
    nb = solution(COSTS)
    i = index_of(nb, exercise="costs.colbert_index")
    nb["cells"][i]["source"] = "".join(nb["cells"][i]["source"]) + "\nimport os\nos._exit(1)\n"
    save(replace_exercise(nb, "costs.cross_encoder_seconds",
                          "import sys\n\ndef cross_encoder_seconds(num_pairs, ms_per_pair):\n"
                          "    sys.exit(0)\n"), sub / "exit" / COSTS)

    # spam: a gigabyte through print, 50 MB straight to file descriptor 1, then correct answers.
    nb = solution(COSTS)
    nb["cells"].insert(2, code_cell(
        "import os, sys\nchunk = 'spam ' * 200_000\nfor _ in range(1000):\n    print(chunk)\n"
        "sys.stderr.write(chunk)\nos.write(1, b'x' * 50_000_000)\n"))
    save(nb, sub / "spam" / COSTS)

    # hog: allocate until the memory limit, with plain Python and with torch.
    save(replace_exercise(solution(COSTS), "costs.cross_encoder_seconds",
                          "def cross_encoder_seconds(num_pairs, ms_per_pair):\n    hog = []\n"
                          "    while True:\n        hog.append(bytearray(100_000_000))\n"),
         sub / "hog" / COSTS)
    save(replace_exercise(solution(POOLING), "pooling.mean_pooling",
                          "def mean_pooling(hidden, mask):\n    hog = []\n    while True:\n"
                          "        hog.append(torch.ones(25_000_000))\n"), sub / "hog" / POOLING)

    # syntax: a syntax error in one exercise cell; the cell that uses it fails with NameError.
    save(replace_exercise(solution(COSTS), "costs.cross_encoder_seconds",
                          "def cross_encoder_seconds(num_pairs, ms_per_pair)\n"
                          "    return num_pairs * ms_per_pair / 1000\n"), sub / "syntax" / COSTS)

    # renamed: mean_pooling renamed to mean_pool; the last_token_pooling cell deleted.
    nb = solution(POOLING)
    i = index_of(nb, exercise="pooling.mean_pooling")
    nb["cells"][i]["source"] = "".join(nb["cells"][i]["source"]).replace(
        "def mean_pooling(", "def mean_pool(")
    del nb["cells"][index_of(nb, exercise="pooling.last_token_pooling")]
    save(nb, sub / "renamed" / POOLING)

    # moved: cells reordered, a wrong first draft before the right definition, a duplicate.
    nb = solution(COSTS)
    cells = nb["cells"]
    cross = cells.pop(index_of(nb, exercise="costs.cross_encoder_seconds"))
    cells.insert(2, cross)
    draft = copy.deepcopy(cells[index_of(nb, exercise="costs.index_size_bytes")])
    draft["source"] = "def index_size_bytes(num_vectors, dim, bits_per_value):\n    return 0\n"
    cells.insert(1, draft)
    cells.append(copy.deepcopy(cross))
    save(nb, sub / "moved" / COSTS)
    nb = solution(POOLING)
    cells = nb["cells"]
    last = cells.pop(index_of(nb, exercise="pooling.last_token_pooling"))
    cells.insert(1, last)
    cells.append(copy.deepcopy(cells[index_of(nb, exercise="pooling.mean_pooling")]))
    save(nb, sub / "moved" / POOLING)
    return sub


EXPECTED = {  # (student, notebook): {exercise: status}; unlisted notebooks are missing
    ("loop", POOLING): {"pooling.mean_pooling": "ok", "pooling.last_token_pooling": "timeout"},
    ("loop", COSTS): {"costs.index_size_bytes": "ok", "costs.colbert_index": "ok",
                      "costs.cross_encoder_seconds": "timeout", "costs.latency_answers": "ok"},
    ("exit", COSTS): {"costs.index_size_bytes": "ok", "costs.colbert_index": "crashed",
                      "costs.cross_encoder_seconds": "crashed", "costs.latency_answers": "crashed"},
    ("spam", COSTS): "ok",
    ("hog", COSTS): {"costs.index_size_bytes": "ok", "costs.colbert_index": "ok",
                     "costs.cross_encoder_seconds": "memory", "costs.latency_answers": "memory"},
    ("hog", POOLING): {"pooling.mean_pooling": "memory", "pooling.last_token_pooling": "ok"},
    ("syntax", COSTS): {"costs.index_size_bytes": "ok", "costs.colbert_index": "ok",
                        "costs.cross_encoder_seconds": "error", "costs.latency_answers": "error"},
    ("renamed", POOLING): "missing",
    ("moved", COSTS): "ok",
    ("moved", POOLING): "ok",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    sub = make_class(root)
    out = root / "out" / "grades.csv"
    start = time.perf_counter()
    rows = grade(sub, out, feedback_dir=root / "out" / "feedback", jobs=JOBS, timeout=TIMEOUT,
                 memory_mb=MEMORY_MB, progress=False)
    seconds = time.perf_counter() - start
    print(f"\ngraded {len({r.student for r in rows})} students in {seconds:.1f} s\n"
          + format_summary(rows))
    return {"root": root, "sub": sub, "out": out, "rows": rows}


def statuses(rows, student: str, notebook: str) -> dict[str, str]:
    return {r.exercise: r.status for r in rows if r.student == student and r.notebook == notebook}


# -- the grading run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_solutions_get_full_marks(graded):
    mine = [r for r in graded["rows"] if r.student == "solutions"]
    assert len(mine) == N_EXERCISES
    assert {r.notebook for r in mine} == set(NOTEBOOKS)
    assert all(r.status == "ok" and r.points == r.max_points for r in mine), mine


@pytest.mark.slow
def test_blank_exercises_score_zero_not_implemented(graded):
    mine = [r for r in graded["rows"] if r.student == "blank"]
    assert len(mine) == N_EXERCISES
    assert all(r.points == 0 and r.status == "not_implemented" for r in mine), mine


@pytest.mark.slow
@pytest.mark.parametrize("student", ["loop", "exit", "spam", "hog", "syntax", "renamed", "moved"])
def test_bad_students_get_precise_statuses(graded, student):
    rows = graded["rows"]
    for notebook in NOTEBOOKS:
        got = statuses(rows, student, notebook)
        expected = EXPECTED.get((student, notebook), "missing")
        if isinstance(expected, str):
            expected = dict.fromkeys(got, expected)
        assert got == expected, f"{student}/{notebook}: {got}"
        for r in rows:
            if r.student == student and r.notebook == notebook:
                assert r.status in STATUSES
                assert (r.points == r.max_points) == (r.status == "ok"), r
    if student == "loop":  # the checks that passed before the hanging one still count
        (row,) = [r for r in rows if r.exercise == "costs.cross_encoder_seconds"
                  and r.student == "loop"]
        assert row.points == 0.5


@pytest.mark.slow
def test_messages_say_why(graded):
    by_key = {(r.student, r.exercise): r.message for r in graded["rows"]}
    assert "ran past its time limit" in by_key[("loop", "pooling.last_token_pooling")]
    assert by_key[("loop", "costs.cross_encoder_seconds")].endswith(  # after any sandbox note
        "2/4 checks passed; cross_encoder_times[no pairs]: ran past its time limit")

    assert "sys.exit(0)" in by_key[("exit", "costs.cross_encoder_seconds")]
    assert "exit code 1" in by_key[("exit", "costs.colbert_index")]
    assert "SyntaxError" in by_key[("syntax", "costs.cross_encoder_seconds")]
    assert "NameError" in by_key[("syntax", "costs.latency_answers")]
    assert "`mean_pool`" in by_key[("renamed", "pooling.mean_pooling")]
    assert "is not in the submission" in by_key[("loop", "infonce.info_nce")]
    assert "not defined" in by_key[("renamed", "pooling.last_token_pooling")]


@pytest.mark.slow
def test_csv_is_sorted_complete_and_has_no_timings(graded):
    with open(graded["out"], newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["student", "notebook", "exercise", "points", "max_points", "status",
                        "message"]
    body = table[1:]
    assert body == sorted(body, key=lambda r: (r[0], r[1], r[2]))
    assert len(body) == 9 * N_EXERCISES
    assert not any("tinyir-grade-" in cell or "/tmp" in cell for row in body for cell in row)


@pytest.mark.slow
def test_feedback_and_outputs_stay_small(graded):
    feedback = graded["root"] / "out" / "feedback"
    assert sorted(p.stem for p in feedback.glob("*.md")) == sorted(
        {r.student for r in graded["rows"]})
    text = (feedback / "syntax.md").read_text()
    assert "SyntaxError" in text and "costs.cross_encoder_seconds" in text
    assert "FAIL" not in (feedback / "solutions.md").read_text()
    for path in graded["root"].rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 5_000_000, path


@pytest.mark.slow
def test_spam_output_is_capped_on_disk(tmp_path, graded):
    spec = next(s for s in load_specs() if s.name == COSTS)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = grade_notebook("spam", graded["sub"] / "spam", spec,
                            Limits(timeout=TIMEOUT, memory_mb=MEMORY_MB, max_output_bytes=100_000),
                            scratch_parent=scratch, keep_scratch=True)
    assert {r.status for r in result.rows} == {"ok"}
    (folder,) = list(scratch.iterdir())
    out = (folder / "stdout-1.txt").read_bytes()
    # print() is cut at max_output_bytes; then os.write(1, ...), which bypasses sys.stdout, is
    # stopped by RLIMIT_FSIZE at max_output_bytes + 4 MiB
    assert b"[output truncated at 100000 characters]" in out[:101_000]
    assert len(out) <= 100_000 + 4 * 2**20


# -- resuming, forcing, determinism ------------------------------------------------------------


@pytest.mark.slow
def test_rerun_resumes_and_regrades_only_changed_students(graded, tmp_path):
    sub, out = tmp_path / "submissions", tmp_path / "grades.csv"
    shutil.copytree(graded["sub"], sub)
    shutil.copytree(graded["out"].parent / "grades.csv.parts", tmp_path / "grades.csv.parts")
    parts = {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "grades.csv.parts").glob("*.json")}
    assert len(parts) == 9

    rows = grade(sub, out, jobs=JOBS, timeout=TIMEOUT, memory_mb=MEMORY_MB, progress=False)
    assert rows == graded["rows"]
    assert out.read_bytes() == graded["out"].read_bytes()
    now = {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "grades.csv.parts").glob("*.json")}
    assert now == parts  # nobody regraded

    shutil.copy(SOLUTIONS_DIR / COSTS, sub / "syntax" / COSTS)  # the student fixes the error
    rows = grade(sub, out, jobs=JOBS, timeout=TIMEOUT, memory_mb=MEMORY_MB, progress=False)
    now = {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "grades.csv.parts").glob("*.json")}
    assert [s for s in parts if now[s] != parts[s]] == ["syntax"]
    assert set(statuses(rows, "syntax", COSTS).values()) == {"ok"}


@pytest.mark.slow
def test_force_regrades_and_two_runs_write_identical_csvs(graded, tmp_path):
    sub = tmp_path / "submissions"
    for student in ("exit", "spam", "hog", "syntax"):
        shutil.copytree(graded["sub"] / student, sub / student)
    (sub / "hog" / POOLING).unlink()
    nb = solution("03_similarity_and_metrics.ipynb")  # the tinyir oracle is not an answer
    nb["cells"].append(code_cell("from tinyir.metrics import ndcg_at_k"))
    save(nb, sub / "oracle" / "03_similarity_and_metrics.ipynb")

    out = tmp_path / "grades.csv"
    first = grade(sub, out, jobs=JOBS, timeout=TIMEOUT, memory_mb=MEMORY_MB, progress=False)
    first_csv = out.read_bytes()
    parts = {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "grades.csv.parts").glob("*.json")}
    second = grade(sub, out, jobs=JOBS, timeout=TIMEOUT, memory_mb=MEMORY_MB, force=True,
                   progress=False)
    now = {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "grades.csv.parts").glob("*.json")}
    assert all(now[s] != parts[s] for s in parts)  # everyone regraded
    assert out.read_bytes() == first_csv
    assert second == first
    oracle = statuses(first, "oracle", "03_similarity_and_metrics.ipynb")
    assert oracle["metrics.ndcg_at_k"] == "failed"
    assert oracle["colbert.max_sim"] == "ok"


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    ({"jobs": 0}, "jobs"), ({"timeout": -1}, "timeout"), ({"memory_mb": 10}, "memory_mb"),
    ({"max_output_bytes": 5}, "max_output_bytes"), ({"extra_tests": "/nonexistent"}, "extra_tests"),
])
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        grade(tmp_path, tmp_path / "g.csv", progress=False, **kwargs)


def test_missing_submissions_dir(tmp_path):
    with pytest.raises(ValueError, match="submissions_dir"):
        grade(tmp_path / "nope", tmp_path / "g.csv", progress=False)


def test_every_exercise_has_grading_tests_and_private_tests_load(tmp_path):
    specs = load_specs()
    assert [s.name for s in specs] == NOTEBOOKS
    assert all(spec.checks[e.id] for spec in specs for e in spec.exercises)
    private = tmp_path / "private"
    private.mkdir()
    (private / "more_costs.py").write_text(
        'from tinyir.grading import check\n\nNOTEBOOK = "04_costs.ipynb"\n\n\n'
        '@check("costs.index_size_bytes")\ndef private_case(index_size_bytes):\n'
        '    assert index_size_bytes(2, 4, 8) == 8\n')
    spec = next(s for s in load_specs(extra_tests=private) if s.name == COSTS)
    assert spec.checks["costs.index_size_bytes"][-1][0] == "private_case"
    (private / "broken.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="NOTEBOOK"):
        load_specs(extra_tests=private)


# -- cells the grader skips --------------------------------------------------------------------


def test_cells_tagged_skip_in_grading_are_not_run(tmp_path):
    """Tagged cells that would sleep past the timeout, raise, or break the answer never run;
    the flag on an exercise cell is ignored (a student cannot hide an answer with it)."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "t.py").write_text(
        'from tinyir.grading import check\n\nNOTEBOOK = "99_skip.ipynb"\n\n\n'
        '@check("skip.double")\ndef doubles(double):\n    assert double(21) == 42, double(21)\n')
    nb = {"cells": [
        code_cell("def double(x):\n    return 2 * x\n", exercise="skip.double", points=1),
        code_cell("import time\ntime.sleep(60)\n", skip_in_grading=True),
        code_cell("raise RuntimeError('a demo that must not run')\n", skip_in_grading=True),
        code_cell("def double(x):\n    return 0\n", skip_in_grading=True),
        code_cell("assert double(2) == 4\nDOUBLED = True\n", self_check="skip.double",
                  skip_in_grading=True),
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    save(nb, tmp_path / "student" / "99_skip.ipynb")
    found = collect_checks([load_module(tests / "t.py")])
    spec = NotebookSpec("99_skip.ipynb", (Exercise("skip.double", 1, ("double",), 0),),
                        (str(tests / "t.py"),), {"skip.double": (("doubles", 1.0, ""),)},
                        {"skip.double": tuple(found["skip.double"])})
    start = time.perf_counter()
    result = grade_notebook("student", tmp_path / "student", spec,
                            Limits(timeout=TIMEOUT, memory_mb=MEMORY_MB, max_output_bytes=10_000))
    assert time.perf_counter() - start < TIMEOUT / 2  # the sleeping cell did not run
    assert [(r.status, r.points) for r in result.rows] == [("ok", 1)], result.rows
    assert result.notes == []  # no cell raised: the RuntimeError cell never ran

    # The same notebook with the exercise cell tagged: the flag is ignored, it still runs.
    nb["cells"][0]["metadata"]["tinyir"]["skip_in_grading"] = True
    save(nb, tmp_path / "student" / "99_skip.ipynb")
    result = grade_notebook("student", tmp_path / "student", spec,
                            Limits(timeout=TIMEOUT, memory_mb=MEMORY_MB, max_output_bytes=10_000))
    assert [r.status for r in result.rows] == ["ok"], result.rows


def test_solution_demos_are_tagged_and_the_build_keeps_the_flag():
    """The MiniLM demos are skipped by the grader, and exercises/ keeps the flag."""
    for name in NOTEBOOKS:
        solution_cells = solution(name)["cells"]
        exercise_cells = load(EXERCISES_DIR / name)["cells"]
        flags = [cell_tags(c).get("skip_in_grading", False) for c in solution_cells]
        assert flags == [cell_tags(c).get("skip_in_grading", False) for c in exercise_cells]
        graded_code = "".join("".join(c["source"])
                              for c, flag in zip(solution_cells, flags, strict=True)
                              if c["cell_type"] == "code" and not flag)
        assert "BiEncoder.minilm(" not in graded_code, f"{name}: MiniLM in a graded cell"
        assert "CrossEncoder.minilm(" not in graded_code, f"{name}: MiniLM in a graded cell"
    assert any(cell_tags(c).get("skip_in_grading") for c in solution("05_training_loop.ipynb")
               ["cells"])


def test_a_prestarted_process_that_died_costs_nothing(tmp_path):
    """The next notebook's process is started ahead; if it dies before its turn (nothing of the
    student's ran in it), the notebook starts a fresh one and is graded as usual."""
    from tinyir.grading.grader import finish_notebook, prepare_notebook

    spec = next(s for s in load_specs() if s.name == POOLING)
    student = tmp_path / "student"
    student.mkdir()
    shutil.copy(SOLUTIONS_DIR / POOLING, student / POOLING)
    run, scratch = prepare_notebook("student", student, spec,
                                    Limits(timeout=TIMEOUT, memory_mb=MEMORY_MB,
                                           max_output_bytes=100_000))
    try:
        run.prestart()
        run._pending.process.kill()
        run.run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = finish_notebook("student", run)
    assert {r.status for r in result.rows} == {"ok"}, result.rows
    assert run.attempts == 1 and run._pending is None


def test_preload_names_modules_only(tmp_path):
    from tinyir.grading.checks import collect_preload

    good = tmp_path / "good.py"
    good.write_text('NOTEBOOK = "01_pooling.ipynb"\nPRELOAD = ["torch._dynamo", "numpy"]\n')
    assert collect_preload([load_module(good)]) == ["torch._dynamo", "numpy"]
    for bad in ('["os; import shutil"]', '"torch"', '[1]', '["../x"]'):
        path = tmp_path / "bad.py"
        path.write_text(f'NOTEBOOK = "01_pooling.ipynb"\nPRELOAD = {bad}\n')
        with pytest.raises(ValueError, match="PRELOAD"):
            collect_preload([load_module(path)])
    assert next(s for s in load_specs() if s.name == "05_training_loop.ipynb").preload \
        == ("torch._dynamo",)
