"""tools/apply_quizzes.py, run on copies of the lesson notebooks: every inline quiz becomes
``Quiz.load``, ids are kept, outputs stay empty, nothing else changes, and a second run is a no-op."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("apply_quizzes", ROOT / "tools" / "apply_quizzes.py")
apply_quizzes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(apply_quizzes)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _src(cell: dict) -> str:
    return "".join(cell["source"])


INLINE = """from tinyir.course import Choice, Question, Quiz

quiz = Quiz("06_pooling", [
    Question("?", [Choice("a", True, "why a"), Choice("b", False, "why not b")]),
])
quiz.show()"""


def _inline_notebook(path: Path) -> None:
    """A lesson as it was before the switch: the quiz (and its answer key) inline."""
    nb = {"cells": [{"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# 06"]},
                    {"cell_type": "code", "id": "c1", "metadata": {}, "outputs": [],
                     "execution_count": 7, "source": INLINE.splitlines(True)}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def test_committed_lessons_are_switched():
    """Every lesson already takes its quiz from the bank: the tool has nothing left to do."""
    assert apply_quizzes.main([str(ROOT / "notebooks"), "--check"]) == 0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "code")
        assert f'Quiz.load("{path.stem}")' in code and "Choice(" not in code, path.name
    capstone = "\n".join(_src(c) for c in _cells(ROOT / "notebooks" / "14_capstone.ipynb"))
    assert 'chapter = Quiz.load("chapter_check")' in capstone


def test_switches_an_inline_quiz_once(tmp_path):
    path = tmp_path / "06_pooling.ipynb"
    _inline_notebook(path)
    original = path.read_bytes()
    assert apply_quizzes.main([str(tmp_path), "--check"]) == 1
    assert path.read_bytes() == original  # --check changes nothing
    apply_quizzes.apply(tmp_path)
    cells = _cells(path)
    assert [c["id"] for c in cells] == ["m1", "c1"]
    assert _src(cells[1]).endswith('quiz = Quiz.load("06_pooling")\nquiz.show()')
    assert "Choice(" not in _src(cells[1]) and cells[1]["execution_count"] is None
    snapshot = path.read_bytes()
    assert apply_quizzes.apply(tmp_path) == {}  # idempotent
    assert path.read_bytes() == snapshot


def test_import_line_keeps_other_names():
    nb = {"cells": [
        {"cell_type": "code", "source": ["from tinyir.course import Choice, Question, Quiz\n",
                                         "x = 1"], "outputs": [], "execution_count": None},
        {"cell_type": "code", "source": ['quiz = Quiz("06_pooling", [Question("?", [])])'],
         "outputs": [], "execution_count": 3, "id": "abc"},
    ]}
    changes = apply_quizzes.apply_to_notebook(nb, "06_pooling", {"06_pooling"})
    assert len(changes) == 2
    assert _src(nb["cells"][0]) == "from tinyir.course import Quiz\nx = 1"
    assert _src(nb["cells"][1]) == 'quiz = Quiz.load("06_pooling")\nquiz.show()'
    assert nb["cells"][1]["id"] == "abc" and nb["cells"][1]["execution_count"] is None
