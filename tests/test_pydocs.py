"""Tests for tinyir.pydocs: the builder, its manifest, docstring cleaning and assembly."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_beir import read_all  # tests/ is on sys.path

from tinyir.beir import load_beir, load_see_also, training_pairs
from tinyir.pydocs import PYDOCS_DIR, build_pydocs, check_manifest, dataset_fingerprint
from tinyir.pydocs.build import BUILDER_VERSION, DATA_FILES, SPLITS, assemble
from tinyir.pydocs.clean import (
    MAX_BODY_CHARS,
    MAX_SUMMARY_WORDS,
    MIN_SUMMARY_WORDS,
    make_entry,
    parse_see_also,
    resolve_see_also,
    split_docstring,
)

SMALL_MODULES = ["heapq", "json", "numpy.linalg", "statistics", "textwrap"]


# ---------------------------------------------------------------------------------------------
# Fixtures: the real dataset (built at most once per session) and a small one
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pydocs(tmp_path_factory) -> Path:
    """data/pydocs when it is valid, else a fresh build. (Build speed is not a unit test.)"""
    if not check_manifest(PYDOCS_DIR):
        return PYDOCS_DIR
    folder = tmp_path_factory.mktemp("full") / "pydocs"
    build_pydocs(folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small") / "pydocs"
    build_pydocs(folder, modules=SMALL_MODULES, progress=False)
    return folder


# ---------------------------------------------------------------------------------------------
# The real build
# ---------------------------------------------------------------------------------------------


def test_real_build_sizes_and_manifest(pydocs):
    folder = pydocs
    assert check_manifest(folder) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["name"] == "pydocs"
    assert manifest["builder_version"] == BUILDER_VERSION
    assert set(manifest["packages"]) == {"matplotlib", "numpy", "scikit-learn", "scipy", "torch"}
    assert set(manifest["sha256"]) == set(DATA_FILES)
    counts = manifest["counts"]
    assert counts["corpus"] >= 8000
    assert counts["train"] >= 5000
    test = load_beir(folder, "test")
    assert len(test.queries) >= 1000
    assert len(test.corpus) == counts["corpus"]
    assert len(training_pairs(folder)) == counts["train"]


def test_real_splits_disjoint_and_resolved(pydocs):
    folder = pydocs
    splits = {split: load_beir(folder, split) for split in SPLITS}  # validates every qrel
    query_sets = [set(ds.qrels) for ds in splits.values()]
    doc_sets = [{d for rel in ds.qrels.values() for d in rel} for ds in splits.values()]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not query_sets[i] & query_sets[j]
            assert not doc_sets[i] & doc_sets[j]
    all_queries = [json.loads(line) for line in (folder / "queries.jsonl").open()]
    assert sum(len(q) for q in query_sets) == len(all_queries)  # every query is in one split
    texts = [q["text"] for q in all_queries]
    assert len(set(texts)) == len(texts)  # one query per distinct summary
    assert sum(len(d) for d in doc_sets) == len(splits["test"].corpus)  # every doc is relevant


def test_real_shared_summaries_and_see_also(pydocs):
    folder = pydocs
    ds = load_beir(folder, "train")
    assert any(len(rel) > 1 for rel in ds.qrels.values())
    links = load_see_also(folder)
    assert all(t in ds.corpus and t != doc for doc, ts in links.items() for t in ts)
    if "numpy.cumsum" in ds.corpus:
        assert {"numpy.cumprod", "numpy.sum", "numpy.cumulative_sum"} & set(links["numpy.cumsum"])
    if "numpy.ndarray.cumsum" in ds.corpus:
        assert "numpy.cumsum" in links["numpy.ndarray.cumsum"]


def test_real_passages_are_clean(pydocs):
    folder = pydocs
    ds = load_beir(folder, "test")
    for doc_id, doc in ds.corpus.items():
        assert doc["title"] == doc_id
        assert not re.search(r" at 0x[0-9a-fA-F]{4,}", doc["text"]), doc_id  # no addresses
        assert str(Path.home()) + "/" not in doc["text"], doc_id
    for text in ds.queries.values():
        assert MIN_SUMMARY_WORDS <= len(text.split()) <= MAX_SUMMARY_WORDS
        assert "``" not in text and ":func:" not in text


@pytest.mark.slow
def test_full_build_is_byte_identical(pydocs, tmp_path):
    folder = pydocs
    again = tmp_path / "pydocs"
    build_pydocs(again, progress=False)
    assert read_all(again) == read_all(folder)


# ---------------------------------------------------------------------------------------------
# Small builds: determinism, staleness, atomic replacement
# ---------------------------------------------------------------------------------------------


def test_small_build_deterministic(small, tmp_path):
    again = tmp_path / "again"
    build_pydocs(again, modules=list(reversed(SMALL_MODULES)), progress=False)
    assert read_all(again) == read_all(small)
    manifest = json.loads((small / "manifest.json").read_text())
    assert manifest["modules"] == sorted(SMALL_MODULES)
    assert list(manifest["packages"]) == ["numpy"]
    assert manifest["counts"]["corpus"] > 30
    ids = [json.loads(line)["_id"] for line in (small / "corpus.jsonl").open()]
    assert ids == sorted(ids)
    assert "json.dumps" in ids and "numpy.linalg.norm" in ids


def test_valid_folder_is_reused(small, capsys):
    mtime = (small / "corpus.jsonl").stat().st_mtime_ns
    manifest = build_pydocs(small, modules=SMALL_MODULES, progress=False)
    assert manifest == json.loads((small / "manifest.json").read_text())
    assert (small / "corpus.jsonl").stat().st_mtime_ns == mtime
    assert "rebuilding" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        ("package", "manifest says numpy 0.0.1, installed is"),
        ("file", "corpus.jsonl sha256 mismatch"),
        ("missing", "qrels/test.tsv is missing"),
        ("manifest", "no manifest"),
        ("builder", "builder_version"),
    ],
)
def test_stale_folder_is_rebuilt_with_reason(small, tmp_path, capsys, corrupt, reason):
    folder = tmp_path / "pydocs"
    shutil.copytree(small, folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if corrupt == "package":
        manifest["packages"]["numpy"] = "0.0.1"
    elif corrupt == "builder":
        manifest["builder_version"] = BUILDER_VERSION - 1
    manifest_path.write_text(json.dumps(manifest))
    if corrupt == "file":
        with (folder / "corpus.jsonl").open("a") as handle:
            handle.write('{"_id": "extra", "title": "", "text": "tampered"}\n')
    elif corrupt == "missing":
        (folder / "qrels" / "test.tsv").unlink()
    elif corrupt == "manifest":
        manifest_path.unlink()
    reasons = check_manifest(folder, modules=SMALL_MODULES)
    assert any(reason in r for r in reasons), reasons
    build_pydocs(folder, modules=SMALL_MODULES, progress=False)
    assert reason in capsys.readouterr().err
    assert check_manifest(folder, modules=SMALL_MODULES) == []
    assert read_all(folder) == read_all(small)
    assert [p.name for p in tmp_path.iterdir()] == ["pydocs"]  # no temporary siblings left


def test_restricted_build_is_stale_for_the_default_list(small):
    assert any("modules" in r for r in check_manifest(small))


def test_forbidden_and_bad_modules(tmp_path):
    with pytest.raises(ValueError, match="modules"):
        build_pydocs(tmp_path / "x", modules=["json", "antigravity"], progress=False)
    with pytest.raises(TypeError, match="modules"):
        build_pydocs(tmp_path / "x", modules="json", progress=False)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Docstring cleaning and assembly (pure functions)
# ---------------------------------------------------------------------------------------------

BODY = "Parameters\n----------\na : array_like\n    Input array, any shape.\n"


def test_split_docstring_signature_first():
    doc = "cumsum(a, axis=None)\n\nReturn the cumulative sum of the elements.\n\n" + BODY
    assert split_docstring(doc) == (
        "cumsum(a, axis=None)",
        "Return the cumulative sum of the elements.",
        BODY.strip(),
    )
    sig, summary, _ = split_docstring("D.clear() -> None.  Remove all items from D.")
    assert (sig, summary) == ("D.clear() -> None", "Remove all items from D.")
    sig, summary, body = split_docstring(
        "\n    view(*shape) -> Tensor\n\n    Returns a new tensor\n    with the same data.\n\n"
        "    More text here.\n"
    )
    assert (sig, summary, body) == (
        "view(*shape) -> Tensor",
        "Returns a new tensor with the same data.",
        "More text here.",
    )
    assert split_docstring("print(x) writes x to stdout.\n")[0] is None


def test_make_entry_cleaning():
    query, text = make_entry(
        "numpy.cumsum", "Return the :func:`~numpy.cumulative` ``sum``.\n\n" + BODY, "(a, axis=None)"
    )
    assert query == "Return the cumulative sum."
    assert text == "cumsum(a, axis=None)\n" + BODY.strip()
    assert make_entry("m.f", "Too short.\n\n" + BODY, None) is None  # < 4 words
    assert make_entry("m.f", "Return the thing it returns.\n\nTiny body.", None) is None
    assert make_entry("m.f", "add(x1, x2, /)\n\n" + BODY, None) is None  # no summary
    assert make_entry("m.f", "See :func:`numpy.sum` for the details here.\n\n" + BODY, None) is None
    lines = [f"line {i:04d} " * 8 for i in range(60)]
    long_doc = "Return the thing it returns.\n\n" + "\n".join(lines)
    _, text = make_entry("m.f", long_doc, "(x=<object object at 0x7f00deadbeef>)")
    sig_line, body = text.split("\n", 1)
    assert sig_line == "f(x=<object object>)"  # no memory address
    kept = max(k for k in range(61) if len("\n".join(lines[:k])) <= MAX_BODY_CHARS)
    assert body == "\n".join(lines[:kept]).rstrip()  # capped at a line boundary


def test_long_summary_is_cut_to_first_sentence():
    summary = "Compute the thing for each input, e.g. arrays. " + "More words here. " * 15
    query, text = make_entry("m.f", summary + "\n\n" + BODY, None)
    assert query == "Compute the thing for each input, e.g. arrays."
    assert text.startswith("More words here.")


def test_parse_and_resolve_see_also():
    doc = (
        "Sum it.\n\nSee Also\n--------\ncumprod : Cumulative product.\n"
        "numpy.sum, :func:`~numpy.diff`\nndarray.cumsum : equivalent method\n"
        "    a description line : not a name\n\nNotes\n-----\nNothing.\n"
        "See :func:`numpy.trapezoid` and :meth:`Axes.plot`.\n"
    )
    names = parse_see_also(doc)
    assert names == ["cumprod", "numpy.sum", "numpy.diff", "ndarray.cumsum", "numpy.trapezoid",
                     "Axes.plot"]  # fmt: skip
    name_to_id = {n: n for n in ["numpy.cumprod", "numpy.sum", "numpy.ndarray.cumsum"]}
    ids = set(name_to_id) | {"numpy.cumsum"}
    assert resolve_see_also("numpy.cumsum", names, name_to_id, ids) == [
        "numpy.cumprod", "numpy.sum", "numpy.ndarray.cumsum",
    ]  # fmt: skip


def test_assemble_groups_shared_summaries():
    def obj(title, summary, body=BODY):
        return {
            "title": title,
            "kind": "function",
            "signature": "(x)",
            "doc": f"{summary}\n\n{body}",
        }

    walk = {
        "objects": [
            obj("pkg.b", "Fit the model to the data."),
            obj("pkg.a", "Fit the model to the data."),
            obj("pkg.c", "Predict labels for the samples.", BODY + "\nSee Also\n--------\nb\n"),
            obj("pkg.sub.c", "Predict labels for the samples.", BODY + "\nSee Also\n--------\nb\n"),
            obj("pkg.d", "Tiny."),
        ],
        "names": {"pkg.a": "pkg.a", "pkg.b": "pkg.b", "pkg.c": "pkg.c"},
    }
    out = assemble(walk)
    assert list(out["corpus"]) == ["pkg.a", "pkg.b", "pkg.c"]  # pkg.sub.c: same text as pkg.c
    assert sorted(out["queries"].values()) == [
        "Fit the model to the data.", "Predict labels for the samples.",
    ]  # fmt: skip
    qrels = {qid: rel for split in out["qrels"].values() for qid, rel in split.items()}
    fit = next(q for q, t in out["queries"].items() if t.startswith("Fit"))
    assert qrels[fit] == {"pkg.a": 1, "pkg.b": 1}
    assert out["see_also"] == {"pkg.c": ["pkg.b"]}


def test_fingerprint_is_stable_and_requires_a_manifest(tmp_path):
    assert dataset_fingerprint(PYDOCS_DIR) == dataset_fingerprint(PYDOCS_DIR)
    assert len(dataset_fingerprint(PYDOCS_DIR)) == 16
    with pytest.raises(FileNotFoundError, match="manifest"):
        dataset_fingerprint(tmp_path)
