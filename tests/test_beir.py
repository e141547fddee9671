"""Tests for tinyir.beir: the BEIR loader and writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyir.beir import BeirDataset, load_beir, load_see_also, training_pairs, write_beir


def read_all(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``: relative path -> bytes (also used by test_pydocs.py)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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
    before = read_all(fixture_dir)
    with pytest.raises(ValueError, match="corpus-id 'nope'"):
        write_beir(fixture_dir, CORPUS, QUERIES, {"test": {"q1": {"nope": 1}}})
    assert read_all(fixture_dir) == before
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


def test_subset_keeps_judged_documents_and_is_seeded():
    from tinyir.pydocs import PYDOCS_DIR

    ds = load_beir(PYDOCS_DIR, "dev")
    a, b = ds.subset(50, 300, seed=1), ds.subset(50, 300, seed=1)
    assert a.queries == b.queries and list(a.corpus) == list(b.corpus)
    assert len(a.queries) == 50 and len(a.corpus) == 300
    assert all(doc_id in a.corpus for rel in a.qrels.values() for doc_id in rel)
    with pytest.raises(ValueError, match="n_docs"):
        ds.subset(50, 10)
