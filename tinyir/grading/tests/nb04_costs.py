"""Grading tests for 04_costs.ipynb: index sizes and cross-encoder latency (plain arithmetic).

Beyond the self-checks: binary and odd bit widths, zero vectors, the student's own ColBERT
assumptions (plausible, and consistent with the size they computed), pair counts of 0 and
fractional milliseconds. No torch: this module imports nothing heavy.
"""

from __future__ import annotations

from tinyir.grading.checks import assert_close, check

NOTEBOOK = "04_costs.ipynb"
# tinyir's own answers: the student's process cannot call them while this notebook is graded.
REFERENCES = [
    "tinyir.storage:bytes_per_vector",
    "tinyir.storage:storage_cost",
]


@check("costs.index_size_bytes", cases={
    "1M x 1024 fp32": {"args": (1_000_000, 1024, 32), "expected": 4.096e9},
    "1M x 1024 fp16": {"args": (1_000_000, 1024, 16), "expected": 2.048e9},
    "1M x 1024 int8": {"args": (1_000_000, 1024, 8), "expected": 1.024e9},
    "1M x 1024 binary": {"args": (1_000_000, 1024, 1), "expected": 1.28e8},
    "3 x 7 at 4 bits": {"args": (3, 7, 4), "expected": 10.5},
    "no vectors": {"args": (0, 768, 32), "expected": 0.0},
})
def index_sizes(index_size_bytes, args, expected):
    """Sizes at fp32, fp16, int8, binary and an odd bit width."""
    assert_close(index_size_bytes(*args), expected, f"index_size_bytes{args}", atol=1e-9, rtol=1e-9)


@check("costs.colbert_index")
def colbert_assumptions_are_plausible(COLBERT_TOKENS_PER_DOC, COLBERT_DIM, COLBERT_BITS):  # noqa: N803
    """Tokens per document, dims per token and bits per value in sensible ranges."""
    for name, value, low, high in (
        ("COLBERT_TOKENS_PER_DOC", COLBERT_TOKENS_PER_DOC, 16, 4096),
        ("COLBERT_DIM", COLBERT_DIM, 16, 1024),
        ("COLBERT_BITS", COLBERT_BITS, 1, 32),
    ):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (
            f"{name}: expected a number, got {type(value).__name__} {value!r}")
        assert low <= value <= high, f"{name}: expected a value in [{low}, {high}], got {value!r}"


@check("costs.colbert_index")
def colbert_size_follows_from_assumptions(COLBERT_TOKENS_PER_DOC, COLBERT_DIM, COLBERT_BITS,  # noqa: N803
                                          colbert_index_gb):
    """colbert_index_gb = 1M docs x tokens x dims x bits / 8 / 1e9."""
    expected = 1_000_000 * COLBERT_TOKENS_PER_DOC * COLBERT_DIM * COLBERT_BITS / 8 / 1e9
    assert_close(colbert_index_gb, expected, "colbert_index_gb for your assumptions (in GB, 1e9 "
                 "bytes)", rtol=1e-6)


@check("costs.cross_encoder_seconds", cases={
    "1M pairs at 10 ms": {"args": (1_000_000, 10), "expected": 10_000.0},
    "100 pairs at 10 ms": {"args": (100, 10), "expected": 1.0},
    "no pairs": {"args": (0, 5), "expected": 0.0},
    "3 pairs at 2.5 ms": {"args": (3, 2.5), "expected": 0.0075},
})
def cross_encoder_times(cross_encoder_seconds, args, expected):
    """Sequential scoring time in seconds."""
    assert_close(cross_encoder_seconds(*args), expected, f"cross_encoder_seconds{args}",
                 atol=1e-12, rtol=1e-9)


@check("costs.latency_answers")
def full_scan_hours_value(full_scan_hours):
    """1M pairs x 10 ms = 10,000 s, about 2.8 hours per query."""
    assert_close(full_scan_hours, 10_000 / 3600, "full_scan_hours (in HOURS)", rtol=1e-3)


@check("costs.latency_answers")
def rerank_seconds_value(rerank_top100_seconds):
    """100 pairs x 10 ms = 1 s per query."""
    assert_close(rerank_top100_seconds, 1.0, "rerank_top100_seconds (in SECONDS)", rtol=1e-3)
