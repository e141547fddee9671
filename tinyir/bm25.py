"""Okapi BM25, the lexical baseline every embedding model is compared against.

BM25 scores a document d for a query q by summing, over the query terms t found in d,

    score(q, d) = sum_t  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))          ("lucene" variant)

with N documents, df(t) the number of documents containing t, |d| the document length in tokens
and avgdl the mean length. k1 controls how fast repeated terms saturate, b how much long
documents are penalized.

The trick that makes it fast (from bm25s, Lù 2024): every (doc, term) score above depends only
on the corpus, so ``index`` computes them all once into a sparse (N, V) matrix. A query is then a
sparse (V,) vector of term counts and searching is one sparse matrix product.

Numbers match ``bm25s`` (tests/test_bm25.py): same tokenizer, same formulas, float32 scores.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
import Stemmer  # PyStemmer: Snowball stemmers compiled from C
from tqdm.auto import tqdm

from tinyir.validate import check_type

# The English stopword list of bm25s (bm25s/stopwords.py: STOPWORDS_EN), which is Lucene's /
# Elasticsearch's default English list.
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)

# scikit-learn's CountVectorizer pattern, also bm25s's default: runs of 2+ word characters.
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


@functools.lru_cache(maxsize=8)
def _stemmer(language: str) -> Stemmer.Stemmer:
    """A cached PyStemmer Snowball stemmer (building one costs more than stemming a word)."""
    try:
        return Stemmer.Stemmer(language)
    except KeyError as err:
        raise ValueError(
            f"stemmer: unknown Snowball language {language!r}; "
            f"try one of {Stemmer.algorithms()}"
        ) from err


def tokenize(
    text: str,
    stopwords: Literal["en"] | Iterable[str] | None = "en",
    stemmer: str | None = "english",
) -> list[str]:
    """Lowercase, split into words of 2+ characters, drop stopwords, Snowball-stem.

    text: one string. stopwords: "en" for ``ENGLISH_STOPWORDS``, your own iterable, or None.
    stemmer: a Snowball language for PyStemmer ("english", "french", ...) or None.
    Returns the list of tokens in order (duplicates kept: they are the term frequencies).
    Same steps, in the same order, as ``bm25s.tokenize(..., stemmer=Stemmer.Stemmer("english"))``:
    stopwords are removed BEFORE stemming.
    """
    check_type("text", text, str, "a str")
    if stopwords == "en":
        stopword_set: frozenset[str] = ENGLISH_STOPWORDS
    elif stopwords is None:
        stopword_set = frozenset()
    elif isinstance(stopwords, str):
        raise ValueError(f"stopwords: expected 'en', an iterable of words or None, got {stopwords!r}")
    else:
        stopword_set = frozenset(stopwords)
    tokens = [t for t in TOKEN_PATTERN.findall(text.lower()) if t not in stopword_set]
    if stemmer is not None:
        tokens = _stemmer(stemmer).stemWords(tokens)
    return tokens


Method = Literal["lucene", "robertson", "atire"]


def _idf(df: np.ndarray, num_docs: int, method: Method) -> np.ndarray:
    """Inverse document frequency per term. df: (V,) int, each >= 1. Returns (V,) float64."""
    if method == "lucene":
        return np.log(1 + (num_docs - df + 0.5) / (df + 0.5))
    if method == "robertson":
        # The original formula goes negative for terms in more than half the documents;
        # bm25s (like most implementations) clips it at log(1) = 0.
        return np.log(np.maximum((num_docs - df + 0.5) / (df + 0.5), 1.0))
    return np.log(num_docs / df)  # atire


def _tf_part(tf: np.ndarray, doc_len: np.ndarray, avgdl: float, k1: float, b: float,
             method: Method) -> np.ndarray:
    """The saturating term-frequency factor. tf, doc_len: (nnz,). Returns (nnz,) float64."""
    length_norm = k1 * (1 - b + b * doc_len / avgdl)
    if method == "atire":
        return tf * (k1 + 1) / (tf + length_norm)
    # "lucene" and "robertson": bm25s (and Lucene since version 8) drop the textbook (k1 + 1)
    # factor from the numerator. It multiplies every score by the same constant, so rankings
    # are unchanged; we follow bm25s so that the scores themselves match it.
    return tf / (tf + length_norm)


class BM25:
    """An Okapi BM25 index over a fixed corpus.

    >>> bm25 = BM25().index(["the cat sat", "a dog barked", "cats and dogs"], progress=False)
    >>> scores, indices = bm25.search(["cat"], k=2)   # (1, 2) each; doc 0 and doc 2
    >>> indices.tolist()
    [[0, 2]]

    After ``index``: ``vocab`` {token: column}, ``idf`` (V,) float, ``doc_lengths`` (N,) int,
    ``avgdl`` float, ``doc_term`` a scipy CSR (N, V) float32 matrix of per-(doc, term) scores.
    """

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: Method = "lucene",
        stopwords: Literal["en"] | Iterable[str] | None = "en",
        stemmer: str | None = "english",
    ) -> None:
        if not k1 >= 0:
            raise ValueError(f"k1: expected a number >= 0, got {k1!r}")
        if not 0 <= b <= 1:
            raise ValueError(f"b: expected a number in [0, 1], got {b!r}")
        if method not in ("lucene", "robertson", "atire"):
            raise ValueError(f"method: expected 'lucene', 'robertson' or 'atire', got {method!r}")
        self.k1, self.b, self.method = k1, b, method
        self.stopwords, self.stemmer = stopwords, stemmer
        # Filled in by index():
        self.vocab: dict[str, int] = {}  # token -> column
        self.idf = np.zeros(0)  # (V,)
        self.doc_lengths = np.zeros(0, dtype=np.int64)  # (N,) tokens per document
        self.avgdl = 0.0
        self.doc_term: sp.csr_matrix | None = None  # (N, V) BM25 score of each (doc, term)
        self._term_doc: sp.csr_matrix | None = None  # (V, N) the same, transposed for search

    def _tokenize_all(self, texts: Sequence[str] | Sequence[Sequence[str]], name: str,
                      progress: bool) -> list[list[str]]:
        """Accept raw strings (tokenized here) or token lists (used as they are)."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"{name}: expected a list of strings or of token lists, "
                            f"got {type(texts).__name__}")
        if len(texts) == 0:
            raise ValueError(f"{name}: expected at least one text, got an empty list")
        out = []
        for text in tqdm(texts, desc=f"tokenize {name}", disable=not progress):
            if isinstance(text, str):
                out.append(tokenize(text, self.stopwords, self.stemmer))
            else:
                out.append(list(text))
        return out

    def index(self, texts: Sequence[str] | Sequence[Sequence[str]], progress: bool = True) -> BM25:
        """Precompute the (N, V) matrix of BM25 scores for every (doc, term) pair.

        Returns the index itself, so ``BM25().index(docs).search(queries, k=10)`` reads as one line.

        texts: N documents, each a string (tokenized with ``tokenize`` and this index's
            stopwords/stemmer) or a list of tokens (used as given).
        """
        docs = self._tokenize_all(texts, "texts", progress)
        self.vocab = {}
        rows, cols, tfs = [], [], []  # one entry per (doc, distinct term): COO layout
        for doc_id, tokens in enumerate(tqdm(docs, desc="count terms", disable=not progress)):
            for token, count in Counter(tokens).items():
                rows.append(doc_id)
                cols.append(self.vocab.setdefault(token, len(self.vocab)))
                tfs.append(count)
        rows_arr, cols_arr = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
        tf = np.array(tfs, dtype=np.float64)

        num_docs = len(docs)
        self.doc_lengths = np.array([len(tokens) for tokens in docs], dtype=np.int64)  # (N,)
        self.avgdl = float(self.doc_lengths.mean())
        df = np.bincount(cols_arr, minlength=len(self.vocab))  # (V,) docs containing each term
        self.idf = _idf(df, num_docs, self.method)  # (V,)
        tf_part = _tf_part(tf, self.doc_lengths[rows_arr], self.avgdl, self.k1, self.b,
                           self.method)
        values = (self.idf[cols_arr] * tf_part).astype(np.float32)  # (nnz,) like bm25s
        self.doc_term = sp.csr_matrix(
            (values, (rows_arr, cols_arr)), shape=(num_docs, len(self.vocab))
        )
        self._term_doc = self.doc_term.T.tocsr()  # (V, N): rows of query terms are contiguous
        return self

    def _query_matrix(self, queries: list[list[str]]) -> sp.csr_matrix:
        """(Q, V) sparse term counts; a term repeated in the query counts that many times
        (as in bm25s); terms outside the vocabulary are dropped."""
        rows, cols, counts = [], [], []
        for query_id, tokens in enumerate(queries):
            for token, count in Counter(t for t in tokens if t in self.vocab).items():
                rows.append(query_id)
                cols.append(self.vocab[token])
                counts.append(count)
        return sp.csr_matrix(
            (np.array(counts, dtype=np.float32), (rows, cols)),
            shape=(len(queries), len(self.vocab)),
        )

    def score(self, queries: Sequence[str] | Sequence[Sequence[str]]) -> np.ndarray:
        """BM25 score of every document for each query. Returns (Q, N) float32 (dense).

        queries: Q strings or token lists. A query with no known term scores 0 everywhere.
        """
        if self.doc_term is None:
            raise RuntimeError("BM25.score: call index(texts) first")
        query_tokens = self._tokenize_all(queries, "queries", progress=False)
        return (self._query_matrix(query_tokens) @ self._term_doc).toarray()  # (Q, N)

    def search(
        self,
        queries: Sequence[str] | Sequence[Sequence[str]],
        k: int = 10,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents per query.

        queries: Q strings or token lists. k: >= 1; k > N is clamped to N.
        batch_size: queries scored at once (memory is batch_size x N floats).
        Returns (scores (Q, k) float32, indices (Q, k) int64), best first; equal scores are
        ordered by lower document index, but which of several docs tied at the k-th place gets
        in is left to ``np.argpartition``. Documents sharing no term with the query score 0 and
        may fill the list when fewer than k documents match.
        """
        if self.doc_term is None:
            raise RuntimeError("BM25.search: call index(texts) first")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k!r}")
        query_tokens = self._tokenize_all(queries, "queries", progress=False)
        k = min(k, self.doc_term.shape[0])
        all_scores, all_indices = [], []
        for start in range(0, len(query_tokens), batch_size):
            scores = (self._query_matrix(query_tokens[start:start + batch_size])
                      @ self._term_doc).toarray()  # (Qb, N)
            # argpartition moves the k largest to the front in O(N), unordered ...
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Qb, k)
            top_scores = np.take_along_axis(scores, top, axis=1)
            # ... then order those k by score descending, then index ascending.
            order = np.lexsort((top, -top_scores), axis=1)
            all_indices.append(np.take_along_axis(top, order, axis=1))
            all_scores.append(np.take_along_axis(top_scores, order, axis=1))
        return np.concatenate(all_scores), np.concatenate(all_indices).astype(np.int64)

