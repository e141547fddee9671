"""What a grade is and how it is reported: one row per exercise, the CSV fields, the feedback
file and the terminal summary. Pure functions of the rows (no grading happens here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tinyir.grading.notebook import _one_line

STATUSES = ("ok", "partial", "failed", "not_implemented", "error", "timeout", "memory",
            "crashed", "missing")
CSV_HEADER = ("student", "notebook", "exercise", "points", "max_points", "status", "message")
CSV_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class GradeRow:
    """One exercise of one student: a CSV row, plus per-check lines for the feedback file."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str
    details: tuple[str, ...] = field(default=(), compare=False)

    def csv_fields(self) -> list[str]:
        return [self.student, self.notebook, self.exercise, _number(self.points),
                _number(self.max_points), self.status, _one_line(self.message, CSV_MESSAGE_CHARS)]


def _number(x: float) -> str:
    return f"{x:g}"


def _escape(text: str) -> str:
    return _one_line(text, 2000).replace("|", "\\|")


def format_feedback(student: str, rows: Sequence[GradeRow], notes: Sequence[str] = ()) -> str:
    """The Markdown feedback file of one student: points, then every failed check and why."""
    total, maximum = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines = [f"# Feedback for {student}", "", f"Total: {_number(round(total, 2))} / "
             f"{_number(maximum)} points.", ""]
    for notebook in sorted({r.notebook for r in rows}):
        nb_rows = sorted((r for r in rows if r.notebook == notebook), key=lambda r: r.exercise)
        got = round(sum(r.points for r in nb_rows), 2)
        lines += [f"## {notebook}: {_number(got)} / {_number(sum(r.max_points for r in nb_rows))}",
                  "", "| exercise | points | status | message |", "|---|---|---|---|"]
        lines += [f"| {r.exercise} | {_number(r.points)} / {_number(r.max_points)} | {r.status} | "
                  f"{_escape(r.message)} |" for r in nb_rows]
        lines.append("")
        for r in nb_rows:
            failed = [d for d in r.details if not d.startswith("PASS ")]
            if r.status not in ("ok", "not_implemented") and failed:
                lines += [f"### {r.exercise}: {r.status}", ""]
                lines += [f"- {_escape(d)}" for d in r.details]
                lines.append("")
    if notes:
        lines += ["## Cells that raised an error or stopped the notebook", ""]
        lines += [f"- {_escape(n)}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def format_summary(rows: Sequence[GradeRow]) -> str:
    """A plain-text table: one line per student, points per notebook and the total."""
    notebooks = sorted({r.notebook for r in rows})
    students = sorted({r.student for r in rows})
    header = ["student"] + [n.removesuffix(".ipynb") for n in notebooks] + ["total"]
    table = [header]
    for student in students:
        mine = [r for r in rows if r.student == student]
        line = [student]
        for notebook in notebooks + [None]:
            sel = [r for r in mine if notebook is None or r.notebook == notebook]
            line.append(f"{_number(round(sum(r.points for r in sel), 2))}/"
                        f"{_number(sum(r.max_points for r in sel))}")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
