"""MaxSim against a Python loop, masking edge cases, chunking, and residual compression."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tinyir.maxsim import max_sim, max_sim_alignment, max_sim_matrix, max_sim_pairs
from tinyir.quantize import ResidualCompressor, bytes_per_token, kmeans
from tinyir.testing import assert_close


def loop_max_sim(q, q_mask, d, d_mask) -> float:
    """The definition, one token at a time: the oracle."""
    real_doc_tokens = [j for j in range(d.shape[0]) if d_mask[j]]
    if not real_doc_tokens:
        return -math.inf
    total = 0.0
    for i in range(q.shape[0]):
        if q_mask[i]:
            total += max(float(q[i] @ d[j]) for j in real_doc_tokens)
    return total


def random_batch(generator, b=3, n=5, lq=4, ld=6, dim=8, negative=False, device="cpu"):
    q = F.normalize(torch.randn(b, lq, dim, generator=generator), dim=-1)
    d = F.normalize(torch.randn(n, ld, dim, generator=generator), dim=-1)
    if negative:  # every query-document similarity is negative
        q, d = q.abs(), -d.abs()
    q_lengths = torch.randint(1, lq + 1, (b,), generator=generator)
    d_lengths = torch.randint(1, ld + 1, (n,), generator=generator)
    q_mask = torch.arange(lq)[None, :] < q_lengths[:, None]
    d_mask = torch.arange(ld)[None, :] < d_lengths[:, None]
    # padded positions hold garbage that must not matter
    q = torch.where(q_mask[..., None], q, torch.full_like(q, 7.0))
    d = torch.where(d_mask[..., None], d, torch.full_like(d, 7.0))
    return [t.to(device) for t in (q, q_mask, d, d_mask)]


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_sim_matrix_matches_python_loop(seed, negative):
    generator = torch.Generator().manual_seed(seed)
    q, q_mask, d, d_mask = random_batch(generator, negative=negative)
    scores = max_sim_matrix(q, q_mask, d, d_mask)
    assert scores.shape == (3, 5)
    for b in range(3):
        for n in range(5):
            expected = loop_max_sim(q[b], q_mask[b], d[n], d_mask[n])
            assert_close(scores[b, n], expected, depth=2, what=f"max_sim[{b}, {n}] vs loop")
    if negative:
        assert (scores < 0).all()


def test_chunked_equals_unchunked_and_batch_equals_one_by_one():
    generator = torch.Generator().manual_seed(3)
    q, q_mask, d, d_mask = random_batch(generator, b=4, n=11, lq=5, ld=9, dim=16)
    full = max_sim_matrix(q, q_mask, d, d_mask, doc_chunk_size=100)
    for chunk in (1, 3, 11):
        assert_close(max_sim_matrix(q, q_mask, d, d_mask, doc_chunk_size=chunk), full, depth=2,
                     what=f"doc_chunk_size={chunk} vs whole")
    for b in range(4):
        assert_close(max_sim(q[b], q_mask[b], d, d_mask, doc_chunk_size=4), full[b], depth=2,
                     what=f"query {b} alone vs batched")
    pairs = max_sim_pairs(q, q_mask, d[:4], d_mask[:4])
    assert_close(pairs, full[:4, :4].diagonal(), depth=2, what="pairs vs matrix diagonal")


def _record_chunks(monkeypatch, doc_tokens: int) -> list[int]:
    """Documents per similarity product (B*Lq, n*Ld) that max_sim_matrix computes."""
    seen = []
    original = torch.Tensor.__matmul__

    def recording_matmul(self, other):
        seen.append(other.shape[-1] // doc_tokens)
        return original(self, other)

    monkeypatch.setattr(torch.Tensor, "__matmul__", recording_matmul)
    return seen


def test_chunking_bounds_the_similarity_tensor(monkeypatch):
    """With N > doc_chunk_size, no product ever sees more than doc_chunk_size documents."""
    seen = _record_chunks(monkeypatch, doc_tokens=5)
    q = torch.randn(2, 3, 4)
    d = torch.randn(10, 5, 4)
    max_sim_matrix(q, None, d, None, doc_chunk_size=4)
    assert seen == [4, 4, 2]


def test_default_chunks_stay_within_the_memory_budget(monkeypatch):
    import tinyir.maxsim as maxsim

    monkeypatch.setattr(maxsim, "SIM_BUDGET", 2 * 3 * 5 * 3)  # three documents' similarities
    seen = _record_chunks(monkeypatch, doc_tokens=5)
    q, d = torch.randn(2, 3, 4), torch.randn(10, 5, 4)
    expected = max_sim_matrix(q, None, d, None, doc_chunk_size=10)
    seen.clear()
    assert_close(max_sim_matrix(q, None, d, None), expected, depth=2, what="budgeted vs whole")
    assert seen == [3, 3, 3, 1]
    monkeypatch.setattr(maxsim, "SIM_BUDGET", 1)  # below one document: one at a time
    seen.clear()
    max_sim_matrix(q, None, d, None)
    assert seen == [1] * 10


def test_matches_the_plain_formula():
    from tinyir.maxsim import max_sim_reference

    generator = torch.Generator().manual_seed(5)
    q = F.normalize(torch.randn(3, 4, 8, generator=generator), dim=-1)
    d = F.normalize(torch.randn(7, 6, 8, generator=generator), dim=-1)
    assert_close(max_sim_matrix(q, None, d, None), max_sim_reference(q, d), depth=2,
                 what="chunked vs einsum over all documents")


def test_masks_default_to_all_real_tokens():
    generator = torch.Generator().manual_seed(4)
    q = torch.randn(2, 3, 4, generator=generator)
    d = torch.randn(5, 6, 4, generator=generator)
    expected = (q[:, None] @ d.transpose(1, 2)[None]).amax(-1).sum(-1)  # (B, N)
    assert_close(max_sim_matrix(q, None, d, None), expected, depth=2, what="no masks vs by hand")


def test_empty_document_scores_minus_inf_and_empty_query_scores_zero():
    q = -torch.ones(1, 2, 3)
    d = torch.ones(2, 4, 3)
    d_mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])  # doc 1 has no real token
    scores = max_sim_matrix(q, None, d, d_mask)
    assert scores[0, 0].item() == pytest.approx(-6.0)  # all similarities negative
    assert scores[0, 1].item() == -math.inf
    empty_query = max_sim_matrix(q, torch.zeros(1, 2), d, d_mask)
    assert empty_query[0, 0].item() == 0.0
    assert empty_query[0, 1].item() == -math.inf


def test_empty_document_list():
    q = torch.randn(2, 3, 4)
    d = torch.randn(0, 5, 4)
    assert max_sim_matrix(q, None, d, None).shape == (2, 0)
    assert max_sim(q[0], None, d, None).shape == (0,)


def test_max_sim_is_differentiable():
    q = torch.randn(2, 3, 4, requires_grad=True)
    d = torch.randn(2, 5, 4, requires_grad=True)
    d_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    max_sim_matrix(q, None, d, d_mask, doc_chunk_size=1).sum().backward()
    assert torch.isfinite(q.grad).all()
    assert (d.grad[0, 3:] == 0).all()  # padding gets no gradient


def test_alignment_points_at_the_best_real_token():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    assert max_sim_alignment(q, d).tolist() == [2, 2]
    assert max_sim_alignment(q, d, d_mask=torch.tensor([1, 1, 0])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="d_mask"):
        max_sim_alignment(q, d, d_mask=torch.zeros(3))


@pytest.mark.parametrize(
    ("q", "d", "error", "match"),
    [
        (torch.randn(2, 3, 4), torch.randn(5, 6, 8), ValueError, "D=4"),
        (torch.randn(2, 3, 4), torch.randn(5, 4), ValueError, "d: expected shape"),
        (torch.randn(2, 3, 4), torch.randn(5, 6, 4).double(), TypeError, "dtype"),
        (torch.randn(2, 3, 4), torch.ones(5, 6, 4, dtype=torch.long), TypeError, "floating"),
    ],
)
def test_bad_inputs(q, d, error, match):
    with pytest.raises(error, match=match):
        max_sim_matrix(q, None, d, None)


def test_bad_masks_and_chunk_size():
    q, d = torch.randn(2, 3, 4), torch.randn(5, 6, 4)
    with pytest.raises(ValueError, match="q_mask"):
        max_sim_matrix(q, torch.ones(2, 4), d, None)
    with pytest.raises(ValueError, match="d_mask"):
        max_sim_matrix(q, None, d, torch.ones(5, 7))
    with pytest.raises(ValueError, match="doc_chunk_size"):
        max_sim_matrix(q, None, d, None, doc_chunk_size=0)
    with pytest.raises(ValueError, match="one per query"):
        max_sim_pairs(q, None, d, None)


def test_mismatched_devices_raise():
    q = torch.randn(2, 3, 4, device="meta")
    with pytest.raises(ValueError, match="device"):
        max_sim_matrix(q, None, torch.randn(5, 6, 4), None)


@pytest.mark.cuda
def test_max_sim_on_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(5)
    q, q_mask, d, d_mask = random_batch(generator, b=4, n=9, negative=True)
    expected = max_sim_matrix(q, q_mask, d, d_mask)
    on_gpu = max_sim_matrix(q.cuda(), q_mask.cuda(), d.cuda(), d_mask.cuda(), doc_chunk_size=2)
    assert on_gpu.device.type == "cuda"
    assert_close(on_gpu.cpu(), expected, depth=2, what="CUDA vs CPU")
    with pytest.raises(ValueError, match="device"):
        max_sim_matrix(q.cuda(), None, d, None)
    compressor = ResidualCompressor.fit(d.flatten(0, 1).cuda(), n_centroids=4, bits=4)
    codes, packed = compressor.compress(d.flatten(0, 1).cuda())
    assert compressor.decompress(codes, packed).device.type == "cuda"


# ----------------------------------------------------------------------------------------------
# Residual compression


@pytest.fixture(scope="module")
def token_embeddings():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(32, 64, generator=generator)
    labels = torch.randint(0, 32, (4000,), generator=generator)
    x = centers[labels] + 0.4 * torch.randn(4000, 64, generator=generator)
    return F.normalize(x, dim=-1)


def test_kmeans_is_deterministic_and_finds_clusters():
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(50, 2, generator=generator) * 0.1 + c for c in (-5.0, 5.0)])
    centroids = kmeans(x, 2, seed=1)
    assert torch.equal(centroids, kmeans(x, 2, seed=1))  # same seed, same code path: exact
    assert sorted(centroids[:, 0].round().tolist()) == [-5.0, 5.0]


def test_reconstruction_improves_with_bits(token_embeddings):
    errors = []
    for bits in (1, 2, 4, 8):
        compressor = ResidualCompressor.fit(token_embeddings, n_centroids=32, bits=bits)
        codes, packed = compressor.compress(token_embeddings)
        assert codes.shape == (4000,)
        assert packed.shape == (4000, 64 * bits // 8)
        assert packed.dtype == torch.uint8
        approx = compressor.decompress(codes, packed)
        errors.append((approx - token_embeddings).norm(dim=1).mean().item())
        if bits == 8:
            cosine = F.cosine_similarity(approx, token_embeddings, dim=1)
            assert cosine.mean().item() > 0.999
            assert cosine.min().item() > 0.98  # the rare residual beyond the top bucket clips
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0] / 10


def test_pack_unpack_round_trip(token_embeddings):
    compressor = ResidualCompressor.fit(token_embeddings[:500], n_centroids=8, bits=2, n_iter=3)
    codes, packed = compressor.compress(token_embeddings[:500])
    # decompressing twice through compress gives the same buckets
    again = compressor.compress(compressor.decompress(codes, packed))
    torch.testing.assert_close(again[1], packed)


def test_compressor_errors(token_embeddings):
    with pytest.raises(ValueError, match="bits"):
        ResidualCompressor.fit(token_embeddings, n_centroids=4, bits=3)
    with pytest.raises(ValueError, match="n_centroids"):
        ResidualCompressor.fit(token_embeddings[:3], n_centroids=4)
    compressor = ResidualCompressor.fit(token_embeddings[:200], n_centroids=4, n_iter=2)
    with pytest.raises(ValueError, match="D=64"):
        compressor.compress(torch.randn(3, 32))
    with pytest.raises(ValueError, match="device"):
        compressor.compress(torch.randn(3, 64, device="meta"))


def test_bytes_per_token():
    assert bytes_per_token(128, 2) == 36  # ColBERTv2: int32 centroid id + 32 bytes of residual
    assert bytes_per_token(128, 1, centroid_id_bytes=0) == 16
    with pytest.raises(ValueError, match="bits"):
        bytes_per_token(128, 0)
