"""Small non-retrieval evaluation tasks on pydocs, for an MTEB-style multi-task board.

MTEB scores one model on many task types and averages them. Besides retrieval, pydocs supports:

- clustering: k-means on the embeddings of the queries (one-line summaries), scored by V-measure
  against the library of the object each summary describes (numpy, scipy, torch, matplotlib,
  sklearn, or the standard library). MTEB's clustering tasks do the same with k-means.
- pair classification: is this passage the documentation of this summary? Positives are the qrels
  pairs; each query also gets one negative passage from the same library (so the library name
  alone does not give the answer). Scored by the average precision of the cosine similarities,
  as MTEB's PairClassification tasks do.
- classification: predict the library of a summary with logistic regression on its embedding,
  scored by cross-validated accuracy (MTEB trains the same classifier on frozen embeddings).

Every function takes embeddings the caller computed, so one encoding pass serves all tasks.
Shapes: Q queries, N documents, D embedding dimension.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tinyir.beir import BeirDataset

LIBRARIES = ("numpy", "scipy", "torch", "matplotlib", "sklearn")
STDLIB = "stdlib"


def library_label(doc_id: str) -> str:
    """The library of a pydocs object id: its top-level package, or "stdlib" for the rest.

    "numpy.linalg.norm" -> "numpy", "sklearn.cluster.KMeans" -> "sklearn", "os.path.join" ->
    "stdlib".
    """
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"doc_id: expected a non-empty string, got {doc_id!r}")
    top = doc_id.split(".")[0]
    return top if top in LIBRARIES else STDLIB


def query_library_labels(dataset: BeirDataset) -> dict[str, str]:
    """{query id: library} for the queries whose relevant documents all share one library.

    A summary shared by objects of two libraries (e.g. a NumPy function and its SciPy alias)
    has no single answer and is left out.
    """
    labels = {}
    for qid, relevance in dataset.qrels.items():
        libraries = {library_label(doc_id) for doc_id, grade in relevance.items() if grade > 0}
        if len(libraries) == 1:
            labels[qid] = libraries.pop()
    return labels


def _as_numpy(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, D) matrix, got shape {x.shape}")
    return x


def _check_labels(labels: Sequence[str], n: int) -> list[str]:
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels: expected one label per row ({n}), got {len(labels)}")
    if len(set(labels)) < 2:
        raise ValueError(f"labels: expected at least 2 distinct labels, got {sorted(set(labels))}")
    return labels


def clustering_v_measure(
    embeddings: np.ndarray | torch.Tensor,
    labels: Sequence[str],
    n_clusters: int | None = None,
    seed: int = 0,
) -> float:
    """V-measure of k-means clusters of ``embeddings`` (n, D) against ``labels`` (n,).

    n_clusters: default the number of distinct labels. k-means runs 10 initialisations from
    ``seed`` (deterministic). V-measure is in [0, 1]: the harmonic mean of homogeneity (each
    cluster holds one label) and completeness (each label sits in one cluster); it ignores
    which cluster number goes with which label.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    x = _as_numpy(embeddings, "embeddings")
    labels = _check_labels(labels, x.shape[0])
    n_clusters = len(set(labels)) if n_clusters is None else n_clusters
    if not isinstance(n_clusters, int) or not 2 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters: expected an int in [2, {x.shape[0]}], got {n_clusters!r}")
    clusters = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(x)
    return float(v_measure_score(labels, clusters))


def classification_accuracy(
    embeddings: np.ndarray | torch.Tensor,
    labels: Sequence[str],
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Mean accuracy of logistic regression on frozen ``embeddings`` (n, D), over stratified
    ``folds``-fold cross-validation (shuffled with ``seed``). Each fold trains on the others.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = _as_numpy(embeddings, "embeddings")
    labels = _check_labels(labels, x.shape[0])
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds: expected an int >= 2, got {folds!r}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    classifier = LogisticRegression(max_iter=1000)
    return float(cross_val_score(classifier, x, labels, cv=splitter, scoring="accuracy").mean())


def classification_correct(
    embeddings: np.ndarray | torch.Tensor,
    labels: Sequence[str],
    folds: int = 5,
    seed: int = 0,
) -> list[float]:
    """Per item, 1.0 if logistic regression on frozen ``embeddings`` (n, D) predicts its label
    when the item is in the held-out fold, else 0.0 (the folds of :func:`classification_accuracy`).

    Their mean is the accuracy pooled over folds; two models' lists pair item by item, for
    ``tinyir.metrics.paired_bootstrap``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = _as_numpy(embeddings, "embeddings")
    labels = _check_labels(labels, x.shape[0])
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds: expected an int >= 2, got {folds!r}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(LogisticRegression(max_iter=1000), x, labels, cv=splitter)
    return [float(p == label) for p, label in zip(predicted, labels, strict=True)]


def pair_classification_pairs(dataset: BeirDataset, seed: int = 0) -> list[tuple[str, str, int]]:
    """(query id, doc id, label) pairs: every qrels positive (label 1) and, per query, one
    negative (label 0): a random corpus document of the same library as the query's first
    positive that is not judged relevant (any library when that library has no other document).
    """
    rng = random.Random(seed)
    by_library: dict[str, list[str]] = {}
    for doc_id in dataset.corpus:
        by_library.setdefault(library_label(doc_id), []).append(doc_id)
    pairs = []
    for qid in sorted(dataset.qrels):
        relevant = sorted(d for d, grade in dataset.qrels[qid].items() if grade > 0)
        if not relevant:
            continue
        pairs += [(qid, doc_id, 1) for doc_id in relevant]
        same = [d for d in by_library[library_label(relevant[0])] if d not in relevant]
        pool = same or [d for d in dataset.corpus if d not in relevant]
        if pool:
            pairs.append((qid, rng.choice(pool), 0))
    return pairs


def pair_classification_ap(
    query_embeddings: np.ndarray | torch.Tensor,
    doc_embeddings: np.ndarray | torch.Tensor,
    pairs: Sequence[tuple[str, str, int]],
    query_index: Mapping[str, int],
    doc_index: Mapping[str, int],
) -> float:
    """Average precision of the cosine similarity as a score for "is this pair a match?".

    query_embeddings: (Q, D), doc_embeddings: (N, D); query_index / doc_index map ids to rows.
    pairs: (query id, doc id, label 0/1) from :func:`pair_classification_pairs`.
    AP is threshold-free: 1.0 when every positive pair scores above every negative one.
    """
    from sklearn.metrics import average_precision_score

    q = _as_numpy(query_embeddings, "query_embeddings")
    d = _as_numpy(doc_embeddings, "doc_embeddings")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"doc_embeddings: expected D={q.shape[1]} (as the queries), got {d.shape[1]}")
    if not pairs:
        raise ValueError("pairs: expected at least one (query id, doc id, label) pair")
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
    d = d / np.linalg.norm(d, axis=1, keepdims=True).clip(min=1e-12)
    rows = np.array([query_index[qid] for qid, _, _ in pairs])
    cols = np.array([doc_index[doc_id] for _, doc_id, _ in pairs])
    labels = np.array([label for _, _, label in pairs])
    if len(set(labels.tolist())) != 2:
        raise ValueError("pairs: expected both positive (1) and negative (0) labels")
    scores = np.einsum("pd,pd->p", q[rows], d[cols])  # (P,) cosine per pair
    return float(average_precision_score(labels, scores))
