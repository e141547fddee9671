"""The `tinyir` command: eval prints one JSON object as its last stdout line; bad input exits 2
with a message naming the argument."""

from __future__ import annotations

import json

import pytest

from tinyir.beir import write_beir
from tinyir.cli import main

CORPUS = {
    "numpy.cumsum": {"title": "numpy.cumsum", "text": "cumsum(a, axis=None) Running total of elements."},
    "numpy.cumprod": {"title": "numpy.cumprod", "text": "cumprod(a, axis=None) Running product."},
    "json.dumps": {"title": "json.dumps", "text": "dumps(obj) Serialize obj to a JSON string."},
    "os.path.join": {"title": "os.path.join", "text": "join(a, *p) Join path components."},
    "math.sqrt": {"title": "math.sqrt", "text": "sqrt(x) Square root of x."},
}
QUERIES = {
    "q1": "Return the cumulative sum of the elements along a given axis.",
    "q2": "Serialize an object to a JSON formatted string.",
    "q3": "Join two or more pathname components.",
}
QRELS = {
    "test": {"q1": {"numpy.cumsum": 1}, "q2": {"json.dumps": 1}, "q3": {"os.path.join": 1}},
    "train": {"q1": {"numpy.cumsum": 1}},
}


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    write_beir(folder, CORPUS, QUERIES, QRELS)
    return folder


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


@pytest.mark.parametrize("model", ["bm25", "minilm"])
def test_eval_prints_json_last_line(tiny_beir, capsys, model):
    code = main(["eval", "--beir", str(tiny_beir), "--model", model, "--quiet", "--k", "10"])
    assert code == 0
    result = _last_json(capsys)
    for key in ("ndcg@10", "recall@100", "mrr@10", "queries", "docs", "seconds"):
        assert key in result, key
    assert result["queries"] == 3 and result["docs"] == 5
    # On this toy set both retrievers put the one relevant document within the top 5 docs.
    assert result["recall@100"] == 1.0
    assert 0.0 < result["ndcg@10"] <= 1.0


def test_minilm_ranks_the_paraphrase_first(tiny_beir, capsys):
    main(["eval", "--beir", str(tiny_beir), "--model", "minilm", "--quiet"])
    assert _last_json(capsys)["mrr@10"] == 1.0


def test_unknown_model_is_an_argument_error(tiny_beir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--beir", str(tiny_beir), "--model", "bert-large"])
    assert exc.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_missing_folder_is_named(tmp_path, capsys):
    code = main(["eval", "--beir", str(tmp_path / "nope"), "--model", "bm25", "--quiet"])
    assert code == 2
    assert "nope does not exist" in capsys.readouterr().err


def test_missing_file_is_named(tmp_path, capsys):
    (tmp_path / "queries.jsonl").write_text("")
    code = main(["eval", "--beir", str(tmp_path), "--model", "bm25", "--quiet"])
    assert code == 2
    assert "corpus.jsonl" in capsys.readouterr().err


def test_bad_k_is_rejected(tiny_beir, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--beir", str(tiny_beir), "--model", "bm25", "--k", "0"])
    assert "--k" in capsys.readouterr().err


def test_unknown_split_names_it(tiny_beir, capsys):
    code = main(["eval", "--beir", str(tiny_beir), "--model", "bm25", "--split", "dev", "--quiet"])
    assert code == 2
    assert "dev" in capsys.readouterr().err


@pytest.mark.parametrize("dtype, expected", [("fp32", 4_096_000_000), ("fp16", 2_048_000_000),
                                             ("int8", 1_024_000_000), ("binary", 128_000_000)])
def test_storage_reproduces_the_book(capsys, dtype, expected):
    assert main(["storage", "--docs", "1000000", "--dim", "1024", "--dtype", dtype]) == 0
    result = _last_json(capsys)
    assert result["bytes"] == expected
    assert result["human"].endswith("GB") or result["human"].endswith("MB")


def test_storage_multi_vector(capsys):
    main(["storage", "--docs", "1000000", "--dim", "1", "--dtype", "fp32",
          "--vectors-per-doc", "200"])
    # 200 tokens x 32 bits = 800 B per document: 0.8 GB for 1M documents, not 80 GB.
    assert _last_json(capsys)["bytes"] == 800_000_000


def test_storage_unknown_dtype_names_it(capsys):
    assert main(["storage", "--docs", "10", "--dim", "8", "--dtype", "fp9"]) == 2
    assert "dtype" in capsys.readouterr().err


@pytest.mark.slow
def test_grade_command_writes_csv_and_summary(tmp_path, capsys):
    import csv
    import shutil

    from tinyir.grading import EXERCISES_DIR, SOLUTIONS_DIR

    costs = "04_costs.ipynb"  # one light notebook: the whole class is graded in test_grading
    for student, source in (("ada", SOLUTIONS_DIR), ("bob", EXERCISES_DIR)):
        (tmp_path / "subs" / student).mkdir(parents=True)
        shutil.copy(source / costs, tmp_path / "subs" / student / costs)
    out = tmp_path / "grades.csv"
    code = main(["grade", str(tmp_path / "subs"), "--out", str(out), "--jobs", "2",
                 "--timeout", "120", "--quiet", "--feedback", str(tmp_path / "fb")])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["student", "notebook", "exercise", "points", "max_points",
                             "status", "message"]
    earned = {s: sum(float(r["points"]) for r in rows if r["student"] == s) for s in ("ada", "bob")}
    total = sum(float(r["max_points"]) for r in rows if r["student"] == "ada"
                and r["notebook"] == costs)
    assert earned == {"ada": total, "bob": 0.0}
    summary = capsys.readouterr().out
    assert "ada" in summary and "bob" in summary
    assert (tmp_path / "fb" / "bob.md").is_file()


def test_grading_build_check_passes_on_committed_exercises(capsys):
    assert main(["grading", "build", "--check"]) == 0
    assert _last_json(capsys)["in_sync"] is True


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    from tiny_models import tiny_encoder

    from tinyir.rerank import CrossEncoder
    from tinyir.tokenizer import Tokenizer

    tokenizer = Tokenizer.minilm()
    model = CrossEncoder(tiny_encoder(tokenizer.vocab_size), tokenizer, max_length=48)
    return model, model.save_pretrained(tmp_path_factory.mktemp("reranker") / "ce")


def test_eval_hybrid_and_rerank_report_the_pipeline(tiny_beir, tiny_reranker, capsys):
    model, folder = tiny_reranker
    assert main(["eval", "--beir", str(tiny_beir), "--model", "minilm", "--hybrid", "bm25",
                 "--quiet"]) == 0
    hybrid = _last_json(capsys)
    assert (hybrid["model"], hybrid["hybrid"], hybrid["rerank"]) == ("minilm", "bm25", None)
    assert hybrid["recall@100"] == 1.0
    assert main(["eval", "--beir", str(tiny_beir), "--model", "bm25", "--rerank", str(folder),
                 "--rerank-depth", "2", "--quiet"]) == 0
    reranked = _last_json(capsys)
    assert reranked["rerank"] == str(folder) and reranked["rerank_depth"] == 2


def test_rerank_reorders_the_first_stage_top(tiny_beir, tiny_reranker):
    """The run is the cross-encoder's order of BM25's top rerank_depth, nothing more."""
    from tinyir.beir import load_beir
    from tinyir.evaluate import evaluate_beir
    from tinyir.retrievers import BM25Retriever

    model, _ = tiny_reranker
    ds = load_beir(tiny_beir, "test")
    result = evaluate_beir(ds, "bm25", rerank=model.eval(), rerank_depth=3, progress=False)
    _, first = BM25Retriever(ds.doc_texts()).retrieve(list(ds.queries.values()), 3)
    for (qid, query), candidates in zip(ds.queries.items(), first, strict=True):
        texts = [ds.doc_texts()[j] for j in candidates]
        expected = [ds.doc_ids[candidates[i]] for i, _ in model.rerank(query, texts)]
        assert list(result.run[qid]) == expected


def test_eval_refuses_a_hybrid_of_bm25_with_itself(tiny_beir, capsys):
    assert main(["eval", "--beir", str(tiny_beir), "--model", "bm25", "--hybrid", "bm25",
                 "--quiet"]) == 2
    assert "hybrid: fuses a dense model with BM25" in capsys.readouterr().err


def test_eval_refuses_a_reranker_that_is_not_a_folder(tiny_beir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--beir", str(tiny_beir), "--model", "bm25", "--rerank",
              str(tmp_path / "nothing")])
    assert "expected 'course' or the folder of a saved cross-encoder" in capsys.readouterr().err
