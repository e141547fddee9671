"""Build and validate pydocs: splits, query ids, the manifest and the dataset's fingerprint.

The result is stored in the BEIR layout (``tinyir.beir``)::

    data/pydocs/
        corpus.jsonl        {"_id", "title", "text"} per line
        queries.jsonl       {"_id", "text"} per line
        qrels/{train,dev,test}.tsv   query-id <tab> corpus-id <tab> score, with a header
        see_also.jsonl      {"_id", "see_also": [corpus ids]} per line
        manifest.json       versions, counts and the sha256 of every file

Everything after the walk (``tinyir.pydocs.walk``, in a child process) is plain, deterministic
text processing: two builds on the same pins are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tinyir.atomic import atomic_folder
from tinyir.beir import write_beir_files, write_see_also
from tinyir.pydocs.clean import make_entry, parse_see_also, resolve_see_also
from tinyir.pydocs.modules import check_modules, installed_packages

DEFAULT_DATA_DIR: Path = (
    Path(os.environ["TINYIR_DATA_DIR"]).expanduser().resolve()
    if os.environ.get("TINYIR_DATA_DIR")
    else Path(__file__).resolve().parents[2] / "data"
)
PYDOCS_DIR: Path = DEFAULT_DATA_DIR / "pydocs"

# Bump whenever a change to tinyir.pydocs (or to tinyir.beir's writer) changes the files a build
# writes: old folders then rebuild.
BUILDER_VERSION = 1

# Split buckets: sha256 of the query text modulo 100; [0, 15) test, [15, 23) dev, rest train.
TEST_BUCKETS = 15
DEV_BUCKETS = 8

SPLITS = ("train", "dev", "test")
DATA_FILES = (
    "corpus.jsonl", "queries.jsonl", "qrels/dev.tsv", "qrels/test.tsv", "qrels/train.tsv",
    "see_also.jsonl",
)  # fmt: skip


def _split_of(query_text: str) -> str:
    bucket = int(hashlib.sha256(query_text.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < TEST_BUCKETS:
        return "test"
    return "dev" if bucket < TEST_BUCKETS + DEV_BUCKETS else "train"


def _query_id(query_text: str) -> str:
    return "q-" + hashlib.sha256(query_text.encode("utf-8")).hexdigest()[:12]


def assemble(walk: Mapping) -> dict:
    """Turn the walk's raw objects into corpus, queries, qrels per split and See Also links.

    Pure and deterministic: objects are processed in title order; an object whose passage text
    repeats an earlier one is dropped; objects sharing a summary share one query.
    """
    corpus: dict[str, dict[str, str]] = {}
    docs_by_query: dict[str, list[str]] = {}
    seen_texts: set[str] = set()
    raw_docs: dict[str, str] = {}
    for obj in sorted(walk["objects"], key=lambda o: o["title"]):
        entry = make_entry(obj["title"], obj["doc"], obj["signature"])
        if entry is None or obj["title"] in corpus:
            continue
        query, text = entry
        if text in seen_texts:
            continue
        seen_texts.add(text)
        corpus[obj["title"]] = {"title": obj["title"], "text": text}
        docs_by_query.setdefault(query, []).append(obj["title"])
        raw_docs[obj["title"]] = obj["doc"]
    queries: dict[str, str] = {}
    qrels_by_split: dict[str, dict[str, dict[str, int]]] = {split: {} for split in SPLITS}
    for text in sorted(docs_by_query, key=_query_id):
        qid = _query_id(text)
        if qid in queries:
            raise RuntimeError(f"query id collision for {text!r}")  # 48-bit ids: never in practice
        queries[qid] = text
        qrels_by_split[_split_of(text)][qid] = {doc_id: 1 for doc_id in sorted(docs_by_query[text])}
    ids = set(corpus)
    see_also = {
        doc_id: resolve_see_also(doc_id, parse_see_also(raw_docs[doc_id]), walk["names"], ids)
        for doc_id in corpus
    }
    return {
        "corpus": dict(sorted(corpus.items())),
        "queries": queries,
        "qrels": qrels_by_split,
        "see_also": {k: v for k, v in see_also.items() if v},
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_manifest(folder: str | Path, *, modules: Sequence[str] | None = None) -> list[str]:
    """Reasons why ``folder`` is stale or corrupt for the current environment; [] means OK.

    Checks the builder version, Python and package versions, the module list (a build restricted
    with ``modules=`` records it) and the sha256 of every data file.
    """
    folder = Path(folder)
    module_list = check_modules(modules)
    path = folder / "manifest.json"
    if not path.is_file():
        return [f"no manifest ({path} does not exist)"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return [f"manifest.json is unreadable ({err})"]
    if not isinstance(manifest, dict):
        return ["manifest.json is not a JSON object"]
    reasons = []
    if manifest.get("builder_version") != BUILDER_VERSION:
        reasons.append(
            f"manifest says builder_version {manifest.get('builder_version')}, "
            f"this builder is {BUILDER_VERSION}"
        )
    if manifest.get("python") != platform.python_version():
        reasons.append(
            f"manifest says python {manifest.get('python')}, "
            f"installed is {platform.python_version()}"
        )
    recorded = manifest.get("packages") if isinstance(manifest.get("packages"), dict) else {}
    for dist, version in installed_packages(module_list).items():
        if recorded.get(dist) != version:
            reasons.append(f"manifest says {dist} {recorded.get(dist)}, installed is {version}")
    wanted = None if modules is None else list(module_list)
    if manifest.get("modules") != wanted:
        reasons.append(
            f"manifest was built from modules {manifest.get('modules') or 'default'}, "
            f"asked for {wanted or 'default'}"
        )
    hashes = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    for name in DATA_FILES:
        file = folder / name
        if name not in hashes:
            reasons.append(f"manifest has no sha256 for {name}")
        elif not file.is_file():
            reasons.append(f"{name} is missing")
        elif _sha256(file) != hashes[name]:
            reasons.append(f"{name} sha256 mismatch")
    return reasons


def build_pydocs(
    out_dir: str | Path = PYDOCS_DIR,
    *,
    force: bool = False,
    progress: bool = True,
    modules: Sequence[str] | None = None,
) -> dict:
    """Build (or validate) pydocs in ``out_dir`` and return its manifest.

    If ``out_dir/manifest.json`` matches this builder, Python, the installed package versions
    and every file's sha256, the folder is returned as is; otherwise it is rebuilt and the
    reasons are printed to stderr. ``force=True`` always rebuilds. ``modules`` restricts the walk
    to a few modules (for tests and experiments; the default is ``modules.DEFAULT_MODULES``).
    The new folder is written beside the old one and renamed into place when complete.
    """
    out_dir = Path(out_dir)
    module_list = check_modules(modules)
    if not force:
        reasons = check_manifest(out_dir, modules=modules)
        if not reasons:
            return json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        print(f"pydocs: rebuilding {out_dir}: " + "; ".join(reasons), file=sys.stderr)
    # Imported here: the package must not import the walk, which runs as a script in the child
    # (`python -m tinyir.pydocs.walk`); runpy would find it imported already and run it twice.
    from tinyir.pydocs.walk import run_walk

    with atomic_folder(out_dir) as tmp:
        with tempfile.TemporaryDirectory(prefix="tinyir-walk-") as workdir:
            walk = run_walk(module_list, Path(workdir), progress)
        if walk["failed"]:
            print(
                f"pydocs: skipped modules that failed to import: {walk['failed']}", file=sys.stderr
            )
        data = assemble(walk)
        write_beir_files(tmp, data["corpus"], data["queries"], data["qrels"])
        write_see_also(tmp, data["see_also"])
        counts = {"corpus": len(data["corpus"]), "queries": len(data["queries"])}
        counts |= {s: sum(len(r) for r in data["qrels"][s].values()) for s in SPLITS}
        manifest = {
            "name": "pydocs",
            "builder_version": BUILDER_VERSION,
            "python": platform.python_version(),
            "packages": installed_packages(module_list),
            "counts": counts,
            "sha256": {name: _sha256(tmp / name) for name in DATA_FILES},
        }
        if modules is not None:
            manifest["modules"] = list(module_list)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    split_queries = {s: len(data["qrels"][s]) for s in SPLITS}
    print(
        f"pydocs: {counts['corpus']} passages, {counts['queries']} queries "
        f"(train {split_queries['train']}, dev {split_queries['dev']}, "
        f"test {split_queries['test']}); "
        f"pairs train {counts['train']}, dev {counts['dev']}, test {counts['test']} -> {out_dir}",
        file=sys.stderr,
    )
    return manifest


def dataset_fingerprint(folder: str | Path = PYDOCS_DIR) -> str:
    """A short, stable id of a built BEIR folder's content (from its manifest's checksums).

    Use it in cache keys: embeddings or models computed from the data are rebuilt when the
    data changes. Raises FileNotFoundError when the folder has no manifest.
    """
    manifest_path = Path(folder) / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"folder: {folder} has no manifest.json; build it with `tinyir data build`"
        )
    checksums = json.loads(manifest_path.read_text(encoding="utf-8"))["sha256"]
    blob = json.dumps(checksums, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
