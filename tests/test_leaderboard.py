"""tinyir.course.leaderboard: the published MTEB(eng, v1) table and what is computed from it."""

from __future__ import annotations

import doctest

import pytest
from scipy.stats import spearmanr

import tinyir.course.leaderboard as lb
from tinyir.course.leaderboard import (
    CATEGORIES,
    Published,
    bert_parameters,
    bytes_per_million,
    compare_rankings,
    dataset_weighted_average,
    published,
    published_rerankers,
    ranking,
    top,
    top_average,
    unweighted_category_mean,
)


def _row(model, average, retrieval=None, dim=8, params=None):
    return Published(model, average, retrieval, dim, params, 2024, f"hand-made {model}")


TINY = [_row("a", 70.0, 50.0), _row("b", 60.0, 55.0), _row("c", 50.0, 40.0), _row("d", 65.0)]


def test_every_row_has_a_source_and_plausible_figures():
    rows = published()
    assert len(rows) >= 6
    assert len({r.model for r in rows}) == len(rows)
    for r in rows:
        assert r.source.strip(), r.model
        assert 0 < r.average < 100, r
        assert r.retrieval is None or 0 < r.retrieval < r.average, r   # retrieval is the hard column
        assert r.dim > 0
        assert r.params is None or 1e6 < r.params < 1e11, r
        assert 2019 <= r.year <= 2025
        for name, score in r.categories.items():
            assert name in lb.CATEGORY_NAMES and 0 < score < 100, (r.model, name)


def test_published_returns_a_fresh_list():
    rows = published()
    rows.clear()
    assert published()


def test_the_eight_categories_and_the_56_datasets():
    assert len(CATEGORIES) == 8
    assert {c.name for c in CATEGORIES} == {"classification", "clustering", "pair classification",
                                            "reranking", "retrieval", "STS", "summarization",
                                            "bitext mining"}
    assert sum(c.datasets for c in CATEGORIES) == 56
    metric = {c.name: c.metric for c in CATEGORIES}
    assert metric["retrieval"] == "nDCG@10" and metric["reranking"] == "MAP"
    assert "Spearman" in metric["STS"] and "V-measure" == metric["clustering"]


def test_the_published_average_is_weighted_by_datasets_not_categories():
    """The BGE card's rows: the 56-dataset average is reproduced from the category means to
    their rounding (each is given to 0.01), and the plain mean of the categories is not it."""
    with_categories = [r for r in published() if r.categories]
    assert len(with_categories) >= 4
    for r in with_categories:
        assert dataset_weighted_average(r.categories) == pytest.approx(r.average, abs=0.01), r.model
        assert abs(unweighted_category_mean(r.categories) - r.average) > 0.5, r.model


def test_dataset_weighted_average_by_hand():
    scores = {c.name: 0.0 for c in CATEGORIES if c.datasets}
    scores["retrieval"] = 56.0
    assert dataset_weighted_average(scores) == pytest.approx(15.0)   # 15 of 56 datasets
    with pytest.raises(ValueError, match="missing"):
        dataset_weighted_average({"retrieval": 50.0})
    with pytest.raises(ValueError, match="category_scores key"):
        dataset_weighted_average({**scores, "retreival": 1.0})


def test_bert_parameters_match_real_checkpoints():
    # all-MiniLM-L6-v2 as the course loads it (no pooler), and the 22.7M its card counts
    assert bert_parameters(6, 384, 1536) == 22_565_376
    assert bert_parameters(6, 384, 1536, pooler=True) == 22_713_216
    # BERT-base and BERT-large checkpoints (with their pooler): 109M and 335M
    assert bert_parameters(12, 768, 3072, pooler=True) == 109_482_240
    assert bert_parameters(24, 1024, 4096, pooler=True) == 335_141_888
    with pytest.raises(ValueError, match="layers"):
        bert_parameters(0, 384, 1536)


@pytest.mark.slow
def test_bert_parameters_equal_the_minilm_the_course_loads():
    from tinyir.biencoder import BiEncoder

    model = BiEncoder.minilm()
    row = next(r for r in published() if r.model == "all-MiniLM-L6-v2")
    assert row.params == sum(p.numel() for p in model.parameters())
    assert row.dim == model.embedding_dim


def test_ranking_on_a_tiny_table():
    assert ranking("average", TINY) == ["a", "d", "b", "c"]
    assert ranking("retrieval", TINY) == ["b", "a", "c"]          # d has no retrieval figure


def test_compare_rankings_on_a_tiny_table():
    cmp = compare_rankings("average", "retrieval", TINY)
    assert cmp.rank_a == {"a": 1, "b": 2, "c": 3} and cmp.rank_b == {"b": 1, "a": 2, "c": 3}
    assert cmp.moved == ["a", "b"] and cmp.left_out == ["d"]
    assert cmp.spearman == pytest.approx(0.5)                    # 1 - 6 * 2 / (3 * 8)
    assert cmp.spearman == pytest.approx(spearmanr([70, 60, 50], [50, 55, 40]).statistic)


def test_compare_rankings_on_the_data():
    rows = published()
    cmp = compare_rankings(rows=rows)
    both = [r for r in rows if r.retrieval is not None]
    expected = spearmanr([r.average for r in both], [r.retrieval for r in both]).statistic
    assert cmp.spearman == pytest.approx(expected)
    assert set(cmp.rank_a) == {r.model for r in both}
    assert set(cmp.left_out) == {r.model for r in rows if r.retrieval is None}
    for m in cmp.moved:
        assert cmp.rank_a[m] != cmp.rank_b[m]


def test_top_average_on_the_data_and_by_hand():
    rows = published()
    model, score, source = top_average(rows)
    assert score == max(r.average for r in rows)
    assert source == next(r.source for r in rows if r.model == model)
    assert top_average(TINY)[:2] == ("a", 70.0)
    assert top("retrieval", TINY).model == "b"


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="by: expected one of"):
        ranking("ndcg", TINY)
    with pytest.raises(ValueError, match="by_b"):
        compare_rankings("average", "mrr", TINY)
    with pytest.raises(ValueError, match="empty table"):
        top_average([])
    with pytest.raises(ValueError, match="at least two models"):
        compare_rankings(rows=[_row("a", 70.0, 50.0), _row("d", 65.0)])
    with pytest.raises(ValueError, match="no row has"):
        top("retrieval", [_row("d", 65.0)])


def test_bytes_per_million_is_dims_times_four_at_fp32():
    for r in published():
        assert bytes_per_million(r) == 1_000_000 * r.dim * 4
        assert bytes_per_million(r, "fp16") == 1_000_000 * r.dim * 2


def test_rerankers_have_sources_and_plausible_figures():
    rows = published_rerankers()
    assert rows
    for r in rows:
        assert r.source.strip() and r.layers > 0
        assert 0 < r.mrr10_msmarco_dev < r.ndcg10_trec_dl19 < 100


def test_docstring_examples():
    result = doctest.testmod(lb, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0
