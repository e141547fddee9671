"""Exercises and their grader: build the student notebooks, then grade what students hand in.

    build_exercises()            solutions/*.ipynb -> exercises/*.ipynb (solution blocks -> stubs)
    check_exercises_in_sync()    what differs between exercises/ and a fresh build ([] if nothing)
    grade(SUBMISSIONS, CSV)      run every student's notebooks in limited processes, hidden tests
    format_summary(rows)         a per-student table of points for the terminal
    self_check(...)              the visible check after each exercise in the notebooks

The notebook format is described in :mod:`tinyir.grading.build`, the test format in
:mod:`tinyir.grading.checks`; what is graded (exercises, tests, limits) in
:mod:`tinyir.grading.specs`, the orchestration in :mod:`tinyir.grading.grader`, the rows, CSV and
feedback in :mod:`tinyir.grading.report`, one notebook in
:mod:`tinyir.grading.notebook`, the student's process in :mod:`tinyir.grading.student`, the
channel in :mod:`tinyir.grading.remote` and :mod:`tinyir.grading.protocol`, the sandbox in
:mod:`tinyir.grading.sandbox`, the student's copy of tinyir in :mod:`tinyir.grading.package`.
"""

from tinyir.grading.build import (
    EXERCISES_DIR,
    SOLUTIONS_DIR,
    build_exercises,
    check_exercises_in_sync,
    read_exercises,
)
from tinyir.grading.checks import assert_close, check, self_check
from tinyir.grading.grader import grade
from tinyir.grading.report import STATUSES, GradeRow, format_feedback, format_summary

__all__ = [
    "EXERCISES_DIR",
    "SOLUTIONS_DIR",
    "STATUSES",
    "GradeRow",
    "assert_close",
    "build_exercises",
    "check",
    "check_exercises_in_sync",
    "format_feedback",
    "format_summary",
    "grade",
    "read_exercises",
    "self_check",
]
