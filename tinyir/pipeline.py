"""Retrieval systems side by side: one query set, one table of quality, latency and memory.

The capstone (notebook 14) runs every retriever of :mod:`tinyir.retrievers` (BM25, dense,
hybrid, retrieve-then-rerank, ColBERT) over the same queries. A system is anything with
``retrieve(queries, k) -> (scores (Q, k), indices (Q, k))`` as NumPy arrays (-1 pads a row),
``index_bytes`` (what it stores for the corpus) and ``model_bytes`` (the weights it runs at
query time).

:func:`compare_systems` turns a dict of systems into one table (nDCG@10, Recall@10, ms per
query, bytes); :func:`search_box` returns each system's top passages for one query, which is
what the notebook's search widget shows.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from tinyir.beir import BeirDataset
from tinyir.metrics import mean_metrics, run_from_topk
from tinyir.validate import check_positive


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 of a model's weights (names, shapes, dtypes, values): a cache key for
    what the model computes, e.g. the corpus embeddings of a fine-tuned model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


# -----------------------------------------------------------------------------------------------
# One table


@dataclass
class SystemRow:
    """One system's line of the table. ms_per_query: single-query calls (what a user waits), the
    fastest of the repeats of each query, median over queries; batch_ms_per_query: the whole
    query set in one call, divided by Q."""

    name: str
    metrics: dict[str, float]
    ms_per_query: float
    batch_ms_per_query: float
    index_bytes: int
    model_bytes: int


@dataclass
class Comparison:
    """What :func:`compare_systems` measured: one row per system and each system's run."""

    rows: list[SystemRow]
    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> SystemRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"name: no system {name!r}; have {[r.name for r in self.rows]}")

    def metric(self, name: str) -> dict[str, float]:
        """{system: value} of one metric, e.g. ``metric("ndcg@10")``."""
        return {row.name: row.metrics[name] for row in self.rows}

    def table(self, metrics: Sequence[str] = ("ndcg@10", "recall@10")) -> str:
        """The rows as aligned text."""
        from tinyir.storage import format_bytes

        width = max(len("system"), *(len(r.name) for r in self.rows))
        head = (f"{'system':{width}s} " + " ".join(f"{m:>10s}" for m in metrics)
                + f" {'ms/query':>9s} {'batched':>8s} {'index':>10s} {'model':>10s}")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.name:{width}s} " + " ".join(f"{r.metrics[m]:10.3f}" for m in metrics)
                + f" {r.ms_per_query:9.1f} {r.batch_ms_per_query:8.1f}"
                + f" {format_bytes(r.index_bytes):>10s} {format_bytes(r.model_bytes):>10s}"
            )
        return "\n".join(lines)


def compare_systems(
    systems: Mapping[str, object],
    dataset: BeirDataset,
    k_values: Sequence[int] = (10,),
    latency_queries: int = 10,
    latency_repeats: int = 1,
) -> Comparison:
    """Run every system over ``dataset``'s queries and measure it.

    Quality: the top max(k_values) of every query, scored with :func:`tinyir.metrics.mean_metrics`
    against ``dataset.qrels`` (nDCG@k, Recall@k, ...). Latency: ``latency_queries`` queries sent
    one at a time, ``latency_repeats`` times each; the fastest try of each query (other
    processes only ever add time), then the median over queries, in ms. The systems take turns
    on every query, so a busy spell of the machine slows all of them, not one system's whole
    measurement. Also the whole set sent in one call (ms per query). Memory: each system's
    ``index_bytes`` and ``model_bytes``.
    """
    if not isinstance(systems, Mapping) or not systems:
        raise ValueError("systems: expected a non-empty {name: system} dict")
    for name, value in (("latency_queries", latency_queries), ("latency_repeats", latency_repeats)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    query_ids = list(dataset.queries)
    texts = [dataset.queries[qid] for qid in query_ids]
    doc_ids = dataset.doc_ids
    k = max(k_values)
    metrics, batch_seconds, runs = {}, {}, {}
    for name, system in systems.items():
        start = time.perf_counter()
        scores, indices = system.retrieve(texts, k)
        batch_seconds[name] = time.perf_counter() - start
        runs[name] = run_from_topk(query_ids, doc_ids, scores, indices)
        metrics[name] = mean_metrics(runs[name], dataset.qrels, k_values)
    fastest = {name: [] for name in systems}  # per system: the fastest try of each query
    for text in texts[:latency_queries]:
        tries = {name: [] for name in systems}
        for _ in range(latency_repeats):
            for name, system in systems.items():  # round robin: a busy spell hits every system
                start = time.perf_counter()
                system.retrieve([text], k)
                tries[name].append(time.perf_counter() - start)
        for name in systems:
            fastest[name].append(min(tries[name]))
    rows = [
        SystemRow(
            name=name, metrics=metrics[name],
            ms_per_query=1000 * statistics.median(fastest[name]),
            batch_ms_per_query=1000 * batch_seconds[name] / len(texts),
            index_bytes=int(system.index_bytes), model_bytes=int(system.model_bytes),
        )
        for name, system in systems.items()
    ]
    return Comparison(rows, runs)


# -----------------------------------------------------------------------------------------------
# The search box


@dataclass(frozen=True)
class Hit:
    """One result of :func:`search_box`: its rank (1 = best), doc id, title and score."""

    rank: int
    doc_id: str
    title: str
    score: float


def search_box(query: str, systems: Mapping[str, object], dataset: BeirDataset,
               k: int = 3) -> dict[str, list[Hit]]:
    """Each system's top ``k`` passages for ``query``: ``{system name: [Hit, ...]}``."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query: expected a non-empty string, got {query!r}")
    check_positive("k", k)
    doc_ids = dataset.doc_ids
    results = {}
    for name, system in systems.items():
        scores, indices = system.retrieve([query], k)
        results[name] = [
            Hit(rank, doc_ids[j], dataset.corpus[doc_ids[j]].get("title", ""), float(s))
            for rank, (j, s) in enumerate(zip(indices[0].tolist(), scores[0].tolist(),
                                              strict=True), start=1)
            if j >= 0
        ]
    return results


def format_hits(results: Mapping[str, Sequence[Hit]],
                relevant: Mapping[str, int] | None = None) -> str:
    """:func:`search_box`'s results as text, one block per system; with ``relevant`` (a qrels
    row, {doc id: grade}) the relevant passages are marked with a *."""
    lines = []
    for name, hits in results.items():
        lines.append(f"{name}:")
        for hit in hits:
            mark = "*" if relevant and relevant.get(hit.doc_id, 0) > 0 else " "
            lines.append(f"  {mark}{hit.rank}. {hit.title}  ({hit.score:.3f})")
    return "\n".join(lines)
