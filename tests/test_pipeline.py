"""tinyir.pipeline: every system against a brute-force oracle, the table, the search box."""

import numpy as np
import pytest
import torch

from tinyir.bm25 import BM25
from tinyir.colbert import ColBERT
from tinyir.data import BeirDataset
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.maxsim import max_sim
from tinyir.metrics import evaluate
from tinyir.pipeline import (
    BM25System,
    ColBERTSystem,
    DenseSystem,
    HybridSystem,
    RerankSystem,
    compare_systems,
    format_hits,
    model_fingerprint,
    parameter_bytes,
    search_box,
)
from tinyir.rerank import CrossEncoder
from tinyir.search import reciprocal_rank_fusion
from tinyir.testing import assert_close
from tinyir.tokenizer import Tokenizer

DOCS = {
    "cumsum": "Return the cumulative sum of the elements along a given axis.",
    "cumprod": "Return the cumulative product of elements along a given axis.",
    "sort": "Return a sorted copy of an array.",
    "argsort": "Returns the indices that would sort an array.",
    "mean": "Compute the arithmetic mean along the specified axis.",
    "median": "Compute the median along the specified axis.",
    "open": "Open file and return a stream.",
    "exists": "Test whether a path exists.",
}
QUERIES = {"q1": "cumulative sum of elements", "q2": "sort an array", "q3": "does the path exist"}
QRELS = {"q1": {"cumsum": 1}, "q2": {"sort": 1, "argsort": 1}, "q3": {"exists": 1}}


def dataset() -> BeirDataset:
    corpus = {doc_id: {"title": f"numpy.{doc_id}", "text": text} for doc_id, text in DOCS.items()}
    return BeirDataset(corpus, dict(QUERIES), {q: dict(r) for q, r in QRELS.items()}, "toy", "test")


class BagOfWords:
    """A fake bi-encoder: unit-length word counts over a fixed vocabulary (deterministic)."""

    def __init__(self, texts):
        self.vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in t.lower().split()}))}

    def encode(self, texts, batch_size=64, max_length=None, progress=False):
        out = torch.zeros(len(texts), len(self.vocab))
        for row, text in enumerate(texts):
            for word in text.lower().split():
                if word in self.vocab:
                    out[row, self.vocab[word]] += 1
        return torch.nn.functional.normalize(out + 1e-3, dim=1)


@pytest.fixture(scope="module")
def ds():
    return dataset()


@pytest.fixture(scope="module")
def bm25(ds):
    return BM25System(ds.doc_texts())


@pytest.fixture(scope="module")
def dense(ds):
    return DenseSystem(BagOfWords(ds.doc_texts() + list(QUERIES.values())), ds.doc_texts())


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.minilm()


def test_bm25_system_matches_bm25_and_counts_its_matrix(ds, bm25):
    queries = list(QUERIES.values())
    scores, indices = bm25.retrieve(queries, k=3)
    reference = BM25()
    reference.index(ds.doc_texts(), progress=False)
    ref_scores, ref_indices = reference.search(queries, k=3)
    np.testing.assert_array_equal(indices, ref_indices)
    assert_close(scores, ref_scores, what="BM25System vs BM25")
    m = reference.doc_term
    assert bm25.index_bytes == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    assert bm25.model_bytes == 0


def test_bm25_system_pads_when_k_exceeds_the_corpus(bm25):
    scores, indices = bm25.retrieve(["sort"], k=len(DOCS) + 2)
    assert indices.shape == (1, len(DOCS) + 2)
    assert (indices[0, -2:] == -1).all() and np.isneginf(scores[0, -2:]).all()


def test_dense_system_is_exact_search(ds, dense):
    queries = list(QUERIES.values())
    scores, indices = dense.retrieve(queries, k=4)
    q = dense.model.encode(queries)
    brute = (q @ dense.doc_embeddings.T).numpy()  # (Q, N)
    for row in range(len(queries)):
        expected = np.argsort(-brute[row], kind="stable")[:4]
        np.testing.assert_array_equal(indices[row], expected)
        assert_close(scores[row], brute[row][expected], what="exact search vs brute force")
    assert dense.index_bytes == len(DOCS) * dense.doc_embeddings.shape[1] * 4


def test_dense_system_accepts_precomputed_embeddings(ds, dense):
    again = DenseSystem(dense.model, doc_embeddings=dense.doc_embeddings)
    pairs = zip(again.retrieve(["sort an array"], 3), dense.retrieve(["sort an array"], 3),
                strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="exactly one"):
        DenseSystem(dense.model, ds.doc_texts(), doc_embeddings=dense.doc_embeddings)


def test_hybrid_is_rrf_of_the_two_rankings(bm25, dense):
    hybrid = HybridSystem([bm25, dense], depth=len(DOCS), rrf_k=60)
    query = "cumulative sum of elements"
    scores, indices = hybrid.retrieve([query], k=5)
    lists = [[int(j) for j in s.retrieve([query], len(DOCS))[1][0]] for s in (bm25, dense)]
    fused = reciprocal_rank_fusion(lists, k=60)
    assert indices[0].tolist() == list(fused)[:5]
    assert_close(scores[0], list(fused.values())[:5], what="HybridSystem vs RRF")
    assert hybrid.index_bytes == bm25.index_bytes + dense.index_bytes
    with pytest.raises(ValueError, match="at least 2"):
        HybridSystem([bm25])


def test_rerank_system_reorders_the_first_stage_by_cross_encoder_score(ds, dense, tokenizer):
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size, type_vocab_size=2)
    reranker = CrossEncoder(Encoder(config), tokenizer, max_length=64).eval()
    system = RerankSystem(dense, reranker, ds.doc_texts(), first_stage_k=4)
    query = "sort an array"
    scores, indices = system.retrieve([query], k=4)
    first = dense.retrieve([query], 4)[1][0].tolist()
    assert sorted(indices[0].tolist()) == sorted(first)  # the same candidates, re-ordered
    expected = reranker.score(query, [ds.doc_texts()[j] for j in indices[0]])
    # other batches of candidates: the tiny encoder's 2 layers + the head
    assert_close(scores[0], expected, depth=3, what="RerankSystem vs CrossEncoder.score")
    assert list(scores[0]) == sorted(scores[0], reverse=True)
    assert system.model_bytes == dense.model_bytes + parameter_bytes(reranker)
    with pytest.raises(ValueError, match="first_stage_k"):
        system.retrieve([query], k=5)


def test_colbert_system_scores_by_max_sim(ds, tokenizer):
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size)
    model = ColBERT(Encoder(config), tokenizer, dim=16, doc_max_length=32).eval()
    system = ColBERTSystem(model, ds.doc_texts(), query_batch_size=2)
    queries = list(QUERIES.values())
    scores, indices = system.retrieve(queries, k=3)
    q, q_mask = model.encode_queries(queries)
    d, d_mask = model.encode_docs(ds.doc_texts())
    brute = max_sim(q, q_mask, d, d_mask)  # (Q, N)
    for row in range(len(queries)):
        top = torch.topk(brute[row], 3)
        assert indices[row].tolist() == top.indices.tolist()
        # query batches of 2 vs all: 2 layers, projection, normalization, MaxSim
        assert_close(scores[row], top.values, depth=5, what="ColBERTSystem vs max_sim")
    assert system.index_bytes == int(d_mask.sum()) * 16 * 4


def test_compare_systems_table(ds, bm25, dense):
    class Oracle:  # ranks the judged passages first: a perfect system
        index_bytes, model_bytes = 7, 0

        def retrieve(self, queries, k):
            ids = ds.doc_ids
            text_to_qid = {text: qid for qid, text in QUERIES.items()}
            rows = []
            for text in queries:
                relevant = [ids.index(d) for d in QRELS[text_to_qid[text]]]
                rest = [j for j in range(len(ids)) if j not in relevant]
                rows.append((relevant + rest)[:k])
            indices = np.array(rows)
            return -np.arange(k, dtype=np.float32)[None].repeat(len(rows), 0), indices

    comparison = compare_systems({"oracle": Oracle(), "bm25": bm25, "dense": dense}, ds,
                                 k_values=(1, 3), latency_queries=2)
    assert [r.name for r in comparison.rows] == ["oracle", "bm25", "dense"]
    assert comparison["oracle"].metrics["ndcg@3"] == pytest.approx(1.0)
    assert comparison["oracle"].index_bytes == 7
    assert comparison.metric("recall@3")["oracle"] == pytest.approx(1.0)
    assert comparison["bm25"].metrics == evaluate(comparison.runs["bm25"], ds.qrels, (1, 3))
    assert all(r.ms_per_query >= 0 and r.batch_ms_per_query >= 0 for r in comparison.rows)
    text = comparison.table(("ndcg@3", "recall@3"))
    assert "oracle" in text and "ndcg@3" in text and len(text.splitlines()) == 5
    with pytest.raises(KeyError):
        comparison["nope"]
    with pytest.raises(ValueError, match="systems"):
        compare_systems({}, ds)


def test_search_box_returns_titles_per_system(ds, bm25, dense):
    results = search_box("cumulative sum", {"bm25": bm25, "dense": dense}, ds, k=2)
    assert list(results) == ["bm25", "dense"]
    assert [h.rank for h in results["bm25"]] == [1, 2]
    assert results["bm25"][0].doc_id == "cumsum" and results["bm25"][0].title == "numpy.cumsum"
    text = format_hits(results, relevant=QRELS["q1"])
    assert "*1. numpy.cumsum" in text and text.startswith("bm25:")
    with pytest.raises(ValueError, match="query"):
        search_box("  ", {"bm25": bm25}, ds)


def test_model_fingerprint_changes_with_the_weights():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 2)
    b = torch.nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b) and len(model_fingerprint(a)) == 16
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)
