"""tinyir.metrics against hand arithmetic and against pytrec_eval (the C trec_eval)."""

from __future__ import annotations

import doctest
import itertools
import math
import random

import numpy as np
import pytest
import torch

import tinyir.metrics
from tinyir.metrics import (
    PairedDifference,
    average_precision_at_k,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    per_query,
    precision_at_k,
    rank_documents,
    recall_at_k,
    run_from_topk,
)

pytrec_eval = pytest.importorskip("pytrec_eval")

# q1 ranks d2 > d3 > d5 > d4 > d1; relevant: d1 (grade 2), d2 (1), d4 (1); d3 judged 0.
RUN = {
    "q1": {"d1": 0.1, "d2": 0.9, "d3": 0.8, "d5": 0.7, "d4": 0.5},
    "q2": {"y": 1.0, "x": 0.5},
    "q3": {"z": 1.0},
}
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d4": 1},
    "q2": {"x": 1},
    "q3": {"z": 0},  # no relevant document: not averaged
    "q4": {"w": 1},  # missing from the run: scores 0
}


def test_rank_documents_ties_by_doc_id_descending():
    assert rank_documents(RUN["q1"]) == ["d2", "d3", "d5", "d4", "d1"]
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
    assert rank_documents({"d10": 0.5, "d9": 0.5}) == ["d9", "d10"]  # string order, not numeric


def test_hand_computed_single_query():
    run, rel = RUN["q1"], QRELS["q1"]
    assert precision_at_k(run, rel, 1) == 1.0
    assert precision_at_k(run, rel, 3) == pytest.approx(1 / 3, abs=1e-12)
    assert precision_at_k(run, rel, 10) == pytest.approx(3 / 10, abs=1e-12)  # divided by k
    assert recall_at_k(run, rel, 3) == pytest.approx(1 / 3, abs=1e-12)
    assert recall_at_k(run, rel, 5) == 1.0
    assert mrr_at_k(run, rel, 1) == 1.0
    # DCG@3 = 1/log2(2); ideal grades (2, 1, 1) -> 2/log2(2) + 1/log2(3) + 1/log2(4)
    ideal = 2 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(run, rel, 3) == pytest.approx(1 / ideal, abs=1e-12)
    # DCG@5 adds d4 at rank 4 (1/log2 5) and d1 at rank 5 (2/log2 6)
    dcg5 = 1 + 1 / math.log2(5) + 2 / math.log2(6)
    assert ndcg_at_k(run, rel, 5) == pytest.approx(dcg5 / ideal, abs=1e-12)
    # relevant at ranks 1, 4, 5: (1/1 + 2/4 + 3/5) / 3 relevant
    assert average_precision_at_k(run, rel, 5) == pytest.approx(0.7, abs=1e-12)
    assert average_precision_at_k(run, rel, 3) == pytest.approx(1 / 3, abs=1e-12)
    # a ranked list of ids works the same as a score dict
    assert ndcg_at_k(["d2", "d3", "d5", "d4", "d1"], rel, 5) == ndcg_at_k(run, rel, 5)


def test_ties_change_the_rank():
    rel = {"a": 1}
    assert mrr_at_k({"a": 1.0, "b": 1.0}, rel, 10) == 0.5  # "b" > "a" goes first
    assert mrr_at_k({"a": 1.0, "0": 1.0}, rel, 10) == 1.0  # "a" > "0" goes first


def test_mean_metrics_hand_computed():
    result = mean_metrics(RUN, QRELS, k_values=(1, 5))
    # Averaged over q1, q2, q4 (q3 has no relevant doc); q4 is missing from the run -> 0.
    assert result["mrr@1"] == pytest.approx((1 + 0 + 0) / 3, abs=1e-12)
    assert result["mrr@5"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-12)
    assert result["recall@5"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-12)
    assert result["precision@1"] == pytest.approx(1 / 3, abs=1e-12)
    ndcg_q2 = (1 / math.log2(3)) / 1.0
    ideal_q1 = 2 + 1 / math.log2(3) + 0.5
    ndcg_q1 = (1 + 1 / math.log2(5) + 2 / math.log2(6)) / ideal_q1
    assert result["ndcg@5"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3, abs=1e-12)
    assert result["map@5"] == pytest.approx((0.7 + 0.5 + 0) / 3, abs=1e-12)
    assert set(result) == {f"{m}@{k}" for m in ("ndcg", "recall", "mrr", "map", "precision")
                           for k in (1, 5)}


def test_negative_grades_count_as_zero_gain():
    rel = {"bad": -1, "good": 1}
    assert ndcg_at_k({"bad": 2.0, "good": 1.0}, rel, 10) == pytest.approx(
        (1 / math.log2(3)) / 1.0, abs=1e-12
    )
    assert recall_at_k({"bad": 2.0}, rel, 10) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="k"):
        recall_at_k(RUN["q1"], QRELS["q1"], 0)
    with pytest.raises(TypeError, match="ranking"):
        ndcg_at_k("d1", QRELS["q1"], 3)
    with pytest.raises(ValueError, match="qrels"):
        mean_metrics(RUN, {"q3": {"z": 0}})
    with pytest.raises(ValueError, match="k_values"):
        mean_metrics(RUN, QRELS, k_values=())


def random_run_and_qrels(seed: int, num_queries: int = 40, num_docs: int = 300):
    rng = random.Random(seed)
    doc_ids = [f"d{i}" for i in range(num_docs)]
    run, qrels = {}, {}
    for q in range(num_queries):
        qid = f"q{q}"
        retrieved = rng.sample(doc_ids, rng.randint(1, 150))
        # One decimal place: many tied scores, so the tie-break rule matters.
        run[qid] = {d: round(rng.random(), 1) for d in retrieved}
        judged = rng.sample(doc_ids, rng.randint(1, 40))
        qrels[qid] = {d: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for d in judged}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytrec_eval_randomized(seed):
    run, qrels = random_run_and_qrels(seed)
    measures = {"ndcg_cut_10", "ndcg_cut_100", "recall_10", "recall_100", "P_10", "map_cut_100",
                "recip_rank"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    for qid in run:
        want, rel, ranking = expected[qid], qrels[qid], run[qid]
        assert abs(ndcg_at_k(ranking, rel, 10) - want["ndcg_cut_10"]) < 1e-9
        assert abs(ndcg_at_k(ranking, rel, 100) - want["ndcg_cut_100"]) < 1e-9
        assert abs(recall_at_k(ranking, rel, 10) - want["recall_10"]) < 1e-9
        assert abs(recall_at_k(ranking, rel, 100) - want["recall_100"]) < 1e-9
        assert abs(precision_at_k(ranking, rel, 10) - want["P_10"]) < 1e-9
        assert abs(average_precision_at_k(ranking, rel, 100) - want["map_cut_100"]) < 1e-9
        assert abs(mrr_at_k(ranking, rel, 1000) - want["recip_rank"]) < 1e-9

    # MRR@10 = trec_eval's recip_rank on the run cut to its top 10.
    cut_run = {qid: {d: run[qid][d] for d in rank_documents(run[qid])[:10]} for qid in run}
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut_run)
    for qid in run:
        assert abs(mrr_at_k(run[qid], qrels[qid], 10) - cut[qid]["recip_rank"]) < 1e-9

    # mean_metrics() averages the same numbers over queries with a relevant doc.
    averaged = mean_metrics(run, qrels, k_values=(10, 100))
    judged = [qid for qid in qrels if any(g > 0 for g in qrels[qid].values())]
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"),
                         ("map@100", "map_cut_100"), ("precision@10", "P_10")):
        mean = sum(expected[qid][theirs] for qid in judged) / len(judged)
        assert abs(averaged[ours] - mean) < 1e-9, ours


def test_run_from_topk_numpy_and_torch():
    scores = np.array([[0.9, 0.5], [0.7, -1.0]], dtype=np.float32)
    indices = np.array([[2, 0], [1, -1]])
    expected = {"qa": {"c": pytest.approx(0.9), "a": 0.5}, "qb": {"b": pytest.approx(0.7)}}
    assert run_from_topk(["qa", "qb"], ["a", "b", "c"], scores, indices) == expected
    assert run_from_topk(
        ["qa", "qb"], ["a", "b", "c"], torch.from_numpy(scores), torch.from_numpy(indices)
    ) == expected
    with pytest.raises(ValueError, match="query_ids"):
        run_from_topk(["qa"], ["a", "b", "c"], scores, indices)
    with pytest.raises(ValueError, match="scores and indices"):
        run_from_topk(["qa", "qb"], ["a", "b", "c"], scores, indices[:, :1])
    with pytest.raises(ValueError, match="indices"):
        run_from_topk(["qa", "qb"], ["a", "b"], scores, indices)


# ---- per-query scores and the paired bootstrap -------------------------------------------------


def test_per_query_matches_mean_metrics():
    scores = per_query(RUN, QRELS, "ndcg@5")
    assert set(scores) == {"q1", "q2", "q4"}  # judged queries only; q4 (missing) scores 0
    assert scores["q4"] == 0.0
    assert scores["q2"] == pytest.approx(1 / math.log2(3), abs=1e-12)
    for metric in ("ndcg@5", "recall@1", "mrr@5", "map@5", "precision@1"):
        values = per_query(RUN, QRELS, metric)
        assert sum(values.values()) / len(values) == pytest.approx(
            mean_metrics(RUN, QRELS, k_values=(1, 5))[metric], abs=1e-12
        )
    with pytest.raises(ValueError, match="metric"):
        per_query(RUN, QRELS, "ndcg")
    with pytest.raises(ValueError, match="metric"):
        per_query(RUN, QRELS, "bleu@10")


def exact_bootstrap_quantile(differences, level):
    """The level-quantile of the mean of n draws with replacement, by enumerating all n**n."""
    n = len(differences)
    means = sorted(sum(draw) / n for draw in itertools.product(differences, repeat=n))
    cdf = np.arange(1, len(means) + 1) / len(means)
    return means[int(np.searchsorted(cdf, level))]


def test_paired_bootstrap_hand_computed():
    # differences (0, 0.25, 0.5, 0.5): all 4**4 = 256 resamples enumerated. P(mean <= 0.0625) is
    # 5/256 < 2.5% < P(mean <= 0.125) = 19/256, and P(mean <= 0.4375) = 240/256 < 97.5%, so the
    # exact 95% percentile interval is [0.125, 0.5]; 10,000 resamples land on the same atoms.
    a, b = [0.5, 0.75, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]
    differences = [x - y for x, y in zip(a, b, strict=True)]
    low = exact_bootstrap_quantile(differences, 0.025)
    high = exact_bootstrap_quantile(differences, 0.975)
    assert (low, high) == (0.125, 0.5)
    for seed in range(5):  # not one lucky seed
        result = paired_bootstrap(a, b, seed=seed)
        assert (result.low, result.high) == (low, high)
        assert result.difference == pytest.approx(0.3125, abs=1e-12)
        assert result.n == 4 and result.confidence == 0.95 and result.significant

    # two queries, differences (0, 1): resample means 0, 0.5, 1 with probability 1/4, 1/2, 1/4.
    # A 40% interval (30th to 70th percentile) is exactly [0.5, 0.5]; 95% is [0, 1].
    assert (paired_bootstrap([0, 1], [0, 0], confidence=0.4).low,
            paired_bootstrap([0, 1], [0, 0], confidence=0.4).high) == (0.5, 0.5)
    wide = paired_bootstrap([0, 1], [0, 0])
    assert (wide.low, wide.high) == (0.0, 1.0) and not wide.significant


def test_paired_bootstrap_seeded_and_order_free():
    rng = np.random.default_rng(7)
    a = {f"q{i}": float(x) for i, x in enumerate(rng.random(300))}
    b = {f"q{i}": float(x) for i, x in enumerate(rng.random(300))}
    first = paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3) == first  # same seed, same interval (same code path)
    shuffled = dict(reversed(list(a.items())))
    assert paired_bootstrap(shuffled, b, seed=3) == first  # pairs by key, not by dict order
    assert paired_bootstrap(a, b, seed=4) != first


def test_paired_bootstrap_equal_inputs_give_zero():
    values = {"q1": 0.3, "q2": 0.9, "q3": 0.0}
    result = paired_bootstrap(values, dict(values))
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.significant
    assert "no measurable difference on these 3 queries" in result.describe()


def test_paired_bootstrap_clear_effect_and_noise():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    better = paired_bootstrap(base + 0.05 + 0.01 * rng.standard_normal(200), base, metric="x")
    assert better.significant and better.low > 0.04 and better.high < 0.06
    assert better.describe("new", "old").endswith("new beats old.")
    worse = paired_bootstrap(base, base + 0.05)
    assert worse.significant and worse.high < 0
    assert worse.describe("new", "old").endswith("old beats new.")
    # symmetric noise: +-0.1 in equal numbers, mean exactly 0
    noise = np.array([0.1, -0.1] * 100)
    null = paired_bootstrap(base + noise, base)
    assert not null.significant and null.low < 0 < null.high
    assert abs(null.difference) < 1e-12
    # the interval shrinks like 1/sqrt(n): 4x the queries, about half the width
    many = paired_bootstrap(np.tile(base + noise, 4), np.tile(base, 4))
    ratio = (many.high - many.low) / (null.high - null.low)
    assert 0.4 < ratio < 0.6


def test_paired_bootstrap_bad_arguments():
    with pytest.raises(ValueError, match="same query ids"):
        paired_bootstrap({"q1": 1.0, "q2": 0.0}, {"q1": 1.0, "q3": 0.0})
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap([1.0, 0.0, 0.5], [1.0, 0.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap([1.0], [0.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0, 0.0], [0.0, 0.0], confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap([1.0, 0.0], [0.0, 0.0], n_resamples=0)
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([1.0, float("nan")], [0.0, 0.0])
    with pytest.raises(TypeError, match="a and b"):
        paired_bootstrap({"q1": 1.0, "q2": 0.0}, [1.0, 0.0])


def test_paired_difference_describe():
    tie = PairedDifference(0.004, -0.01, 0.018, n=200, confidence=0.95, metric="nDCG@10")
    assert tie.describe("hard", "in-batch") == (
        "hard - in-batch = +0.004 nDCG@10 (95% CI [-0.010, +0.018], n=200 queries): "
        "no measurable difference on these 200 queries."
    )


def test_metrics_docstring_examples():
    assert doctest.testmod(tinyir.metrics, raise_on_error=False).failed == 0
