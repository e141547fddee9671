"""Storage calculator: the book's figures, the FAISS layouts it claims to model, bad inputs."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from tinyir.storage import (
    BYTES_PER_DIM,
    bytes_per_vector,
    format_bytes,
    hnsw_links_per_vector,
    required_assumption,
    solve_for,
    storage_cost,
    storage_table,
)


@pytest.mark.parametrize(
    ("dtype", "expected_bytes", "human", "book"),
    [
        ("fp32", 4_096_000_000, "4.1 GB", "4 GB"),
        ("fp16", 2_048_000_000, "2.05 GB", "2 GB"),
        ("int8", 1_024_000_000, "1.02 GB", "1 GB"),
        ("binary", 128_000_000, "128 MB", "100 MB"),
    ],
)
def test_book_exercise_one_million_by_1024(dtype, expected_bytes, human, book):
    cost = storage_cost(1_000_000, 1024, dtype=dtype)
    assert cost.bytes == expected_bytes
    assert cost.human == human
    assert format_bytes(cost.bytes, significant=1) == book
    assert cost.breakdown == {"vectors": expected_bytes, "index_overhead": 0}


def test_format_bytes_conventions():
    assert format_bytes(0) == "0 B"
    assert format_bytes(512) == "512 B"
    assert format_bytes(800_000_000) == "800 MB"
    assert format_bytes(1500) == "1.5 kB"
    assert format_bytes(999_600_000) == "1 GB"  # rounding carries into the next unit
    assert format_bytes(51_200_000_000) == "51.2 GB"


def test_multi_vector_colbert_case():
    # 1M docs x 200 tokens x 128 dims x fp16 = 51.2 GB
    cost = storage_cost(1_000_000, 128, dtype="fp16", vectors_per_doc=200)
    assert cost.bytes == 1_000_000 * 200 * 128 * 2
    assert cost.human == "51.2 GB"
    # a fractional mean token count rounds the vector count up
    assert storage_cost(3, 8, vectors_per_doc=1.5).bytes == 5 * 8 * 4


def test_to_dict_is_json_and_lists_assumptions():
    cost = storage_cost(1000, 64, index="hnsw")
    payload = json.loads(json.dumps(cost.to_dict()))
    assert payload["bytes"] == cost.bytes
    assert payload["human"] == cost.human
    assert payload["inputs"]["hnsw_m"] == 32
    assert any("HNSW" in line for line in payload["assumptions"])
    assert cost.bytes == sum(cost.breakdown.values())
    assert cost.breakdown["index_overhead"] == sum(cost.overhead_parts.values())


def test_binary_bytes_round_up_to_whole_bytes():
    assert bytes_per_vector(1024, "binary") == 128
    assert bytes_per_vector(100, "binary") == 13
    assert bytes_per_vector(384, "bf16") == 768


def test_hnsw_links_formula():
    assert hnsw_links_per_vector(32) == pytest.approx(64 + 32 / 31)
    assert hnsw_links_per_vector(16) == pytest.approx(32 + 16 / 15)


@pytest.mark.parametrize("hnsw_m", [16, 32])
def test_hnsw_overhead_matches_serialized_faiss_index(hnsw_m):
    n, dim = 20_000, 64
    x = np.random.default_rng(0).standard_normal((n, dim)).astype("float32")
    index = faiss.IndexHNSWFlat(dim, hnsw_m)
    index.add(x)
    actual = faiss.serialize_index(index).nbytes
    cost = storage_cost(n, dim, index="hnsw", hnsw_m=hnsw_m)
    # the overhead alone (not just the total) must match, within 2 %
    actual_overhead = actual - n * dim * 4
    assert cost.breakdown["index_overhead"] == pytest.approx(actual_overhead, rel=0.02)
    assert cost.bytes == pytest.approx(actual, rel=0.02)


def test_ivfpq_matches_serialized_faiss_index():
    n, dim, nlist, pq_m = 20_000, 64, 100, 8
    x = np.random.default_rng(0).standard_normal((n, dim)).astype("float32")
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, nlist, pq_m, 8)
    index.train(x)
    index.add(x)
    actual = faiss.serialize_index(index).nbytes
    cost = storage_cost(n, dim, index="ivfpq", pq_m=pq_m, nlist=nlist)
    assert cost.breakdown["vectors"] == n * pq_m
    assert cost.bytes == pytest.approx(actual, rel=0.02)


def test_storage_table_rows():
    rows = storage_table(1_000_000, 1024)
    assert [row["dtype"] for row in rows] == ["fp32", "fp16", "int8", "binary"]
    assert [row["bytes"] for row in rows] == [
        4_096_000_000,
        2_048_000_000,
        1_024_000_000,
        128_000_000,
    ]
    hnsw_rows = storage_table(1000, 64, dtypes=("fp32",), index="hnsw")
    assert hnsw_rows[0]["index_overhead"] > 0


def test_solve_for_each_unknown():
    target = 80e9  # "80 GB for 1M docs x 200 tokens"
    assert solve_for(target, "dim", docs=1e6, vectors_per_doc=200, dtype="fp32") == 100
    assert solve_for(target, "bytes_per_dim", docs=1e6, vectors_per_doc=200, dim=128) == 3.125
    assert solve_for(target, "vectors_per_doc", docs=1e6, dim=100, dtype="fp32") == 200
    assert solve_for(target, "docs", dim=100, vectors_per_doc=200, bytes_per_dim=4) == 1e6
    # round trip with storage_cost
    assert solve_for(4_096_000_000, "docs", dim=1024, dtype="fp32") == 1_000_000


def test_solve_for_errors():
    with pytest.raises(ValueError, match="unknown"):
        solve_for(1e9, "tokens", docs=1, dim=1, dtype="fp32")
    with pytest.raises(ValueError, match="dim"):
        solve_for(1e9, "dim", docs=1, dim=3, dtype="fp32")
    with pytest.raises(ValueError, match="docs"):
        solve_for(1e9, "dim", dtype="fp32")
    with pytest.raises(ValueError, match="dtype"):
        solve_for(1e9, "bytes_per_dim", docs=1, dim=3, dtype="fp32")


def test_required_assumption_for_the_80_gb_claim():
    # "~80 GB for 1M docs x 200 tokens at 32 bits per token"
    result = required_assumption(80e9, 1_000_000, vectors_per_doc=200, stated_bytes_per_vector=4)
    assert result.stated_bytes == 800_000_000
    assert result.factor == pytest.approx(100)
    assert result.required_bytes_per_vector == pytest.approx(400)
    assert result.dims_at["fp32"] == pytest.approx(100)
    assert result.dims_at["fp16"] == pytest.approx(200)
    assert any("100 dims at fp32" in line for line in result.explanation)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "fp64"}, "dtype.*fp32"),
        ({"index": "lsh"}, "index"),
        ({"docs": 0}, "docs"),
        ({"dim": -3}, "dim"),
        ({"vectors_per_doc": 0}, "vectors_per_doc"),
        ({"index": "ivfpq", "pq_m": 5}, "pq_m"),
        ({"index": "ivfpq", "dim": 24}, "pq_m"),
        ({"index": "hnsw", "hnsw_m": 1}, "hnsw_m"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, match):
    args = {"docs": 10, "dim": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        storage_cost(**args)


def test_known_dtypes():
    assert set(BYTES_PER_DIM) == {"fp32", "fp16", "bf16", "int8", "binary"}
