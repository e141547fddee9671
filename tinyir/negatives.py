"""Hard negatives: passages a model ranks high for a query that are not its answer.

In-batch negatives are mostly easy (a random other docstring). Hard negatives are the passages
the current model confuses with the answer: ``numpy.cumprod`` for "Return the cumulative sum ...".
Training on them sharpens exactly the distinctions the model gets wrong. The trap is the false
negative: a top-ranked "negative" that is in fact relevant (``numpy.ndarray.cumsum`` documents the
same operation as ``numpy.cumsum``). Pushing it away teaches the model something false, so we
filter candidates that are too close to the positive, by score and by text.

    negatives = mine_hard_negatives(q_emb, d_emb, positives, num_negatives=3,
                                    relative_margin=0.05, doc_texts=docs, near_duplicate=0.8)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import torch

from tinyir.search import exact_search

_WORD = re.compile(r"\w+")


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the lower-cased word sets of two texts, in [0, 1]."""
    sa, sb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def mine_hard_negatives(
    query_embeddings: torch.Tensor,
    doc_embeddings: torch.Tensor,
    positives: Sequence[Collection[int]],
    num_negatives: int = 3,
    *,
    candidates: int = 30,
    skip_top: int = 0,
    relative_margin: float | None = None,
    absolute_margin: float | None = None,
    doc_texts: Sequence[str] | None = None,
    near_duplicate: float | None = None,
) -> list[list[int]]:
    """For each query, the top-ranked documents that are not its positives.

    query_embeddings: (Q, D); doc_embeddings: (N, D), unit-normalized, on one device.
    positives: for query i, the corpus indices of its relevant documents.
    num_negatives: negatives kept per query, best-ranked first.
    candidates: how deep to look in each ranking (top ``candidates`` documents).
    skip_top: ignore the first ``skip_top`` non-positive candidates (the likeliest false negatives).
    False-negative filters (sentence-transformers' ``mine_hard_negatives`` uses the same two
    margins): drop a candidate whose score exceeds the query's best positive score times
    ``1 - relative_margin``, or exceeds the best positive score minus ``absolute_margin``; with
    ``doc_texts`` and ``near_duplicate``, also drop one whose text has word Jaccard similarity
    >= ``near_duplicate`` with a positive's text.
    Returns Q lists of corpus indices, each of length <= num_negatives (shorter when the
    filters leave too few candidates: deepen ``candidates`` then).
    """
    Q = query_embeddings.shape[0]
    if len(positives) != Q:
        raise ValueError(f"positives: expected one collection per query (Q={Q}), got {len(positives)}")
    if not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives: expected an int >= 1, got {num_negatives!r}")
    if near_duplicate is not None and doc_texts is None:
        raise ValueError("doc_texts: needed when near_duplicate is set")
    if doc_texts is not None and len(doc_texts) != doc_embeddings.shape[0]:
        raise ValueError(
            f"doc_texts: expected one text per document (N={doc_embeddings.shape[0]}), "
            f"got {len(doc_texts)}"
        )
    depth = min(candidates + max(len(p) for p in positives), doc_embeddings.shape[0])
    scores, indices = exact_search(query_embeddings, doc_embeddings, k=depth)  # (Q, depth)
    best_positive = []
    for i in range(Q):
        if not positives[i]:
            raise ValueError(f"positives[{i}]: expected at least one relevant document")
        rows = sorted(positives[i])
        best_positive.append((doc_embeddings[rows] @ query_embeddings[i]).max().item())
    return negatives_from_ranking(
        scores.tolist(), indices.tolist(), positives, num_negatives, best_positive=best_positive,
        skip_top=skip_top, relative_margin=relative_margin, absolute_margin=absolute_margin,
        doc_texts=doc_texts, near_duplicate=near_duplicate)


def negatives_from_ranking(
    scores: Sequence[Sequence[float]],
    indices: Sequence[Sequence[int]],
    positives: Sequence[Collection[int]],
    num_negatives: int,
    *,
    best_positive: Sequence[float] | None = None,
    skip_top: int = 0,
    relative_margin: float | None = None,
    absolute_margin: float | None = None,
    doc_texts: Sequence[str] | None = None,
    near_duplicate: float | None = None,
) -> list[list[int]]:
    """Walk each query's ranking (any first stage: dense, BM25), best first, and keep the first
    ``num_negatives`` documents that pass the filters of :func:`mine_hard_negatives` (the score
    margins need ``best_positive``, each query's best positive score on the same scale)."""
    if (relative_margin is not None or absolute_margin is not None) and best_positive is None:
        raise ValueError("best_positive: needed when a score margin is set")
    if near_duplicate is not None and doc_texts is None:
        raise ValueError("doc_texts: needed when near_duplicate is set")
    mined: list[list[int]] = []
    for i, (row_scores, row_indices) in enumerate(zip(scores, indices, strict=True)):
        pos = set(positives[i])
        if not pos:
            raise ValueError(f"positives[{i}]: expected at least one relevant document")
        ceiling = float("inf")
        if relative_margin is not None:
            ceiling = min(ceiling, best_positive[i] * (1 - relative_margin))
        if absolute_margin is not None:
            ceiling = min(ceiling, best_positive[i] - absolute_margin)
        kept, skipped = [], 0
        for score, j in zip(row_scores, row_indices, strict=True):
            if j in pos or score > ceiling:
                continue
            if near_duplicate is not None and any(
                jaccard(doc_texts[j], doc_texts[p]) >= near_duplicate for p in pos
            ):
                continue
            if skipped < skip_top:
                skipped += 1
                continue
            kept.append(j)
            if len(kept) == num_negatives:
                break
        mined.append(kept)
    return mined
