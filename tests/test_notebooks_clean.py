"""Lesson and solution notebooks are committed clean: no outputs, no execution counts, a time
budget in their metadata, and a concept-check quiz at the end of every lesson."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_has_budget_asserts_and_quiz(path):
    nb = _load(path)
    budget = nb["metadata"].get("tinyir", {}).get("budget_seconds")
    assert isinstance(budget, (int, float)) and 0 < budget <= 120, budget  # issue 10: every notebook within 120 s
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "assert " in code, f"{path.name} pins no lesson with an assert"
    assert f'Quiz.load("{path.stem}")' in code, f"{path.name} has no concept check"
    assert "Choice(" not in code, f"{path.name} shows an answer key: questions live in the bank"
    assert "seed_everything(" in code, f"{path.name} is not seeded"
