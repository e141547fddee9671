"""tinyir.metrics against hand arithmetic and against pytrec_eval (the C trec_eval)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from tinyir.metrics import (
    average_precision_at_k,
    evaluate,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    rank_documents,
    recall_at_k,
    run_from_topk,
)

pytrec_eval = pytest.importorskip("pytrec_eval")

# q1 ranks d2 > d3 > d5 > d4 > d1; relevant: d1 (grade 2), d2 (1), d4 (1); d3 judged 0.
RUN = {
    "q1": {"d1": 0.1, "d2": 0.9, "d3": 0.8, "d5": 0.7, "d4": 0.5},
    "q2": {"y": 1.0, "x": 0.5},
    "q3": {"z": 1.0},
}
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d4": 1},
    "q2": {"x": 1},
    "q3": {"z": 0},  # no relevant document: not averaged
    "q4": {"w": 1},  # missing from the run: scores 0
}


def test_rank_documents_ties_by_doc_id_descending():
    assert rank_documents(RUN["q1"]) == ["d2", "d3", "d5", "d4", "d1"]
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
    assert rank_documents({"d10": 0.5, "d9": 0.5}) == ["d9", "d10"]  # string order, not numeric


def test_hand_computed_single_query():
    run, rel = RUN["q1"], QRELS["q1"]
    assert precision_at_k(run, rel, 1) == 1.0
    assert precision_at_k(run, rel, 3) == pytest.approx(1 / 3, abs=1e-12)
    assert precision_at_k(run, rel, 10) == pytest.approx(3 / 10, abs=1e-12)  # divided by k
    assert recall_at_k(run, rel, 3) == pytest.approx(1 / 3, abs=1e-12)
    assert recall_at_k(run, rel, 5) == 1.0
    assert mrr_at_k(run, rel, 1) == 1.0
    # DCG@3 = 1/log2(2); ideal grades (2, 1, 1) -> 2/log2(2) + 1/log2(3) + 1/log2(4)
    ideal = 2 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(run, rel, 3) == pytest.approx(1 / ideal, abs=1e-12)
    # DCG@5 adds d4 at rank 4 (1/log2 5) and d1 at rank 5 (2/log2 6)
    dcg5 = 1 + 1 / math.log2(5) + 2 / math.log2(6)
    assert ndcg_at_k(run, rel, 5) == pytest.approx(dcg5 / ideal, abs=1e-12)
    # relevant at ranks 1, 4, 5: (1/1 + 2/4 + 3/5) / 3 relevant
    assert average_precision_at_k(run, rel, 5) == pytest.approx(0.7, abs=1e-12)
    assert average_precision_at_k(run, rel, 3) == pytest.approx(1 / 3, abs=1e-12)
    # a ranked list of ids works the same as a score dict
    assert ndcg_at_k(["d2", "d3", "d5", "d4", "d1"], rel, 5) == ndcg_at_k(run, rel, 5)


def test_ties_change_the_rank():
    rel = {"a": 1}
    assert mrr_at_k({"a": 1.0, "b": 1.0}, rel, 10) == 0.5  # "b" > "a" goes first
    assert mrr_at_k({"a": 1.0, "0": 1.0}, rel, 10) == 1.0  # "a" > "0" goes first


def test_evaluate_hand_computed():
    result = evaluate(RUN, QRELS, k_values=(1, 5))
    # Averaged over q1, q2, q4 (q3 has no relevant doc); q4 is missing from the run -> 0.
    assert result["mrr@1"] == pytest.approx((1 + 0 + 0) / 3, abs=1e-12)
    assert result["mrr@5"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-12)
    assert result["recall@5"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-12)
    assert result["precision@1"] == pytest.approx(1 / 3, abs=1e-12)
    ndcg_q2 = (1 / math.log2(3)) / 1.0
    ideal_q1 = 2 + 1 / math.log2(3) + 0.5
    ndcg_q1 = (1 + 1 / math.log2(5) + 2 / math.log2(6)) / ideal_q1
    assert result["ndcg@5"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3, abs=1e-12)
    assert result["map@5"] == pytest.approx((0.7 + 0.5 + 0) / 3, abs=1e-12)
    assert set(result) == {f"{m}@{k}" for m in ("ndcg", "recall", "mrr", "map", "precision")
                           for k in (1, 5)}


def test_negative_grades_count_as_zero_gain():
    rel = {"bad": -1, "good": 1}
    assert ndcg_at_k({"bad": 2.0, "good": 1.0}, rel, 10) == pytest.approx(
        (1 / math.log2(3)) / 1.0, abs=1e-12
    )
    assert recall_at_k({"bad": 2.0}, rel, 10) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="k"):
        recall_at_k(RUN["q1"], QRELS["q1"], 0)
    with pytest.raises(TypeError, match="ranking"):
        ndcg_at_k("d1", QRELS["q1"], 3)
    with pytest.raises(ValueError, match="qrels"):
        evaluate(RUN, {"q3": {"z": 0}})
    with pytest.raises(ValueError, match="k_values"):
        evaluate(RUN, QRELS, k_values=())


def random_run_and_qrels(seed: int, num_queries: int = 40, num_docs: int = 300):
    rng = random.Random(seed)
    doc_ids = [f"d{i}" for i in range(num_docs)]
    run, qrels = {}, {}
    for q in range(num_queries):
        qid = f"q{q}"
        retrieved = rng.sample(doc_ids, rng.randint(1, 150))
        # One decimal place: many tied scores, so the tie-break rule matters.
        run[qid] = {d: round(rng.random(), 1) for d in retrieved}
        judged = rng.sample(doc_ids, rng.randint(1, 40))
        qrels[qid] = {d: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for d in judged}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytrec_eval_randomized(seed):
    run, qrels = random_run_and_qrels(seed)
    measures = {"ndcg_cut_10", "ndcg_cut_100", "recall_10", "recall_100", "P_10", "map_cut_100",
                "recip_rank"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    for qid in run:
        want, rel, ranking = expected[qid], qrels[qid], run[qid]
        assert abs(ndcg_at_k(ranking, rel, 10) - want["ndcg_cut_10"]) < 1e-9
        assert abs(ndcg_at_k(ranking, rel, 100) - want["ndcg_cut_100"]) < 1e-9
        assert abs(recall_at_k(ranking, rel, 10) - want["recall_10"]) < 1e-9
        assert abs(recall_at_k(ranking, rel, 100) - want["recall_100"]) < 1e-9
        assert abs(precision_at_k(ranking, rel, 10) - want["P_10"]) < 1e-9
        assert abs(average_precision_at_k(ranking, rel, 100) - want["map_cut_100"]) < 1e-9
        assert abs(mrr_at_k(ranking, rel, 1000) - want["recip_rank"]) < 1e-9

    # MRR@10 = trec_eval's recip_rank on the run cut to its top 10.
    cut_run = {qid: {d: run[qid][d] for d in rank_documents(run[qid])[:10]} for qid in run}
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut_run)
    for qid in run:
        assert abs(mrr_at_k(run[qid], qrels[qid], 10) - cut[qid]["recip_rank"]) < 1e-9

    # evaluate() averages the same numbers over queries with a relevant doc.
    averaged = evaluate(run, qrels, k_values=(10, 100))
    judged = [qid for qid in qrels if any(g > 0 for g in qrels[qid].values())]
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"),
                         ("map@100", "map_cut_100"), ("precision@10", "P_10")):
        mean = sum(expected[qid][theirs] for qid in judged) / len(judged)
        assert abs(averaged[ours] - mean) < 1e-9, ours


def test_run_from_topk_numpy_and_torch():
    scores = np.array([[0.9, 0.5], [0.7, -1.0]], dtype=np.float32)
    indices = np.array([[2, 0], [1, -1]])
    expected = {"qa": {"c": pytest.approx(0.9), "a": 0.5}, "qb": {"b": pytest.approx(0.7)}}
    assert run_from_topk(["qa", "qb"], ["a", "b", "c"], scores, indices) == expected
    assert run_from_topk(
        ["qa", "qb"], ["a", "b", "c"], torch.from_numpy(scores), torch.from_numpy(indices)
    ) == expected
    with pytest.raises(ValueError, match="query_ids"):
        run_from_topk(["qa"], ["a", "b", "c"], scores, indices)
    with pytest.raises(ValueError, match="scores and indices"):
        run_from_topk(["qa", "qb"], ["a", "b", "c"], scores, indices[:, :1])
    with pytest.raises(ValueError, match="indices"):
        run_from_topk(["qa", "qb"], ["a", "b"], scores, indices)
