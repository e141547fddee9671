"""Switch lesson notebooks from inline quizzes to the question banks of ``tinyir/course/quizzes``.

    python tools/apply_quizzes.py notebooks/            # rewrite in place
    python tools/apply_quizzes.py notebooks/ --check    # only say what would change (exit 1 if any)

For every ``NN_slug.ipynb`` that has a bank ``NN_slug.toml``:

- the quiz cell (the code cell that builds ``Quiz("NN_slug", [Question(...), ...])``) becomes
  ``quiz = Quiz.load("NN_slug")`` + ``quiz.show()``: no answer key left in the notebook. The cell
  keeps its id and metadata; its outputs and execution count are cleared;
- ``from tinyir.course import Choice, Question, Quiz`` loses the names nothing uses any more;
- the closing notebook (``CLOSING``) gets the chapter check after its own quiz: a markdown cell
  and ``chapter = Quiz.load("chapter_check")`` + ``chapter.show()``, with fixed cell ids.

Running it twice changes nothing the second time. Cells it does not touch keep their bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyir.course.quiz import bank_names  # noqa: E402

CLOSING = "14_capstone"
CHAPTER_BANK = "chapter_check"
CHAPTER_MARKDOWN = (
    "## Chapter check\n"
    "\n"
    "Four questions on the ideas the whole course rests on: bi-encoders and cross-encoders, "
    "contrastive training with in-batch negatives, normalization, and late interaction. Click a "
    "choice to check it; your first answer to each question is scored and saved locally "
    "(`tinyir progress` prints your scores)."
)
CHAPTER_IDS = ("chapter-check-md", "chapter-check-quiz")
_IMPORT = re.compile(r"^from tinyir\.course import (?P<names>[^\n()]+)$", re.MULTILINE)


def quiz_source(bank: str, variable: str = "quiz") -> str:
    return f'{variable} = Quiz.load("{bank}")\n{variable}.show()'


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _set_source(cell: dict, text: str) -> None:
    lines = text.splitlines(keepends=True)
    cell["source"] = lines


def _is_inline_quiz(cell: dict) -> bool:
    text = _source(cell)
    return cell["cell_type"] == "code" and "Quiz(" in text and "Question(" in text


def _clear(cell: dict) -> None:
    cell["outputs"] = []
    cell["execution_count"] = None


def _fix_imports(nb: dict) -> bool:
    """Drop Choice/Question from ``from tinyir.course import ...`` when no cell uses them."""
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = _source(cell)
        match = _IMPORT.search(text)
        if not match:
            continue
        names = [n.strip() for n in match["names"].split(",") if n.strip()]
        rest = code.replace(match.group(0), "")
        keep = [n for n in names if n not in ("Choice", "Question")
                or re.search(rf"\b{n}\b", rest)]
        if keep != names:
            line = f"from tinyir.course import {', '.join(keep)}" if keep else ""
            new = text.replace(match.group(0), line)
            if not keep:
                new = new.replace("\n\n\n", "\n\n")
            _set_source(cell, new)
            _clear(cell)
            changed = True
    return changed


def apply_to_notebook(nb: dict, name: str, banks: set[str]) -> list[str]:
    """Rewrite ``nb`` (the notebook ``name``, e.g. "04_temperature") in place; returns what changed."""
    changes = []
    if name not in banks:
        return changes
    quiz_cells = [i for i, c in enumerate(nb["cells"]) if _is_inline_quiz(c)]
    if len(quiz_cells) > 1:
        raise ValueError(f"{name}: {len(quiz_cells)} inline quiz cells; expected at most one")
    for i in quiz_cells:
        _set_source(nb["cells"][i], quiz_source(name))
        _clear(nb["cells"][i])
        changes.append(f"cell {i}: quiz -> Quiz.load({name!r})")
    if _fix_imports(nb):
        changes.append("imports: dropped Choice/Question")
    if name == CLOSING and CHAPTER_BANK in banks:
        ids = {c.get("id") for c in nb["cells"]}
        if CHAPTER_IDS[1] not in ids:
            at = next((i for i, c in enumerate(nb["cells"])
                       if c["cell_type"] == "code" and f'Quiz.load("{name}")' in _source(c)), None)
            if at is None:
                raise ValueError(f"{name}: no Quiz.load({name!r}) cell to put the chapter check after")
            md = {"cell_type": "markdown", "id": CHAPTER_IDS[0], "metadata": {}, "source": []}
            _set_source(md, CHAPTER_MARKDOWN)
            code = {"cell_type": "code", "execution_count": None, "id": CHAPTER_IDS[1],
                    "metadata": {}, "outputs": [], "source": []}
            _set_source(code, quiz_source(CHAPTER_BANK, "chapter"))
            nb["cells"][at + 1:at + 1] = [md, code]
            changes.append(f"cells {at + 1}-{at + 2}: chapter check added")
    return changes


def dumps(nb: dict) -> str:
    """As nbformat writes a notebook (one-space indent, non-ASCII kept, final newline), keys in
    the order read, so that cells the tool does not touch stay byte for byte the same."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def apply(folder: str | Path, check: bool = False) -> dict[str, list[str]]:
    """Apply to every ``NN_*.ipynb`` in ``folder``; returns {notebook: changes} for those changed."""
    banks = set(bank_names())
    report = {}
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        changes = apply_to_notebook(nb, path.stem, banks)
        if changes:
            report[path.name] = changes
            if not check:
                path.write_text(dumps(nb), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="the folder of lesson notebooks (e.g. notebooks/)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    report = apply(args.folder, check=args.check)
    for name, changes in report.items():
        for change in changes:
            print(f"{name}: {change}")
    if not report:
        print("nothing to change")
    return 1 if (args.check and report) else 0


if __name__ == "__main__":
    sys.exit(main())
