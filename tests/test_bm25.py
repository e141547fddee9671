"""tinyir.bm25 against hand arithmetic and against bm25s on the same tokens."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tinyir.bm25 import BM25, ENGLISH_STOPWORDS, tokenize
from tinyir.testing import assert_close

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

WORDS = (
    "retrieval ranking rankings ranked query queries document documents embedding embeddings "
    "vector vectors search searching searched index indexes indexing token tokens tokenizer "
    "model models training trained train loss losses batch batches negative negatives "
    "positive positives cosine similarity similarities dense sparse lexical score scores "
    "scoring transformer transformers attention encoder encoders cross bi late interaction"
).split()
FILLER = sorted(ENGLISH_STOPWORDS) + ["we", "our", "very", "fast", "slow", "new", "old"]


def synthetic_texts(num: int, seed: int, min_len: int = 3, max_len: int = 40) -> list[str]:
    """Real-ish sentences: Zipf-like topical words, inflections, stopwords and punctuation."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]
    texts = []
    for _ in range(num):
        length = rng.randint(min_len, max_len)
        words = [
            rng.choices(WORDS, weights)[0] if rng.random() < 0.7 else rng.choice(FILLER)
            for _ in range(length)
        ]
        if rng.random() < 0.5:
            words[0] = words[0].capitalize()
        texts.append(" ".join(words) + rng.choice([".", "!", "?", ", 2024."]))
    return texts


def test_tokenize_matches_bm25s():
    texts = synthetic_texts(50, seed=0) + ["The CATS were running; a dog ran. I x 42 ok"]
    expected = bm25s.tokenize(
        texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
        show_progress=False,
    )
    assert [tokenize(t) for t in texts] == expected
    assert tokenize("The CATS were running; a dog ran. I x 42") == ["cat", "were", "run", "dog",
                                                                     "ran", "42"]
    assert tokenize("The cats", stopwords=None, stemmer=None) == ["the", "cats"]
    assert tokenize("The cats", stopwords=["cats"]) == ["the"]


def test_english_stopwords_are_bm25s_list():
    from bm25s.stopwords import STOPWORDS_EN

    assert ENGLISH_STOPWORDS == frozenset(STOPWORDS_EN)


def test_hand_computed_tiny_example():
    docs = [["cat", "sat"], ["dog", "bark"], ["cat", "dog", "cat", "eat"]]
    bm25 = BM25(k1=1.5, b=0.75)
    bm25.index(docs, progress=False)
    # N = 3, lengths (2, 2, 4), avgdl = 8/3. "cat" is in docs 0 and 2: df = 2.
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    doc0 = idf_cat * 1 / (1 + 1.5 * (1 - 0.75 + 0.75 * 2 / (8 / 3)))  # tf = 1, |d| = 2
    doc2 = idf_cat * 2 / (2 + 1.5 * (1 - 0.75 + 0.75 * 4 / (8 / 3)))  # tf = 2, |d| = 4
    scores = bm25.score([["cat"]])
    assert_close(scores, [[doc0, 0.0, doc2]], what="float32 BM25 vs hand arithmetic")
    top_scores, top_ids = bm25.search([["cat"]], k=2)
    # doc0 = idf / 2.21875 < doc2 = 2 idf / 4.0625: the second "cat" outweighs the longer doc.
    assert doc2 > doc0
    assert top_ids.tolist() == [[2, 0]]
    assert_close(top_scores, [[doc2, doc0]], what="search vs hand arithmetic")
    # A query term repeated twice counts twice; unknown terms are ignored.
    assert_close(bm25.score([["cat", "cat", "zebra"]]), 2 * scores, what="repeated term")


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_matches_bm25s_scores_and_top10(method):
    corpus = synthetic_texts(400, seed=1)
    queries = synthetic_texts(30, seed=2, min_len=1, max_len=6)
    stemmer = Stemmer.Stemmer("english")
    corpus_tokens = bm25s.tokenize(corpus, stemmer=stemmer, return_ids=False, show_progress=False)
    query_tokens = bm25s.tokenize(queries, stemmer=stemmer, return_ids=False, show_progress=False)
    query_tokens = [q for q in query_tokens if q]  # bm25s refuses queries with no tokens

    reference = bm25s.BM25(k1=1.2, b=0.6, method=method)
    reference.index(corpus_tokens, show_progress=False)
    ours = BM25(k1=1.2, b=0.6, method=method)
    ours.index(corpus, progress=False)  # raw text: our tokenizer gives the same tokens

    expected = np.stack([reference.get_scores(q) for q in query_tokens])  # (Q, N)
    # per-term scores summed over the query's terms: two chained steps
    assert_close(ours.score(query_tokens), expected, depth=2, what=f"BM25 vs bm25s ({method})")

    top_scores, top_ids = ours.search(query_tokens, k=10)
    ref_ids, ref_scores = reference.retrieve(query_tokens, k=10, show_progress=False,
                                             n_threads=1)
    assert_close(top_scores, ref_scores, depth=2, what=f"top 10 vs bm25s ({method})")
    compared = 0
    for row in range(len(query_tokens)):
        # Compare as sets among the strictly-above-the-10th-score docs: ties may be ordered
        # differently by the two libraries.
        tenth = top_scores[row, -1]
        ours_strict = set(top_ids[row][top_scores[row] > tenth + 1e-5].tolist())
        ref_strict = set(ref_ids[row][ref_scores[row] > tenth + 1e-5].tolist())
        assert ours_strict == ref_strict
        compared += len(ours_strict)
    assert compared >= 2 * len(query_tokens)  # the comparison is not vacuous


def test_search_order_k_clamp_and_errors():
    bm25 = BM25()
    bm25.index(["cat cat cat", "cat", "dog", "cat dog"], progress=False)
    scores, ids = bm25.search(["cat", "dog"], k=10)  # k > N = 4 is clamped
    assert scores.shape == ids.shape == (2, 4)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    assert ids[0, 0] == 0  # three "cat"s (also the longest doc, but tf wins here)
    assert set(ids[1, :2]) == {2, 3}
    # queries with no known term: all zeros, ties ordered by lower index first
    scores, ids = bm25.search(["zebra"], k=4)
    assert scores.tolist() == [[0.0] * 4] and ids.tolist() == [[0, 1, 2, 3]]

    with pytest.raises(RuntimeError, match="index"):
        BM25().search(["cat"])
    with pytest.raises(ValueError, match="texts"):
        BM25().index([])
    with pytest.raises(ValueError, match="queries"):
        bm25.search([])
    with pytest.raises(TypeError, match="queries"):
        bm25.search("cat")
    with pytest.raises(ValueError, match="k"):
        bm25.search(["cat"], k=0)
    with pytest.raises(ValueError, match="method"):
        BM25(method="bm25+")
    with pytest.raises(ValueError, match="b"):
        BM25(b=1.5)


def test_index_returns_the_index_for_chaining():
    scores, indices = BM25().index(["the cat sat", "a dog barked", "cats and dogs"],
                                   progress=False).search(["dog"], k=1)
    assert indices.shape == (1, 1) and indices[0, 0] in (1, 2) and scores[0, 0] > 0
