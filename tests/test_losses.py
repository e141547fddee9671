"""Oracle tests for tinyir.losses: F.cross_entropy by hand and sentence-transformers' losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyir.losses import (
    expected_initial_loss,
    info_nce,
    matryoshka_loss,
    multi_positive_info_nce,
    similarity_matrix,
    triplet_loss,
)
from tinyir.testing import assert_close

st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")


class IdentityModel(nn.Module):
    """Stands in for a SentenceTransformer: the 'features' already are the embeddings."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"sentence_embedding": features["embedding"]}

    def get_embedding_dimension(self) -> int:
        return self.dim


# tinyir.testing depth of a contrastive loss: normalize, similarity matmul, log-softmax + mean
LOSS_DEPTH = 3


def random_batch(batch_size=8, dim=16, num_negatives=0, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch_size, dim, generator=gen, dtype=dtype).to(device)
    p = torch.randn(batch_size, dim, generator=gen, dtype=dtype).to(device)
    n = torch.randn(batch_size, num_negatives, dim, generator=gen, dtype=dtype).to(device)
    return q, p, n


# ----------------------------------------------------------------------------- similarity_matrix


def test_similarity_matrix_is_cosine_or_dot():
    a, b, _ = random_batch(4, 8)
    expected = torch.tensor([[F.cosine_similarity(x, y, dim=0).item() for y in b] for x in a],
                            dtype=a.dtype)
    assert_close(similarity_matrix(a, b), expected, depth=2, what="cosine matrix vs loop")
    assert_close(similarity_matrix(a, b, normalize=False), a @ b.T, what="dot matrix")


# ----------------------------------------------------------------------------- info_nce


def test_info_nce_equals_cross_entropy_on_explicit_matrix():
    q, p, n = random_batch(6, 16, num_negatives=2)
    temperature = 0.07
    qn, pn, nn_ = F.normalize(q, dim=-1), F.normalize(p, dim=-1), F.normalize(n, dim=-1)
    # Build the score matrix entry by entry: row i = query i, columns = positives then negatives.
    candidates = list(pn) + list(nn_.reshape(-1, 16))
    scores = torch.stack([torch.stack([qi @ c for c in candidates]) for qi in qn]) / temperature
    expected = F.cross_entropy(scores, torch.arange(6))
    assert_close(info_nce(q, p, n, temperature=temperature), expected, depth=LOSS_DEPTH)
    # (B*K, D) and (B, K, D) hard negatives are the same extra columns.
    assert_close(info_nce(q, p, n.reshape(-1, 16), temperature=temperature), expected, depth=LOSS_DEPTH)

    no_neg = F.cross_entropy(scores[:, :6], torch.arange(6))
    assert_close(info_nce(q, p, temperature=temperature), no_neg, depth=LOSS_DEPTH)


def test_info_nce_dot_similarity():
    q, p, _ = random_batch(5, 8)
    expected = F.cross_entropy((q @ p.T) / 2.0, torch.arange(5))
    assert_close(info_nce(q, p, temperature=2.0, similarity="dot"), expected, depth=LOSS_DEPTH)


@pytest.mark.parametrize("num_negatives", [0, 1, 3])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_info_nce_matches_sentence_transformers_mnrl(num_negatives, temperature):
    q, p, n = random_batch(8, 16, num_negatives=num_negatives)
    st_loss = st_losses.MultipleNegativesRankingLoss(IdentityModel(16), scale=1 / temperature)
    # sentence-transformers takes one (B, D) column per hard-negative slot: [anchor, pos, neg_1, ...]
    columns = [q, p] + [n[:, j] for j in range(num_negatives)]
    expected = st_loss.compute_loss_from_embeddings(columns, labels=None)
    negatives = n if num_negatives else None
    assert_close(info_nce(q, p, negatives, temperature=temperature), expected, depth=LOSS_DEPTH)


@pytest.mark.parametrize("num_negatives", [0, 2])
def test_symmetric_info_nce_matches_sentence_transformers(num_negatives):
    q, p, n = random_batch(8, 16, num_negatives=num_negatives)
    # MultipleNegativesSymmetricRankingLoss is, in 6.x, exactly this (and deprecated in its favour).
    st_loss = st_losses.MultipleNegativesRankingLoss(
        IdentityModel(16), scale=20.0, directions=("query_to_doc", "doc_to_query"),
        partition_mode="per_direction",
    )
    columns = [q, p] + [n[:, j] for j in range(num_negatives)]
    expected = st_loss.compute_loss_from_embeddings(columns, labels=None)
    negatives = n if num_negatives else None
    actual = info_nce(q, p, negatives, temperature=0.05, symmetric=True)
    assert_close(actual, expected, depth=LOSS_DEPTH)


def test_symmetric_is_average_of_both_directions():
    q, p, _ = random_batch(5, 8)
    both = info_nce(q, p, symmetric=True)
    assert_close(both, (info_nce(q, p) + info_nce(p, q)) / 2, depth=LOSS_DEPTH)


def test_info_nce_identical_embeddings_gives_log_batch_size():
    for batch_size in (1, 2, 7, 32):
        x = torch.ones(batch_size, 4, dtype=torch.float64)
        loss = info_nce(x, x.clone())
        assert abs(loss.item() - math.log(batch_size)) < 1e-12, (loss.item(), batch_size)
        assert expected_initial_loss(batch_size) == math.log(batch_size)
    # with K hard negatives per query there are B + B*K equal columns
    x = torch.ones(4, 3, dtype=torch.float64)
    loss = info_nce(x, x, torch.ones(4, 2, 3, dtype=torch.float64))
    assert abs(loss.item() - math.log(4 + 8)) < 1e-12


def test_info_nce_gradients_flow():
    q, p, n = random_batch(4, 8, num_negatives=2, dtype=torch.float32)
    for t in (q, p, n):
        t.requires_grad_(True)
    info_nce(q, p, n, symmetric=True).backward()
    for t in (q, p, n):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_info_nce_bad_inputs():
    q, p, n = random_batch(4, 8, num_negatives=2)
    with pytest.raises(ValueError, match="positives"):
        info_nce(q, p[:3])
    with pytest.raises(ValueError, match="positives"):
        info_nce(q, p[:, :5])
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, p, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, p, temperature=-1.0)
    with pytest.raises(ValueError, match="B=0"):
        info_nce(q[:0], p[:0])
    with pytest.raises(TypeError, match="floating-point"):
        info_nce(q.long(), p.long())
    with pytest.raises(TypeError, match="queries"):
        info_nce(q.numpy(), p)
    with pytest.raises(ValueError, match="shape"):
        info_nce(q[0], p[0])
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, p, n[:3])
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, p, n[..., :5])
    with pytest.raises(ValueError, match="similarity"):
        info_nce(q, p, similarity="l2")
    with pytest.raises(ValueError, match="device"):
        info_nce(q, p.to("meta"))


# ----------------------------------------------------------------------------- multi-positive


def test_multi_positive_info_nce_hand_computed():
    # Dot similarity, temperature 1: the logits are the dot products themselves.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    docs = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [False, True, False]])
    # query 0 logits (2, 0, 1), positives docs 0 and 2; query 1 logits (0, 1, 1), positive doc 1.
    log_z0 = math.log(math.exp(2) + math.exp(0) + math.exp(1))
    log_z1 = math.log(1 + 2 * math.e)
    loss0 = ((log_z0 - 2) + (log_z0 - 1)) / 2  # mean of -log p over the two positives
    loss1 = log_z1 - 1
    expected = (loss0 + loss1) / 2
    actual = multi_positive_info_nce(q, docs, mask, temperature=1.0, similarity="dot")
    assert abs(actual.item() - expected) < 1e-12


def test_multi_positive_reduces_to_info_nce_with_one_positive():
    q, p, _ = random_batch(6, 8)
    mask = torch.eye(6, dtype=torch.bool)
    assert_close(multi_positive_info_nce(q, p, mask), info_nce(q, p), depth=LOSS_DEPTH)


def test_multi_positive_bad_inputs():
    q, p, _ = random_batch(3, 8)
    mask = torch.eye(3, dtype=torch.bool)
    with pytest.raises(TypeError, match="positive_mask"):
        multi_positive_info_nce(q, p, mask.float())
    with pytest.raises(ValueError, match="positive_mask"):
        multi_positive_info_nce(q, p, mask[:, :2])
    with pytest.raises(ValueError, match="at least one positive"):
        multi_positive_info_nce(q, p, mask & torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="temperature"):
        multi_positive_info_nce(q, p, mask, temperature=0)
    with pytest.raises(ValueError, match="device"):
        multi_positive_info_nce(q, p, mask.to("meta"))


# ----------------------------------------------------------------------------- triplet


@pytest.mark.parametrize(
    ("distance", "st_metric", "margin"),
    [("euclidean", "EUCLIDEAN", 5.0), ("euclidean", "EUCLIDEAN", 0.5), ("cosine", "COSINE", 0.3)],
)
def test_triplet_matches_sentence_transformers(distance, st_metric, margin):
    a, p, n = random_batch(16, 8, num_negatives=1)
    n = n[:, 0]
    metric = getattr(st_losses.TripletDistanceMetric, st_metric)
    st_loss = st_losses.TripletLoss(IdentityModel(8), distance_metric=metric, triplet_margin=margin)
    expected = st_loss.compute_loss_from_embeddings([a, p, n], labels=None)
    assert_close(triplet_loss(a, p, n, margin=margin, distance=distance), expected, depth=LOSS_DEPTH)


def test_triplet_hand_computed():
    a = torch.tensor([[0.0, 0.0]])
    p = torch.tensor([[3.0, 4.0]])  # distance 5
    n = torch.tensor([[6.0, 8.0]])  # distance 10
    assert triplet_loss(a, p, n, margin=6.0).item() == pytest.approx(1.0)  # relu(5 - 10 + 6)
    assert triplet_loss(a, p, n, margin=4.0).item() == 0.0
    with pytest.raises(ValueError, match="distance"):
        triplet_loss(a, p, n, distance="manhattan")
    with pytest.raises(ValueError, match="anchor, positive, negative"):
        triplet_loss(a, p, torch.zeros(2, 2))


# ----------------------------------------------------------------------------- matryoshka


def test_matryoshka_matches_sentence_transformers():
    q, p, n = random_batch(6, 32, num_negatives=1)
    model = IdentityModel(32)
    dims, weights = [32, 16, 8], [1.0, 0.5, 0.25]
    st_loss = st_losses.MatryoshkaLoss(
        model, st_losses.MultipleNegativesRankingLoss(model, scale=20.0), dims, weights
    )
    features = [{"embedding": q}, {"embedding": p}, {"embedding": n[:, 0]}]
    expected = st_loss(features, labels=None)
    actual = matryoshka_loss(info_nce, q, p, dims=dims, weights=weights, negatives=n,
                             temperature=0.05)
    assert_close(actual, expected, depth=LOSS_DEPTH)


def test_matryoshka_hand_computed_with_triplet():
    a, p, n = random_batch(5, 8, num_negatives=1)
    n = n[:, 0]

    def cut(x, d):
        return F.normalize(x[:, :d], dim=-1)

    expected = 2.0 * triplet_loss(cut(a, 8), cut(p, 8), cut(n, 8), margin=0.5) + triplet_loss(
        cut(a, 2), cut(p, 2), cut(n, 2), margin=0.5
    )
    actual = matryoshka_loss(triplet_loss, a, p, dims=(8, 2), weights=(2.0, 1.0), negatives=n,
                             margin=0.5)
    assert_close(actual, expected, depth=LOSS_DEPTH)


def test_matryoshka_bad_inputs():
    q, p, _ = random_batch(4, 8)
    with pytest.raises(ValueError, match="dims"):
        matryoshka_loss(info_nce, q, p, dims=(16, 8))
    with pytest.raises(ValueError, match="dims"):
        matryoshka_loss(info_nce, q, p, dims=())
    with pytest.raises(ValueError, match="weights"):
        matryoshka_loss(info_nce, q, p, dims=(8, 4), weights=(1.0,))


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_losses_on_cuda_match_cpu():
    q, p, n = random_batch(8, 16, num_negatives=2, dtype=torch.float32)
    cpu = info_nce(q, p, n, symmetric=True)
    gpu = info_nce(q.cuda(), p.cuda(), n.cuda(), symmetric=True)
    assert gpu.device.type == "cuda"
    assert_close(gpu.cpu(), cpu, depth=LOSS_DEPTH, what="CUDA vs CPU")
    with pytest.raises(ValueError, match="device"):
        info_nce(q.cuda(), p)
    mask = torch.eye(8, dtype=torch.bool)
    assert_close(
        multi_positive_info_nce(q.cuda(), p.cuda(), mask.cuda()).cpu(),
        multi_positive_info_nce(q, p, mask), depth=LOSS_DEPTH, what="multi-positive CUDA vs CPU",
    )
