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
- encode_onnx: all-MiniLM-L6-v2 exported from tinyir's own encoder to ONNX, run by ONNX Runtime
  (CPU, --threads intra-op threads, graph optimizations on) on the same texts, tokenizer,
  length-sorted batches and max length (256) as tinyir; the embeddings must agree.
  ``ratio``: tinyir fp32 / ORT fp32 texts/s, goal >= 1.0; ``ratio_vs_ort_fp32`` also for
  tinyir's fast paths (``tinyir.inference``: int8, and bf16 where the CPU has it natively) and
  ORT's own int8 dynamic quantization (a second anchor, no goal).
- encode_fast: what the fast paths cost: nDCG@10 on the pydocs dev split (exact search over the
  whole corpus) of fp32 and each fast path, and the paired bootstrap 95% interval of
  fast - fp32 over queries. Goal: the interval includes 0 or stays above -0.005. Encodes the
  corpus once per path (minutes on 2 cores); run it alone with ``--only encode_fast``.

Usage: python benchmarks/run_all.py [--docs 512] [--repeats 3] [--threads 2] [--only KEY]
"""

from __future__ import annotations

import argparse
import functools
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


def round_robin(fns: dict, repeats: int) -> dict[str, float]:
    """Best time of each function, timed in turn ``repeats`` rounds (``alternate`` for many)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(best_time(fn, 1))
    return {name: min(values) for name, values in times.items()}


class OnnxBiEncoder(torch.nn.Module):
    """``BiEncoder.forward`` as a traceable graph: (input_ids, attention_mask) -> embeddings.

    ``Encoder.forward`` reads the mask to skip it when it is all ones, a data-dependent branch
    that export cannot trace; this always adds the mask as a bias (0 or the dtype's minimum,
    as ``Encoder.attention_bias``), which gives the same numbers, then pools and normalizes.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from tinyir.pooling import l2_normalize, pool

        encoder = self.model.encoder
        x = encoder.embeddings(input_ids)  # (B, T, C)
        padded = attention_mask[:, None, None, :] == 0  # (B, 1, 1, T)
        bias = torch.zeros(padded.shape, dtype=x.dtype).masked_fill(padded, torch.finfo(x.dtype).min)
        for block in encoder.layers:
            x, _ = block(x, bias)
        embeddings = pool(x, attention_mask, self.model.pooling)  # (B, C)
        return l2_normalize(embeddings) if self.model.normalize else embeddings


def export_onnx(model, path: Path) -> Path:
    """Export a tinyir BiEncoder to ONNX (torch.export + onnxscript: ``dynamo=True``), with
    dynamic batch and sequence axes and the weights inside the one file."""
    sample = model.tokenize(["a short text", "a somewhat longer text to pad the first one"])
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=model.max_length)
    axes = {0: batch, 1: seq}
    torch.onnx.export(
        OnnxBiEncoder(model).eval(), (sample["input_ids"], sample["attention_mask"]), str(path),
        dynamo=True, external_data=False, input_names=["input_ids", "attention_mask"],
        output_names=["embeddings"],
        dynamic_shapes={"input_ids": axes, "attention_mask": axes},
    )
    return path


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_encode(session, model, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    """``BiEncoder.encode``'s loop with ONNX Runtime as the model: the same tokenizer, the same
    chunks sorted by characters and batches sorted by tokens, rows put back in order."""
    from tinyir.batching import length_batches
    from tinyir.biencoder import _BATCHES_PER_CHUNK

    out = np.empty((len(texts), model.embedding_dim), dtype=np.float32)
    for rows in length_batches([len(t) for t in texts], batch_size * _BATCHES_PER_CHUNK):
        ids = model.tokenizer.encode_ids([texts[i] for i in rows], max_length)
        for picked in length_batches([len(x) for x in ids], batch_size):
            batch = model.tokenizer.pad([ids[j] for j in picked])
            feeds = {name: tensor.numpy() for name, tensor in batch.items()}
            out[[rows[j] for j in picked]] = session.run(None, feeds)[0]
    return out


def min_cosine(a, b) -> float:
    """Smallest per-row cosine of two (N, C) sets of unit embeddings."""
    return round(float((torch.as_tensor(a) * torch.as_tensor(b)).sum(dim=1).min()), 5)


def bench_encode_onnx(texts: list[str], batch_size: int, threads: int, repeats: int) -> dict:
    """tinyir (fp32, int8, bf16) and ONNX Runtime (fp32, int8) on one model, texts and batching."""
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tinyir.biencoder import BiEncoder
    from tinyir.inference import native_bfloat16, quantize_dynamic_int8, to_bfloat16
    from tinyir.testing import assert_close

    max_length = 256
    fp32 = BiEncoder.minilm(device=torch.device("cpu"))
    models = {"tinyir_fp32": fp32, "tinyir_int8": quantize_dynamic_int8(fp32)}
    if native_bfloat16():  # emulated bf16 is slower than fp32: nothing to measure
        models["tinyir_bf16"] = to_bfloat16(fp32)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(fp32, Path(tmp) / "minilm.onnx")
        int8_path = Path(tmp) / "minilm_int8.onnx"
        quantize_dynamic(onnx_path, int8_path, per_channel=True, weight_type=QuantType.QInt8)
        sessions = {"ort_fp32": ort_session(onnx_path, threads),
                    "ort_int8": ort_session(int8_path, threads)}

    def run(name):
        if name in models:
            return models[name].encode(texts, batch_size=batch_size, max_length=max_length,
                                       progress=False)
        return ort_encode(sessions[name], fp32, texts, batch_size, max_length)

    embeddings = {name: run(name) for name in [*models, *sessions]}  # also warms every path up
    # the same math in another runtime: 6 layers, then pooling and normalization
    max_diff = assert_close(embeddings["ort_fp32"], embeddings["tinyir_fp32"],
                            depth=fp32.encoder.config.num_layers + 2, scale=1.0,
                            what="ONNX Runtime vs tinyir embeddings")
    seconds = round_robin({name: functools.partial(run, name) for name in embeddings}, repeats)
    per_s = {name: round(len(texts) / t, 1) for name, t in seconds.items()}
    return {
        "texts": len(texts), "batch_size": batch_size, "max_length": max_length,
        "exporter": "torch.onnx.export(dynamo=True)", "onnxruntime": ort.__version__,
        "native_bfloat16": native_bfloat16(),
        "tinyir_texts_per_s": per_s["tinyir_fp32"], "ort_texts_per_s": per_s["ort_fp32"],
        "ratio": round(seconds["ort_fp32"] / seconds["tinyir_fp32"], 3), "goal": 1.0,
        "max_abs_diff_vs_ort": float(f"{max_diff:.2e}"),
        # every path against ONNX Runtime fp32 (speed) and tinyir fp32 (embeddings)
        "texts_per_s": per_s,
        "ratio_vs_ort_fp32": {name: round(seconds["ort_fp32"] / t, 3)
                              for name, t in seconds.items() if name != "ort_fp32"},
        "int8_ratio_vs_ort_int8": round(seconds["ort_int8"] / seconds["tinyir_int8"], 3),
        "min_cosine_vs_fp32": {name: min_cosine(e, embeddings["tinyir_fp32"])
                               for name, e in embeddings.items() if name != "tinyir_fp32"},
    }


def bench_encode_fast(batch_size: int) -> dict:
    """nDCG@10 on pydocs dev of MiniLM in fp32 and each fast path: exact search over the whole
    corpus, per query, and the paired bootstrap interval of (fast - fp32)."""
    from tinyir.beir import load_beir
    from tinyir.biencoder import BiEncoder
    from tinyir.evaluate import dense_run
    from tinyir.inference import native_bfloat16, quantize_dynamic_int8, to_bfloat16
    from tinyir.metrics import paired_bootstrap, per_query
    from tinyir.pydocs import PYDOCS_DIR

    ds = load_beir(PYDOCS_DIR, split="dev")
    fp32 = BiEncoder.minilm(device=torch.device("cpu"))
    fast = {"int8": quantize_dynamic_int8(fp32)}
    if native_bfloat16():
        fast["bf16"] = to_bfloat16(fp32)

    def ndcg(model) -> dict[str, float]:
        return per_query(dense_run(model, ds, k=10, batch_size=batch_size), ds.qrels, "ndcg@10")

    base = ndcg(fp32)
    result = {"split": "dev", "queries": len(base), "docs": len(ds.corpus),
              "ndcg@10": {"fp32": round(float(np.mean(list(base.values()))), 4)}, "difference": {}}
    for name, model in fast.items():
        scores = ndcg(model)
        result["ndcg@10"][name] = round(float(np.mean(list(scores.values()))), 4)
        diff = paired_bootstrap(scores, base, metric="ndcg@10")
        result["difference"][name] = {
            "mean": round(diff.difference, 4), "ci95": [round(diff.low, 4), round(diff.high, 4)],
            "meets_goal": diff.low > -0.005 or not diff.significant,
        }
    result["goal"] = "the interval includes 0 or stays above -0.005"
    return result


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
    parser.add_argument("--only", choices=["encode", "search", "bm25", "maxsim", "encode_onnx",
                                           "encode_fast"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    results: dict = {"threads": args.threads, "torch": torch.__version__}
    if args.only in (None, "search"):
        results["search"] = bench_search(100_000, 1_000, 384, 10, args.repeats)
    if args.only in (None, "maxsim"):
        results["maxsim"] = bench_maxsim(32, 32, 2000, 512, 128, args.repeats)
    if args.only in (None, "bm25", "encode", "encode_onnx"):
        docs, queries = course_texts(max(args.docs, 5000))
    if args.only in (None, "bm25"):
        results["bm25"] = bench_bm25(docs, queries[:1000], 10, args.repeats)
    if args.only in (None, "encode"):
        results["encode"] = bench_encode(docs[: args.docs], args.batch_size, args.repeats)
    if args.only in (None, "encode_onnx"):
        results["encode_onnx"] = bench_encode_onnx(docs[: args.docs], args.batch_size,
                                                   args.threads, args.repeats)
    if args.only in (None, "encode_fast"):
        results["encode_fast"] = bench_encode_fast(args.batch_size)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
