"""int8 and binary quantization against sentence-transformers, Hamming search, rescoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyir.quantize import (
    binary_search_with_rescore,
    dequantize_int8,
    hamming_distances,
    hamming_search,
    int8_ranges,
    matryoshka_truncate,
    quantize_binary,
    quantize_int8,
    rescore,
)
from tinyir.testing import assert_close


@pytest.fixture(scope="module")
def st_quantize():
    module = pytest.importorskip("sentence_transformers.util.quantization")
    return module.quantize_embeddings


@pytest.fixture(scope="module")
def embeddings():
    generator = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(300, 64, generator=generator), dim=-1)


def clustered(n_docs=3000, n_queries=50, dim=128, n_topics=150, seed=0):
    """n_topics clusters of n_docs / n_topics documents; each query is near one topic's centre.

    Every cluster has more than 10 documents, so a query's exact top 10 are its cluster's
    documents closest to it, a set the binary codes can find.
    """
    generator = torch.Generator().manual_seed(seed)
    topics = F.normalize(torch.randn(n_topics, dim, generator=generator), dim=-1)
    labels = torch.arange(n_docs) % n_topics
    noise = torch.randn(n_docs, dim, generator=generator) / dim**0.5
    docs = F.normalize(topics[labels] + noise, dim=-1)
    picks = torch.randint(0, n_topics, (n_queries,), generator=generator)
    queries = topics[picks] + 0.5 * torch.randn(n_queries, dim, generator=generator) / dim**0.5
    return F.normalize(queries, dim=-1), docs


def recall_vs_exact(ids, exact_ids) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, exact_ids, strict=True))
    return hits / exact_ids.numel()


# ----------------------------------------------------------------------------------------------
# int8


def test_int8_matches_sentence_transformers(st_quantize, embeddings):
    codes, _, _ = quantize_int8(embeddings)
    expected = st_quantize(embeddings.numpy(), precision="int8")
    assert codes.dtype == torch.int8
    np.testing.assert_array_equal(codes.numpy(), expected)


def test_int8_with_calibration_matches_sentence_transformers(st_quantize, embeddings):
    calibration, x = embeddings[:200], embeddings[200:] * 1.5  # some values fall outside
    codes, _, _ = quantize_int8(x, calibration=calibration)
    expected = st_quantize(x.numpy(), precision="int8", calibration_embeddings=calibration.numpy())
    np.testing.assert_array_equal(codes.numpy(), expected)


def test_int8_round_trip_error_is_at_most_half_a_step(embeddings):
    codes, scale, offset = quantize_int8(embeddings)
    restored = dequantize_int8(codes, scale, offset)
    assert restored.shape == embeddings.shape
    error = (restored - embeddings).abs()  # (N, D)
    assert (error <= scale / 2 + 1e-6).all()


def test_int8_queries_reuse_the_corpus_ranges(embeddings):
    _, scale, offset = quantize_int8(embeddings)
    codes, scale_again, _ = quantize_int8(embeddings[:5], scale=scale, offset=offset)
    assert scale_again is scale
    torch.testing.assert_close(codes, quantize_int8(embeddings)[0][:5])


def test_int8_constant_dimension_does_not_divide_by_zero():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scale, _ = int8_ranges(x)
    assert scale[0].item() == 1.0
    codes, scale, offset = quantize_int8(x)
    assert_close(dequantize_int8(codes, scale, offset)[:, 0], [1.5, 1.5], what="dequantized")


# ----------------------------------------------------------------------------------------------
# binary


@pytest.mark.parametrize("dim", [64, 12])
def test_binary_matches_sentence_transformers_ubinary(st_quantize, embeddings, dim):
    x = embeddings[:, :dim]
    packed = quantize_binary(x)
    assert packed.dtype == torch.uint8
    assert packed.shape == (300, -(-dim // 8))
    np.testing.assert_array_equal(packed.numpy(), st_quantize(x.numpy(), precision="ubinary"))


def test_binary_bit_order_by_hand():
    x = torch.tensor([[1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 0.5, 0.0, 2.0]])
    # byte 0: bits 1000_0001 = 129; byte 1: dims 8, 9 -> 0, 1, then padding -> 0100_0000 = 64
    assert quantize_binary(x).tolist() == [[129, 64]]


def test_hamming_distances_match_brute_force():
    generator = torch.Generator().manual_seed(1)
    q = torch.randint(0, 256, (4, 5), generator=generator, dtype=torch.uint8)
    d = torch.randint(0, 256, (9, 5), generator=generator, dtype=torch.uint8)
    distances = hamming_distances(q, d, doc_chunk_size=4)
    for i in range(4):
        for j in range(9):
            expected = sum(
                bin(a ^ b).count("1") for a, b in zip(q[i].tolist(), d[j].tolist(), strict=True)
            )
            assert distances[i, j].item() == expected


def test_hamming_search_orders_by_distance_then_id():
    d = torch.tensor([[0b1111], [0b0001], [0b0000], [0b0001]], dtype=torch.uint8)
    q = torch.tensor([[0b0000]], dtype=torch.uint8)
    distances, ids = hamming_search(q, d, k=3)
    assert distances.tolist() == [[0, 1, 1]]
    assert ids.tolist() == [[2, 1, 3]]


# ----------------------------------------------------------------------------------------------
# rescoring


def test_rescore_orders_candidates_by_float_score():
    docs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    query = torch.tensor([[0.0, 1.0]])
    scores, ids = rescore(query, torch.tensor([[0, 2, 1, -1]]), docs, k=3)
    assert ids.tolist() == [[1, 2, 0]]
    assert_close(scores, [[1.0, 0.8, 0.0]], what="rescored vs hand")


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_binary_then_rescore_recovers_exact_top10(precision):
    queries, docs = clustered()
    exact_ids = (queries @ docs.T).topk(10, dim=1).indices
    doc_bits = quantize_binary(docs)
    if precision == "int8":
        codes, scale, offset = quantize_int8(docs)
        _, ids = binary_search_with_rescore(queries, doc_bits, codes, 10, 4, scale, offset)
    else:
        _, ids = binary_search_with_rescore(queries, doc_bits, docs, 10, oversample=4)
    with_rescore = recall_vs_exact(ids, exact_ids)
    _, binary_only = hamming_search(quantize_binary(queries), doc_bits, 10)
    assert with_rescore > 0.9
    assert recall_vs_exact(binary_only, exact_ids) < 0.8  # rescoring is what recovers them


def test_rescore_errors():
    query, docs = torch.randn(2, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="k"):
        rescore(query, torch.zeros(2, 3, dtype=torch.long), docs, k=4)
    with pytest.raises(ValueError, match="one per query"):
        rescore(query, torch.zeros(3, 3, dtype=torch.long), docs, k=2)
    codes, _, _ = quantize_int8(docs)
    with pytest.raises(ValueError, match="scale"):
        rescore(query, torch.zeros(2, 3, dtype=torch.long), codes, k=2)


# ----------------------------------------------------------------------------------------------
# Matryoshka, sizes, bad input


def test_matryoshka_truncate():
    x = torch.tensor([[3.0, 4.0, 12.0]])
    assert_close(matryoshka_truncate(x, 2), [[0.6, 0.8]], depth=2, what="truncate + renormalize")
    assert torch.equal(matryoshka_truncate(x, 2, renormalize=False), x[:, :2])  # a plain slice
    with pytest.raises(ValueError, match="dim"):
        matryoshka_truncate(x, 4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: quantize_int8(torch.randn(8)), ValueError, r"x: expected shape \(N, D\)"),
        (lambda: quantize_int8(torch.ones(3, 2, dtype=torch.long)), TypeError, "floating"),
        (lambda: quantize_int8(torch.randn(1, 4)), ValueError, "calibration"),
        (
            lambda: quantize_int8(torch.randn(3, 4), calibration=torch.randn(3, 5)),
            ValueError,
            "D=4",
        ),
        (lambda: quantize_binary(torch.randn(2, 3, 4)), ValueError, "x: expected shape"),
        (
            lambda: hamming_distances(torch.zeros(1, 2, dtype=torch.uint8), torch.zeros(3, 4)),
            TypeError,
            "d_bits",
        ),
        (
            lambda: hamming_search(
                torch.zeros(1, 2, dtype=torch.uint8), torch.zeros(3, 2, dtype=torch.uint8), k=4
            ),
            ValueError,
            "k",
        ),
        (
            lambda: hamming_distances(
                torch.zeros(1, 2, dtype=torch.uint8), torch.zeros(3, 4, dtype=torch.uint8)
            ),
            ValueError,
            "bytes per vector",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mismatched_devices_raise():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="device|meta"):
        quantize_int8(x, calibration=torch.randn(4, 8, device="meta"))
    with pytest.raises(ValueError, match="meta|cpu"):
        rescore(x, torch.zeros(4, 2, dtype=torch.long, device="meta"), x, k=1)


@pytest.mark.cuda
def test_quantization_on_cuda_matches_cpu():
    queries, docs = clustered(n_docs=500, n_queries=8)
    codes, scale, offset = quantize_int8(docs)
    codes_gpu, _, _ = quantize_int8(docs.cuda())
    assert (codes_gpu.cpu().int() - codes.int()).abs().max() <= 1  # a bucket edge may round
    torch.testing.assert_close(quantize_binary(docs.cuda()).cpu(), quantize_binary(docs))
    expected = binary_search_with_rescore(
        queries, quantize_binary(docs), codes, 5, 4, scale, offset
    )
    on_gpu = binary_search_with_rescore(
        queries.cuda(),
        quantize_binary(docs.cuda()),
        codes.cuda(),
        5,
        4,
        scale.cuda(),
        offset.cuda(),
    )
    assert on_gpu[1].device.type == "cuda"
    assert_close(on_gpu[0].cpu(), expected[0], depth=2, what="rescored scores, CUDA vs CPU")
    assert recall_vs_exact(on_gpu[1].cpu(), expected[1]) > 0.95  # near-ties may swap
