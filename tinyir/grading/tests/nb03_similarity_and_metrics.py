"""Grading tests for 03_similarity_and_metrics.ipynb: normalization, nDCG@k, MaxSim.

Beyond the self-checks: batched and float64 normalization, the eps argument, vectors that are
parallel but not unit; graded nDCG with cut-offs, unretrieved and negatively graded documents,
queries without relevant documents, random rankings; MaxSim with left, right and query padding,
all-negative similarities, huge vectors at padded positions, bool masks and single tokens.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from tinyir.grading.checks import assert_close, check

NOTEBOOK = "03_similarity_and_metrics.ipynb"
# tinyir's own answers: the student's process cannot call them while this notebook is graded.
REFERENCES = [
    "tinyir.pooling:l2_normalize",
    "tinyir.metrics:ndcg_at_k",
    "tinyir.maxsim:max_sim",
    "tinyir.maxsim:max_sim_matrix",
    "tinyir.maxsim:max_sim_pairs",
]

AFTER_CALL = "tinyir.grading.probes:args_after_call"  # the arguments as the call left them


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# -- l2_normalize ------------------------------------------------------------------------------


@check("similarity.l2_normalize", cases={
    "(5, 7)": {"shape": (5, 7)}, "(3, 4, 6)": {"shape": (3, 4, 6)}, "(8,)": {"shape": (8,)},
})
def normalize_matches_reference(l2_normalize, shape):
    """Random tensors of several ranks: unit length along the last dimension."""
    x = 5 * _randn(*shape, seed=len(shape))
    got = l2_normalize(x.clone())
    assert_close(got, F.normalize(x.double(), dim=-1), f"l2_normalize of shape {shape}")


@check("similarity.l2_normalize")
def normalize_zero_vector_stays_zero(l2_normalize):
    """An all-zero row stays zero (no NaN)."""
    x = _randn(3, 4, seed=1)
    x[1] = 0
    assert_close(l2_normalize(x.clone()), F.normalize(x.double(), dim=-1),
                 "l2_normalize with an all-zero row")


@check("similarity.l2_normalize")
def normalize_honours_eps(l2_normalize):
    """eps=1 leaves vectors shorter than 1 as they are: x / max(||x||, eps)."""
    x = torch.tensor([[0.3, 0.4], [3.0, 4.0]])
    assert_close(l2_normalize(x.clone(), eps=1.0), torch.tensor([[0.3, 0.4], [0.6, 0.8]]),
                 "l2_normalize(x, eps=1.0)")


@check("similarity.l2_normalize")
def normalize_float64_and_inputs_intact(l2_normalize, remote):
    """float64 precision; the input is not modified in place."""
    x = _randn(4, 3, seed=2, dtype=torch.float64)
    copy = x.clone()
    got = l2_normalize(x)
    assert_close(got, F.normalize(copy, dim=-1), "l2_normalize in float64", atol=1e-12)
    _, (x,) = remote.new(AFTER_CALL, l2_normalize, x)
    assert_close(x, copy, "x after the call (it must not be modified)")


# -- cosine_equals_dot -------------------------------------------------------------------------


DIMS = {"D=4": {"d": 4}, "D=16": {"d": 16}, "D=64": {"d": 64}}


@check("similarity.cosine_equals_dot", cases=DIMS)
def raw_vectors_are_not_equal(cosine_equals_dot, d):
    """Random vectors of length ~3*sqrt(D): cosine and dot product differ."""
    a, b = 3 * _randn(d, seed=d), 3 * _randn(d, seed=d + 1)
    assert_close(cosine_equals_dot(a, b), False, f"cosine_equals_dot of two random {d}-d vectors")


@check("similarity.cosine_equals_dot", cases=DIMS)
def unit_vectors_are_equal(cosine_equals_dot, d):
    """The same vectors after normalization: cosine equals dot product."""
    a, b = F.normalize(_randn(d, seed=d), dim=0), F.normalize(_randn(d, seed=d + 1), dim=0)
    assert_close(cosine_equals_dot(a, b), True, f"cosine_equals_dot of two unit {d}-d vectors")


@check("similarity.cosine_equals_dot")
def parallel_but_not_unit(cosine_equals_dot):
    """a unit, b = 2a: cosine 1 but dot product 2."""
    a = F.normalize(_randn(8, seed=3), dim=0)
    assert_close(cosine_equals_dot(a, 2 * a), False, "cosine_equals_dot(a, 2a) with a unit")


@check("similarity.cosine_equals_dot")
def orthogonal_and_opposite_unit_vectors(cosine_equals_dot):
    """Orthogonal unit vectors (0 = 0) and opposite ones (-1 = -1) in float64."""
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert_close(cosine_equals_dot(e1, e2), True, "cosine_equals_dot of orthogonal unit vectors")
    assert_close(cosine_equals_dot(e1, -e1), True, "cosine_equals_dot of opposite unit vectors")


# -- ndcg_at_k ---------------------------------------------------------------------------------


def reference_ndcg(ranking: list[str], relevance: dict[str, int], k: int) -> float:
    dcg = 0.0
    for rank, doc in enumerate(ranking[:k], start=1):
        dcg += max(relevance.get(doc, 0), 0) / math.log2(rank + 1)
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


NDCG_CASES = {
    "graded": {"ranking": ["a", "b", "c", "d"], "relevance": {"a": 1, "c": 3, "d": 2}, "k": 10},
    "k cuts the ranking": {"ranking": ["a", "b", "c", "d", "e"], "relevance": {"d": 1}, "k": 3},
    "k=1": {"ranking": ["a", "b"], "relevance": {"a": 1, "b": 2}, "k": 1},
    "k longer than the ranking": {"ranking": ["x", "a"], "relevance": {"a": 2, "b": 1}, "k": 10},
    "relevant never retrieved": {"ranking": ["a", "b", "c"], "relevance": {"a": 1, "z": 3},
                                 "k": 10},
    "negative and zero grades": {"ranking": ["a", "b", "c"],
                                 "relevance": {"a": -1, "b": 0, "c": 2}, "k": 10},
    "ideal cut at k": {"ranking": [f"d{i}" for i in range(15)],
                       "relevance": {f"d{i}": 1 for i in range(15)}, "k": 10},
    "unjudged documents": {"ranking": ["u1", "u2", "a", "u3"], "relevance": {"a": 1}, "k": 4},
}


@check("metrics.ndcg_at_k", cases=NDCG_CASES)
def ndcg_hand_cases(ndcg_at_k, ranking, relevance, k):
    """Small rankings whose nDCG is easy to compute by hand."""
    got = ndcg_at_k(list(ranking), dict(relevance), k)
    assert_close(got, reference_ndcg(ranking, relevance, k),
                 f"ndcg_at_k({ranking}, {relevance}, k={k})", atol=1e-9)


@check("metrics.ndcg_at_k")
def ndcg_no_relevant_document(ndcg_at_k):
    """No relevant document at all: 0.0, not a ZeroDivisionError."""
    got = ndcg_at_k(["a", "b"], {"a": 0, "c": -1}, 10)
    assert_close(got, 0.0, "ndcg_at_k without relevant documents")


@check("metrics.ndcg_at_k")
def ndcg_default_k_is_10(ndcg_at_k):
    """Called without k it is nDCG@10."""
    ranking = [f"d{i}" for i in range(20)]
    relevance = {"d3": 1, "d12": 2}
    assert_close(ndcg_at_k(ranking, relevance), reference_ndcg(ranking, relevance, 10),
                 "ndcg_at_k(ranking, relevance) without k", atol=1e-9)


@check("metrics.ndcg_at_k", weight=2)
def ndcg_random_rankings(ndcg_at_k):
    """50 random rankings, graded judgments and cut-offs."""
    rng = random.Random(0)
    for case in range(50):
        docs = [f"d{i}" for i in range(rng.randint(1, 30))]
        ranking = rng.sample(docs, rng.randint(1, len(docs)))
        relevance = {doc: rng.randint(-1, 3) for doc in rng.sample(docs, rng.randint(0, len(docs)))}
        k = rng.choice([1, 3, 5, 10, 20])
        assert_close(ndcg_at_k(list(ranking), dict(relevance), k),
                     reference_ndcg(ranking, relevance, k),
                     f"random case {case}: ndcg_at_k({ranking}, {relevance}, k={k})", atol=1e-9)


# -- max_sim -----------------------------------------------------------------------------------


def reference_max_sim(q, q_mask, d, d_mask) -> torch.Tensor:
    q, d = q.double(), d.double()
    out = []
    for b in range(d.shape[0]):
        total = 0.0
        for i in range(q.shape[0]):
            if q_mask[i]:
                total += max(float(q[i] @ d[b, j]) for j in range(d.shape[1]) if d_mask[b, j])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def doc_masks(b: int, ld: int, padding: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, ld + 1, (b,), generator=g)
    lengths[0] = 1
    positions = torch.arange(ld)
    if padding == "right":
        return (positions[None, :] < lengths[:, None]).long()
    return (positions[None, :] >= (ld - lengths)[:, None]).long()


MAX_SIM_CASES = {
    "right-padded docs": {"lq": 5, "b": 4, "ld": 7, "dim": 8, "padding": "right", "q_pad": 0},
    "left-padded docs": {"lq": 4, "b": 3, "ld": 6, "dim": 5, "padding": "left", "q_pad": 0},
    "padded query": {"lq": 6, "b": 3, "ld": 5, "dim": 4, "padding": "right", "q_pad": 2},
    "B=1, Ld=1": {"lq": 3, "b": 1, "ld": 1, "dim": 4, "padding": "right", "q_pad": 1},
}


@check("colbert.max_sim", cases=MAX_SIM_CASES)
def max_sim_matches_loop(max_sim, lq, b, ld, dim, padding, q_pad):
    """Random queries and documents with padding on either side, against a loop."""
    seed = lq * 1000 + b * 100 + ld * 10 + dim
    q, d = _randn(lq, dim, seed=seed), _randn(b, ld, dim, seed=seed + 1)
    q_mask = torch.ones(lq, dtype=torch.long)
    q_mask[lq - q_pad:] = 0
    d_mask = doc_masks(b, ld, padding, seed)
    got = max_sim(q.clone(), q_mask.clone(), d.clone(), d_mask.clone())
    assert_close(got, reference_max_sim(q, q_mask, d, d_mask),
                 f"max_sim with Lq={lq} ({q_pad} padded), B={b}, Ld={ld}, {padding} padding",
                 atol=1e-4)


@check("colbert.max_sim", weight=2)
def max_sim_all_negative(max_sim):
    """Every similarity negative: a padded position (0 if zero-filled) must still never win."""
    q = _randn(4, 6, seed=5).abs() + 0.1
    d = -(_randn(3, 5, 6, seed=6).abs() + 0.1)
    q_mask = torch.tensor([1, 1, 1, 0])
    d_mask = doc_masks(3, 5, "right", seed=7)
    got = max_sim(q.clone(), q_mask.clone(), d.clone(), d_mask.clone())
    assert_close(got, reference_max_sim(q, q_mask, d, d_mask),
                 "max_sim when every similarity is negative (fill padding with -inf)", atol=1e-4)


@check("colbert.max_sim")
def max_sim_huge_padding_vectors(max_sim):
    """Padded document positions hold huge vectors aligned with the query: they must not count."""
    q = _randn(3, 4, seed=8)
    d = _randn(2, 6, 4, seed=9)
    d_mask = doc_masks(2, 6, "left", seed=10)
    d[d_mask == 0] = 1e3 * q.sum(dim=0)
    q_mask = torch.ones(3, dtype=torch.long)
    got = max_sim(q.clone(), q_mask, d.clone(), d_mask.clone())
    assert_close(got, reference_max_sim(q, q_mask, d, d_mask),
                 "max_sim with huge vectors at padded document positions", atol=1e-3)


@check("colbert.max_sim")
def max_sim_bool_masks_float64(max_sim, remote):
    """bool masks and float64 vectors; the inputs are not modified."""
    q, d = _randn(4, 5, seed=11, dtype=torch.float64), _randn(3, 6, 5, seed=12, dtype=torch.float64)
    q_mask = torch.tensor([True, True, False, True])
    d_mask = doc_masks(3, 6, "right", seed=13).bool()
    copies = [t.clone() for t in (q, q_mask, d, d_mask)]
    got = max_sim(q, q_mask, d, d_mask)
    assert_close(got, reference_max_sim(*copies), "max_sim with bool masks in float64", atol=1e-9)
    _, (q, q_mask, d, d_mask) = remote.new(AFTER_CALL, max_sim, q, q_mask, d, d_mask)
    for name, tensor, copy in zip(("q", "q_mask", "d", "d_mask"), (q, q_mask, d, d_mask), copies,
                                  strict=True):
        assert_close(tensor, copy, f"{name} after the call (it must not be modified)")
