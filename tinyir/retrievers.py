"""Retrievers: every first- and second-stage system of the course behind one interface.

A retriever holds a corpus of N passages, indexed once, and answers

    retrieve(queries, k) -> (scores (Q, k) float32, indices (Q, k) int64)   NumPy arrays

best first, where ``indices`` are rows of the corpus and -1 (score -inf) pads a row that has
fewer than k documents. It also says what it costs: ``index_bytes`` (what it stores for the
corpus) and ``model_bytes`` (the weights it runs at query time).

    BM25Retriever(doc_texts)                              lexical: a sparse term matrix
    DenseRetriever(biencoder, doc_texts)                  one vector per passage, exact search
    HybridRetriever([bm25, dense])                        reciprocal rank fusion of their rankings
    RerankRetriever(dense, cross_encoder, doc_texts)      a cross-encoder re-orders a first stage
    ColBERTRetriever(colbert, doc_texts)                  one vector per token, MaxSim

Reciprocal rank fusion (Cormack, Clarke and Buettcher, "Reciprocal Rank Fusion outperforms
Condorcet and individual Rank Learning Methods", SIGIR 2009) merges rankings by rank alone,

    score(d) = sum over retrievers r of 1 / (rrf_k + rank_r(d)),    rank from 1, rrf_k = 60

so scores on different scales (BM25's unbounded sums, cosines in [-1, 1]) need no calibration;
a document a retriever did not return gets nothing from it.

:func:`tinyir.evaluate.evaluate_beir` (``tinyir eval``) scores one retriever on a BEIR split;
:func:`tinyir.pipeline.compare_systems` puts several side by side (notebook 14).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tinyir.rerank import CrossEncoder
from tinyir.tokenizer import check_texts
from tinyir.validate import check_positive


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's weights (parameters and buffers), as held in memory."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _model_bytes(model) -> int:
    return parameter_bytes(model) if isinstance(model, torch.nn.Module) else 0


def _pad_rows(rows: Iterable[tuple[Sequence[int], Sequence[float]]],
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query (indices, scores), best first -> (scores (Q, k) float32, indices (Q, k) int64),
    cut at k and padded with -inf / -1."""
    rows = list(rows)
    scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    indices = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (row_indices, row_scores) in enumerate(rows):
        n = min(k, len(row_indices))
        indices[i, :n], scores[i, :n] = row_indices[:n], row_scores[:n]
    return scores, indices


class BM25Retriever:
    """Okapi BM25 (:class:`tinyir.bm25.BM25`) over ``doc_texts``; index: the sparse (N, V)
    matrix of BM25 term scores, stored as CSR (values, column ids, row offsets)."""

    def __init__(self, doc_texts: Sequence[str], progress: bool = False):
        from tinyir.bm25 import BM25

        self.bm25 = BM25()
        self.bm25.index(list(doc_texts), progress=progress)
        self.num_docs = len(doc_texts)
        matrix = self.bm25.doc_term
        self.index_bytes = int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)
        self.model_bytes = 0

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_texts(queries, "queries")
        check_positive("k", k)
        scores, indices = self.bm25.search(queries, k=min(k, self.num_docs))
        return _pad_rows(zip(indices, scores, strict=True), k)


class DenseRetriever:
    """A bi-encoder and exact search by dot product (cosine: the embeddings are unit length).

    model: anything with ``encode(texts, batch_size=, max_length=, progress=)`` returning
    (N, C) rows (a :class:`tinyir.biencoder.BiEncoder`; queries are encoded on its device).
    doc_embeddings: (N, C), computed once (e.g. cached); when None they are encoded from
    ``doc_texts``. max_length: tokens per text (None: the model's). progress: a bar per encode.
    """

    def __init__(self, model, doc_texts: Sequence[str] | None = None, *,
                 doc_embeddings: torch.Tensor | None = None, max_length: int | None = None,
                 batch_size: int = 64, progress: bool = False):
        if (doc_texts is None) == (doc_embeddings is None):
            raise ValueError("doc_texts, doc_embeddings: expected exactly one of them")
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.progress = progress
        if doc_embeddings is None:
            doc_embeddings = self._encode(list(doc_texts))
        if not isinstance(doc_embeddings, torch.Tensor) or doc_embeddings.ndim != 2:
            raise ValueError("doc_embeddings: expected a (N, C) torch.Tensor")
        self.doc_embeddings = doc_embeddings  # (N, C)
        self.index_bytes = doc_embeddings.numel() * doc_embeddings.element_size()
        self.model_bytes = _model_bytes(model)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return torch.as_tensor(self.model.encode(texts, batch_size=self.batch_size,
                                                 max_length=self.max_length,
                                                 progress=self.progress))

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        from tinyir.search import exact_search

        queries = check_texts(queries, "queries")
        check_positive("k", k)
        q = self._encode(queries)  # (Q, C)
        scores, indices = exact_search(q, self.doc_embeddings.to(q.device),
                                       k=min(k, len(self.doc_embeddings)))
        return _pad_rows(zip(indices.cpu().numpy(), scores.float().cpu().numpy(), strict=True), k)


class HybridRetriever:
    """Reciprocal rank fusion of the top ``depth`` of several retrievers: per query, each
    document scores sum over retrievers of 1 / (rrf_k + its rank there), rank from 1
    (:func:`tinyir.search.reciprocal_rank_fusion`; the formula and paper are in this module's
    docstring). Its index is all of theirs; its latency is their sum (run one after the other).
    """

    def __init__(self, retrievers: Sequence, depth: int = 100, rrf_k: float = 60):
        if len(retrievers) < 2:
            raise ValueError(f"retrievers: expected at least 2 to fuse, got {len(retrievers)}")
        check_positive("depth", depth)
        self.retrievers = list(retrievers)
        self.depth = depth
        self.rrf_k = rrf_k

    @property
    def index_bytes(self) -> int:
        return sum(r.index_bytes for r in self.retrievers)

    @property
    def model_bytes(self) -> int:
        return sum(r.model_bytes for r in self.retrievers)

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        from tinyir.search import reciprocal_rank_fusion

        queries = check_texts(queries, "queries")
        check_positive("k", k)
        depth = max(self.depth, k)
        rankings = [r.retrieve(queries, depth)[1] for r in self.retrievers]  # each (Q, depth)
        rows = []
        for q in range(len(queries)):
            lists = [[int(j) for j in ranking[q] if j >= 0] for ranking in rankings]
            fused = reciprocal_rank_fusion(lists, k=self.rrf_k)  # {doc index: score}, best first
            rows.append((list(fused), list(fused.values())))
        return _pad_rows(rows, k)


@dataclass
class RerankResult:
    """What :meth:`RerankRetriever.retrieve_stages` returns for Q queries.

    indices / scores: per query, the top k corpus indices and cross-encoder scores, best first.
    first_stage_indices / first_stage_scores: the first stage's top first_stage_k, best first.
    seconds: total wall time of each stage, {"retrieve": s, "rerank": s}.
    """

    indices: list[list[int]]
    scores: list[list[float]]
    first_stage_indices: list[list[int]]
    first_stage_scores: list[list[float]]
    seconds: dict[str, float] = field(default_factory=dict)

    def per_query_seconds(self) -> dict[str, float]:
        """Mean seconds per query of each stage."""
        Q = max(1, len(self.indices))
        return {stage: s / Q for stage, s in self.seconds.items()}

    def run(self, query_ids: Sequence[str], doc_ids: Sequence[str],
            first_stage: bool = False) -> dict[str, dict[str, float]]:
        """{query id: {doc id: score}} for :func:`tinyir.metrics.mean_metrics` (reranked, or the
        first stage's ranking with ``first_stage=True``)."""
        indices = self.first_stage_indices if first_stage else self.indices
        scores = self.first_stage_scores if first_stage else self.scores
        if len(query_ids) != len(indices):
            raise ValueError(f"query_ids: expected {len(indices)} ids, got {len(query_ids)}")
        return {qid: {doc_ids[j]: s for j, s in zip(idx, sc, strict=True)}
                for qid, idx, sc in zip(query_ids, indices, scores, strict=True)}


class RerankRetriever:
    """Retrieve, then rerank: a first stage (any retriever over the same ``doc_texts``) picks
    ``first_stage_k`` passages per query, a :class:`tinyir.rerank.CrossEncoder` re-orders them.

    ``retrieve(queries, k)`` returns at most ``first_stage_k`` documents (k larger than that is
    an error: the reranker has not seen the rest). ``retrieve_stages`` returns the same ranking
    with the first stage's and each stage's wall time (:class:`RerankResult`).
    """

    def __init__(self, first_stage, reranker: CrossEncoder, doc_texts: Sequence[str],
                 first_stage_k: int = 100, batch_size: int = 32):
        if not hasattr(first_stage, "retrieve"):
            raise TypeError("first_stage: expected an object with retrieve(queries, k), got "
                            f"{type(first_stage).__name__}")
        if not isinstance(reranker, CrossEncoder):
            raise TypeError(f"reranker: expected a CrossEncoder, got {type(reranker).__name__}")
        check_positive("first_stage_k", first_stage_k)
        self.first_stage = first_stage
        self.reranker = reranker
        self.doc_texts = list(doc_texts)
        self.first_stage_k = first_stage_k
        self.batch_size = batch_size

    @property
    def index_bytes(self) -> int:
        return self.first_stage.index_bytes

    @property
    def model_bytes(self) -> int:
        return self.first_stage.model_bytes + parameter_bytes(self.reranker)

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        result = self.retrieve_stages(queries, k)
        return _pad_rows(zip(result.indices, result.scores, strict=True), k)

    def retrieve_stages(self, queries: Sequence[str], k: int) -> RerankResult:
        """Retrieve then rerank every query, keeping the top ``k``; times each stage (all
        queries together, the GPU synchronized before the clock stops)."""
        queries = check_texts(queries, "queries")
        check_positive("k", k)
        if k > self.first_stage_k:
            raise ValueError(f"k: expected at most first_stage_k={self.first_stage_k}, got {k}")
        start = time.perf_counter()
        first_scores, first_indices = self.first_stage.retrieve(
            queries, min(self.first_stage_k, len(self.doc_texts)))  # (Q, first_stage_k)
        retrieve_seconds = time.perf_counter() - start
        first_indices = [[j for j in row if j >= 0] for row in np.asarray(first_indices).tolist()]
        first_scores = [row[:len(idx)] for row, idx in
                        zip(np.asarray(first_scores).tolist(), first_indices, strict=True)]

        start = time.perf_counter()
        indices, scores = [], []
        for query, candidates in zip(queries, first_indices, strict=True):
            ranked = self.reranker.rerank(query, [self.doc_texts[j] for j in candidates],
                                          top_k=k, batch_size=self.batch_size)
            indices.append([candidates[i] for i, _ in ranked])
            scores.append([s for _, s in ranked])
        if self.reranker.device.type == "cuda":
            torch.cuda.synchronize(self.reranker.device)
        rerank_seconds = time.perf_counter() - start
        return RerankResult(indices, scores, first_indices, first_scores,
                            {"retrieve": retrieve_seconds, "rerank": rerank_seconds})


class ColBERTRetriever:
    """Late interaction: every passage stored as its token vectors, scored by MaxSim.

    model: a :class:`tinyir.colbert.ColBERT` (``encode_queries``, ``encode_docs``).
    doc_tokens (N, Ld, D) and doc_mask (N, Ld), computed once (e.g. cached); encoded from
    ``doc_texts`` when None. index_bytes counts the kept token vectors only (no padding), at
    their stored precision. Queries are scored ``query_batch_size`` at a time against the
    documents in chunks (``tinyir.maxsim.max_sim_matrix``: doc_chunk_size documents, by default
    as many as its memory budget allows). On a CUDA device with Triton installed, the fused kernel
    (``tinyir.maxsim_triton``) scores them instead, holding no similarity matrix at all.
    """

    def __init__(self, model, doc_texts: Sequence[str] | None = None, *,
                 doc_tokens: torch.Tensor | None = None, doc_mask: torch.Tensor | None = None,
                 query_batch_size: int = 16, doc_chunk_size: int | None = None):
        if (doc_texts is None) == (doc_tokens is None):
            raise ValueError("doc_texts, doc_tokens: expected exactly one of them")
        if doc_tokens is None:
            doc_tokens, doc_mask = model.encode_docs(list(doc_texts))
        if doc_mask is None or doc_mask.shape != doc_tokens.shape[:2]:
            raise ValueError("doc_mask: expected (N, Ld), the first two dims of doc_tokens")
        self.model = model
        self.doc_tokens, self.doc_mask = doc_tokens, doc_mask.bool()
        self.query_batch_size = query_batch_size
        self.doc_chunk_size = doc_chunk_size
        kept = int(self.doc_mask.sum())
        self.index_bytes = kept * doc_tokens.shape[-1] * doc_tokens.element_size()
        self.model_bytes = _model_bytes(model)

    def score(self, q: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        """MaxSim of encoded queries (b, Lq, D) against every stored passage: (b, N).

        The stored tokens move to the queries' device once and stay there. On CUDA with Triton
        the fused kernel scores them (``tinyir.maxsim_triton``), elsewhere ``max_sim_matrix``.
        """
        from tinyir import maxsim_triton
        from tinyir.maxsim import max_sim_matrix

        if self.doc_tokens.device != q.device:
            self.doc_tokens, self.doc_mask = self.doc_tokens.to(q.device), self.doc_mask.to(q.device)
        d, d_mask = self.doc_tokens.to(q.dtype), self.doc_mask
        if maxsim_triton.use_fused(q.device, q.dtype):
            return maxsim_triton.fused_max_sim_matrix(q, q_mask, d, d_mask)
        return max_sim_matrix(q, q_mask, d, d_mask, self.doc_chunk_size)

    @torch.inference_mode()
    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_texts(queries, "queries")
        check_positive("k", k)
        rows = []
        for start in range(0, len(queries), self.query_batch_size):
            q, q_mask = self.model.encode_queries(queries[start:start + self.query_batch_size])
            scores = self.score(q, q_mask)  # (b, N)
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            rows += zip(top.indices.cpu().numpy(), top.values.float().cpu().numpy(), strict=True)
        return _pad_rows(rows, k)
