"""Contrastive losses for training bi-encoders: InfoNCE and friends.

Shapes used throughout:
    B  queries in the batch (also the number of (query, positive) pairs)
    D  embedding dimension
    K  hard negatives per query
    N  candidate documents in ``multi_positive_info_nce``

The core idea, as in sentence-transformers' ``MultipleNegativesRankingLoss``: score every query
against every document in the batch with ONE matrix multiplication, divide by a temperature, and
ask cross-entropy to put the mass on the diagonal (query i belongs with positive i). Every other
positive in the batch serves as a free negative ("in-batch negatives").

    scores = cos(q, [positives; negatives]) / temperature      # (B, B + B*K)
    loss   = cross_entropy(scores, labels=arange(B))

``temperature = 1 / scale``: sentence-transformers' default ``scale=20`` is ``temperature=0.05``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from tinyir.validate import check_same_device, check_tensor

Similarity = Literal["cos", "dot"]


def _check_temperature(temperature: float) -> None:
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")


def similarity_matrix(a: torch.Tensor, b: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """All-pairs similarity between two sets of embeddings, in one matmul.

    a: (M, D) float, b: (N, D) float, on the same device.
    normalize: L2-normalize the rows first, giving cosine similarity; else the raw dot product.
    Returns (M, N): ``out[i, j] = sim(a[i], b[j])``.
    """
    check_tensor("a", a, "(M, D)", floating=True)
    check_tensor("b", b, "(N, D)", floating=True)
    check_same_device(a=a, b=b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b: expected the same embedding dim D, got a {tuple(a.shape)}, b {tuple(b.shape)}"
        )
    if a.dtype != b.dtype:
        raise TypeError(f"a and b: expected the same dtype, got a {a.dtype}, b {b.dtype}")
    if normalize:
        # Same as sentence_transformers.util.cos_sim: F.normalize clamps the norm at eps=1e-12.
        a = F.normalize(a, p=2, dim=-1)
        b = F.normalize(b, p=2, dim=-1)
    return a @ b.T  # (M, N)


def _check_similarity(similarity: str) -> bool:
    """Return True when ``similarity`` asks for normalized (cosine) scores."""
    if similarity not in ("cos", "dot"):
        raise ValueError(f"similarity: expected 'cos' or 'dot', got {similarity!r}")
    return similarity == "cos"


def info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
    symmetric: bool = False,
    similarity: Similarity = "cos",
) -> torch.Tensor:
    """InfoNCE with in-batch negatives (and optional hard negatives).

    queries: (B, D) float. positives: (B, D) float, ``positives[i]`` is the match of query i.
    negatives: optional hard negatives, (B*K, D) or (B, K, D) float. As in sentence-transformers'
        ``MultipleNegativesRankingLoss`` they are SHARED: every query sees every hard negative of
        the batch as an extra column, not only its own K (a (B, K, D) tensor is just flattened).
    temperature: > 0; the logits are ``sim / temperature`` (``scale = 1 / temperature``).
    symmetric: also add the document -> query direction (which query does positive j belong
        to?) and return the average of both cross-entropies, like sentence-transformers'
        ``MultipleNegativesSymmetricRankingLoss`` and CLIP. The backward direction uses only
        the B positives as rows; hard negatives have no query of their own.
    similarity: "cos" (normalize rows first) or "dot".
    Returns a scalar (0-dim) tensor, the mean over the B queries.

    At initialization, when all similarities are equal, the loss is ``log(B + B*K)``.
    InfoNCE: van den Oord et al., "Representation Learning with Contrastive Predictive Coding"
    (2018), eq. 4; with in-batch negatives as in DPR (Karpukhin et al., EMNLP 2020).

    >>> q = torch.eye(2)                     # two queries, orthogonal; each is its own positive
    >>> info_nce(q, q, temperature=1.0)      # each row: -log(e^1 / (e^1 + e^0)) = log(1 + 1/e)
    tensor(0.3133)
    """
    normalize, negatives = _check_info_nce_inputs(queries, positives, negatives, temperature,
                                                  similarity)
    candidates = positives if negatives is None else torch.cat([positives, negatives])  # (B+B*K, D)
    # One matmul scores every query against every candidate.
    scores = similarity_matrix(queries, candidates, normalize=normalize) / temperature  # (B, B+B*K)
    labels = torch.arange(len(queries), device=queries.device)  # query i -> column i
    loss = F.cross_entropy(scores, labels)
    if symmetric:
        # Rows = positives, columns = queries: the (B, B) in-batch block, transposed.
        loss = (loss + F.cross_entropy(scores[:, : len(queries)].T, labels)) / 2
    return loss


def _check_info_nce_inputs(queries, positives, negatives, temperature, similarity):
    """info_nce's argument checks; returns (normalize?, negatives as (B*K, D) or None)."""
    check_tensor("queries", queries, "(B, D)", floating=True)
    check_tensor("positives", positives, "(B, D)", floating=True)
    _check_temperature(temperature)
    normalize = _check_similarity(similarity)
    check_same_device(queries=queries, positives=positives)
    if queries.shape != positives.shape:
        raise ValueError(
            f"positives: expected the shape of queries {tuple(queries.shape)}, "
            f"got {tuple(positives.shape)}"
        )
    batch_size, dim = queries.shape
    if batch_size == 0:
        raise ValueError("queries: expected a batch of at least 1 query, got B=0")
    if negatives is None:
        return normalize, None
    check_tensor("negatives", negatives, "(B*K, D) or (B, K, D)", floating=True)
    check_same_device(queries=queries, negatives=negatives)
    if negatives.dim() == 3 and negatives.shape[0] != batch_size:
        raise ValueError(f"negatives: expected (B={batch_size}, K, D), got {tuple(negatives.shape)}")
    negatives = negatives.reshape(-1, negatives.shape[-1])  # (B*K, D)
    if negatives.shape[1] != dim:
        raise ValueError(f"negatives: expected embedding dim D={dim}, got {tuple(negatives.shape)}")
    return normalize, negatives


def multi_positive_info_nce(
    queries: torch.Tensor,
    docs: torch.Tensor,
    positive_mask: torch.Tensor,
    temperature: float = 0.05,
    similarity: Similarity = "cos",
) -> torch.Tensor:
    """InfoNCE when a query has several relevant documents.

    queries: (B, D) float. docs: (N, D) float, the candidate pool shared by all queries.
    positive_mask: (B, N) bool, ``positive_mask[i, j]`` is True when doc j is relevant to query i;
        every query needs at least one positive.
    Returns a scalar: for each query, the MEAN over its positives p of ``-log softmax(scores)[p]``
    (every positive competes against all N docs, the other positives included), then the mean
    over queries. This is the "L_out" form of Khosla et al. (2020, Supervised Contrastive
    Learning), which they found trains better than ``-log(sum of positive probabilities)``.
    With one positive per query it equals ``info_nce``.
    """
    check_tensor("queries", queries, "(B, D)", floating=True)
    check_tensor("docs", docs, "(N, D)", floating=True)
    _check_temperature(temperature)
    normalize = _check_similarity(similarity)
    if not isinstance(positive_mask, torch.Tensor) or positive_mask.dtype != torch.bool:
        got = positive_mask.dtype if isinstance(positive_mask, torch.Tensor) else type(positive_mask)
        raise TypeError(f"positive_mask: expected a bool tensor, got {got}")
    check_same_device(queries=queries, docs=docs, positive_mask=positive_mask)
    batch_size, num_docs = queries.shape[0], docs.shape[0]
    if batch_size == 0 or num_docs == 0:
        raise ValueError(f"queries and docs: expected at least 1 row each, got B={batch_size}, "
                         f"N={num_docs}")
    if positive_mask.shape != (batch_size, num_docs):
        raise ValueError(
            f"positive_mask: expected shape (B, N) = ({batch_size}, {num_docs}), "
            f"got {tuple(positive_mask.shape)}"
        )
    positives_per_query = positive_mask.sum(dim=1)  # (B,)
    if (positives_per_query == 0).any():
        rows = torch.nonzero(positives_per_query == 0).flatten().tolist()
        raise ValueError(f"positive_mask: every query needs at least one positive, rows {rows} "
                         "have none")

    scores = similarity_matrix(queries, docs, normalize=normalize) / temperature  # (B, N)
    log_probs = F.log_softmax(scores, dim=1)  # (B, N)
    positive_log_probs = log_probs.masked_fill(~positive_mask, 0.0).sum(dim=1)  # (B,)
    per_query = -positive_log_probs / positives_per_query  # (B,)
    return per_query.mean()


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 5.0,
    distance: Literal["euclidean", "cosine"] = "euclidean",
) -> torch.Tensor:
    """Triplet loss ``mean(relu(d(a, p) - d(a, n) + margin))``, as sentence-transformers' TripletLoss.

    anchor, positive, negative: (B, D) float, row i is one triplet.
    distance: "euclidean" (``||a - p||_2``) or "cosine" (``1 - cos(a, p)``).
    margin: how much further the negative must be than the positive. The default 5 is
        sentence-transformers' (made for unnormalized euclidean distances); with "cosine",
        whose distances lie in [0, 2], a margin such as 0.1 to 0.5 is the sensible choice.
    Returns a scalar.
    """
    for name, x in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_tensor(name, x, "(B, D)", floating=True)
    check_same_device(anchor=anchor, positive=positive, negative=negative)
    if not (anchor.shape == positive.shape == negative.shape):
        raise ValueError(
            "anchor, positive, negative: expected the same (B, D) shape, got "
            f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    if anchor.shape[0] == 0:
        raise ValueError("anchor: expected a batch of at least 1 triplet, got B=0")
    if distance == "euclidean":
        d_pos = torch.linalg.vector_norm(anchor - positive, dim=-1)  # (B,)
        d_neg = torch.linalg.vector_norm(anchor - negative, dim=-1)  # (B,)
    elif distance == "cosine":
        d_pos = 1 - F.cosine_similarity(anchor, positive, dim=-1, eps=1e-12)
        d_neg = 1 - F.cosine_similarity(anchor, negative, dim=-1, eps=1e-12)
    else:
        raise ValueError(f"distance: expected 'euclidean' or 'cosine', got {distance!r}")
    return F.relu(d_pos - d_neg + margin).mean()


def matryoshka_loss(
    loss_fn: Callable[..., torch.Tensor],
    queries: torch.Tensor,
    positives: torch.Tensor,
    dims: Sequence[int] = (384, 256, 128, 64),
    weights: Sequence[float] | None = None,
    negatives: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Train every prefix of the embedding: ``sum_i weights[i] * loss_fn(truncate(x, dims[i]))``.

    loss_fn: a loss taking ``(queries, positives, ...)`` such as ``info_nce`` or
        ``triplet_loss`` (for which ``positives`` is the positive and ``negatives`` the negative).
    queries, positives: (B, D) float. negatives: optional (B*K, D) or (B, K, D) float, truncated
        like the others and passed on as the third positional argument.
    dims: prefix sizes, each in [1, D]. weights: one per dim, default all 1.
    kwargs: passed on to ``loss_fn`` (e.g. ``temperature=0.05``).
    Returns a scalar, the weighted SUM (not mean) of the per-dimension losses.

    As in sentence-transformers' ``MatryoshkaLoss``, each truncated prefix is L2-normalized again
    (at every dim, the full one included), so a model trained this way can be cut to any of
    ``dims`` at inference time and still be compared with cosine or dot product.
    """
    check_tensor("queries", queries, "(B, D)", floating=True)
    check_tensor("positives", positives, "(B, D)", floating=True)
    full_dim = queries.shape[-1]
    dims = list(dims)
    if not dims:
        raise ValueError("dims: expected at least one dimension, got an empty sequence")
    if any(not isinstance(d, int) or not 1 <= d <= full_dim for d in dims):
        raise ValueError(f"dims: expected ints in [1, D={full_dim}], got {dims}")
    weights = [1.0] * len(dims) if weights is None else list(weights)
    if len(weights) != len(dims):
        raise ValueError(f"weights: expected one weight per dim ({len(dims)}), got {len(weights)}")

    def truncate(x: torch.Tensor, dim: int) -> torch.Tensor:
        return F.normalize(x[..., :dim], p=2, dim=-1)

    total = queries.new_zeros(())
    for dim, weight in zip(dims, weights, strict=True):
        args = [truncate(queries, dim), truncate(positives, dim)]
        if negatives is not None:
            args.append(truncate(negatives, dim))
        total = total + weight * loss_fn(*args, **kwargs)
    return total


def expected_initial_loss(num_candidates: int) -> float:
    """The InfoNCE loss when all scores are equal: ``-log(1 / num_candidates) = log(num_candidates)``.

    A self-check for a freshly initialized model: B queries with in-batch negatives only should
    start near ``log(B)``.
    """
    if not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates: expected an int >= 1, got {num_candidates!r}")
    return math.log(num_candidates)
