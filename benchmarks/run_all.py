"""Speed ratios of tinyir against the libraries it stands in for, printed as one JSON object.

Timings on a shared 2-core machine are noisy, so every figure is a ratio of two measurements taken
side by side in this one run (alternating, best of several repeats), never an absolute time:

- encode: all-MiniLM-L6-v2 texts/second, tinyir ``BiEncoder`` / sentence-transformers
  (same texts, batch size, max length and thread count). Goal >= 1.0.
- search: queries/second, ``tinyir.search.exact_search`` / FAISS ``IndexFlatIP``. Goal >= 0.8.
- bm25: index + query time, bm25s / ``tinyir.bm25`` (same tokens). Reported, no goal.
- maxsim: ``tinyir.maxsim.max_sim_matrix`` (chunked) / the plain formula
  (``max_sim_reference``: einsum over all documents at once, then max and sum), 32 queries x 32
  tokens against 2,000 documents x 512 tokens, D = 128: ``ratio`` (speed) and
  ``peak_memory_ratio`` (extra resident memory while scoring, tinyir / reference; Linux only).
  Goal: ratio >= 1.0 at peak_memory_ratio <= 0.1.

Usage: python benchmarks/run_all.py [--docs 512] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (the least disturbed one)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alternate(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Time two functions interleaved, so a burst of background load hits both alike."""
    a, b = [], []
    for _ in range(repeats):
        a.append(best_time(fn_a, 1))
        b.append(best_time(fn_b, 1))
    return min(a), min(b)


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise KeyError(field)


def peak_extra_memory(fn) -> int | None:
    """Bytes of resident memory ``fn`` added at its peak, or None where it cannot be measured.

    Linux: writing 5 to /proc/self/clear_refs resets the process's peak (VmHWM) to what it holds
    now (VmRSS). Large tensors are their own mappings, returned to the system when freed.
    """
    clear = Path("/proc/self/clear_refs")
    if not clear.exists():
        return None
    gc.collect()
    try:
        clear.write_text("5")
    except OSError:
        return None
    before = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - before


def bench_maxsim(n_queries: int, q_tokens: int, n_docs: int, d_tokens: int, dim: int,
                 repeats: int) -> dict:
    from tinyir.maxsim import max_sim_matrix, max_sim_reference
    from tinyir.testing import assert_close

    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(n_queries, q_tokens, dim, generator=gen), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(n_docs, d_tokens, dim, generator=gen), dim=-1)

    def run_ours():
        return max_sim_matrix(q, None, d, None)

    def run_reference():
        return max_sim_reference(q, d)

    mem_ours, mem_reference = peak_extra_memory(run_ours), peak_extra_memory(run_reference)
    assert_close(run_ours(), run_reference(), depth=2, what="max_sim_matrix vs the plain formula")
    t_ours, t_reference = alternate(run_ours, run_reference, repeats)
    flops = 2 * n_queries * q_tokens * n_docs * d_tokens * dim
    return {
        "queries": n_queries, "query_tokens": q_tokens, "docs": n_docs, "doc_tokens": d_tokens,
        "dim": dim, "tinyir_seconds": round(t_ours, 4), "reference_seconds": round(t_reference, 4),
        "tinyir_gflops_per_s": round(flops / t_ours / 1e9, 1),
        "ratio": round(t_reference / t_ours, 3), "goal": 1.0,
        "tinyir_peak_bytes": mem_ours, "reference_peak_bytes": mem_reference,
        "peak_memory_ratio": (round(mem_ours / mem_reference, 4)
                              if mem_ours is not None and mem_reference else None),
        "peak_memory_goal": 0.1,
    }


def course_texts(n: int) -> tuple[list[str], list[str]]:
    from tinyir.beir import load_beir
    from tinyir.pydocs import PYDOCS_DIR

    ds = load_beir(PYDOCS_DIR, split="test")
    docs = ds.doc_texts()[:n]
    queries = list(ds.queries.values())[:n]
    return docs, queries


def bench_encode(texts: list[str], batch_size: int, repeats: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from tinyir.biencoder import BiEncoder
    from tinyir.pretrained import minilm_path

    ours = BiEncoder.minilm(device=torch.device("cpu"))
    theirs = SentenceTransformer(str(minilm_path()), device="cpu")
    theirs.max_seq_length = 256

    def run_ours():
        ours.encode(texts, batch_size=batch_size, max_length=256, progress=False)

    def run_theirs():
        theirs.encode(texts, batch_size=batch_size, show_progress_bar=False,
                      convert_to_tensor=True)

    run_ours(), run_theirs()  # warm up both
    t_ours, t_theirs = alternate(run_ours, run_theirs, repeats)
    return {
        "texts": len(texts), "batch_size": batch_size,
        "tinyir_texts_per_s": round(len(texts) / t_ours, 1),
        "sentence_transformers_texts_per_s": round(len(texts) / t_theirs, 1),
        "ratio": round(t_theirs / t_ours, 3), "goal": 1.0,
    }


def bench_search(n_docs: int, n_queries: int, dim: int, k: int, repeats: int) -> dict:
    import faiss

    from tinyir.search import exact_search

    gen = torch.Generator().manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(n_docs, dim, generator=gen), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(n_queries, dim, generator=gen), dim=-1)
    index = faiss.IndexFlatIP(dim)
    index.add(docs.numpy())
    q_np = queries.numpy()

    def run_ours():
        exact_search(queries, docs, k=k)

    def run_faiss():
        index.search(q_np, k)

    run_ours(), run_faiss()
    t_ours, t_faiss = alternate(run_ours, run_faiss, repeats)
    _, ids_ours = exact_search(queries, docs, k=k)
    _, ids_faiss = index.search(q_np, k)
    return {
        "docs": n_docs, "queries": n_queries, "dim": dim, "k": k,
        "tinyir_queries_per_s": round(n_queries / t_ours, 1),
        "faiss_queries_per_s": round(n_queries / t_faiss, 1),
        "ratio": round(t_faiss / t_ours, 3), "goal": 0.8,
        "same_ids": bool(np.array_equal(ids_ours.numpy(), ids_faiss)),
    }


def bench_bm25(docs: list[str], queries: list[str], k: int, repeats: int) -> dict:
    import bm25s

    from tinyir.bm25 import BM25, tokenize

    doc_tokens = [tokenize(t) for t in docs]
    query_tokens = [tokenize(t) for t in queries]

    def run_ours():
        model = BM25()
        model.index(doc_tokens, progress=False)
        model.search(query_tokens, k=k)

    def run_bm25s():
        model = bm25s.BM25(method="lucene")
        model.index(doc_tokens, show_progress=False)
        model.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)

    run_ours(), run_bm25s()
    t_ours, t_theirs = alternate(run_ours, run_bm25s, repeats)
    return {
        "docs": len(docs), "queries": len(queries), "k": k,
        "tinyir_seconds": round(t_ours, 4), "bm25s_seconds": round(t_theirs, 4),
        "ratio": round(t_theirs / t_ours, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=512, help="texts to encode")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["encode", "search", "bm25", "maxsim"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    results: dict = {"threads": args.threads, "torch": torch.__version__}
    if args.only in (None, "search"):
        results["search"] = bench_search(100_000, 1_000, 384, 10, args.repeats)
    if args.only in (None, "maxsim"):
        results["maxsim"] = bench_maxsim(32, 32, 2000, 512, 128, args.repeats)
    if args.only in (None, "bm25", "encode"):
        docs, queries = course_texts(max(args.docs, 5000))
    if args.only in (None, "bm25"):
        results["bm25"] = bench_bm25(docs, queries[:1000], 10, args.repeats)
    if args.only in (None, "encode"):
        results["encode"] = bench_encode(docs[: args.docs], args.batch_size, args.repeats)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
