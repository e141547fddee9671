"""Non-retrieval evaluation tasks: labels, clustering, classification, pair classification."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyir.beir import BeirDataset
from tinyir.tasks import (
    classification_accuracy,
    classification_correct,
    clustering_v_measure,
    library_label,
    pair_classification_ap,
    pair_classification_pairs,
    query_library_labels,
)
from tinyir.testing import assert_close


def tiny_dataset() -> BeirDataset:
    corpus = {doc_id: {"title": doc_id, "text": "..."} for doc_id in (
        "numpy.sum", "numpy.cumsum", "numpy.prod", "scipy.linalg.norm", "scipy.fft.fft",
        "os.path.join", "os.listdir")}
    qrels = {"q1": {"numpy.sum": 1}, "q2": {"scipy.linalg.norm": 1, "numpy.prod": 1},
             "q3": {"os.path.join": 1, "numpy.cumsum": 0}}
    queries = {"q1": "Sum of array elements.", "q2": "A norm.", "q3": "Join paths."}
    return BeirDataset(corpus, queries, qrels, name="toy", split="test")


def test_library_label():
    assert library_label("numpy.linalg.norm") == "numpy"
    assert library_label("sklearn.cluster.KMeans") == "sklearn"
    assert library_label("os.path.join") == "stdlib"
    with pytest.raises(ValueError, match="doc_id"):
        library_label("")


def test_query_labels_skip_ambiguous_queries():
    assert query_library_labels(tiny_dataset()) == {"q1": "numpy", "q3": "stdlib"}


def clustered(n_per=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 16)) * 5
    x = np.concatenate([c + rng.standard_normal((n_per, 16)) for c in centres])
    labels = [name for name in ("a", "b", "c") for _ in range(n_per)]
    return x, labels


def test_clustering_separable_and_random():
    x, labels = clustered()
    assert clustering_v_measure(x, labels) == pytest.approx(1.0)
    assert clustering_v_measure(torch.from_numpy(x), labels) == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal(x.shape)
    assert clustering_v_measure(noise, labels) < 0.3
    with pytest.raises(ValueError, match="labels"):
        clustering_v_measure(x, labels[:-1])
    with pytest.raises(ValueError, match="n_clusters"):
        clustering_v_measure(x, labels, n_clusters=1)


def test_classification_accuracy():
    x, labels = clustered()
    assert classification_accuracy(x, labels) == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal(x.shape)
    assert classification_accuracy(noise, labels) < 0.7
    with pytest.raises(ValueError, match="folds"):
        classification_accuracy(x, labels, folds=1)


def test_pairs_have_same_library_negatives():
    ds = tiny_dataset()
    pairs = pair_classification_pairs(ds, seed=0)
    positives = [(q, d) for q, d, label in pairs if label == 1]
    negatives = {q: d for q, d, label in pairs if label == 0}
    assert sorted(positives) == [("q1", "numpy.sum"), ("q2", "numpy.prod"),
                                 ("q2", "scipy.linalg.norm"), ("q3", "os.path.join")]
    assert library_label(negatives["q1"]) == "numpy" and negatives["q1"] != "numpy.sum"
    assert negatives["q3"] == "os.listdir"  # the only other stdlib document
    assert pairs == pair_classification_pairs(ds, seed=0)


def test_pair_classification_ap():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[1.0, 0.1], [0.0, 2.0], [1.0, 1.0]])
    qi, di = {"a": 0, "b": 1}, {"x": 0, "y": 1, "z": 2}
    perfect = [("a", "x", 1), ("b", "y", 1), ("a", "z", 0), ("b", "x", 0)]
    assert pair_classification_ap(q, d, perfect, qi, di) == pytest.approx(1.0)
    # positives ranked 3rd and 4th by cosine (doc "y" has norm 2: the scale does not matter):
    # AP = (1/3 + 2/4) / 2
    flipped = [("a", "x", 0), ("b", "y", 0), ("a", "z", 1), ("b", "x", 1)]
    assert pair_classification_ap(q, d, flipped, qi, di) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="pairs"):
        pair_classification_ap(q, d, [("a", "x", 1)], qi, di)


def test_classification_correct_pools_the_folds_of_classification_accuracy():
    rng = np.random.default_rng(0)
    centers = {"a": np.zeros(4), "b": np.full(4, 3.0), "c": np.full(4, -3.0)}
    labels = [name for name in centers for _ in range(10)]
    x = np.stack([centers[name] + rng.normal(size=4) for name in labels])
    correct = classification_correct(x, labels, folds=5, seed=0)
    assert len(correct) == len(labels) and set(correct) <= {0.0, 1.0}
    # equal folds (6 items each): the pooled accuracy equals the mean of the fold accuracies
    assert_close(sum(correct) / len(correct), classification_accuracy(x, labels, folds=5, seed=0),
                 depth=2, dtype="float64")
    with pytest.raises(ValueError, match="folds"):
        classification_correct(x, labels, folds=1)
