"""The copy of tinyir a student's process imports while grading: no tests, no reference answers.

    build_student_package(dest, ["tinyir.pooling:mean_pooling", "tinyir.search:FaissIndex"])

copies the tinyir package to ``dest/tinyir`` without the grading tests, and replaces the body of
each named function (or of every method of a named class) with a ``raise`` that says it is the
reference answer of an exercise. A student's function that calls it, directly or through an
alias, a wrapper or ``functools.partial``, fails its checks with that message: the code is not
there to borrow. The grading-test modules name their references in ``REFERENCES``.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _raise_stmt(dotted: str) -> list[ast.stmt]:
    message = (f"{dotted} is tinyir's reference answer to an exercise of this notebook and is not "
               "available while grading: write your own")
    return ast.parse(f"raise RuntimeError({message!r})").body


def _redact(tree: ast.Module, qualname: str, dotted: str) -> bool:
    head, _, rest = qualname.partition(".")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == head \
                and not rest:
            node.body = _raise_stmt(dotted)
            return True
        if isinstance(node, ast.ClassDef) and node.name == head:
            methods = [n for n in node.body if isinstance(n, (ast.FunctionDef,
                                                               ast.AsyncFunctionDef))]
            hit = False
            for method in methods:
                if not rest or method.name == rest:
                    method.body = _raise_stmt(dotted)
                    hit = True
            return hit
    return False


def build_student_package(dest: str | Path, references: Iterable[str]) -> Path:
    """Write the redacted copy under ``dest`` (``dest/tinyir``) and return ``dest``.

    references: "tinyir.module:function", "tinyir.module:Class" or "tinyir.module:Class.method".
    Raises ValueError for a reference that names nothing (a renamed function must not slip out).
    """
    dest = Path(dest)
    target = dest / "tinyir"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    hidden_tests = PACKAGE_DIR / "grading"

    def ignore(folder: str, names: list[str]) -> set[str]:  # and the hidden tests, not copied
        return set(skip(folder, names)) | ({"tests"} if Path(folder) == hidden_tests else set())

    shutil.copytree(PACKAGE_DIR, target, ignore=ignore)
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for ref in references:
        module, _, qualname = ref.partition(":")
        if not module.startswith("tinyir.") or not qualname:
            raise ValueError(f"REFERENCES: expected 'tinyir.module:name', got {ref!r}")
        path = target.joinpath(*module.split(".")[1:]).with_suffix(".py")
        by_file.setdefault(path, []).append((qualname, f"{module}.{qualname}"))
    for path, names in by_file.items():
        if not path.is_file():
            raise ValueError(f"REFERENCES: no module file for {names[0][1]!r}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for qualname, dotted in names:
            if not _redact(tree, qualname, dotted):
                raise ValueError(f"REFERENCES: {dotted!r} names no function or class")
        path.write_text(ast.unparse(tree) + "\n", encoding="utf-8")
    return dest
