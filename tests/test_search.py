"""tinyir.search: exact_search vs FAISS IndexFlatIP, tie rules, FAISS wrapper, RRF by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyir.search import FaissIndex, exact_search, reciprocal_rank_fusion
from tinyir.testing import assert_close

faiss = pytest.importorskip("faiss")


def normalized(n: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=gen), dim=-1)


@pytest.fixture(scope="module")
def data():
    return normalized(50, 64, seed=1), normalized(5000, 64, seed=2)  # queries, docs


def flat_ip_reference(queries: torch.Tensor, docs: torch.Tensor, k: int):
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs.numpy())
    return index.search(queries.numpy(), k)


@pytest.mark.parametrize(
    ("chunk_size", "query_chunk_size"), [(65536, 1024), (1000, 16), (777, 50)]
)
def test_exact_search_matches_faiss_flat_ip(data, chunk_size, query_chunk_size):
    queries, docs = data
    ref_scores, ref_ids = flat_ip_reference(queries, docs, 10)
    scores, ids = exact_search(queries, docs, k=10, chunk_size=chunk_size,
                               query_chunk_size=query_chunk_size)
    assert scores.shape == ids.shape == (50, 10)
    assert ids.dtype == torch.int64 and scores.dtype == torch.float32
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    assert_close(scores, ref_scores, what=f"chunks {chunk_size}/{query_chunk_size} vs FAISS")


def test_exact_search_chunk_smaller_than_k(data):
    queries, docs = data[0][:7], data[1][:400]
    ref_scores, ref_ids = flat_ip_reference(queries, docs, 10)
    scores, ids = exact_search(queries, docs, k=10, chunk_size=7, query_chunk_size=3)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    assert_close(scores, ref_scores, what="small chunks vs FAISS")


def test_exact_search_cos_equals_dot_on_normalized(data):
    queries, docs = data
    scaled_docs = docs * torch.linspace(0.5, 3.0, docs.shape[0]).unsqueeze(1)
    cos_scores, cos_ids = exact_search(queries, scaled_docs, k=5, similarity="cos")
    dot_scores, dot_ids = exact_search(queries, docs, k=5)
    assert torch.equal(cos_ids, dot_ids)
    assert_close(cos_scores, dot_scores, depth=2, what="cos on scaled docs vs dot")


def test_exact_search_ties_lower_index_first_for_any_chunking():
    # One query [1]: the scores are the doc values themselves.
    values = [1.0, 3.0, 3.0, 2.0, 3.0, 1.0, 3.0, 2.0]
    docs = torch.tensor(values).unsqueeze(1)
    query = torch.ones(1, 1)
    for chunk_size in (1, 2, 3, 8, 100):
        scores, ids = exact_search(query, docs, k=3, chunk_size=chunk_size)
        assert ids.tolist() == [[1, 2, 4]], chunk_size
        assert scores.tolist() == [[3.0, 3.0, 3.0]]
        scores, ids = exact_search(query, docs, k=6, chunk_size=chunk_size)
        assert ids.tolist() == [[1, 2, 4, 6, 3, 7]], chunk_size
    # All docs identical: the first k in order.
    _, ids = exact_search(torch.randn(4, 8), torch.ones(20, 8), k=5, chunk_size=3)
    assert ids.tolist() == [[0, 1, 2, 3, 4]] * 4


def test_exact_search_k_larger_than_n_is_clamped(data):
    queries, docs = data
    scores, ids = exact_search(queries[:3], docs[:4], k=10, chunk_size=3)
    assert scores.shape == ids.shape == (3, 4)
    assert sorted(ids[0].tolist()) == [0, 1, 2, 3]
    brute = (queries[:3] @ docs[:4].T).sort(dim=1, descending=True).values
    assert_close(scores, brute, what="chunked vs brute force")


def test_exact_search_bad_inputs(data):
    queries, docs = data
    with pytest.raises(ValueError, match="docs"):
        exact_search(queries, docs[:0])
    with pytest.raises(ValueError, match="queries"):
        exact_search(queries[:0], docs)
    with pytest.raises(ValueError, match="same dim"):
        exact_search(queries, docs[:, :32])
    with pytest.raises(ValueError, match="device"):
        exact_search(queries, docs.to("meta"))
    with pytest.raises(TypeError, match="dtype"):
        exact_search(queries, docs.double())
    with pytest.raises(TypeError, match="floating"):
        exact_search(queries.long(), docs.long())
    with pytest.raises(ValueError, match="shape"):
        exact_search(queries[0], docs)
    with pytest.raises(ValueError, match="k"):
        exact_search(queries, docs, k=0)
    with pytest.raises(ValueError, match="chunk_size"):
        exact_search(queries, docs, chunk_size=0)
    with pytest.raises(ValueError, match="similarity"):
        exact_search(queries, docs, similarity="l2")
    bad = docs.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        exact_search(queries, bad)
    bad[3, 0] = float("inf")
    with pytest.raises(ValueError, match="inf"):
        exact_search(queries, bad)
    # finite values whose sum overflows (the fast check's false alarm) are still accepted
    huge = docs.clone()
    huge[:2] = 3e38
    assert torch.isinf(huge.sum())
    assert exact_search(queries, huge, k=3)[1].shape == (queries.shape[0], 3)


def test_faiss_index_flat_ip_numpy_and_torch(data):
    queries, docs = data
    index = FaissIndex.flat_ip(64)
    index.add(docs[:2500])  # torch
    index.add(docs[2500:].numpy())  # numpy
    assert index.ntotal == 5000 and index.dim == 64 and index.is_trained
    scores, ids = index.search(queries, 10)
    exact_scores, exact_ids = exact_search(queries, docs, k=10)
    np.testing.assert_array_equal(ids, exact_ids.numpy())
    assert_close(scores, exact_scores, what="FAISS flat vs exact_search")
    assert index.search(queries[:2], 10_000)[1].shape == (2, 5000)  # k clamped to ntotal
    with pytest.raises(ValueError, match="queries"):
        index.search(queries[:, :10], 5)
    with pytest.raises(ValueError, match="empty"):
        FaissIndex.flat_ip(64).search(queries, 5)
    with pytest.raises(AttributeError, match="ef_search"):
        index.ef_search = 10


def test_faiss_approximate_indexes_recall(data):
    queries, docs = data
    _, exact_ids = exact_search(queries, docs, k=10)

    def recall(ids: np.ndarray) -> float:
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids.tolist(),
                                                                  strict=True)])

    ivf = FaissIndex.ivf_flat(64, nlist=16)
    assert not ivf.is_trained
    with pytest.raises(ValueError, match="train"):
        ivf.add(docs)
    ivf.train(docs)
    ivf.add(docs)
    ivf.nprobe = 16  # every cell: exact
    assert ivf.nprobe == 16
    assert recall(ivf.search(queries, 10)[1]) == 1.0
    ivf.nprobe = 1
    assert recall(ivf.search(queries, 10)[1]) < 1.0

    hnsw = FaissIndex.hnsw(64, M=16)
    hnsw.ef_search = 256
    assert hnsw.ef_search == 256
    hnsw.add(docs)
    assert recall(hnsw.search(queries, 10)[1]) > 0.9

    pq = FaissIndex.pq(64, m=8, nbits=4)
    pq.train(docs[:1000])  # 16 centroids per sub-space: 1000 training points are plenty
    pq.add(docs)
    assert 0.0 < recall(pq.search(queries, 10)[1]) < 1.0
    with pytest.raises(ValueError, match="m"):
        FaissIndex.pq(64, m=7)


def test_rrf_hand_computed_lists():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert fused == pytest.approx(expected, abs=1e-15)
    assert list(fused) == ["a", "c", "b", "d"]  # best first: 1/61+1/62 > 1/61+1/63 > ...


def test_rrf_hand_computed_runs():
    bm25_run = {"q1": {"a": 12.0, "b": 9.5, "c": 3.0}, "q2": {"x": 1.0}}
    dense_run = {"q1": {"c": 0.9, "a": 0.8, "d": 0.1}, "q3": {"y": 0.5, "z": 0.5}}
    fused = reciprocal_rank_fusion([bm25_run, dense_run], k=1)
    assert fused["q1"] == pytest.approx(
        {"a": 1 / 2 + 1 / 3, "b": 1 / 3, "c": 1 / 4 + 1 / 2, "d": 1 / 4}, abs=1e-15
    )
    assert fused["q2"] == {"x": 0.5}
    # tied scores rank by doc id descending (trec_eval): "z" is rank 1, "y" rank 2
    assert fused["q3"] == {"z": 0.5, "y": 1 / 3}
    assert list(fused["q1"]) == ["a", "c", "b", "d"]


def test_rrf_bad_inputs():
    with pytest.raises(ValueError, match="k"):
        reciprocal_rank_fusion([["a"]], k=0)
    with pytest.raises(ValueError, match="rankings"):
        reciprocal_rank_fusion([])
    with pytest.raises(TypeError, match="rankings"):
        reciprocal_rank_fusion([["a"], {"q": {"a": 1.0}}])


@pytest.mark.cuda
def test_exact_search_cuda_matches_cpu(data):
    queries, docs = data
    cpu_scores, cpu_ids = exact_search(queries, docs, k=10, chunk_size=1000)
    gpu_scores, gpu_ids = exact_search(queries.cuda(), docs.cuda(), k=10, chunk_size=1000)
    assert gpu_scores.device.type == "cuda" and gpu_ids.device.type == "cuda"
    assert torch.equal(gpu_ids.cpu(), cpu_ids)
    assert_close(gpu_scores.cpu(), cpu_scores, what="CUDA vs CPU")
    with pytest.raises(ValueError, match="device"):
        exact_search(queries.cuda(), docs)
    values = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, 1.0, 3.0, 2.0], device="cuda").unsqueeze(1)
    _, ids = exact_search(torch.ones(1, 1, device="cuda"), values, k=3, chunk_size=2)
    assert ids.tolist() == [[1, 2, 4]]
