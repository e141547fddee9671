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

Comparing two systems: ``per_query`` gives each judged query's score, and ``paired_bootstrap``
turns two such dicts into the mean difference with a confidence interval over queries. A claim
"A beats B" holds only when that interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques" (TOIS 2002); the
    linear gain is trec_eval's and BEIR's.

    >>> round(ndcg_at_k(["a", "b", "c"], {"b": 1}, k=3), 4)   # the one hit at rank 2: 1 / log2(3)
    0.6309
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


def mean_metrics(
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


def _parse_metric(metric: str) -> tuple[str, int]:
    """ "ndcg@10" -> ("ndcg", 10), with an error that lists the known names."""
    name, _, k = metric.partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(
            f"metric: expected '<name>@<k>' with name in {sorted(METRICS)} and k >= 1, "
            f"got {metric!r}"
        )
    return name, int(k)


def per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metric: str = "ndcg@10",
) -> dict[str, float]:
    """One metric per judged query: {query_id: value}, for paired comparisons.

    Same queries and conventions as :func:`mean_metrics`: every query of ``qrels`` with a relevant
    document, a query missing from the run scores 0, so ``mean(per_query(...).values())`` equals
    ``mean_metrics(...)[metric]``. metric: "ndcg@10", "recall@100", "mrr@10", "map@100" or
    "precision@1" (any k).
    """
    name, k = _parse_metric(metric)
    judged = [qid for qid, relevance in qrels.items() if _num_relevant(relevance) > 0]
    if not judged:
        raise ValueError("qrels: expected at least one query with a relevant (grade > 0) document")
    return {qid: METRICS[name](rank_documents(run.get(qid, {})), qrels[qid], k) for qid in judged}


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over n paired queries, with its bootstrap ``confidence`` interval."""

    difference: float
    low: float
    high: float
    n: int
    confidence: float
    metric: str = ""

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0: the data support a difference in that direction."""
        return self.low > 0 or self.high < 0

    def describe(self, a_name: str = "A", b_name: str = "B") -> str:
        """One sentence: the difference with its interval and n, then the verdict."""
        what = f" {self.metric}" if self.metric else ""
        numbers = (
            f"{a_name} - {b_name} = {self.difference:+.3f}{what} "
            f"({self.confidence:.0%} CI [{self.low:+.3f}, {self.high:+.3f}], n={self.n} queries)"
        )
        if self.low > 0:
            return f"{numbers}: {a_name} beats {b_name}."
        if self.high < 0:
            return f"{numbers}: {b_name} beats {a_name}."
        return f"{numbers}: no measurable difference on these {self.n} queries."


def _paired_values(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Align two {qid: value} dicts by key (sorted, so dict order never matters) or two sequences."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise TypeError(
                "a and b: expected two {query_id: value} dicts or two sequences, got "
                f"{type(a).__name__} and {type(b).__name__}"
            )
        if a.keys() != b.keys():
            only_a, only_b = sorted(a.keys() - b.keys(), key=str), sorted(b.keys() - a.keys(), key=str)
            raise ValueError(
                "a and b: expected the same query ids; only in a: "
                f"{only_a[:5]}{'...' if len(only_a) > 5 else ''} ({len(only_a)}), only in b: "
                f"{only_b[:5]}{'...' if len(only_b) > 5 else ''} ({len(only_b)})"
            )
        keys = sorted(a, key=str)
        a, b = [a[key] for key in keys], [b[key] for key in keys]
    a_values = np.asarray(a, dtype=np.float64)
    b_values = np.asarray(b, dtype=np.float64)
    if a_values.ndim != 1 or a_values.shape != b_values.shape:
        raise ValueError(
            "a and b: expected two 1-d sequences of equal length, got shapes "
            f"{a_values.shape} and {b_values.shape}"
        )
    if not (np.isfinite(a_values).all() and np.isfinite(b_values).all()):
        raise ValueError("a and b: expected finite values, got NaN or inf")
    return a_values, b_values


def paired_bootstrap(
    a: Mapping[str, float] | Sequence[float],
    b: Mapping[str, float] | Sequence[float],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    metric: str = "",
) -> PairedDifference:
    """Paired bootstrap confidence interval of ``mean(a - b)`` over queries.

    a, b: {query_id: value} with the same keys (e.g. from :func:`per_query`), or two sequences
    of equal length whose i-th entries belong to the same query. Each resample draws n query
    indices with replacement (a numpy Generator seeded with ``seed``) and averages the paired
    differences; the interval is the (1 - confidence)/2 and (1 + confidence)/2 percentiles of
    those means (the percentile bootstrap). Pairing matters: both systems are scored on the
    same resampled queries, so the hard-query noise they share cancels.

    >>> result = paired_bootstrap([0.5, 0.75, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5], metric="ndcg@10")
    >>> result.difference, result.low, result.high, result.significant
    (0.3125, 0.125, 0.5, True)
    >>> result.describe("tuned", "base")
    'tuned - base = +0.312 ndcg@10 (95% CI [+0.125, +0.500], n=4 queries): tuned beats base.'
    """
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise ValueError(f"n_resamples: expected an int >= 1, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a float in (0, 1), got {confidence!r}")
    a_values, b_values = _paired_values(a, b)
    n = len(a_values)
    if n < 2:
        raise ValueError(f"a and b: expected at least 2 paired values to resample, got {n}")
    differences = a_values - b_values  # (n,)

    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)  # resamples per step: (chunk, n) indices stay ~32 MB
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))  # (chunk, n)
        means[start:stop] = differences[indices].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedDifference(
        difference=float(differences.mean()),
        low=float(low),
        high=float(high),
        n=n,
        confidence=confidence,
        metric=metric,
    )


def run_from_topk(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    scores: np.ndarray | torch.Tensor,
    indices: np.ndarray | torch.Tensor,
) -> Run:
    """Turn top-k search output into a run dict for ``mean_metrics``.

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
