"""The measured results the lessons read (tinyir/course/checkpoints/results.json): they belong
to the shipped checkpoints and data, cover every system and query, and BM25's numbers, the one
system cheap enough to rerun here, come out the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyir.course import checkpoints, measure
from tinyir.pydocs import PYDOCS_DIR, dataset_fingerprint

pytestmark = pytest.mark.skipif(not measure.RESULTS.is_file(), reason="no results.json yet")


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(measure.RESULTS.read_text())


def test_results_belong_to_the_shipped_checkpoints_and_data(results):
    assert results["data"] == dataset_fingerprint(PYDOCS_DIR)
    for name, digest in results["checkpoints"].items():
        assert checkpoints.read_manifest(name)["weights_sha256"] == digest, name
    systems = set(measure.FIRST_STAGES) | {"colbert"} | {
        f"{s}+rerank@{d}" for s in measure.RERANKED for d in results["depths"]}
    assert set(results["per_query"]) == systems
    for name, metrics in results["per_query"].items():
        assert set(metrics) == set(measure.METRICS)
        for metric, values in metrics.items():
            assert len(values) == results["queries"]
            assert results["mean"][name][metric] == pytest.approx(np.mean(list(values.values())))


@pytest.mark.slow
def test_bm25_reproduces(results):
    from tinyir.beir import load_beir
    from tinyir.metrics import per_query, run_from_topk
    from tinyir.retrievers import BM25Retriever

    ds = load_beir(PYDOCS_DIR, results["split"])
    qids = sorted(ds.queries)
    scores, indices = BM25Retriever(ds.doc_texts()).retrieve([ds.queries[q] for q in qids], 100)
    run = run_from_topk(qids, ds.doc_ids, scores, indices)
    for metric in measure.METRICS:
        got = per_query(run, ds.qrels, metric)
        recorded = results["per_query"]["bm25"][metric]
        worst = max(abs(got[q] - recorded[q]) for q in qids)
        assert worst <= 1e-9, (metric, worst)  # same code path, same float32 sums
