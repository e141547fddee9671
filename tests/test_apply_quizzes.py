"""tools/apply_quizzes.py, run on copies of the lesson notebooks: every inline quiz becomes
``Quiz.load``, ids are kept, outputs stay empty, nothing else changes, and a second run is a no-op."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("apply_quizzes", ROOT / "tools" / "apply_quizzes.py")
apply_quizzes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(apply_quizzes)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _src(cell: dict) -> str:
    return "".join(cell["source"])


def test_switches_copies_of_the_notebooks(tmp_path):
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy(path, tmp_path / path.name)
    before = {p.name: _cells(p) for p in tmp_path.glob("*.ipynb")}
    apply_quizzes.apply(tmp_path)
    for name, old_cells in before.items():
        stem = name.removesuffix(".ipynb")
        cells = _cells(tmp_path / name)
        code = "\n".join(_src(c) for c in cells if c["cell_type"] == "code")
        assert f'quiz = Quiz.load("{stem}")\nquiz.show()' in code, name
        assert "Choice(" not in code and "Question(" not in code, name
        for cell in cells:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None
        old_ids = [c.get("id") for c in old_cells]
        new_ids = [c.get("id") for c in cells]
        extra = {"chapter-check-md", "chapter-check-quiz"} if stem == "14_capstone" else set()
        assert [i for i in new_ids if i not in extra] == old_ids, name
        changed = [i for i, (a, b) in enumerate(zip(old_cells, [c for c in cells
                   if c.get("id") not in extra], strict=True)) if a != b]
        assert 1 <= len(changed) <= 2, (name, changed)  # the quiz cell and the import cell
    capstone = "\n".join(_src(c) for c in _cells(tmp_path / "14_capstone.ipynb"))
    assert 'chapter = Quiz.load("chapter_check")' in capstone
    snapshot = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    assert apply_quizzes.apply(tmp_path) == {}  # idempotent
    assert snapshot == {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}


def test_check_mode_changes_nothing(tmp_path):
    path = ROOT / "notebooks" / "06_pooling.ipynb"
    shutil.copy(path, tmp_path / path.name)
    original = (tmp_path / path.name).read_bytes()
    assert apply_quizzes.main([str(tmp_path), "--check"]) == 1
    assert (tmp_path / path.name).read_bytes() == original


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
