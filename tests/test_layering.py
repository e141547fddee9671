"""The package reads in one direction: a module imports only modules listed before it here, and
nothing below the top (course/, grading/, cli) imports the top. Lazy imports inside functions
count too. A new module takes its place in LAYERS, in the order data flows."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tinyir"
LAYERS = [
    # helpers every layer may use
    "validate", "atomic", "testing", "device", "pretrained", "cache",
    # text -> vectors
    "beir", "pydocs", "tokenizer", "batching", "encoder", "mlm", "pooling", "biencoder", "inference",
    # exact and BM25 search, hard negatives, training a bi-encoder
    "losses", "metrics", "search", "bm25", "negatives", "train",
    # retrieval and evaluation
    "tasks", "rerank", "maxsim", "maxsim_triton", "colbert", "retrievers", "evaluate",
    # storage and serving
    "storage", "quantize", "serving", "pipeline",
]
TOP = {"course", "grading", "cli", "__main__", "__init__"}


def _imports(path: Path) -> set[str]:
    """The tinyir modules (first component after ``tinyir.``) a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found |= {n.split(".")[1] for n in names if n.startswith("tinyir.")}
    return found


def _files(name: str) -> list[Path]:
    """A layer's source: its module, or every .py file of its package (a folder)."""
    module = PACKAGE / f"{name}.py"
    return [module] if module.is_file() else sorted((PACKAGE / name).rglob("*.py"))


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                         if (p / "__init__.py").is_file()}
    assert modules - TOP == set(LAYERS), "add the new module to LAYERS (or remove the stale one)"


def test_no_module_imports_one_above_it():
    upward = {}
    for i, name in enumerate(LAYERS):
        imported = set().union(*(_imports(path) for path in _files(name)))
        bad = sorted(m for m in imported if m in TOP or (m in LAYERS and LAYERS.index(m) > i))
        if bad:
            upward[name] = bad
    assert upward == {}, f"modules importing a later layer or the top: {upward}"
