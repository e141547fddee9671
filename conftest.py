"""Notebook time budgets, enforced when nbval runs the lessons and solutions.

Each notebook states its budget in its metadata: ``{"tinyir": {"budget_seconds": 180}}``.
nbval runs a notebook cell by cell (one test item per cell, in a fresh kernel per notebook);
here we add up the cells' durations per notebook and fail the run when a notebook is over its
budget times ``TINYIR_BUDGET_SLACK`` (default 1.25: shared CI machines are noisy). A table of
every notebook's runtime is printed at the end of the run.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

_durations: dict[str, float] = defaultdict(float)
_budgets: dict[str, float] = {}


def _budget_of(path: Path) -> float | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, json.JSONDecodeError):
        return None
    return meta.get("tinyir", {}).get("budget_seconds")


def pytest_runtest_logreport(report):
    path = Path(str(report.fspath))
    if path.suffix != ".ipynb":
        return
    _durations[str(path)] += report.duration
    if str(path) not in _budgets:
        _budgets[str(path)] = _budget_of(path)


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    slack = float(os.environ.get("TINYIR_BUDGET_SLACK", "1.25"))
    terminalreporter.section("notebook runtimes")
    over = []
    root = Path(__file__).resolve().parent
    for path, seconds in sorted(_durations.items()):
        budget = _budgets.get(path)
        name = os.path.relpath(path, root)
        status = "no budget" if budget is None else f"budget {budget:.0f} s"
        if budget is not None and seconds > budget * slack:
            over.append(name)
            status += "  OVER BUDGET"
        terminalreporter.write_line(f"{name:55s} {seconds:7.1f} s   {status}")
    terminalreporter.write_line(f"{'total':55s} {sum(_durations.values()):7.1f} s")
    if over:
        terminalreporter.write_line(f"over budget (x{slack} slack): {', '.join(over)}", red=True)


def pytest_sessionfinish(session, exitstatus):
    slack = float(os.environ.get("TINYIR_BUDGET_SLACK", "1.25"))
    if any(_budgets.get(p) is not None and s > _budgets[p] * slack for p, s in _durations.items()):
        session.exitstatus = 1
