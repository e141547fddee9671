"""The course's systems measured once on the whole pydocs test split, for the lessons to read.

Every query of the test split against the whole corpus: BM25; MiniLM as shipped; the matched
bi-encoder checkpoint (``dense``); reciprocal rank fusion of dense and BM25 (``hybrid``); each
of those first stages reordered by the reranker checkpoint (its top ``depth``, named
``<first stage>+rerank@<depth>``, one system per depth asked for; the deeper set of pairs
contains the shallower); and the end-to-end ColBERT checkpoint. For each system the JSON keeps
nDCG@10, Recall@100 and MRR@10
*per query*, so a lesson computes any paired bootstrap interval from it; plus the wall time of
each stage, the hardware and the checkpoints' sha256s (a result belongs to those weights).

Reranking is the expensive part on a CPU (a transformer pass per query-passage pair), so each
pair is scored once whichever first stage proposed it, and the scores are saved as they come
(``pair_scores.safetensors`` in the cache): an interrupted run resumes where it stopped.

    python -m tinyir.course.measure [--depths 20 100]      # writes tinyir/course/checkpoints/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tinyir.atomic import atomic_file, write_atomic
from tinyir.course import checkpoints
from tinyir.pydocs import PYDOCS_DIR, dataset_fingerprint

RESULTS = checkpoints.CHECKPOINTS / "results.json"
METRICS = ("ndcg@10", "recall@100", "mrr@10")
FIRST_STAGES = ("bm25", "minilm", "dense", "hybrid")
RERANKED = ("bm25", "dense", "hybrid")  # first stages the reranker reorders
DEPTHS = (20, 100)  # passages reranked per query


def measure(depths: tuple[int, ...] = DEPTHS, out: Path = RESULTS, split: str = "test",
            progress: bool = True) -> dict:
    """Run every system on ``split``, save per-query metrics to ``out``; returns the results."""
    from tinyir.beir import load_beir
    from tinyir.biencoder import BiEncoder
    from tinyir.metrics import per_query, run_from_topk
    from tinyir.retrievers import BM25Retriever, ColBERTRetriever, DenseRetriever, HybridRetriever

    if not depths or any(not isinstance(d, int) or not 1 <= d <= 100 for d in depths):
        raise ValueError(f"depths must be integers in 1..100 (the first stages' k), got {depths!r}")
    depth = max(depths)
    ds = load_beir(PYDOCS_DIR, split)
    qids = sorted(ds.queries)
    queries = [ds.queries[q] for q in qids]
    doc_ids, texts = ds.doc_ids, ds.doc_texts()
    seconds, rankings = {}, {}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        return value

    dense_model = checkpoints.load("biencoder")
    retrievers = {
        "bm25": timed("index bm25", lambda: BM25Retriever(texts)),
        "minilm": timed("index minilm", lambda: DenseRetriever(BiEncoder.minilm(), texts,
                                                               progress=progress)),
        "dense": timed("index dense", lambda: DenseRetriever(dense_model, texts,
                                                             progress=progress)),
    }
    retrievers["hybrid"] = HybridRetriever([retrievers["dense"], retrievers["bm25"]])
    for name in FIRST_STAGES:
        rankings[name] = timed(f"retrieve {name}",
                               lambda name=name: retrievers[name].retrieve(queries, k=100))
    colbert = checkpoints.load("colbert")
    late = timed("index colbert", lambda: ColBERTRetriever(colbert, texts))
    rankings["colbert"] = timed("retrieve colbert", lambda: late.retrieve(queries, k=100))
    late.doc_tokens = None  # ~0.5 GB of token vectors, not needed for reranking

    reranker = checkpoints.load("reranker")
    candidates = {name: rankings[name][1][:, :depth] for name in RERANKED}  # (Q, depth) rows
    pair_scores = timed("rerank", lambda: _score_pairs(reranker, queries, texts, candidates,
                                                       progress))
    for name in RERANKED:
        for d in sorted(set(depths)):
            rows = candidates[name][:, :d]
            scores = np.array([[pair_scores[(i, int(j))] if j >= 0 else -np.inf for j in row]
                               for i, row in enumerate(rows)], dtype=np.float32)  # -1: no passage
            order = np.argsort(-scores, axis=1, kind="stable")  # ties keep the first stage's order
            rankings[f"{name}+rerank@{d}"] = (np.take_along_axis(scores, order, axis=1),
                                              np.take_along_axis(rows, order, axis=1))

    systems = {}
    for name, (scores, indices) in rankings.items():
        run = run_from_topk(qids, doc_ids, scores, indices)
        systems[name] = {m: per_query(run, ds.qrels, m) for m in METRICS}
    manifests = {n: checkpoints.read_manifest(n) for n in ("reranker", "colbert", "biencoder")}
    results = {
        "split": split, "queries": len(qids), "docs": len(doc_ids),
        "depths": sorted(set(depths)),
        "data": dataset_fingerprint(PYDOCS_DIR), "hardware": checkpoints.hardware(),
        "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d"), "seconds": seconds,
        "pairs_scored": len(pair_scores),
        "checkpoints": {n: m["weights_sha256"] for n, m in manifests.items()},
        "mean": {name: {m: float(np.mean(list(v[m].values()))) for m in METRICS}
                 for name, v in systems.items()},
        "per_query": systems,
    }
    write_atomic(out, json.dumps(results, indent=1) + "\n")
    return results


def _score_pairs(reranker, queries: list[str], texts: list[str], candidates: dict,
                 progress: bool) -> dict[tuple[int, int], float]:
    """The reranker's score of every (query row, doc row) some first stage proposed, each
    once; resumed from (and saved to) the cache every few thousand pairs."""
    from tinyir.cache import entry_path

    pairs = sorted({(i, int(j)) for rows in candidates.values()
                    for i, row in enumerate(rows) for j in row if j >= 0})
    key = {"pair_scores": checkpoints.read_manifest("reranker")["weights_sha256"],
           "data": dataset_fingerprint(PYDOCS_DIR), "queries": len(queries)}
    path = entry_path("rerank-pairs", key).with_suffix(".safetensors")
    done: dict[tuple[int, int], float] = {}
    if path.is_file():
        saved = load_file(str(path))
        done = {(int(i), int(j)): float(s) for (i, j), s in
                zip(saved["pairs"].tolist(), saved["scores"].tolist(), strict=True)}
    todo = [p for p in pairs if p not in done]
    chunk = 4096
    bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc="rerank pairs",
               unit="pair", file=sys.stderr, disable=not progress)
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        scores = reranker.score([(queries[i], texts[j]) for i, j in part], batch_size=64)
        done.update(zip(part, scores.tolist(), strict=True))
        bar.update(len(part))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            keys = sorted(done)
            save_file({"pairs": torch.tensor(keys, dtype=torch.int64),
                       "scores": torch.tensor([done[k] for k in keys], dtype=torch.float32)},
                      str(tmp))
    bar.close()
    return done


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyir.course.measure",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS),
                        help="passages reranked per query, one reranked system per depth")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    results = measure(tuple(args.depths), Path(args.out), args.split)
    print(json.dumps({name: {m: round(v, 4) for m, v in means.items()}
                      for name, means in results["mean"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
