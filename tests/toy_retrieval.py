"""A toy corpus, a fake bi-encoder and the retrievers over them, shared by test_retrievers.py and
test_pipeline.py (conftest.py registers the fixtures ``ds``, ``bm25`` and ``dense``)."""

from __future__ import annotations

import pytest
import torch

from tinyir.beir import BeirDataset
from tinyir.retrievers import BM25Retriever, DenseRetriever

DOCS = {
    "cumsum": "Return the cumulative sum of the elements along a given axis.",
    "cumprod": "Return the cumulative product of elements along a given axis.",
    "sort": "Return a sorted copy of an array.",
    "argsort": "Returns the indices that would sort an array.",
    "mean": "Compute the arithmetic mean along the specified axis.",
    "median": "Compute the median along the specified axis.",
    "open": "Open file and return a stream.",
    "exists": "Test whether a path exists.",
}
QUERIES = {"q1": "cumulative sum of elements", "q2": "sort an array", "q3": "does the path exist"}
QRELS = {"q1": {"cumsum": 1}, "q2": {"sort": 1, "argsort": 1}, "q3": {"exists": 1}}


def dataset() -> BeirDataset:
    corpus = {doc_id: {"title": f"numpy.{doc_id}", "text": text} for doc_id, text in DOCS.items()}
    return BeirDataset(corpus, dict(QUERIES), {q: dict(r) for q, r in QRELS.items()}, "toy", "test")


class BagOfWords:
    """A fake bi-encoder: unit-length word counts over a fixed vocabulary (deterministic)."""

    def __init__(self, texts):
        self.vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in t.lower().split()}))}

    def encode(self, texts, batch_size=64, max_length=None, progress=False):
        out = torch.zeros(len(texts), len(self.vocab))
        for row, text in enumerate(texts):
            for word in text.lower().split():
                if word in self.vocab:
                    out[row, self.vocab[word]] += 1
        return torch.nn.functional.normalize(out + 1e-3, dim=1)


@pytest.fixture(scope="module")
def ds() -> BeirDataset:
    return dataset()


@pytest.fixture(scope="module")
def bm25(ds) -> BM25Retriever:
    return BM25Retriever(ds.doc_texts())


@pytest.fixture(scope="module")
def dense(ds) -> DenseRetriever:
    return DenseRetriever(BagOfWords(ds.doc_texts() + list(QUERIES.values())), ds.doc_texts())
