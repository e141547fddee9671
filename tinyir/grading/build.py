"""Build the student notebooks (``exercises/``) from the solution notebooks (``solutions/``).

``solutions/*.ipynb`` are the single source. In a solution notebook:

- solution code sits between a ``### BEGIN SOLUTION`` line and a ``### END SOLUTION`` line of a
  code cell. The build replaces the block with a stub at the marker's indentation: the block's
  hint lines (those starting with ``# HINT`` or ``### HINT``) are kept, then comes
  ``raise NotImplementedError("<exercise id>: your code here")``;
- the cell holding a block carries the metadata
  ``{"tinyir": {"exercise": "<topic>.<name>", "points": 2}}``, and optionally ``"names"``: the
  top-level names the grader looks up for this exercise (default: the id's part after its last
  dot, so "pooling.mean_pooling" is graded through the function ``mean_pooling``);
- the visible self-check right after it carries ``{"tinyir": {"self_check": "<exercise id>"}}``;
- a code cell tagged ``{"tinyir": {"skip_in_grading": true}}`` (a heavy demo, and anything that
  only feeds it) is left out when grading; students and nbval still run it. Exercise and
  self-check cells cannot carry the flag.

The build also clears outputs and execution counts and writes the notebook JSON the way Jupyter
does (sorted keys, one-space indent), so the same solutions always give the same bytes and
``check_exercises_in_sync`` can compare the committed ``exercises/`` with a fresh build.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyir.atomic import write_atomic

REPO_DIR = Path(__file__).resolve().parents[2]
SOLUTIONS_DIR = REPO_DIR / "solutions"
EXERCISES_DIR = REPO_DIR / "exercises"

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
STUB_MESSAGE = "{exercise}: your code here"
_HINT = re.compile(r"^\s*(# HINT|### HINT)")
SKIP_IN_GRADING = "skip_in_grading"
_EXERCISE_ID = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+")
# Cell metadata the build drops: execution timings that change on every run.
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")


@dataclass(frozen=True)
class Exercise:
    """One graded exercise of a notebook, as its cell metadata declares it."""

    id: str
    points: float
    names: tuple[str, ...]
    cell: int  # index of the exercise cell in the notebook (0-based)


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (notebook JSON may store it as a list of lines)."""
    source = cell.get("source", "")
    if isinstance(source, list):  # a malformed notebook may hold other things than strings
        return "".join(part if isinstance(part, str) else str(part) for part in source)
    return str(source)


def cell_tags(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's ``tinyir`` metadata (``{}`` when it has none or it is malformed)."""
    meta = cell.get("metadata")
    tags = meta.get("tinyir") if isinstance(meta, dict) else None
    return tags if isinstance(tags, dict) else {}


def skipped_in_grading(cell: dict[str, Any]) -> bool:
    """Whether the grader leaves this cell out (``{"tinyir": {"skip_in_grading": true}}``).

    Exercise and self-check cells always run, whatever their metadata says: a student cannot
    hide an answer (or its self-check) from the grader this way.
    """
    tags = cell_tags(cell)
    return tags.get(SKIP_IN_GRADING) is True and not ("exercise" in tags or "self_check" in tags)


def read_notebook_json(path: str | Path) -> dict[str, Any]:
    """Load notebook JSON with a clear error for anything that is not a notebook."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name}: expected notebook JSON, could not read it ({err})") from err
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path.name}: expected a notebook with a 'cells' list")
    return nb


def read_exercises(notebook: str | Path | dict[str, Any]) -> list[Exercise]:
    """The exercises a notebook declares, in cell order.

    notebook: a path or the loaded notebook JSON. Raises ``ValueError`` for malformed metadata
    (missing or non-positive points, an exercise id declared twice, bad names).
    """
    nb = notebook if isinstance(notebook, dict) else read_notebook_json(notebook)
    exercises: list[Exercise] = []
    for index, cell in enumerate(nb["cells"]):
        tags = cell_tags(cell)
        if "exercise" not in tags:
            continue
        ex_id, points = tags["exercise"], tags.get("points")
        where = f"cell {index + 1}"
        if not isinstance(ex_id, str) or not _EXERCISE_ID.fullmatch(ex_id):
            raise ValueError(f"{where}: exercise: expected an id like 'topic.name', got {ex_id!r}")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not points > 0:
            raise ValueError(f"{where}: points of {ex_id!r}: expected a number > 0, got {points!r}")
        names = tags.get("names", [ex_id.rsplit(".", 1)[1]])
        if isinstance(names, str):
            names = [names]
        if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise ValueError(
                f"{where}: names of {ex_id!r}: expected Python identifiers, got {names!r}"
            )
        if any(e.id == ex_id for e in exercises):
            raise ValueError(f"{where}: exercise {ex_id!r}: declared twice in one notebook")
        exercises.append(Exercise(ex_id, points, tuple(names), index))
    return exercises


def python_source(source: str) -> str | None:
    """A cell's source with IPython syntax removed; None for a cell magic we cannot run.

    ``%line`` magics and ``!shell`` lines become ``pass`` (keeping the indentation); a cell
    starting with ``%%time``, ``%%timeit`` or ``%%capture`` runs its body; other cell magics
    (``%%bash`` ...) are skipped.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].split()[0][2:]
        if magic not in ("time", "timeit", "capture"):
            return None
        lines = lines[1:]
    out = []
    for line in lines:
        stripped = line.lstrip()
        is_magic = stripped[:1] in ("%", "!")
        out.append(line[: len(line) - len(stripped)] + "pass" if is_magic else line)
    return "\n".join(out) + "\n"


def stub_source(source: str, exercise: str) -> str:
    """Replace every solution block of ``source`` by its hint lines and a NotImplementedError."""
    out: list[str] = []
    inside, indent = False, ""
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"line {number}: {BEGIN_SOLUTION} inside another solution block")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
        elif marker == END_SOLUTION:
            if not inside:
                raise ValueError(f"line {number}: {END_SOLUTION} without a {BEGIN_SOLUTION}")
            message = STUB_MESSAGE.format(exercise=exercise)
            out.append(f'{indent}raise NotImplementedError("{message}")')
            inside = False
        elif not inside:
            out.append(line)
        elif _HINT.match(line):
            out.append(line)
    if inside:
        raise ValueError(f"expected {END_SOLUTION} after {BEGIN_SOLUTION}, reached the cell's end")
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def build_notebook(nb: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    """The exercise version of a solution notebook (a new dict; ``nb`` is left as it is)."""
    nb = copy.deepcopy(nb)
    read_exercises(nb)  # validates the metadata
    for index, cell in enumerate(nb["cells"]):
        where = f"{name}, cell {index + 1}"
        cell.setdefault("id", f"cell-{index + 1}")
        meta = cell.setdefault("metadata", {})
        for key in _VOLATILE_CELL_METADATA:
            meta.pop(key, None)
        tags = cell_tags(cell)
        if SKIP_IN_GRADING in tags:
            if not isinstance(tags[SKIP_IN_GRADING], bool):
                raise ValueError(f"{where}: {SKIP_IN_GRADING}: expected true or false, got "
                                 f"{tags[SKIP_IN_GRADING]!r}")
            if "exercise" in tags or "self_check" in tags:
                raise ValueError(f"{where}: {SKIP_IN_GRADING} cannot mark an exercise or a "
                                 "self-check cell: the grader always runs those")
        source = cell_source(cell)
        has_block = any(line.strip() == BEGIN_SOLUTION for line in source.splitlines())
        if cell.get("cell_type") != "code":
            if has_block:
                raise ValueError(f"{where}: solution blocks belong in code cells")
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if has_block:
            exercise = cell_tags(cell).get("exercise")
            if exercise is None:
                raise ValueError(
                    f"{where}: a solution block needs the cell metadata "
                    '{"tinyir": {"exercise": "topic.name", "points": N}}'
                )
            try:
                cell["source"] = stub_source(source, exercise)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        elif any(line.strip() == END_SOLUTION for line in source.splitlines()):
            raise ValueError(f"{where}: {END_SOLUTION} without a {BEGIN_SOLUTION}")
    metadata = nb.setdefault("metadata", {})
    metadata.pop("widgets", None)
    metadata["tinyir"] = {"generated_from": f"solutions/{name}"}
    return nb


def notebook_text(nb: dict[str, Any]) -> str:
    """Notebook JSON exactly as Jupyter writes it (sorted keys, indent 1, final newline)."""
    import nbformat

    node = nbformat.from_dict(nb)
    return nbformat.writes(node, version=nbformat.NO_CONVERT) + "\n"


def render_exercises(solutions_dir: str | Path = SOLUTIONS_DIR) -> dict[str, str]:
    """{notebook file name: exercise notebook text} for every ``*.ipynb`` in ``solutions_dir``."""
    solutions_dir = Path(solutions_dir)
    if not solutions_dir.is_dir():
        raise ValueError(f"solutions_dir: expected a directory, got {str(solutions_dir)!r}")
    rendered = {}
    for path in sorted(solutions_dir.glob("*.ipynb")):
        rendered[path.name] = notebook_text(build_notebook(read_notebook_json(path), path.name))
    if not rendered:
        raise ValueError(
            f"solutions_dir: expected solution notebooks in {str(solutions_dir)!r}, found none"
        )
    return rendered


def _is_generated(path: Path) -> bool:
    try:
        return "generated_from" in read_notebook_json(path).get("metadata", {}).get("tinyir", {})
    except ValueError:
        return False


def build_exercises(
    solutions_dir: str | Path = SOLUTIONS_DIR, exercises_dir: str | Path = EXERCISES_DIR
) -> list[Path]:
    """Write ``exercises_dir/<name>.ipynb`` for every solution notebook; return the paths written.

    Notebooks in ``exercises_dir`` that an earlier build generated but whose solution is gone are
    removed; anything else there is left alone.
    """
    rendered = render_exercises(solutions_dir)
    exercises_dir = Path(exercises_dir)
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered.items():
        path = exercises_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
        written.append(path)
    for path in sorted(exercises_dir.glob("*.ipynb")):
        if path.name not in rendered and _is_generated(path):
            path.unlink()
    return written


def check_exercises_in_sync(
    solutions_dir: str | Path = SOLUTIONS_DIR, exercises_dir: str | Path = EXERCISES_DIR
) -> list[str]:
    """What differs between ``exercises_dir`` and a fresh build of ``solutions_dir``, [] if nothing.

    Each entry names the notebook and the first differing line, and ends with the fix.
    """
    rendered = render_exercises(solutions_dir)
    exercises_dir = Path(exercises_dir)
    fix = "run `tinyir grading build`"
    problems = []
    for name, text in rendered.items():
        path = exercises_dir / name
        if not path.exists():
            problems.append(f"{name}: missing from {exercises_dir} ({fix})")
            continue
        current = path.read_text(encoding="utf-8")
        if current != text:
            old, new = current.splitlines(), text.splitlines()
            pairs = enumerate(zip(old, new, strict=False))
            line = next((i for i, (a, b) in pairs if a != b), min(len(old), len(new)))
            problems.append(f"{name}: differs from the build at line {line + 1} ({fix})")
    for path in sorted(exercises_dir.glob("*.ipynb")) if exercises_dir.is_dir() else []:
        if path.name not in rendered:
            problems.append(f"{path.name}: has no solution notebook in {solutions_dir} (delete it)")
    return problems
