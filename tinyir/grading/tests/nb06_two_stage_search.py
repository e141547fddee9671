"""Grading tests for 06_two_stage_search.ipynb: the FAISS index, retrieve-then-rerank, latency.

Beyond the self-checks: the index against a brute-force cosine ranking written here, for torch
and NumPy inputs, float64, a transposed (non-contiguous) array, a single document, and a float32
input that must come back unchanged; the two-stage search with a fake deterministic reranker
(ties kept in first-stage order, scores as a list, an array or a tensor), first_k larger than the
corpus, final_k equal to first_k or larger than the corpus, the candidates and their order as
the reranker sees them, the timers (a reranker that sleeps), bad k's and no query at all; the
extrapolation on several inputs.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from tinyir.grading.checks import assert_close, check
from tinyir.grading.remote import ProcessStopped, StudentError

NOTEBOOK = "06_two_stage_search.ipynb"
# tinyir's own answers: the student's process cannot call them while this notebook is graded.
REFERENCES = [
    "tinyir.search:FaissIndex",
    "tinyir.retrievers:RerankRetriever",
]


def _randn(*shape: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)  # float64


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[list, list]:
    """Top-k cosine similarities and ids per query, one document at a time, in float64."""
    all_scores, all_ids = [], []
    for q in queries:
        scores = [float(np.dot(q, d) / (np.linalg.norm(q) * np.linalg.norm(d))) for d in docs]
        ids = sorted(range(len(docs)), key=lambda j: (-scores[j], j))[:k]
        all_scores.append([scores[j] for j in ids])
        all_ids.append(ids)
    return all_scores, all_ids


# -- build_index -------------------------------------------------------------------------------


def _as_input(x: np.ndarray, kind: str):
    if kind == "torch float32":
        return torch.from_numpy(x.astype(np.float32))
    if kind == "torch float64":
        return torch.from_numpy(x)
    if kind == "numpy float64":
        return x.copy()
    if kind == "numpy transposed":  # a (N, D) view of a (D, N) array: not C-contiguous
        return np.ascontiguousarray(x.T).T
    raise ValueError(kind)


@check("twostage.build_index", cases={
    "torch float32, N=50, D=8": {"n": 50, "d": 8, "kind": "torch float32"},
    "numpy float64, N=20, D=5": {"n": 20, "d": 5, "kind": "numpy float64"},
    "torch float64, N=30, D=16": {"n": 30, "d": 16, "kind": "torch float64"},
    "non-contiguous NumPy, N=25, D=6": {"n": 25, "d": 6, "kind": "numpy transposed"},
    "one document": {"n": 1, "d": 3, "kind": "numpy float64"},
})
def index_matches_brute_force(build_index, n, d, kind):
    """Unnormalized documents of several kinds: top-k ids and cosines as a brute-force scan."""
    docs = 4 * _randn(n, d, seed=n) + 1
    queries = _unit(_randn(4, d, seed=n + 1)).astype(np.float32)
    index = build_index(_as_input(docs, kind))
    assert index.ntotal == n, f"expected {n} documents in the index, got {index.ntotal}"
    assert index.d == d, f"expected dimension {d}, got {index.d}"
    k = min(5, n)
    scores, ids = index.search(queries, k)
    ref_scores, ref_ids = brute_force(queries.astype(np.float64), docs, k)
    assert ids.tolist() == ref_ids, f"{kind}: expected top-{k} ids {ref_ids}, got {ids.tolist()}"
    assert_close(torch.from_numpy(np.asarray(scores, dtype=np.float64)),
                 torch.tensor(ref_scores, dtype=torch.float64),
                 f"{kind}: the top-{k} scores (cosine similarities)", atol=1e-4)


@check("twostage.build_index")
def index_leaves_the_input_unchanged(build_index, remote):
    """A float32 NumPy input is not normalized in place (work on a copy)."""
    docs = (3 * _randn(10, 4, seed=3)).astype(np.float32)
    before = docs.copy()
    index, (docs,) = remote.new("tinyir.grading.probes:args_after_call", build_index, docs)
    assert index.ntotal == 10, f"expected 10 documents in the index, got {index.ntotal}"
    assert np.array_equal(docs, before), (
        "build_index changed the caller's array: faiss.normalize_L2 works in place, so "
        "normalize a copy")


@check("twostage.build_index")
def index_is_exact_inner_product(build_index):
    """The index is exact (a flat inner-product index): every document is found."""
    import faiss

    docs = _randn(40, 6, seed=4)
    index = build_index(docs)
    assert index.metric_type == faiss.METRIC_INNER_PRODUCT, (
        f"expected an inner-product index (faiss.IndexFlatIP), got metric {index.metric_type}")
    queries = _unit(docs).astype(np.float32)
    _, ids = index.search(queries, 1)
    assert ids[:, 0].tolist() == list(range(40)), (
        "each document's own (normalized) vector should find that document first")


# -- two_stage_search --------------------------------------------------------------------------


def _corpus(remote, n: int, d: int, seed: int):
    """Unit documents, their texts "doc <j>", an exact FAISS index over them (in the student's
    process, where two_stage_search runs)."""
    docs = _unit(_randn(n, d, seed=seed)).astype(np.float32)
    index = remote.new("faiss:IndexFlatIP", d)
    index.add(docs)
    return docs, [f"doc {j}" for j in range(n)], index


def _fake_scores(candidates, as_type="list"):
    """A deterministic reranker: (7 * j) mod 5 for "doc j", so ties are common."""
    scores = [float((7 * int(text.split()[1])) % 5) for text in candidates]
    if as_type == "array":
        return np.array(scores, dtype=np.float32)
    if as_type == "tensor":
        return torch.tensor(scores)
    return scores


def reference_two_stage(queries, docs, first_k, final_k):
    _, first = brute_force(queries.astype(np.float64), docs.astype(np.float64),
                           min(first_k, len(docs)))
    out = []
    for row in first:
        scores = _fake_scores([f"doc {j}" for j in row])
        order = sorted(range(len(row)), key=lambda c: -scores[c])  # stable: first-stage order
        out.append([row[c] for c in order[:final_k]])
    return out


TWO_STAGE_CASES = {
    "Q=3, N=40, first 10, final 4": {"q": 3, "n": 40, "first_k": 10, "final_k": 4},
    "first_k > N": {"q": 2, "n": 6, "first_k": 20, "final_k": 3},
    "final_k = first_k": {"q": 2, "n": 30, "first_k": 6, "final_k": 6},
    "N < final_k <= first_k": {"q": 1, "n": 4, "first_k": 10, "final_k": 8},
    "numpy queries, scores as an array": {"q": 4, "n": 25, "first_k": 8, "final_k": 5,
                                          "numpy": True, "as_type": "array"},
    "scores as a tensor": {"q": 2, "n": 25, "first_k": 7, "final_k": 7, "as_type": "tensor"},
}


@check("twostage.two_stage_search", cases=TWO_STAGE_CASES)
def two_stage_matches_reference(two_stage_search, remote, q, n, first_k, final_k, numpy=False,
                                as_type="list"):
    """Random unit vectors and a fake reranker with ties: against brute force + a stable sort."""
    docs, texts, index = _corpus(remote, n, 8, seed=10 * n + q)
    queries = _unit(_randn(q, 8, seed=n + q)).astype(np.float32)
    query_emb = queries.copy() if numpy else torch.from_numpy(queries.copy())
    ids, _ = two_stage_search(query_emb, [f"query {i}" for i in range(q)], index, list(texts),
                              lambda query, cands: _fake_scores(cands, as_type), first_k,
                              final_k)
    got = [[int(j) for j in row] for row in ids]
    expected = reference_two_stage(queries, docs, first_k, final_k)
    assert got == expected, (
        f"first_k={first_k}, final_k={final_k}, N={n}: expected {expected}, got {got}")


@check("twostage.two_stage_search")
def reranker_sees_candidates_in_first_stage_order(two_stage_search, remote):
    """rerank_fn is called once per query, with its text and the candidates best first."""
    docs, texts, index = _corpus(remote, 30, 8, seed=5)
    queries = _unit(_randn(3, 8, seed=6)).astype(np.float32)
    calls = []

    def rerank_fn(query, candidates):
        calls.append((query, [str(c) for c in candidates]))
        return _fake_scores(candidates)

    two_stage_search(torch.from_numpy(queries), ["a", "b", "c"], index, list(texts), rerank_fn,
                     5, 2)
    _, first = brute_force(queries.astype(np.float64), docs.astype(np.float64), 5)
    expected = [(name, [f"doc {j}" for j in row]) for name, row in zip("abc", first, strict=True)]
    assert calls == expected, f"expected the calls {expected}, got {calls}"


@check("twostage.two_stage_search")
def timers_measure_each_stage(two_stage_search, remote):
    """A reranker that sleeps 30 ms per query: the rerank timer sees it, the first stage not."""
    _, texts, index = _corpus(remote, 50, 8, seed=7)
    queries = torch.from_numpy(_unit(_randn(3, 8, seed=8)).astype(np.float32))

    def slow_rerank(query, candidates):
        time.sleep(0.03)
        return _fake_scores(candidates)

    _, seconds = two_stage_search(queries, ["a", "b", "c"], index, list(texts), slow_rerank, 5, 3)
    assert isinstance(seconds, dict) and set(seconds) == {"first_stage", "rerank"}, (
        f"expected {{'first_stage': s, 'rerank': s}}, got {seconds!r}")
    assert all(isinstance(s, float) and s >= 0 for s in seconds.values()), seconds
    assert seconds["rerank"] >= 0.085, (
        f"3 reranker calls of 30 ms each: expected rerank >= 0.09 s, got {seconds['rerank']:.4f}")
    assert seconds["first_stage"] < seconds["rerank"], (
        f"the first stage should not include the reranking: {seconds}")


@check("twostage.two_stage_search", cases={
    "final_k > first_k": {"first_k": 3, "final_k": 5, "name": "final_k"},
    "first_k = 0": {"first_k": 0, "final_k": 0, "name": "first_k"},
    "final_k = 0": {"first_k": 5, "final_k": 0, "name": "final_k"},
})
def bad_k_raises_naming_the_argument(two_stage_search, remote, first_k, final_k, name):
    """A ValueError whose message names the argument at fault."""
    _, texts, index = _corpus(remote, 10, 4, seed=9)
    queries = torch.from_numpy(_unit(_randn(1, 4, seed=9)).astype(np.float32))
    try:
        two_stage_search(queries, ["a"], index, list(texts), lambda q, c: _fake_scores(c),
                         first_k, final_k)
    except ProcessStopped:
        raise
    except StudentError as err:
        if err.kind == "not_implemented":
            raise
        assert err.message.startswith("ValueError") and name in err.message, (
            f"first_k={first_k}, final_k={final_k}: expected a ValueError naming {name}, got "
            f"{err.message}")
    else:
        raise AssertionError(f"first_k={first_k}, final_k={final_k}: expected a ValueError "
                             f"naming {name}, got no error")


@check("twostage.two_stage_search")
def no_query(two_stage_search, remote):
    """No query: no result, no reranker call, both timers present."""
    _, texts, index = _corpus(remote, 10, 4, seed=11)
    calls = []
    ids, seconds = two_stage_search(np.zeros((0, 4), dtype=np.float32), [], index, list(texts),
                                    lambda q, c: calls.append(q) or _fake_scores(c), 5, 2)
    assert list(ids) == [] and calls == [], f"expected [] and no call, got {ids!r}, {calls}"
    assert set(seconds) == {"first_stage", "rerank"}, f"expected both timers, got {seconds!r}"


# -- extrapolate_latency -----------------------------------------------------------------------


@check("twostage.extrapolate_latency", cases={
    "1k -> 1M": {"first": 0.0001, "n": 1000, "rerank": 0.4, "k": 20, "target": 1_000_000},
    "same size": {"first": 0.003, "n": 5000, "rerank": 0.2, "k": 10, "target": 5000},
    "first_k = 1, smaller target": {"first": 0.05, "n": 200_000, "rerank": 0.01, "k": 1,
                                    "target": 50_000},
})
def extrapolation_matches(extrapolate_latency, first, n, rerank, k, target):
    """The flat first stage scales with the corpus, the rerank does not; CE-only: one pass each."""
    got = extrapolate_latency(first, n, rerank, k, target)
    assert isinstance(got, dict) and {"two_stage", "cross_encoder_only"} <= set(got), (
        f"expected a dict with 'two_stage' and 'cross_encoder_only', got {got!r}")
    assert_close(got["two_stage"], first * target / n + rerank, "two_stage seconds", rtol=1e-9)
    assert_close(got["cross_encoder_only"], rerank / k * target, "cross_encoder_only seconds",
                 rtol=1e-9)
