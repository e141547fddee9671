"""Every correct solution gets full marks: the reference solutions and differently written ones.

tests/grading_alternatives.py answers every exercise another way (loops, float64 accumulation,
another formula or batching). Both students are graded in one run; every exercise must be "ok"
with full points.
"""

from __future__ import annotations

import shutil

import pytest
from grading_alternatives import ALTERNATIVES, build_alternative_student  # tests/ is on sys.path

from tinyir.grading import SOLUTIONS_DIR, format_summary, grade, read_exercises

NOTEBOOKS = sorted(SOLUTIONS_DIR.glob("*.ipynb"))


def test_alternatives_cover_exactly_the_exercises():
    ids = [e.id for path in NOTEBOOKS for e in read_exercises(path)]
    assert len(ids) == len(set(ids))
    assert sorted(ALTERNATIVES) == sorted(ids)


def test_alternative_student_defines_the_same_exercises(tmp_path):
    build_alternative_student(tmp_path)
    for path in NOTEBOOKS:
        ours = [(e.id, e.points, e.names, e.cell) for e in read_exercises(tmp_path / path.name)]
        theirs = [(e.id, e.points, e.names, e.cell) for e in read_exercises(path)]
        assert ours == theirs, path.name


@pytest.mark.slow
def test_correct_alternatives_get_full_marks(tmp_path):
    sub = tmp_path / "submissions"
    build_alternative_student(sub / "alternatives")
    (sub / "solutions").mkdir(parents=True)
    for path in NOTEBOOKS:
        shutil.copy(path, sub / "solutions" / path.name)

    # Two threads in the students' processes (test_grading.py grades the solutions with one):
    # another summation order, the same marks. One job, so the threads do not oversubscribe
    # a 2-core machine.
    rows = grade(sub, tmp_path / "out" / "grades.csv", jobs=1, timeout=120,
                 memory_mb=2048, progress=False, threads=2)
    print(format_summary(rows))

    n_exercises = sum(len(read_exercises(path)) for path in NOTEBOOKS)
    for student in ("solutions", "alternatives"):
        mine = [r for r in rows if r.student == student]
        assert len(mine) == n_exercises, (student, [(r.notebook, r.exercise) for r in mine])
    bad = [r for r in rows if r.status != "ok" or r.points != r.max_points]
    report = "\n".join(
        f"{r.student} {r.notebook} {r.exercise}: {r.status} {r.points}/{r.max_points} "
        f"{r.message}\n    " + "\n    ".join(r.details) for r in bad)
    assert not bad, f"{len(bad)} exercises without full marks:\n{report}"
