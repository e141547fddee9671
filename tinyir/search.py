"""Finding the top-k documents: exact search on any device, FAISS indexes, and rank fusion.

Shapes: Q queries, N documents, D embedding dimension, k results per query.

``exact_search`` is brute force done carefully: the answer of ``torch.topk(queries @ docs.T, k)``
without ever holding the (Q, N) score matrix, which for 10k queries x 8.8M passages (MS MARCO)
would take 350 GB. It walks the corpus in chunks and keeps a running top-k per query.
``FaissIndex`` wraps the FAISS indexes the course compares with it (flat, IVF, HNSW, PQ), and
``reciprocal_rank_fusion`` merges the rankings of several retrievers (e.g. BM25 + dense).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from tinyir.metrics import rank_documents
from tinyir.validate import check_same_device, check_tensor


def _top_k_lower_index_first(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per row, best first, equal scores ordered by lower column first.

    scores: (R, C) float with no NaN, k <= C. Returns (values (R, k), columns (R, k) int64).
    ``torch.topk`` alone leaves the order of ties, and which tied entry makes the cut,
    unspecified. The fast path keeps topk's answer and only re-sorts it; rows where a tie
    straddles the k-th place (rare with real embeddings) take the exact slow path. A tie can
    straddle the cut only if the (k+1)-th best equals the k-th, so one topk of k + 1 finds them
    without another pass over the scores.
    """
    values, columns = scores.topk(min(k + 1, scores.shape[1]), dim=1)  # ties in unspecified order
    if values.shape[1] > k:  # the (k+1)-th best ties with the k-th: the cut may split a tie
        straddling = values[:, k] == values[:, k - 1]
        values, columns = values[:, :k], columns[:, :k]  # (R, k)
    else:  # k == C: every column is kept, no tie is cut
        straddling = torch.zeros(values.shape[0], dtype=torch.bool, device=values.device)
    rows = straddling.nonzero().squeeze(1)
    if rows.numel():
        values[rows], columns[rows] = _top_k_ties_left_to_right(scores[rows], k)
    columns, by_column = columns.sort(dim=1)  # ascending column ...
    values = values.gather(1, by_column)
    order = values.argsort(dim=1, descending=True, stable=True)  # ... kept among equal scores
    return values.gather(1, order), columns.gather(1, order)


def _top_k_ties_left_to_right(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact (slow) path: the k-th best value sets a threshold; tied entries are taken left
    to right until k are kept. Returns (values, columns), in ascending column order."""
    kth_best = scores.topk(k, dim=1).values[:, -1:]  # (R, 1)
    above = scores > kth_best  # (R, C) certainly in
    tied = scores == kth_best  # (R, C) in while places are left
    places_left = k - above.sum(dim=1, keepdim=True)  # (R, 1)
    keep = above | (tied & (tied.cumsum(dim=1) <= places_left))  # exactly k per row
    columns = keep.nonzero()[:, 1].view(-1, k)  # (R, k), ascending column order
    return scores.gather(1, columns), columns


def _all_finite(x: torch.Tensor) -> bool:
    """No NaN or inf in ``x``. One sum finds them (NaN and inf propagate) without a (N, D) mask;
    only a non-finite sum (which huge finite values can also give) pays for the exact check."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def exact_search(
    queries: torch.Tensor,
    docs: torch.Tensor,
    k: int = 10,
    chunk_size: int = 65536,
    similarity: Literal["dot", "cos"] = "dot",
    query_chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k search by chunked matrix multiplication, on the device of the inputs.

    queries: (Q, D) float, docs: (N, D) float, same device and dtype, both non-empty.
    k: results per query, >= 1; k > N is clamped to N (so the outputs are (Q, min(k, N))).
    chunk_size: documents scored at once; query_chunk_size: queries scored at once. Peak memory
        is about query_chunk_size x (chunk_size + k) scores, whatever Q and N are.
    similarity: "dot" (inner product; the same as cosine for normalized embeddings) or "cos".
    Returns (scores (Q, k), indices (Q, k) int64) on the input device, best first; equal scores
    are ordered by lower document index, so results do not depend on chunk_size.
    """
    check_tensor("queries", queries, "(Q, D)", floating=True, nonempty=True)
    check_tensor("docs", docs, "(N, D)", floating=True, nonempty=True)
    check_same_device(queries=queries, docs=docs)
    if queries.shape[1] != docs.shape[1]:
        raise ValueError(
            f"queries and docs: expected the same dim D, got {tuple(queries.shape)} and "
            f"{tuple(docs.shape)}"
        )
    if queries.dtype != docs.dtype:
        raise TypeError(f"queries and docs: expected one dtype, got {queries.dtype} and "
                        f"{docs.dtype}")
    for name, value in (("k", k), ("chunk_size", chunk_size),
                        ("query_chunk_size", query_chunk_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    if similarity not in ("dot", "cos"):
        raise ValueError(f"similarity: expected 'dot' or 'cos', got {similarity!r}")
    if not (_all_finite(queries) and _all_finite(docs)):
        raise ValueError("queries and docs: expected finite values, found NaN or inf")
    if similarity == "cos":
        queries, docs = F.normalize(queries, dim=-1), F.normalize(docs, dim=-1)

    num_docs = docs.shape[0]
    k = min(k, num_docs)
    all_scores, all_indices = [], []
    for q_start in range(0, queries.shape[0], query_chunk_size):
        q = queries[q_start:q_start + query_chunk_size]  # (Qc, D)
        # Running top-k: sorted best first, ties by lower index (the invariant the merge needs).
        best_scores = q.new_empty((q.shape[0], 0))  # (Qc, <=k)
        best_indices = torch.empty((q.shape[0], 0), dtype=torch.long, device=q.device)
        for d_start in range(0, num_docs, chunk_size):
            chunk = docs[d_start:d_start + chunk_size]  # (Nc, D)
            chunk_scores = q @ chunk.T  # (Qc, Nc)
            top_scores, top_columns = _top_k_lower_index_first(
                chunk_scores, min(k, chunk.shape[0]))  # (Qc, <=k)
            # Merge with the running best. The running best holds lower indices than this chunk
            # and comes first, so position order equals index order among equal scores.
            candidate_scores = torch.cat([best_scores, top_scores], dim=1)  # (Qc, <=2k)
            candidate_indices = torch.cat([best_indices, top_columns + d_start], dim=1)
            keep = min(k, candidate_scores.shape[1])
            best_scores, positions = _top_k_lower_index_first(candidate_scores, keep)
            best_indices = candidate_indices.gather(1, positions)
        all_scores.append(best_scores)
        all_indices.append(best_indices)
    return torch.cat(all_scores), torch.cat(all_indices)


# ----------------------------------------------------------------------------------------------
# FAISS


def _as_float32_numpy(x: np.ndarray | torch.Tensor, name: str, dim: int) -> np.ndarray:
    """(n, dim) float32 C-contiguous numpy array, as FAISS wants; torch tensors leave the GPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name}: expected shape (n, {dim}), got {x.shape}")
    return x


class FaissIndex:
    """A small wrapper over inner-product FAISS indexes that accepts numpy or torch input.

    Build one with a constructor named after the index type:
        FaissIndex.flat_ip(dim)          exact, the FAISS twin of ``exact_search``
        FaissIndex.ivf_flat(dim, nlist)  k-means cells, search ``nprobe`` of them (needs train)
        FaissIndex.hnsw(dim, M=32)       graph search, breadth ``ef_search``
        FaissIndex.pq(dim, m, nbits=8)   product quantization: m codes of nbits (needs train)
    then ``train(x)`` if ``is_trained`` is False, ``add(x)``, ``search(queries, k)``.
    The raw ``faiss.Index`` is ``.index`` for anything not wrapped here.
    """

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def flat_ip(cls, dim: int) -> FaissIndex:
        return cls(faiss.IndexFlatIP(dim))

    @classmethod
    def ivf_flat(cls, dim: int, nlist: int) -> FaissIndex:
        quantizer = faiss.IndexFlatIP(dim)  # assigns each vector to its nearest of nlist centroids
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        wrapper = cls(index)
        wrapper._quantizer = quantizer  # FAISS does not own it: keep it alive with the index
        return wrapper

    @classmethod
    def hnsw(cls, dim: int, M: int = 32) -> FaissIndex:  # noqa: N803 (the paper's name)
        return cls(faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT))

    @classmethod
    def pq(cls, dim: int, m: int, nbits: int = 8) -> FaissIndex:
        if dim % m != 0:
            raise ValueError(f"m: expected a divisor of dim={dim}, got {m}")
        return cls(faiss.IndexPQ(dim, m, nbits, faiss.METRIC_INNER_PRODUCT))

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def ntotal(self) -> int:
        """Number of vectors added so far."""
        return self.index.ntotal

    @property
    def is_trained(self) -> bool:
        return self.index.is_trained

    def train(self, x: np.ndarray | torch.Tensor) -> None:
        """Learn the index's codebooks / centroids from x: (n, dim) float."""
        self.index.train(_as_float32_numpy(x, "x", self.dim))

    def add(self, x: np.ndarray | torch.Tensor) -> None:
        """Add x: (n, dim) float; the ids are 0, 1, ... in the order of addition."""
        if not self.is_trained:
            raise ValueError("add: this index needs train(x) first (is_trained is False)")
        self.index.add(_as_float32_numpy(x, "x", self.dim))

    def search(self, queries: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product. queries: (Q, dim) float. k: >= 1, clamped to ``ntotal``.

        Returns (scores (Q, k) float32, indices (Q, k) int64) as numpy arrays, best first.
        Approximate indexes may find fewer than k vectors (e.g. IVF with a small ``nprobe``):
        FAISS pads those rows with index -1 and score -inf (``run_from_topk`` skips them).
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k!r}")
        if self.ntotal == 0:
            raise ValueError("search: the index is empty, add(x) first")
        return self.index.search(_as_float32_numpy(queries, "queries", self.dim),
                                 min(k, self.ntotal))

    @property
    def nprobe(self) -> int:
        """IVF: how many of the nlist cells a query visits (more = slower, better recall)."""
        return faiss.extract_index_ivf(self.index).nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        faiss.extract_index_ivf(self.index).nprobe = value

    @property
    def ef_search(self) -> int:
        """HNSW: size of the candidate list kept while walking the graph (more = better recall)."""
        return self._hnsw().efSearch

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._hnsw().efSearch = value

    def _hnsw(self) -> faiss.HNSW:
        if not hasattr(self.index, "hnsw"):
            raise AttributeError(f"ef_search: only HNSW indexes have it, this is "
                                 f"{type(self.index).__name__}")
        return self.index.hnsw


# ----------------------------------------------------------------------------------------------
# Rank fusion


def _fuse(rankings: Sequence[Sequence[str]], k: float) -> dict[str, float]:
    """RRF over ranked doc-id lists of one query. Returns {doc_id: score}, best first."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
    return {doc_id: fused[doc_id] for doc_id in rank_documents(fused)}


def reciprocal_rank_fusion(
    rankings: Sequence[Mapping[str, Mapping[str, float]]] | Sequence[Sequence[str]],
    k: float = 60,
) -> dict:
    """Reciprocal Rank Fusion (Cormack et al., 2009): ``score(d) = sum_r 1 / (k + rank_r(d))``.

    rankings: either several runs ``{query_id: {doc_id: score}}`` (e.g. BM25 and dense) or, for
        a single query, several lists of doc ids in rank order (best first).
    k: the smoothing constant, > 0 (60 in the paper); rank starts at 1. A document missing from
        a ranking gets nothing from it. Scores are only used to rank: ties within a run are
        ordered as trec_eval does (``tinyir.metrics.rank_documents``).
    Returns ``{query_id: {doc_id: fused}}`` for runs (every query of any run), or
    ``{doc_id: fused}`` for id lists; best first.
    """
    if not isinstance(k, (int, float)) or not k > 0:
        raise ValueError(f"k: expected a number > 0, got {k!r}")
    if isinstance(rankings, (str, Mapping)) or len(rankings) == 0:
        raise ValueError("rankings: expected a non-empty list of runs or of ranked id lists")
    if all(isinstance(r, Mapping) for r in rankings):
        query_ids = dict.fromkeys(qid for run in rankings for qid in run)  # ordered union
        return {
            qid: _fuse([rank_documents(run[qid]) for run in rankings if qid in run], k)
            for qid in query_ids
        }
    if all(isinstance(r, Sequence) and not isinstance(r, str) for r in rankings):
        return _fuse(rankings, k)
    raise TypeError("rankings: expected all runs ({query_id: {doc_id: score}}) or all lists of "
                    "doc ids, got a mix or something else")
