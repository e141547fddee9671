"""Ranking metrics with trec_eval's conventions: Recall@k, MRR@k, nDCG@k, MAP@k, P@k.

Two dicts carry everything, in the layout BEIR and pytrec_eval use:
    run:   {query_id: {doc_id: score}}   what a retriever returned (higher score = better)
    qrels: {query_id: {doc_id: grade}}   human judgments; grade >= 1 is relevant, <= 0 is not

Conventions, checked against ``pytrec_eval`` (the C trec_eval) in tests/test_metrics.py:
- Ranking: sort by score descending; equal scores are ordered by doc id DESCENDING (trec_eval
  sorts with ``strcmp(docno2, docno1)`` on ties). So with tied scores "d9" outranks "d10".
- nDCG: linear gain (the grade itself, not ``2**grade - 1``), discount ``log2(rank + 1)``, grades
  <= 0 count as gain 0; the ideal DCG ranks ALL judged relevant documents of the query, whether
  the run retrieved them or not.
- Recall@k: relevant documents in the top k / all relevant documents of the query.
- P@k divides by k even when fewer than k documents were retrieved.
- MRR@k: 1 / rank of the first relevant document within the top k, else 0 (trec_eval's
  ``recip_rank`` on the run cut to k; BEIR computes MRR@k this way too).
- MAP@k: the sum of precision@rank at each relevant rank within the top k, divided by all
  relevant documents of the query (trec_eval's ``map_cut_k``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
# One query's ranking: {doc_id: score}, or doc ids already in rank order (best first).
Ranking = Mapping[str, float] | Sequence[str]


def rank_documents(doc_scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval order: score descending, ties broken by doc id descending."""
    return sorted(doc_scores, key=lambda doc_id: (doc_scores[doc_id], doc_id), reverse=True)


def _top_k(ranking: Ranking, k: int) -> list[str]:
    """The first ``k`` doc ids of ``ranking`` (a score dict is ranked first)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if isinstance(ranking, Mapping):
        return rank_documents(ranking)[:k]
    if isinstance(ranking, str) or not isinstance(ranking, Sequence):
        raise TypeError(
            f"ranking: expected {{doc_id: score}} or a list of doc ids, got {type(ranking).__name__}"
        )
    return list(ranking[:k])


def _num_relevant(relevance: Mapping[str, int]) -> int:
    return sum(1 for grade in relevance.values() if grade > 0)


def precision_at_k(ranking: Ranking, relevance: Mapping[str, int], k: int) -> float:
    """Fraction of the top ``k`` that is relevant (always divided by ``k``, as trec_eval's P_k)."""
    top = _top_k(ranking, k)
    return sum(1 for doc_id in top if relevance.get(doc_id, 0) > 0) / k


def recall_at_k(ranking: Ranking, relevance: Mapping[str, int], k: int) -> float:
    """Relevant documents in the top ``k`` / all relevant documents (0.0 when there are none)."""
    top = _top_k(ranking, k)
    num_relevant = _num_relevant(relevance)
    if num_relevant == 0:
        return 0.0
    return sum(1 for doc_id in top if relevance.get(doc_id, 0) > 0) / num_relevant


def mrr_at_k(ranking: Ranking, relevance: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k``; 0.0 if there is none."""
    for rank, doc_id in enumerate(_top_k(ranking, k), start=1):
        if relevance.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranking: Ranking, relevance: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains: ``sum(grade / log2(rank + 1)) / ideal``; 0.0 with no relevant doc.

    The ideal DCG sorts all positive grades of the query, descending, and keeps the first k.
    """
    top = _top_k(ranking, k)
    dcg = sum(
        max(relevance.get(doc_id, 0), 0) / math.log2(rank + 1)
        for rank, doc_id in enumerate(top, start=1)
    )
    ideal_grades = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    ideal_dcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal_grades, start=1))
    return dcg / ideal_dcg if ideal_dcg > 0 else 0.0


def average_precision_at_k(ranking: Ranking, relevance: Mapping[str, int], k: int) -> float:
    """AP@k: mean of precision@rank over the relevant ranks in the top k, divided by ALL relevant.

    Dividing by all relevant documents (not only those retrieved) is trec_eval's ``map_cut_k``.
    """
    top = _top_k(ranking, k)
    num_relevant = _num_relevant(relevance)
    if num_relevant == 0:
        return 0.0
    hits, precision_sum = 0, 0.0
    for rank, doc_id in enumerate(top, start=1):
        if relevance.get(doc_id, 0) > 0:
            hits += 1
            precision_sum += hits / rank
    return precision_sum / num_relevant


METRICS = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": mrr_at_k,
    "map": average_precision_at_k,
    "precision": precision_at_k,
}


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Sequence[int] = (1, 10, 100, 1000),
) -> dict[str, float]:
    """Average every metric in ``METRICS`` at every k over the judged queries.

    run: {query_id: {doc_id: score}}. qrels: {query_id: {doc_id: grade}}.
    Returns {"ndcg@10": ..., "recall@100": ..., "mrr@10": ..., "map@100": ...,
    "precision@1": ...} for each k in ``k_values``.

    Which queries count: every query in ``qrels`` with at least one relevant (grade > 0)
    document. A query the run is missing scores 0 on every metric, so a retriever cannot look
    better by skipping hard queries. (pytrec_eval instead averages only over queries present
    in both dicts, and BEIR/MTEB average over the queries of the run; all three agree when the
    run answers every judged query.) Run queries without judgments are ignored.
    """
    if isinstance(k_values, int):
        k_values = (k_values,)
    if not k_values:
        raise ValueError("k_values: expected at least one k, got an empty sequence")
    judged = [qid for qid, relevance in qrels.items() if _num_relevant(relevance) > 0]
    if not judged:
        raise ValueError("qrels: expected at least one query with a relevant (grade > 0) document")

    totals = {f"{name}@{k}": 0.0 for name in METRICS for k in k_values}
    for qid in judged:
        ranked = rank_documents(run.get(qid, {}))  # sort once, cut at every k
        for name, metric in METRICS.items():
            for k in k_values:
                totals[f"{name}@{k}"] += metric(ranked, qrels[qid], k)
    return {key: total / len(judged) for key, total in totals.items()}


def run_from_topk(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    scores: np.ndarray | torch.Tensor,
    indices: np.ndarray | torch.Tensor,
) -> Run:
    """Turn top-k search output into a run dict for ``evaluate``.

    query_ids: Q ids, one per row. doc_ids: the corpus ids, ``doc_ids[j]`` names column j.
    scores: (Q, k) float; indices: (Q, k) int into ``doc_ids`` (numpy or torch, any device).
    Negative indices (FAISS pads with -1 when it finds fewer than k) are skipped.
    Returns {query_id: {doc_id: score}}.
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    scores, indices = np.asarray(scores), np.asarray(indices)
    if scores.ndim != 2 or scores.shape != indices.shape:
        raise ValueError(
            "scores and indices: expected the same (Q, k) shape, got "
            f"{scores.shape} and {indices.shape}"
        )
    if len(query_ids) != scores.shape[0]:
        raise ValueError(
            f"query_ids: expected one id per row (Q={scores.shape[0]}), got {len(query_ids)}"
        )
    if indices.size and indices.max() >= len(doc_ids):
        raise ValueError(
            f"indices: expected values < len(doc_ids)={len(doc_ids)}, got {indices.max()}"
        )
    run: Run = {}
    for qid, row_scores, row_indices in zip(query_ids, scores, indices, strict=True):
        run[qid] = {
            doc_ids[j]: float(s) for s, j in zip(row_scores, row_indices, strict=True) if j >= 0
        }
    return run
