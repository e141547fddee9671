"""Grading tests for 02_infonce.ipynb: the score matrix, InfoNCE, softmax entropy, temperature.

Beyond the self-checks: non-square and degenerate shapes, unnormalized inputs, several K and
temperatures, numerical stability at tau = 0.01 (cosine 1 / 0.01 = 100 overflows a naive exp in
float32), gradients, entropies at a temperature so small the softmax underflows to zeros.
References are loops in float64 written here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tinyir.grading.checks import assert_close, check

NOTEBOOK = "02_infonce.ipynb"
# tinyir's own answers: the student's process cannot call them while this notebook is graded.
REFERENCES = [
    "tinyir.losses:similarity_matrix",
    "tinyir.losses:info_nce",
    "tinyir.losses:multi_positive_info_nce",
]


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# -- score_matrix ------------------------------------------------------------------------------


def reference_scores(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(queries.shape[0], docs.shape[0], dtype=torch.float64)
    for i in range(queries.shape[0]):
        for j in range(docs.shape[0]):
            out[i, j] = float((queries[i].double() * docs[j].double()).sum())
    return out


@check("infonce.score_matrix", cases={
    "5x7 D=16": {"b": 5, "n": 7, "d": 16},
    "1x1 D=1": {"b": 1, "n": 1, "d": 1},
    "6x2 D=3": {"b": 6, "n": 2, "d": 3},
})
def scores_match_loop(score_matrix, b, n, d):
    """Random queries and documents of several shapes against the double loop."""
    queries, docs = _randn(b, d, seed=b * 100 + n), _randn(n, d, seed=b * 100 + n + 1)
    got = score_matrix(queries.clone(), docs.clone())
    assert_close(got, reference_scores(queries, docs), f"score_matrix of ({b}, {d}) and ({n}, {d})",
                 atol=1e-4)


@check("infonce.score_matrix")
def scores_are_plain_dot_products(score_matrix):
    """Vectors of length ~30 are not normalized: the scores are raw dot products."""
    queries, docs = 10 * _randn(4, 8, seed=1), 10 * _randn(5, 8, seed=2)
    got = score_matrix(queries.clone(), docs.clone())
    assert_close(got, reference_scores(queries, docs), "score_matrix of unnormalized vectors",
                 atol=1e-3)


@check("infonce.score_matrix")
def scores_float64(score_matrix):
    """float64 inputs keep float64 precision."""
    queries = _randn(3, 9, seed=3, dtype=torch.float64)
    docs = _randn(4, 9, seed=4, dtype=torch.float64)
    got = score_matrix(queries.clone(), docs.clone())
    assert_close(got, reference_scores(queries, docs), "score_matrix in float64", atol=1e-10)


# -- info_nce ----------------------------------------------------------------------------------


def reference_info_nce(queries, positives, negatives, temperature) -> float:
    """Mean over queries of logsumexp(logits) - logits[i], one query at a time, in float64."""
    q, p = queries.double(), positives.double()
    candidates = list(p)
    if negatives is not None:
        candidates += list(negatives.double().reshape(-1, negatives.shape[-1]))
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(F.cosine_similarity(q[i], c, dim=0, eps=1e-12)) / temperature
                  for c in candidates]
        top = max(logits)
        total += top + math.log(sum(math.exp(x - top) for x in logits)) - logits[i]
    return total / q.shape[0]


INFO_NCE_CASES = {
    "B=4, no negatives": {"b": 4, "k": 0, "d": 8, "tau": 0.05},
    "B=3, K=1": {"b": 3, "k": 1, "d": 8, "tau": 0.05},
    "B=5, K=3, D=16": {"b": 5, "k": 3, "d": 16, "tau": 0.05},
    "B=1, K=2": {"b": 1, "k": 2, "d": 4, "tau": 0.05},
    "tau=1": {"b": 4, "k": 2, "d": 8, "tau": 1.0},
    "tau=0.2, unnormalized inputs": {"b": 4, "k": 1, "d": 8, "tau": 0.2, "scale": 30.0},
}


@check("infonce.info_nce", cases=INFO_NCE_CASES)
def info_nce_matches_reference(info_nce, b, k, d, tau, scale=1.0):
    """Random batches, with and without hard negatives, several temperatures."""
    seed = 1000 * b + 10 * k + d
    q, p = scale * _randn(b, d, seed=seed), scale * _randn(b, d, seed=seed + 1)
    n = scale * _randn(b, k, d, seed=seed + 2) if k else None
    got = info_nce(q.clone(), p.clone(), None if n is None else n.clone(), temperature=tau)
    expected = torch.tensor(reference_info_nce(q, p, n, tau), dtype=torch.float64)
    assert_close(got, expected, f"info_nce with B={b}, K={k}, temperature={tau}", atol=1e-4,
                 rtol=1e-4)


@check("infonce.info_nce")
def info_nce_equal_similarities_is_log_n(info_nce):
    """All similarities equal: the loss is log(B + B*K)."""
    b, k, d = 6, 3, 5
    ones = torch.ones(b, d)
    got = info_nce(ones.clone(), ones.clone(), torch.ones(b, k, d), temperature=0.05)
    assert_close(got, torch.tensor(math.log(b + b * k)), "info_nce at equal similarities",
                 atol=1e-4)


@check("infonce.info_nce")
def info_nce_stable_at_small_temperature(info_nce):
    """tau = 0.01 with a query equal to its positive: logits of 100 must not overflow."""
    q = _randn(4, 8, seed=7)
    p, n = q.clone(), _randn(4, 2, 8, seed=8)
    got = info_nce(q.clone(), p, n.clone(), temperature=0.01)
    expected = torch.tensor(reference_info_nce(q, p, n, 0.01), dtype=torch.float64)
    assert_close(got, expected, "info_nce at temperature 0.01 (use log-softmax or cross_entropy)",
                 atol=1e-3, rtol=1e-3)


@check("infonce.info_nce")
def info_nce_gradient(info_nce, remote):
    """The loss is differentiable and its gradient matches the reference's."""
    q, p, n = _randn(3, 6, seed=20), _randn(3, 6, seed=21), _randn(3, 2, 6, seed=22)
    got = remote.new("tinyir.grading.probes:loss_and_grad", info_nce, q.clone(), p.clone(),
                     n.clone(), wrt=(0,), temperature=0.1)
    assert got["connected"], (
        "info_nce must return a tensor connected to the inputs' graph (no .item(), no detach)")
    q2 = q.clone().double().requires_grad_(True)
    candidates = F.normalize(torch.cat([p, n.reshape(-1, 6)]).double(), dim=-1)
    F.cross_entropy(F.normalize(q2, dim=-1) @ candidates.T / 0.1, torch.arange(3)).backward()
    assert_close(got["grads"][0], q2.grad, "the gradient of info_nce with respect to the queries",
                 atol=1e-4, rtol=1e-3)


# -- softmax_entropy ---------------------------------------------------------------------------


def reference_entropy(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    flat = scores.double().reshape(-1, scores.shape[-1])
    out = []
    for row in flat:
        logits = (row / temperature).tolist()
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        total = sum(weights)
        out.append(-sum(w / total * math.log(w / total) for w in weights if w > 0))
    return torch.tensor(out, dtype=torch.float64).reshape(scores.shape[:-1])


@check("infonce.softmax_entropy", cases={"N=2": {"n": 2}, "N=5": {"n": 5}, "N=100": {"n": 100}})
def entropy_uniform_is_log_n(softmax_entropy, n):
    """Equal scores: the entropy is log N, whatever the temperature."""
    got = softmax_entropy(torch.full((n,), 0.3), 0.7)
    assert_close(got, torch.tensor(math.log(n), dtype=torch.float64),
                 f"softmax_entropy of {n} equal scores", atol=1e-5)


@check("infonce.softmax_entropy", cases={
    "shape (10,), tau=2": {"shape": (10,), "tau": 2.0},
    "shape (3, 4, 6), tau=0.5": {"shape": (3, 4, 6), "tau": 0.5},
    "shape (2, 7), tau=0.05": {"shape": (2, 7), "tau": 0.05},
})
def entropy_matches_reference(softmax_entropy, shape, tau):
    """Random scores, batched over leading dimensions, several temperatures."""
    scores = _randn(*shape, seed=sum(shape))
    got = softmax_entropy(scores.clone(), tau)
    assert_close(got, reference_entropy(scores, tau), f"softmax_entropy of shape {shape} at "
                 f"temperature {tau}", atol=1e-5)


@check("infonce.softmax_entropy")
def entropy_finite_when_softmax_underflows(softmax_entropy):
    """tau = 1e-4: most probabilities are exactly 0 in float32, the entropy is ~0, not NaN."""
    scores = torch.tensor([[0.9, 0.2, -0.4, 0.1], [0.3, 0.8, 0.5, -0.9]])
    got = softmax_entropy(scores, 1e-4)
    assert_close(got, torch.zeros(2, dtype=torch.float64), "softmax_entropy at temperature 1e-4",
                 atol=1e-4)


# -- the temperature prediction ----------------------------------------------------------------


@check("infonce.prediction_temperature")
def prediction_is_right(prediction_temperature):
    """tau = 0.01 nearly one-hot, tau = 10 nearly uniform: answer "a"."""
    answer = str(prediction_temperature).strip().strip("\"'()").lower()
    assert answer == "a", (
        f"got {prediction_temperature!r}; run the temperature cells and compare the entropies "
        "with log N"
    )
