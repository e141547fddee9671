"""Dense evaluation helpers: the run of a bi-encoder, and the metrics computed from it."""

from __future__ import annotations

import torch

from tinyir.beir import BeirDataset
from tinyir.evaluate import dense_run, evaluate_model
from tinyir.metrics import mean_metrics, per_query


class LookupEncoder:
    """A stand-in bi-encoder: each known text has a fixed unit vector."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = {text: torch.nn.functional.normalize(torch.tensor(v), dim=0)
                        for text, v in vectors.items()}

    def encode(self, texts, batch_size=64, max_length=None, progress=None):
        return torch.stack([self.vectors[t] for t in texts])


def toy() -> tuple[BeirDataset, LookupEncoder]:
    corpus = {"a": {"title": "", "text": "alpha"}, "b": {"title": "", "text": "beta"},
              "c": {"title": "", "text": "gamma"}}
    queries = {"q1": "find alpha", "q2": "find gamma"}
    qrels = {"q1": {"a": 1}, "q2": {"c": 1, "b": 1}}
    dataset = BeirDataset(corpus, queries, qrels, name="toy", split="test")
    model = LookupEncoder({"alpha": [1.0, 0.0, 0.0], "beta": [0.0, 1.0, 0.0],
                           "gamma": [0.0, 0.0, 1.0], "find alpha": [0.9, 0.1, 0.0],
                           "find gamma": [0.0, 0.5, 0.6]})
    return dataset, model


def test_dense_run_ranks_every_query_by_dot_product():
    dataset, model = toy()
    run = dense_run(model, dataset, k=2)
    assert list(run) == ["q1", "q2"]
    assert [doc for doc in sorted(run["q1"], key=run["q1"].get, reverse=True)] == ["a", "b"]
    assert [doc for doc in sorted(run["q2"], key=run["q2"].get, reverse=True)] == ["c", "b"]
    # k above the corpus size keeps every document
    assert len(dense_run(model, dataset, k=10)["q1"]) == 3


def test_evaluate_model_is_evaluate_of_the_dense_run():
    dataset, model = toy()
    run = dense_run(model, dataset, k=10)
    assert evaluate_model(model, dataset, k_values=(1, 10)) == mean_metrics(run, dataset.qrels, (1, 10))
    # q1 finds its answer first; q2 finds both of its answers in the top 2
    assert per_query(run, dataset.qrels, "recall@2") == {"q1": 1.0, "q2": 1.0}
    assert per_query(run, dataset.qrels, "recall@1") == {"q1": 1.0, "q2": 0.5}
