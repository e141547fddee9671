"""The claims ledger: each verdict follows from the arithmetic it shows."""

from __future__ import annotations

import pytest

from tinyir.course import claims


def test_storage_holds_at_fp16_only():
    row = claims.storage_claim()
    assert row.verdict == claims.ASSUMPTION and "205 GB at fp16" in row.found
    assert "819 GB" in row.found and "1638 GB" in row.found


def test_colbertv2_is_bytes_not_bits():
    row = claims.colbert_bits_claim()
    assert row.verdict == claims.WRONG and "36 bytes (288 bits)" in row.found


def test_colbert_storage_ratio_is_tokens_times_width():
    row = claims.colbert_storage_claim(tokens_per_passage=90, colbert_dim=128, single_dim=384)
    assert "90x at the same width" in row.found and "30x with 128-d" in row.found


def test_derived_flops_and_latency():
    # 2 FLOPs per weight per token + attention; MiniLM at 512 tokens is about 13 GFLOPs
    assert claims.forward_flops(10.6e6, 512, 6, 384) == pytest.approx(2 * 10.6e6 * 512
                                                                      + 4 * 6 * 512**2 * 384)
    row = claims.gpu_latency_claim()
    assert row.kind == "derived" and "0.11 ms" in row.found and "2.68 ms" in row.found


def test_in_batch_negatives_and_masking():
    assert claims.in_batch_negatives_claim().verdict == claims.HOLDS
    assert "2047" in claims.in_batch_negatives_claim(hard=1).right
    assert claims.masking_claim().verdict == claims.HOLDS
    assert claims.masking_claim(0.3).verdict == claims.WRONG


def test_eighty_gb_needs_bits_per_dimension():
    row = claims.eighty_gb_claim()
    assert row.verdict == claims.ASSUMPTION and "a factor 100 short" in row.found
    assert "400 B per token" in row.found and "100-dim fp32" in row.right


def test_mteb_top_reads_the_published_table():
    from tinyir.course import leaderboard

    row = claims.mteb_top_claim()
    model, score, _ = leaderboard.top_average()
    assert f"{model} {score:.2f}" in row.found and 65 < score < 80  # "around 70" as published
    assert row.verdict == claims.ASSUMPTION and "v1" in row.right


def test_cross_encoder_cost_is_measured_and_conditional():
    row = claims.cross_encoder_cost_claim(1234.4, 1000)
    assert "1,234x per candidate" in row.found and "1,000 candidates" in row.found
    assert "above 100x" in row.right
    assert "below 100x" in claims.cross_encoder_cost_claim(40, 32).right


def test_ledger_renders_every_row():
    rows = claims.ledger(tokens_per_passage=80, reranker=(0.69, 0.72, 0.01, 0.05),
                         cross_encoder_cost=(500.0, 1000))
    table = claims.to_markdown(rows)
    assert table.count("\n") == len(rows) + 1
    assert "+0.030 [+0.010, +0.050]" in table
