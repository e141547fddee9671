"""The GPU benchmark: one prepared run of a few minutes, saved as one JSON object.

Run it whenever a CUDA GPU is here (``make bench-gpu``); it writes
``benchmarks/results/gpu-<gpu>-<date>.json`` (or ``--out``) and prints the same object:

- encode: all-MiniLM-L6-v2 texts/second on the GPU at batch 32, 128 and 512, float32 and
  bfloat16 weights (course texts, max length 256, sorted by length as ``BiEncoder.encode`` does).
- maxsim: 1 and 32 queries x 32 tokens against 2,000 documents x 512 tokens, D = 128, float16:
  the fused Triton kernel, the chunked ``max_sim_matrix`` and the plain formula
  (``max_sim_reference``), with each one's peak GPU memory. The fused kernel's throughput is
  also given against the GPU's limits: ``bandwidth_fraction`` = bytes of document tokens read /
  time / peak memory bandwidth (the bound when few queries share a document), and
  ``roofline_fraction`` = the larger of the bandwidth and the tensor-core bound / time.
- search: exact top-10 on the GPU (``tinyir.search.exact_search``) against FAISS
  ``IndexFlatIP`` on this machine's CPU cores, same vectors, same ids.

Timings are CUDA-synchronized, best of ``--repeats`` after a warm-up. ``--dry-run`` runs every
step at toy sizes on the CPU (the fused kernel under TRITON_INTERPRET=1 when set), so the script
itself is tested on machines without a GPU (tests/test_benchmarks.py); its numbers mean nothing.

Usage: python benchmarks/gpu.py [--repeats 5] [--out PATH] [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tinyir.course.models_published import A100_80GB  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# Peak memory bandwidth (bytes/s) and dense fp16/bf16 tensor-core throughput (FLOP/s) from the
# vendors' data sheets, by a pattern of torch.cuda.get_device_name(). A GPU not listed is judged
# against the bandwidth measured by a device-to-device copy, and gets no compute bound.
DATASHEETS = [
    (r"H200", 4.8e12, 989e12),
    (r"H100.*(SXM|HBM3)", 3.35e12, 989e12),
    (r"H100", 2.0e12, 756e12),  # PCIe
    (r"A100.*80", A100_80GB.hbm_bytes_per_s, A100_80GB.flops_dense_bf16),  # as lesson 13 uses
    (r"A100", 1.555e12, 312e12),
    (r"L40S", 0.864e12, 362e12),
    (r"L4\b", 0.3e12, 121e12),
    (r"A10\b", 0.6e12, 125e12),
    (r"T4\b", 0.32e12, 65e12),
    (r"RTX 4090", 1.008e12, 165e12),
    (r"RTX 3090", 0.936e12, 71e12),
]


def datasheet(name: str) -> tuple[float | None, float | None]:
    for pattern, bandwidth, flops in DATASHEETS:
        if re.search(pattern, name):
            return bandwidth, flops
    return None, None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, device: torch.device, repeats: int) -> float:
    """Best of ``repeats`` synchronized wall times, after one warm-up call (compilation)."""
    from tinyir.course.timing import best_time as course_best_time

    sync(device)  # course_best_time synchronizes once CUDA is in use
    return course_best_time(fn, repeats=repeats, warmup=1)


def peak_memory(fn, device: torch.device) -> int | None:
    """Bytes of GPU memory ``fn`` allocated at its peak, beyond what was held before."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def copy_bandwidth(device: torch.device, n_bytes: int, repeats: int) -> float:
    """Bytes/s of a device-to-device copy (each byte read once and written once)."""
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * n_bytes / best_time(lambda: dst.copy_(src), device, repeats)


def bench_encode(device: torch.device, texts: list[str], batch_sizes: list[int],
                 repeats: int) -> dict:
    from tinyir.biencoder import BiEncoder

    out = {"texts": len(texts), "max_length": 256}
    for dtype in (torch.float32, torch.bfloat16):
        model = BiEncoder.minilm(device=device).to(dtype)
        for batch_size in batch_sizes:
            seconds = best_time(lambda m=model, b=batch_size: m.encode(
                texts, batch_size=b, max_length=256, progress=False), device, repeats)
            out[f"{str(dtype).removeprefix('torch.')}_batch{batch_size}_texts_per_s"] = round(
                len(texts) / seconds, 1)
        del model
    return out


def bench_maxsim(device: torch.device, n_queries: int, q_tokens: int, n_docs: int,
                 d_tokens: int, dim: int, repeats: int, bandwidth: float,
                 peak_flops: float | None) -> dict:
    from tinyir import maxsim_triton
    from tinyir.maxsim import max_sim_matrix, max_sim_reference
    from tinyir.testing import assert_close

    gen = torch.Generator().manual_seed(0)
    dtype = torch.float16
    q = torch.nn.functional.normalize(torch.randn(n_queries, q_tokens, dim, generator=gen), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(n_docs, d_tokens, dim, generator=gen), dim=-1)
    q, d = q.to(device, dtype), d.to(device, dtype)
    runs = {"chunked": lambda: max_sim_matrix(q, None, d, None),
            "reference": lambda: max_sim_reference(q, d)}
    if maxsim_triton.use_fused(device, dtype):
        runs["fused"] = lambda: maxsim_triton.fused_max_sim_matrix(q, None, d, None)
    expected = max_sim_matrix(q.float(), None, d.float(), None)  # exact fp16 products
    out = {"queries": n_queries, "query_tokens": q_tokens, "docs": n_docs,
           "doc_tokens": d_tokens, "dim": dim, "dtype": "float16"}
    with torch.no_grad():
        for name, fn in runs.items():
            # chunked and reference round their results to float16; the fused kernel keeps float32
            assert_close(fn().float(), expected, depth=2,
                         dtype="float16" if name != "fused" else "float32",
                         what=f"MaxSim {name} on {device}")
            seconds = best_time(fn, device, repeats)
            out[f"{name}_seconds"] = round(seconds, 6)
            out[f"{name}_peak_bytes"] = peak_memory(fn, device)
    doc_bytes = n_docs * d_tokens * dim * d.element_size()
    flops = 2 * n_queries * q_tokens * n_docs * d_tokens * dim
    if "fused" in runs:
        t = out["fused_seconds"]
        out["fused_vs_chunked"] = round(out["chunked_seconds"] / t, 3)
        out["fused_vs_reference"] = round(out["reference_seconds"] / t, 3)
        out["fused_doc_bytes_per_s"] = round(doc_bytes / t)
        out["bandwidth_fraction"] = round(doc_bytes / t / bandwidth, 3)
        bound = max(doc_bytes / bandwidth, flops / peak_flops if peak_flops else 0.0)
        out["roofline_fraction"] = round(bound / t, 3)
        out["bandwidth_goal"] = 0.5
    out["chunked_vs_reference"] = round(out["reference_seconds"] / out["chunked_seconds"], 3)
    return out


def bench_search(device: torch.device, n_docs: int, n_queries: int, dim: int, k: int,
                 repeats: int) -> dict:
    import faiss
    import numpy as np

    from tinyir.search import exact_search

    gen = torch.Generator().manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(n_docs, dim, generator=gen), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(n_queries, dim, generator=gen), dim=-1)
    index = faiss.IndexFlatIP(dim)
    index.add(docs.numpy())
    q_dev, d_dev = queries.to(device), docs.to(device)
    t_ours = best_time(lambda: exact_search(q_dev, d_dev, k=k), device, repeats)
    t_faiss = best_time(lambda: index.search(queries.numpy(), k), torch.device("cpu"), repeats)
    _, ids_ours = exact_search(q_dev, d_dev, k=k)
    _, ids_faiss = index.search(queries.numpy(), k)
    same = float(np.mean(ids_ours.cpu().numpy() == ids_faiss))  # ties may order differently
    return {"docs": n_docs, "queries": n_queries, "dim": dim, "k": k,
            "tinyir_queries_per_s": round(n_queries / t_ours, 1),
            "faiss_cpu_queries_per_s": round(n_queries / t_faiss, 1),
            "faiss_threads": faiss.omp_get_max_threads(),
            "ratio": round(t_faiss / t_ours, 3), "same_ids_fraction": round(same, 4)}


def course_texts(n: int) -> list[str]:
    from tinyir.beir import load_beir
    from tinyir.pydocs import PYDOCS_DIR

    return load_beir(PYDOCS_DIR, split="test").doc_texts()[:n]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="where to save the JSON")
    parser.add_argument("--dry-run", action="store_true",
                        help="toy sizes on the CPU: checks the script, not the GPU")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected an int >= 1, got {args.repeats}")
    if args.dry_run:
        device = torch.device("cpu")
        sizes = {"texts": 64, "batches": [8, 32], "maxsim": (2000 // 100, 64), "search": 5000}
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        sizes = {"texts": 4096, "batches": [32, 128, 512], "maxsim": (2000, 512),
                 "search": 1_000_000}
    else:
        sys.exit("bench-gpu: no CUDA GPU here (torch.cuda.is_available() is False); "
                 "--dry-run checks the script on the CPU")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    bandwidth, peak_flops = datasheet(name)
    measured = copy_bandwidth(device, 2**30 if device.type == "cuda" else 2**24, args.repeats)
    results: dict = {
        "gpu": name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "host": platform.node(), "dry_run": args.dry_run,
        "datasheet_bandwidth_bytes_per_s": bandwidth, "datasheet_fp16_flops": peak_flops,
        "measured_copy_bandwidth_bytes_per_s": round(measured),
    }
    bandwidth = bandwidth or measured
    n_docs, d_tokens = sizes["maxsim"]
    results["encode"] = bench_encode(device, course_texts(sizes["texts"]), sizes["batches"],
                                     args.repeats)
    results["maxsim_1_query"] = bench_maxsim(device, 1, 32, n_docs, d_tokens, 128, args.repeats,
                                             bandwidth, peak_flops)
    results["maxsim_32_queries"] = bench_maxsim(device, 32, 32, n_docs, d_tokens, 128,
                                                args.repeats, bandwidth, peak_flops)
    results["search"] = bench_search(device, sizes["search"], 1000, 384, 10, args.repeats)

    from tinyir.atomic import write_atomic

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = args.out or RESULTS / f"gpu-{slug}-{results['date']}.json"
    write_atomic(out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"saved {out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
