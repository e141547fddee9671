"""Retrieval systems side by side: one query set, one table of quality, latency and memory.

The capstone (notebook 14) runs every retriever the course builds over the same queries:

    BM25System(doc_texts)                               lexical: a sparse term matrix
    DenseSystem(biencoder, doc_texts)                   one vector per passage, exact search
    HybridSystem([bm25, dense])                         reciprocal rank fusion of their rankings
    RerankSystem(dense, cross_encoder, doc_texts)       a cross-encoder re-orders a first stage
    ColBERTSystem(colbert, doc_texts)                   one vector per token, MaxSim

Every system has ``retrieve(queries, k) -> (scores (Q, k), indices (Q, k))`` as NumPy arrays
(the interface of :mod:`tinyir.evaluate`'s retrievers, so any system can be the first stage of
:class:`tinyir.rerank.RetrieveThenRerank`), ``index_bytes`` (what it stores for the corpus) and
``model_bytes`` (the weights it runs at query time). Indices are rows of the corpus; -1 pads a
row that has fewer than k documents.

:func:`compare_systems` turns a dict of systems into one table (nDCG@10, Recall@10, ms per
query, bytes); :func:`search_box` returns each system's top passages for one query, which is
what the notebook's search widget shows.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tinyir.data import BeirDataset
from tinyir.metrics import evaluate, run_from_topk
from tinyir.search import exact_search, reciprocal_rank_fusion


def _check_queries(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str) or not all(isinstance(q, str) for q in queries) or not queries:
        raise ValueError("queries: expected a non-empty list of str")
    return list(queries)


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's weights (parameters and buffers), as held in memory."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 of a model's weights (names, shapes, dtypes, values): a cache key for
    what the model computes, e.g. the corpus embeddings of a fine-tuned model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _pad_rows(rows: Sequence[Sequence[tuple[int, float]]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranked (index, score) lists -> (scores (Q, k) float32, indices (Q, k) int64), -1 padded."""
    scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    indices = np.full((len(rows), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        for j, (index, score) in enumerate(row[:k]):
            indices[i, j], scores[i, j] = index, score
    return scores, indices


# -----------------------------------------------------------------------------------------------
# The systems


class BM25System:
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
        queries = _check_queries(queries)
        _check_k(k)
        scores, indices = self.bm25.search(queries, k=min(k, self.num_docs))
        return _pad_rows([list(zip(i.tolist(), s.tolist(), strict=True))
                          for s, i in zip(scores, indices, strict=True)], k)


class DenseSystem:
    """A bi-encoder and exact search by dot product (cosine: the embeddings are unit length).

    model: anything with ``encode(texts, batch_size=, max_length=, progress=)`` returning
    (N, C) rows (a :class:`tinyir.biencoder.BiEncoder`). doc_embeddings: (N, C), computed once
    (e.g. cached); when None they are encoded from ``doc_texts``. max_length: tokens per text.
    """

    def __init__(self, model, doc_texts: Sequence[str] | None = None,
                 doc_embeddings: torch.Tensor | None = None, max_length: int | None = None,
                 batch_size: int = 64):
        if (doc_texts is None) == (doc_embeddings is None):
            raise ValueError("doc_texts, doc_embeddings: expected exactly one of them")
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        if doc_embeddings is None:
            doc_embeddings = self._encode(list(doc_texts))
        if not isinstance(doc_embeddings, torch.Tensor) or doc_embeddings.ndim != 2:
            raise ValueError("doc_embeddings: expected a (N, C) torch.Tensor")
        self.doc_embeddings = doc_embeddings  # (N, C)
        self.index_bytes = doc_embeddings.numel() * doc_embeddings.element_size()
        self.model_bytes = parameter_bytes(model) if isinstance(model, torch.nn.Module) else 0

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return torch.as_tensor(self.model.encode(texts, batch_size=self.batch_size,
                                                 max_length=self.max_length,
                                                 progress=False))

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries)
        _check_k(k)
        q = self._encode(queries)  # (Q, C)
        scores, indices = exact_search(q, self.doc_embeddings.to(q.device),
                                       k=min(k, len(self.doc_embeddings)))
        return _pad_rows([list(zip(i.tolist(), s.tolist(), strict=True))
                          for s, i in zip(scores.cpu(), indices.cpu(), strict=True)], k)


class HybridSystem:
    """Reciprocal rank fusion (:func:`tinyir.search.reciprocal_rank_fusion`) of the top
    ``depth`` of several systems: score(d) = sum over systems of 1 / (rrf_k + rank(d)).

    Its index is all of theirs; its latency here is their sum (run one after the other).
    """

    def __init__(self, systems: Sequence, depth: int = 100, rrf_k: float = 60):
        if len(systems) < 2:
            raise ValueError(f"systems: expected at least 2 systems to fuse, got {len(systems)}")
        _check_k(depth)
        self.systems = list(systems)
        self.depth = depth
        self.rrf_k = rrf_k
        self.index_bytes = sum(s.index_bytes for s in self.systems)
        self.model_bytes = sum(s.model_bytes for s in self.systems)

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries)
        _check_k(k)
        depth = max(self.depth, k)
        rankings = [system.retrieve(queries, depth)[1] for system in self.systems]  # (Q, depth)
        rows = []
        for q in range(len(queries)):
            lists = [[int(j) for j in ranking[q] if j >= 0] for ranking in rankings]
            fused = reciprocal_rank_fusion(lists, k=self.rrf_k)  # {doc index: score}, best first
            rows.append(list(fused.items()))
        return _pad_rows(rows, k)


class RerankSystem:
    """A first stage retrieves ``first_stage_k`` passages; a cross-encoder
    (:class:`tinyir.rerank.CrossEncoder`) re-orders them, through
    :class:`tinyir.rerank.RetrieveThenRerank`. ``retrieve`` returns at most ``first_stage_k``
    documents (k larger than that is an error: the reranker has not seen the rest)."""

    def __init__(self, first_stage, reranker, doc_texts: Sequence[str],
                 first_stage_k: int = 20, batch_size: int = 32):
        from tinyir.rerank import RetrieveThenRerank

        self.first_stage = first_stage
        self.reranker = reranker
        self.first_stage_k = first_stage_k
        self.pipeline = RetrieveThenRerank(first_stage, reranker, doc_texts,
                                           first_stage_k=first_stage_k, top_k=first_stage_k,
                                           batch_size=batch_size)
        self.index_bytes = first_stage.index_bytes
        self.model_bytes = first_stage.model_bytes + parameter_bytes(reranker)

    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries)
        _check_k(k)
        if k > self.first_stage_k:
            raise ValueError(f"k: expected at most first_stage_k={self.first_stage_k}, got {k}")
        result = self.pipeline.search(queries)
        return _pad_rows([list(zip(i, s, strict=True))
                          for i, s in zip(result.indices, result.scores, strict=True)], k)


class ColBERTSystem:
    """Late interaction: every passage stored as its token vectors, scored by MaxSim.

    model: a :class:`tinyir.colbert.ColBERT` (``encode_queries``, ``encode_docs``).
    doc_tokens (N, Ld, D) and doc_mask (N, Ld), computed once (e.g. cached); encoded from
    ``doc_texts`` when None. index_bytes counts the kept token vectors only (no padding), at
    their stored precision. Queries are scored ``query_batch_size`` at a time against the
    documents in chunks, so memory stays at (query_batch_size, doc_chunk_size, Lq, Ld).
    """

    def __init__(self, model, doc_texts: Sequence[str] | None = None,
                 doc_tokens: torch.Tensor | None = None, doc_mask: torch.Tensor | None = None,
                 query_batch_size: int = 16, doc_chunk_size: int = 256):
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
        self.model_bytes = parameter_bytes(model) if isinstance(model, torch.nn.Module) else 0

    @torch.inference_mode()
    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        from tinyir.maxsim import max_sim_matrix

        queries = _check_queries(queries)
        _check_k(k)
        rows = []
        d, d_mask = self.doc_tokens, self.doc_mask
        for start in range(0, len(queries), self.query_batch_size):
            q, q_mask = self.model.encode_queries(queries[start:start + self.query_batch_size])
            scores = max_sim_matrix(q, q_mask, d.to(q.device), d_mask.to(q.device),
                                    self.doc_chunk_size)  # (b, N)
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            rows += [list(zip(i.tolist(), s.tolist(), strict=True))
                     for s, i in zip(top.values.cpu(), top.indices.cpu(), strict=True)]
        return _pad_rows(rows, k)


# -----------------------------------------------------------------------------------------------
# One table


@dataclass
class SystemRow:
    """One system's line of the table. ms_per_query: single-query calls (what a user waits), the
    fastest of the repeats of each query, median over queries; batch_ms_per_query: the whole
    query set in one call, divided by Q."""

    name: str
    metrics: dict[str, float]
    ms_per_query: float
    batch_ms_per_query: float
    index_bytes: int
    model_bytes: int


@dataclass
class Comparison:
    """What :func:`compare_systems` measured: one row per system and each system's run."""

    rows: list[SystemRow]
    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> SystemRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"name: no system {name!r}; have {[r.name for r in self.rows]}")

    def metric(self, name: str) -> dict[str, float]:
        """{system: value} of one metric, e.g. ``metric("ndcg@10")``."""
        return {row.name: row.metrics[name] for row in self.rows}

    def table(self, metrics: Sequence[str] = ("ndcg@10", "recall@10")) -> str:
        """The rows as aligned text."""
        from tinyir.storage import format_bytes

        width = max(len("system"), *(len(r.name) for r in self.rows))
        head = (f"{'system':{width}s} " + " ".join(f"{m:>10s}" for m in metrics)
                + f" {'ms/query':>9s} {'batched':>8s} {'index':>10s} {'model':>10s}")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.name:{width}s} " + " ".join(f"{r.metrics[m]:10.3f}" for m in metrics)
                + f" {r.ms_per_query:9.1f} {r.batch_ms_per_query:8.1f}"
                + f" {format_bytes(r.index_bytes):>10s} {format_bytes(r.model_bytes):>10s}"
            )
        return "\n".join(lines)


def compare_systems(
    systems: Mapping[str, object],
    dataset: BeirDataset,
    k_values: Sequence[int] = (10,),
    latency_queries: int = 10,
    latency_repeats: int = 1,
) -> Comparison:
    """Run every system over ``dataset``'s queries and measure it.

    Quality: the top max(k_values) of every query, scored with :func:`tinyir.metrics.evaluate`
    against ``dataset.qrels`` (nDCG@k, Recall@k, ...). Latency: ``latency_queries`` queries sent
    one at a time, ``latency_repeats`` times each; the fastest try of each query (other
    processes only ever add time), then the median over queries, in ms. The systems take turns
    on every query, so a busy spell of the machine slows all of them, not one system's whole
    measurement. Also the whole set sent in one call (ms per query). Memory: each system's
    ``index_bytes`` and ``model_bytes``.
    """
    if not isinstance(systems, Mapping) or not systems:
        raise ValueError("systems: expected a non-empty {name: system} dict")
    for name, value in (("latency_queries", latency_queries), ("latency_repeats", latency_repeats)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    query_ids = list(dataset.queries)
    texts = [dataset.queries[qid] for qid in query_ids]
    doc_ids = dataset.doc_ids
    k = max(k_values)
    metrics, batch_seconds, runs = {}, {}, {}
    for name, system in systems.items():
        start = time.perf_counter()
        scores, indices = system.retrieve(texts, k)
        batch_seconds[name] = time.perf_counter() - start
        runs[name] = run_from_topk(query_ids, doc_ids, scores, indices)
        metrics[name] = evaluate(runs[name], dataset.qrels, k_values)
    fastest = {name: [] for name in systems}  # per system: the fastest try of each query
    for text in texts[:latency_queries]:
        tries = {name: [] for name in systems}
        for _ in range(latency_repeats):
            for name, system in systems.items():  # round robin: a busy spell hits every system
                start = time.perf_counter()
                system.retrieve([text], k)
                tries[name].append(time.perf_counter() - start)
        for name in systems:
            fastest[name].append(min(tries[name]))
    rows = [
        SystemRow(
            name=name, metrics=metrics[name],
            ms_per_query=1000 * statistics.median(fastest[name]),
            batch_ms_per_query=1000 * batch_seconds[name] / len(texts),
            index_bytes=int(system.index_bytes), model_bytes=int(system.model_bytes),
        )
        for name, system in systems.items()
    ]
    return Comparison(rows, runs)


# -----------------------------------------------------------------------------------------------
# The search box


@dataclass(frozen=True)
class Hit:
    """One result of :func:`search_box`: its rank (1 = best), doc id, title and score."""

    rank: int
    doc_id: str
    title: str
    score: float


def search_box(query: str, systems: Mapping[str, object], dataset: BeirDataset,
               k: int = 3) -> dict[str, list[Hit]]:
    """Each system's top ``k`` passages for ``query``: ``{system name: [Hit, ...]}``."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query: expected a non-empty string, got {query!r}")
    _check_k(k)
    doc_ids = dataset.doc_ids
    results = {}
    for name, system in systems.items():
        scores, indices = system.retrieve([query], k)
        results[name] = [
            Hit(rank, doc_ids[j], dataset.corpus[doc_ids[j]].get("title", ""), float(s))
            for rank, (j, s) in enumerate(zip(indices[0].tolist(), scores[0].tolist(),
                                              strict=True), start=1)
            if j >= 0
        ]
    return results


def format_hits(results: Mapping[str, Sequence[Hit]],
                relevant: Mapping[str, int] | None = None) -> str:
    """:func:`search_box`'s results as text, one block per system; with ``relevant`` (a qrels
    row, {doc id: grade}) the relevant passages are marked with a *."""
    lines = []
    for name, hits in results.items():
        lines.append(f"{name}:")
        for hit in hits:
            mark = "*" if relevant and relevant.get(hit.doc_id, 0) > 0 else " "
            lines.append(f"  {mark}{hit.rank}. {hit.title}  ({hit.score:.3f})")
    return "\n".join(lines)
