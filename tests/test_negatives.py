"""Hard-negative mining: never returns a positive, respects the margins and the text filter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinyir.negatives import jaccard, mine_hard_negatives


def unit(rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


DOCS = unit([[1, 0, 0], [0.99, 0.1, 0], [0.9, 0.4, 0], [0.5, 0.8, 0], [0, 0, 1]])
QUERY = unit([[1, 0.05, 0]])


def test_top_non_positives_in_rank_order():
    mined = mine_hard_negatives(QUERY, DOCS, [{0}], num_negatives=2)
    assert mined == [[1, 2]]


def test_never_returns_a_positive():
    mined = mine_hard_negatives(QUERY, DOCS, [{0, 1}], num_negatives=3)
    assert not {0, 1} & set(mined[0]) and mined[0] == [2, 3, 4]


def test_relative_margin_drops_near_positive_scores():
    # doc 1 scores almost exactly like the positive: a likely false negative.
    mined = mine_hard_negatives(QUERY, DOCS, [{0}], num_negatives=2, relative_margin=0.05)
    assert 1 not in mined[0] and mined[0][0] == 2


def test_near_duplicate_text_filter():
    texts = ["return the cumulative sum of elements", "return the cumulative sum of elements.",
             "cumulative product", "mean", "log"]
    mined = mine_hard_negatives(QUERY, DOCS, [{0}], num_negatives=1, doc_texts=texts,
                                near_duplicate=0.8)
    assert mined == [[2]]
    assert jaccard(texts[0], texts[1]) == 1.0


def test_skip_top():
    assert mine_hard_negatives(QUERY, DOCS, [{0}], num_negatives=1, skip_top=1) == [[2]]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="positives"):
        mine_hard_negatives(QUERY, DOCS, [{0}, {1}])
    with pytest.raises(ValueError, match="doc_texts"):
        mine_hard_negatives(QUERY, DOCS, [{0}], near_duplicate=0.9)
    with pytest.raises(ValueError, match="num_negatives"):
        mine_hard_negatives(QUERY, DOCS, [{0}], num_negatives=0)


def test_negatives_from_any_ranking_equal_mining_from_embeddings():
    """The filters walk a ranking from any first stage; fed the dense ranking they give what
    mine_hard_negatives gives (it calls them), and without scores' margins only the texts count."""
    from tinyir.negatives import negatives_from_ranking
    from tinyir.search import exact_search

    scores, indices = exact_search(QUERY, DOCS, k=DOCS.shape[0])
    texts = ["return the cumulative sum of elements", "return the cumulative sum of elements.",
             "cumulative product", "mean", "log"]
    got = negatives_from_ranking(scores.tolist(), indices.tolist(), [{0}], 2, doc_texts=texts,
                                 near_duplicate=0.8)  # a BM25-style call: no margin
    assert got == mine_hard_negatives(QUERY, DOCS, [{0}], num_negatives=2, doc_texts=texts,
                                      near_duplicate=0.8) == [[2, 3]]
    with pytest.raises(ValueError, match="best_positive"):
        negatives_from_ranking(scores.tolist(), indices.tolist(), [{0}], 2, relative_margin=0.05)
    with pytest.raises(ValueError, match="doc_texts"):
        negatives_from_ranking(scores.tolist(), indices.tolist(), [{0}], 2, near_duplicate=0.8)
