"""tinyir.pipeline: the table of systems, the search box, the model fingerprint (the systems
themselves are tested in test_retrievers.py)."""

import numpy as np
import pytest
import torch
from toy_retrieval import QRELS, QUERIES  # tests/ is on sys.path; the fixtures: conftest.py

from tinyir.metrics import mean_metrics
from tinyir.pipeline import compare_systems, format_hits, model_fingerprint, search_box


def test_compare_systems_table(ds, bm25, dense):
    class Oracle:  # ranks the judged passages first: a perfect system
        index_bytes, model_bytes = 7, 0

        def retrieve(self, queries, k):
            ids = ds.doc_ids
            text_to_qid = {text: qid for qid, text in QUERIES.items()}
            rows = []
            for text in queries:
                relevant = [ids.index(d) for d in QRELS[text_to_qid[text]]]
                rest = [j for j in range(len(ids)) if j not in relevant]
                rows.append((relevant + rest)[:k])
            indices = np.array(rows)
            return -np.arange(k, dtype=np.float32)[None].repeat(len(rows), 0), indices

    comparison = compare_systems({"oracle": Oracle(), "bm25": bm25, "dense": dense}, ds,
                                 k_values=(1, 3), latency_queries=2)
    assert [r.name for r in comparison.rows] == ["oracle", "bm25", "dense"]
    assert comparison["oracle"].metrics["ndcg@3"] == pytest.approx(1.0)
    assert comparison["oracle"].index_bytes == 7
    assert comparison.metric("recall@3")["oracle"] == pytest.approx(1.0)
    assert comparison["bm25"].metrics == mean_metrics(comparison.runs["bm25"], ds.qrels, (1, 3))
    assert all(r.ms_per_query >= 0 and r.batch_ms_per_query >= 0 for r in comparison.rows)
    text = comparison.table(("ndcg@3", "recall@3"))
    assert "oracle" in text and "ndcg@3" in text and len(text.splitlines()) == 5
    with pytest.raises(KeyError):
        comparison["nope"]
    with pytest.raises(ValueError, match="systems"):
        compare_systems({}, ds)


def test_search_box_returns_titles_per_system(ds, bm25, dense):
    results = search_box("cumulative sum", {"bm25": bm25, "dense": dense}, ds, k=2)
    assert list(results) == ["bm25", "dense"]
    assert [h.rank for h in results["bm25"]] == [1, 2]
    assert results["bm25"][0].doc_id == "cumsum" and results["bm25"][0].title == "numpy.cumsum"
    text = format_hits(results, relevant=QRELS["q1"])
    assert "*1. numpy.cumsum" in text and text.startswith("bm25:")
    with pytest.raises(ValueError, match="query"):
        search_box("  ", {"bm25": bm25}, ds)


def test_model_fingerprint_changes_with_the_weights():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 2)
    b = torch.nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b) and len(model_fingerprint(a)) == 16
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)
