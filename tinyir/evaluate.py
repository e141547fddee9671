"""Evaluate a retriever on a BEIR split: retrieve the top k for every query, then score the run.

``tinyir eval`` runs a pipeline of :mod:`tinyir.retrievers`: ``BM25Retriever`` (the lexical
baseline) or ``DenseRetriever`` (all-MiniLM-L6-v2 or a saved tinyir bi-encoder, plus exact
search); optionally fused with BM25 (``HybridRetriever``, reciprocal rank fusion) and reranked by
a cross-encoder (``RerankRetriever``: the reranked top ``rerank_depth`` is the run).

``evaluate_beir`` follows MTEB's retrieval protocol, so numbers on a real BEIR dataset line up with
MTEB's published ones: documents are encoded as ``title + " " + text`` (stripped), texts are
truncated to 256 tokens, similarity is cosine (the embeddings are L2-normalized, so a dot product),
the top 1,000 documents are kept per query, a document whose id equals the query's id is dropped
(MTEB's ``ignore_identical_ids``), and nDCG@10 follows pytrec_eval (see :mod:`tinyir.metrics`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tinyir.beir import BeirDataset, load_beir
from tinyir.metrics import mean_metrics, run_from_topk
from tinyir.rerank import CrossEncoder
from tinyir.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, RerankRetriever
from tinyir.validate import check_choice, check_positive

K_VALUES = (1, 3, 5, 10, 100, 1000)


def load_retriever_model(model: str, device: torch.device | None = None):
    """Resolve ``--model``: "minilm" (the packaged all-MiniLM-L6-v2) or a saved tinyir folder."""
    from tinyir.biencoder import BiEncoder

    if model == "minilm":
        return BiEncoder.minilm(device=device)
    path = Path(model)
    if not path.is_dir():
        raise ValueError(
            f"model: expected 'bm25', 'minilm' or a folder saved by BiEncoder.save_pretrained, "
            f"got {model!r} (no such folder)"
        )
    return BiEncoder.from_pretrained(path, device=device)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    run: dict[str, dict[str, float]]
    queries: int
    docs: int
    seconds: float
    pipeline: dict = field(default_factory=dict)  # model, hybrid, rerank, rerank_depth

    def summary(self) -> dict:
        """The JSON line ``tinyir eval`` prints: metrics, counts, wall time, the pipeline."""
        out = {key: round(value, 5) for key, value in self.metrics.items()}
        out.update(queries=self.queries, docs=self.docs, seconds=round(self.seconds, 2),
                   **self.pipeline)
        return out


def _drop_identical_id(qid: str, hits: dict[str, float], k: int) -> dict[str, float]:
    """MTEB's ``ignore_identical_ids``: a document whose id equals the query id is not an answer."""
    kept = [(did, score) for did, score in hits.items() if did != qid]
    return dict(kept[:k])  # hits arrive best first


def evaluate_beir(
    dataset: BeirDataset | str | Path,
    model: str = "bm25",
    *,
    split: str = "test",
    k: int = 1000,
    max_length: int = 256,
    batch_size: int = 64,
    device: torch.device | None = None,
    hybrid: str | None = None,
    rerank: CrossEncoder | str | Path | None = None,
    rerank_depth: int = 100,
    progress: bool = True,
) -> EvalResult:
    """Retrieve the top ``k`` documents for every query of ``split`` and score the run.

    ``model`` is "bm25", "minilm" or the folder of a saved bi-encoder. ``hybrid="bm25"`` fuses a
    dense model's ranking with BM25's (RRF). ``rerank`` (a CrossEncoder or its folder) reorders
    the first stage's top ``rerank_depth``, which then is the run (at most that many documents
    per query). Returns an ``EvalResult`` whose ``metrics`` hold ndcg@k, recall@k, mrr@k, map@k
    for k in (1, 3, 5, 10, 100, 1000).
    """
    check_positive("k", k)
    check_positive("rerank_depth", rerank_depth)
    if hybrid is not None:
        check_choice("hybrid", hybrid, ("bm25",))
        if model == "bm25":
            raise ValueError("hybrid: fuses a dense model with BM25, but model is 'bm25' already")
    if not isinstance(dataset, BeirDataset):
        dataset = load_beir(dataset, split=split)
    start = time.perf_counter()
    doc_ids = dataset.doc_ids
    doc_texts = dataset.doc_texts()
    query_ids = list(dataset.queries)
    query_texts = [dataset.queries[qid] for qid in query_ids]
    if model == "bm25":
        retriever = BM25Retriever(doc_texts, progress=progress)
    else:
        encoder = load_retriever_model(model, device=device)  # queries are encoded there too
        retriever = DenseRetriever(encoder, doc_texts, batch_size=batch_size,
                                   max_length=max_length, progress=progress)
    if hybrid is not None:
        retriever = HybridRetriever([retriever, BM25Retriever(doc_texts, progress=progress)])
    depth = len(doc_ids)
    rerank_name = None if rerank is None else (
        "a CrossEncoder" if isinstance(rerank, CrossEncoder) else str(rerank))
    if rerank is not None:
        if not isinstance(rerank, CrossEncoder):
            rerank = CrossEncoder.from_pretrained(rerank, device=device)
        retriever = RerankRetriever(retriever, rerank, doc_texts, first_stage_k=rerank_depth,
                                    batch_size=batch_size)
        depth = min(depth, rerank_depth)
    # One extra hit so that dropping a document with the query's own id still leaves k.
    scores, indices = retriever.retrieve(query_texts, k=min(k + 1, depth))
    run = {
        qid: _drop_identical_id(qid, hits, k)
        for qid, hits in run_from_topk(query_ids, doc_ids, scores, indices).items()
    }
    # Every cut-off is reported; with k below a cut-off the run simply holds fewer documents.
    metrics = mean_metrics(run, dataset.qrels, k_values=K_VALUES)
    return EvalResult(
        metrics=metrics, run=run, queries=len(query_ids), docs=len(doc_ids),
        seconds=time.perf_counter() - start,
        pipeline={"model": str(model), "hybrid": hybrid,
                  "rerank": rerank_name,
                  "rerank_depth": rerank_depth if rerank is not None else None},
    )


def dense_run(
    model,
    dataset: BeirDataset,
    k: int = 10,
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    doc_embeddings: torch.Tensor | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """The exact top ``k`` of a bi-encoder for every query of a (small) BEIR split, as a run.

    Encodes the corpus (unless ``doc_embeddings`` (N, D) are given, in corpus order) and the
    queries. Returns {query_id: {doc_id: score}}: score it with ``tinyir.metrics.mean_metrics`` for
    the means, or ``tinyir.metrics.per_query`` for paired comparisons between models.
    """
    retriever = DenseRetriever(model, None if doc_embeddings is not None else dataset.doc_texts(),
                               doc_embeddings=doc_embeddings, batch_size=batch_size,
                               max_length=max_length, progress=progress)
    query_ids = list(dataset.queries)
    scores, indices = retriever.retrieve([dataset.queries[q] for q in query_ids],
                                         k=min(k, len(dataset.corpus)))
    return run_from_topk(query_ids, dataset.doc_ids, scores, indices)


def evaluate_model(
    model,
    dataset: BeirDataset,
    k_values: tuple[int, ...] = (10, 100),
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    doc_embeddings: torch.Tensor | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Dense retrieval metrics of a bi-encoder on a (small) BEIR split, for training loops.

    Encodes the corpus (unless ``doc_embeddings`` (N, D) are given, in corpus order) and the
    queries, takes the exact top max(k_values) (:func:`dense_run`) and returns
    ``tinyir.metrics.mean_metrics``'s dict.
    """
    run = dense_run(model, dataset, max(k_values), batch_size=batch_size, max_length=max_length,
                    doc_embeddings=doc_embeddings, progress=progress)
    return mean_metrics(run, dataset.qrels, k_values=k_values)
