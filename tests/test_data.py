"""Tests for tinyir.data: the pydocs builder, its manifest, and the BEIR loader/writer."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tinyir import data
from tinyir.data import (
    BeirDataset,
    build_pydocs,
    check_manifest,
    load_beir,
    load_see_also,
    training_pairs,
    write_beir,
)

SMALL_MODULES = ["heapq", "json", "numpy.linalg", "statistics", "textwrap"]


def _read_all(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# Fixtures: the real dataset (built at most once per session) and a small one
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pydocs(tmp_path_factory) -> Path:
    """data/pydocs when it is valid, else a fresh build. (Build speed is not a unit test.)"""
    if not check_manifest(data.PYDOCS_DIR):
        return data.PYDOCS_DIR
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
    assert manifest["builder_version"] == data.BUILDER_VERSION
    assert set(manifest["packages"]) == {"matplotlib", "numpy", "scikit-learn", "scipy", "torch"}
    assert set(manifest["sha256"]) == set(data.DATA_FILES)
    counts = manifest["counts"]
    assert counts["corpus"] >= 8000
    assert counts["train"] >= 5000
    test = load_beir(folder, "test")
    assert len(test.queries) >= 1000
    assert len(test.corpus) == counts["corpus"]
    assert len(training_pairs(folder)) == counts["train"]


def test_real_splits_disjoint_and_resolved(pydocs):
    folder = pydocs
    splits = {split: load_beir(folder, split) for split in data.SPLITS}  # validates every qrel
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
        assert data.MIN_SUMMARY_WORDS <= len(text.split()) <= data.MAX_SUMMARY_WORDS
        assert "``" not in text and ":func:" not in text


@pytest.mark.slow
def test_full_build_is_byte_identical(pydocs, tmp_path):
    folder = pydocs
    again = tmp_path / "pydocs"
    build_pydocs(again, progress=False)
    assert _read_all(again) == _read_all(folder)


# ---------------------------------------------------------------------------------------------
# Small builds: determinism, staleness, atomic replacement
# ---------------------------------------------------------------------------------------------


def test_small_build_deterministic(small, tmp_path):
    again = tmp_path / "again"
    build_pydocs(again, modules=list(reversed(SMALL_MODULES)), progress=False)
    assert _read_all(again) == _read_all(small)
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
        manifest["builder_version"] = data.BUILDER_VERSION - 1
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
    assert _read_all(folder) == _read_all(small)
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
    assert data.split_docstring(doc) == (
        "cumsum(a, axis=None)",
        "Return the cumulative sum of the elements.",
        BODY.strip(),
    )
    sig, summary, _ = data.split_docstring("D.clear() -> None.  Remove all items from D.")
    assert (sig, summary) == ("D.clear() -> None", "Remove all items from D.")
    sig, summary, body = data.split_docstring(
        "\n    view(*shape) -> Tensor\n\n    Returns a new tensor\n    with the same data.\n\n"
        "    More text here.\n"
    )
    assert (sig, summary, body) == (
        "view(*shape) -> Tensor",
        "Returns a new tensor with the same data.",
        "More text here.",
    )
    assert data.split_docstring("print(x) writes x to stdout.\n")[0] is None


def test_make_entry_cleaning():
    query, text = data.make_entry(
        "numpy.cumsum", "Return the :func:`~numpy.cumulative` ``sum``.\n\n" + BODY, "(a, axis=None)"
    )
    assert query == "Return the cumulative sum."
    assert text == "cumsum(a, axis=None)\n" + BODY.strip()
    assert data.make_entry("m.f", "Too short.\n\n" + BODY, None) is None  # < 4 words
    assert data.make_entry("m.f", "Return the thing it returns.\n\nTiny body.", None) is None
    assert data.make_entry("m.f", "add(x1, x2, /)\n\n" + BODY, None) is None  # no summary
    assert (
        data.make_entry("m.f", "See :func:`numpy.sum` for the details here.\n\n" + BODY, None)
        is None
    )
    lines = [f"line {i:04d} " * 8 for i in range(60)]
    long_doc = "Return the thing it returns.\n\n" + "\n".join(lines)
    _, text = data.make_entry("m.f", long_doc, "(x=<object object at 0x7f00deadbeef>)")
    sig_line, body = text.split("\n", 1)
    assert sig_line == "f(x=<object object>)"  # no memory address
    kept = max(k for k in range(61) if len("\n".join(lines[:k])) <= data.MAX_BODY_CHARS)
    assert body == "\n".join(lines[:kept]).rstrip()  # capped at a line boundary


def test_long_summary_is_cut_to_first_sentence():
    summary = "Compute the thing for each input, e.g. arrays. " + "More words here. " * 15
    query, text = data.make_entry("m.f", summary + "\n\n" + BODY, None)
    assert query == "Compute the thing for each input, e.g. arrays."
    assert text.startswith("More words here.")


def test_parse_and_resolve_see_also():
    doc = (
        "Sum it.\n\nSee Also\n--------\ncumprod : Cumulative product.\n"
        "numpy.sum, :func:`~numpy.diff`\nndarray.cumsum : equivalent method\n"
        "    a description line : not a name\n\nNotes\n-----\nNothing.\n"
        "See :func:`numpy.trapezoid` and :meth:`Axes.plot`.\n"
    )
    names = data.parse_see_also(doc)
    assert names == ["cumprod", "numpy.sum", "numpy.diff", "ndarray.cumsum", "numpy.trapezoid",
                     "Axes.plot"]  # fmt: skip
    name_to_id = {n: n for n in ["numpy.cumprod", "numpy.sum", "numpy.ndarray.cumsum"]}
    ids = set(name_to_id) | {"numpy.cumsum"}
    assert data.resolve_see_also("numpy.cumsum", names, name_to_id, ids) == [
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
    out = data.assemble(walk)
    assert list(out["corpus"]) == ["pkg.a", "pkg.b", "pkg.c"]  # pkg.sub.c: same text as pkg.c
    assert sorted(out["queries"].values()) == [
        "Fit the model to the data.", "Predict labels for the samples.",
    ]  # fmt: skip
    qrels = {qid: rel for split in out["qrels"].values() for qid, rel in split.items()}
    fit = next(q for q, t in out["queries"].items() if t.startswith("Fit"))
    assert qrels[fit] == {"pkg.a": 1, "pkg.b": 1}
    assert out["see_also"] == {"pkg.c": ["pkg.b"]}


# ---------------------------------------------------------------------------------------------
# BEIR loader and writer
# ---------------------------------------------------------------------------------------------

CORPUS = {
    "d1": {"title": "numpy.cumsum", "text": "Cumulative sum."},
    "d2": {"title": "numpy.cumprod", "text": "Cumulative product."},
    "d3": {"title": "", "text": "No title."},
}
QUERIES = {"q1": "running total", "q2": "running product", "q3": "nothing relevant"}
QRELS = {
    "test": {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}, "q3": {"d3": 0}},
    "train": {"q1": {"d1": 1}},
}


@pytest.fixture
def fixture_dir(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    write_beir(folder, CORPUS, QUERIES, QRELS)
    return folder


def test_write_load_round_trip(fixture_dir):
    ds = load_beir(fixture_dir, "test")
    assert isinstance(ds, BeirDataset)
    assert ds.corpus == CORPUS
    assert ds.queries == {"q1": "running total", "q2": "running product"}  # q3: no positive
    assert ds.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}}  # grade 0 kept
    assert ds.doc_ids == ["d1", "d2", "d3"]
    assert ds.doc_texts() == ["numpy.cumsum Cumulative sum.", "numpy.cumprod Cumulative product.",
                              "No title."]  # fmt: skip
    assert ds.doc_texts(join_title=False)[0] == "Cumulative sum."
    assert repr(ds) == "BeirDataset(name='tiny', split='test', corpus=3, queries=2, qrels=3)"
    assert (fixture_dir / "qrels" / "test.tsv").read_text().splitlines()[0] == (
        "query-id\tcorpus-id\tscore"
    )
    assert training_pairs(fixture_dir) == [("running total", "numpy.cumsum Cumulative sum.")]
    assert training_pairs(ds, "test") == [
        ("running total", "numpy.cumsum Cumulative sum."),
        ("running product", "numpy.cumprod Cumulative product."),
    ]
    with pytest.raises(ValueError, match="split"):
        training_pairs(ds)  # a test split given where train is asked for


def test_headerless_qrels_and_blank_lines(fixture_dir):
    (fixture_dir / "qrels" / "dev.tsv").write_text("q2\td2\t1\n\nq1\td1\t1.0\n")
    ds = load_beir(fixture_dir, "dev")
    assert ds.qrels == {"q2": {"d2": 1}, "q1": {"d1": 1}}
    assert list(ds.queries) == ["q1", "q2"]  # queries.jsonl order


def test_write_beir_is_atomic(fixture_dir):
    before = _read_all(fixture_dir)
    with pytest.raises(ValueError, match="corpus-id 'nope'"):
        write_beir(fixture_dir, CORPUS, QUERIES, {"test": {"q1": {"nope": 1}}})
    assert _read_all(fixture_dir) == before
    assert [p.name for p in fixture_dir.parent.iterdir()] == ["tiny"]
    write_beir(
        fixture_dir, {"x": {"title": "", "text": "new"}}, {"q": "y"}, {"test": {"q": {"x": 1}}}
    )
    assert load_beir(fixture_dir).corpus == {"x": {"title": "", "text": "new"}}
    assert not (fixture_dir / "qrels" / "train.tsv").exists()  # the old folder was replaced


def _replace_line(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("file", "line_no", "new", "message"),
    [
        ("corpus.jsonl", 2, '{"_id": "d2", "text": ', "corpus.jsonl line 2: invalid JSON"),
        ("corpus.jsonl", 3, '{"_id": "d3"}', "corpus.jsonl line 3: expected key 'text'"),
        ("corpus.jsonl", 1, "[1, 2]", "corpus.jsonl line 1: expected a JSON object"),
        ("corpus.jsonl", 2, '{"_id": "d1", "text": "x"}',
         "corpus.jsonl line 2: duplicate _id 'd1'"),
        ("queries.jsonl", 2, '{"text": "x"}', "queries.jsonl line 2: expected key '_id'"),
        ("qrels/test.tsv", 2, "q1\td1", "qrels/test.tsv line 2: expected 3"),
        ("qrels/test.tsv", 3, "q1\tnumpy.foo\t1",
         "qrels/test.tsv line 3: corpus-id 'numpy.foo' not found in corpus.jsonl"),
        ("qrels/test.tsv", 4, "q9\td1\t1",
         "qrels/test.tsv line 4: query-id 'q9' not found in queries.jsonl"),
        ("qrels/test.tsv", 2, "q1\td1\thigh", "qrels/test.tsv line 2: score"),
    ],
)  # fmt: skip
def test_load_beir_errors_name_file_and_line(fixture_dir, file, line_no, new, message):
    _replace_line(fixture_dir / file, line_no, new)
    with pytest.raises(ValueError) as info:
        load_beir(fixture_dir, "test")
    assert message in str(info.value)


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_load_beir_missing_files(fixture_dir, missing):
    (fixture_dir / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_beir(fixture_dir, "test")


def test_load_beir_unknown_split_and_folder(fixture_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"qrels/dev.tsv.*\['test', 'train'\]"):
        load_beir(fixture_dir, "dev")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_beir(tmp_path / "nowhere")


def test_see_also_loader_errors(fixture_dir):
    with pytest.raises(FileNotFoundError, match="see_also.jsonl"):
        load_see_also(fixture_dir)
    (fixture_dir / "see_also.jsonl").write_text(
        '{"_id": "d1", "see_also": ["d2"]}\n{"_id": "d2"}\n'
    )
    with pytest.raises(ValueError, match="see_also.jsonl line 2"):
        load_see_also(fixture_dir)


def test_fingerprint_is_stable_and_requires_a_manifest(tmp_path):
    from tinyir.data import PYDOCS_DIR, dataset_fingerprint

    assert dataset_fingerprint(PYDOCS_DIR) == dataset_fingerprint(PYDOCS_DIR)
    assert len(dataset_fingerprint(PYDOCS_DIR)) == 16
    with pytest.raises(FileNotFoundError, match="manifest"):
        dataset_fingerprint(tmp_path)


def test_subset_keeps_judged_documents_and_is_seeded():
    from tinyir.data import PYDOCS_DIR

    ds = load_beir(PYDOCS_DIR, "dev")
    a, b = ds.subset(50, 300, seed=1), ds.subset(50, 300, seed=1)
    assert a.queries == b.queries and list(a.corpus) == list(b.corpus)
    assert len(a.queries) == 50 and len(a.corpus) == 300
    assert all(doc_id in a.corpus for rel in a.qrels.values() for doc_id in rel)
    with pytest.raises(ValueError, match="n_docs"):
        ds.subset(50, 10)
