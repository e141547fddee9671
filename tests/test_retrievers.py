"""tinyir.retrievers: every retriever against a brute-force oracle (BM25, exact search, RRF,
the cross-encoder's own scores, MaxSim), padding, and retrieve-then-rerank's stages."""

import numpy as np
import pytest
import torch
from toy_retrieval import DOCS, QUERIES  # tests/ is on sys.path; the fixtures: conftest.py

from tinyir.bm25 import BM25
from tinyir.colbert import ColBERT
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.maxsim import max_sim
from tinyir.rerank import CrossEncoder
from tinyir.retrievers import (
    ColBERTRetriever,
    DenseRetriever,
    HybridRetriever,
    RerankRetriever,
    parameter_bytes,
)
from tinyir.search import reciprocal_rank_fusion
from tinyir.testing import assert_close
from tinyir.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.minilm()


@pytest.fixture(scope="module")
def reranker(tokenizer):
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size, type_vocab_size=2)
    return CrossEncoder(Encoder(config), tokenizer, max_length=64).eval()


def test_bm25_retriever_matches_bm25_and_counts_its_matrix(ds, bm25):
    queries = list(QUERIES.values())
    scores, indices = bm25.retrieve(queries, k=3)
    reference = BM25()
    reference.index(ds.doc_texts(), progress=False)
    ref_scores, ref_indices = reference.search(queries, k=3)
    np.testing.assert_array_equal(indices, ref_indices)
    assert_close(scores, ref_scores, what="BM25Retriever vs BM25")
    m = reference.doc_term
    assert bm25.index_bytes == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    assert bm25.model_bytes == 0


def test_bm25_retriever_pads_when_k_exceeds_the_corpus(bm25):
    scores, indices = bm25.retrieve(["sort"], k=len(DOCS) + 2)
    assert indices.shape == (1, len(DOCS) + 2)
    assert (indices[0, -2:] == -1).all() and np.isneginf(scores[0, -2:]).all()


def test_dense_retriever_is_exact_search(ds, dense):
    queries = list(QUERIES.values())
    scores, indices = dense.retrieve(queries, k=4)
    q = dense.model.encode(queries)
    brute = (q @ dense.doc_embeddings.T).numpy()  # (Q, N)
    for row in range(len(queries)):
        expected = np.argsort(-brute[row], kind="stable")[:4]
        np.testing.assert_array_equal(indices[row], expected)
        assert_close(scores[row], brute[row][expected], what="exact search vs brute force")
    assert dense.index_bytes == len(DOCS) * dense.doc_embeddings.shape[1] * 4


def test_dense_retriever_accepts_precomputed_embeddings(ds, dense):
    again = DenseRetriever(dense.model, doc_embeddings=dense.doc_embeddings)
    pairs = zip(again.retrieve(["sort an array"], 3), dense.retrieve(["sort an array"], 3),
                strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="exactly one"):
        DenseRetriever(dense.model, ds.doc_texts(), doc_embeddings=dense.doc_embeddings)


def test_hybrid_is_rrf_of_the_two_rankings(bm25, dense):
    hybrid = HybridRetriever([bm25, dense], depth=len(DOCS), rrf_k=60)
    query = "cumulative sum of elements"
    scores, indices = hybrid.retrieve([query], k=5)
    lists = [[int(j) for j in r.retrieve([query], len(DOCS))[1][0]] for r in (bm25, dense)]
    fused = reciprocal_rank_fusion(lists, k=60)
    assert indices[0].tolist() == list(fused)[:5]
    assert_close(scores[0], list(fused.values())[:5], what="HybridRetriever vs RRF")
    assert hybrid.index_bytes == bm25.index_bytes + dense.index_bytes
    with pytest.raises(ValueError, match="at least 2"):
        HybridRetriever([bm25])


def test_rerank_retriever_reorders_the_first_stage_by_cross_encoder_score(ds, dense, reranker):
    retriever = RerankRetriever(dense, reranker, ds.doc_texts(), first_stage_k=4)
    query = "sort an array"
    scores, indices = retriever.retrieve([query], k=4)
    first = dense.retrieve([query], 4)[1][0].tolist()
    assert sorted(indices[0].tolist()) == sorted(first)  # the same candidates, re-ordered
    expected = reranker.score(query, [ds.doc_texts()[j] for j in indices[0]])
    # other batches of candidates: the tiny encoder's 2 layers + the head
    assert_close(scores[0], expected, depth=3, what="RerankRetriever vs CrossEncoder.score")
    assert list(scores[0]) == sorted(scores[0], reverse=True)
    assert retriever.model_bytes == dense.model_bytes + parameter_bytes(reranker)
    with pytest.raises(ValueError, match="first_stage_k"):
        retriever.retrieve([query], k=5)


class _FixedRetriever:
    """A first stage that ranks the corpus in its own order (and says nothing of its bytes)."""

    def retrieve(self, queries, k):
        indices = np.tile(np.arange(k), (len(queries), 1))
        return -indices.astype(np.float32), indices


def test_retrieve_stages_reorders_the_first_stage_and_times_stages(ds, reranker):
    docs, query = ds.doc_texts(), QUERIES["q1"]
    retriever = RerankRetriever(_FixedRetriever(), reranker, docs, first_stage_k=100)
    result = retriever.retrieve_stages([query, "join paths"], k=3)
    assert result.first_stage_indices[0] == list(range(len(docs)))  # k clamps to the corpus
    expected = [i for i, _ in reranker.rerank(query, docs, top_k=3)]
    assert result.indices[0] == expected
    assert set(result.seconds) == {"retrieve", "rerank"} and result.seconds["rerank"] > 0
    run = result.run(["q1", "q2"], [f"d{i}" for i in range(len(docs))])
    assert list(run["q1"]) == [f"d{i}" for i in expected]
    with pytest.raises(ValueError, match="first_stage_k"):
        RerankRetriever(_FixedRetriever(), reranker, docs, first_stage_k=5).retrieve_stages(
            [query], k=10)


def test_colbert_retriever_scores_by_max_sim(ds, tokenizer):
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size)
    model = ColBERT(Encoder(config), tokenizer, dim=16, doc_max_length=32).eval()
    retriever = ColBERTRetriever(model, ds.doc_texts(), query_batch_size=2)
    queries = list(QUERIES.values())
    scores, indices = retriever.retrieve(queries, k=3)
    q, q_mask = model.encode_queries(queries)
    d, d_mask = model.encode_docs(ds.doc_texts())
    brute = max_sim(q, q_mask, d, d_mask)  # (Q, N)
    for row in range(len(queries)):
        top = torch.topk(brute[row], 3)
        assert indices[row].tolist() == top.indices.tolist()
        # query batches of 2 vs all: 2 layers, projection, normalization, MaxSim
        assert_close(scores[row], top.values, depth=5, what="ColBERTRetriever vs max_sim")
    assert retriever.index_bytes == int(d_mask.sum()) * 16 * 4
