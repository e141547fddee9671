"""The storage calculator widget: its table function, its text report, and the widget itself."""

from __future__ import annotations

import pytest

from tinyir.course.widgets import (
    format_table,
    storage_calculator,
    storage_calculator_table,
    storage_report,
)
from tinyir.storage import storage_cost


def test_book_exercise_1m_by_1024():
    rows = storage_calculator_table(1_000_000, 1024)
    assert [r["dtype"] for r in rows] == ["fp32", "fp16", "int8", "binary"]
    assert [r["bytes"] for r in rows] == [4_096_000_000, 2_048_000_000, 1_024_000_000,
                                          128_000_000]
    assert [r["human_rounded"] for r in rows[:3]] == ["4 GB", "2 GB", "1 GB"]
    assert [r["vs_fp32"] for r in rows] == [1, 0.5, 0.25, 1 / 32]
    assert all(r["index_overhead"] == 0 for r in rows)
    assert rows[0]["bytes_per_doc"] == 4096


def test_rows_match_storage_cost_for_multi_vector_hnsw():
    rows = storage_calculator_table(10_000, 128, vectors_per_doc=200, index="hnsw", hnsw_m=16)
    for row in rows:
        cost = storage_cost(10_000, 128, dtype=row["dtype"], vectors_per_doc=200,
                            index="hnsw", hnsw_m=16)
        assert row["bytes"] == cost.bytes
        assert row["vectors"] + row["index_overhead"] == row["bytes"]
        assert row["assumptions"] == cost.assumptions
    # the graph links do not shrink with the dtype, so the ratio to fp32 is worse than 1/32
    assert rows[-1]["vs_fp32"] > 1 / 32


def test_vs_fp32_without_fp32_row():
    rows = storage_calculator_table(1000, 64, dtypes=("int8",))
    assert rows[0]["vs_fp32"] == 0.25


def test_ivfpq_ignores_dtype():
    rows = storage_calculator_table(100_000, 256, index="ivfpq")
    assert len({r["bytes"] for r in rows}) == 1


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="dtypes"):
        storage_calculator_table(10, 8, dtypes=())
    with pytest.raises(ValueError, match="dtype"):
        storage_calculator_table(10, 8, dtypes=("fp8",))
    with pytest.raises(ValueError, match="docs"):
        storage_calculator_table(0, 8)


def test_format_table_and_report():
    rows = storage_calculator_table(1_000_000, 1024)
    text = format_table(rows, selected="int8")
    assert "-> int8" in text and "4.1 GB" in text and "0.25x" in text
    report = storage_report(1_000_000, 1024, "fp16")
    assert "fp16: 2.05 GB (2,048,000,000 B)" in report
    assert "1024 dims x 2 B (fp16) = 2048 B per vector" in report


def test_widget_falls_back_to_text(monkeypatch, capsys):
    monkeypatch.setenv("TINYIR_PLAIN_QUIZ", "1")
    assert storage_calculator(docs=1000, dim=8, dtype="binary") is None
    assert "-> binary" in capsys.readouterr().out


def test_widget_builds_and_updates(monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    monkeypatch.setattr("tinyir.course.quiz._widgets_available", lambda: True)
    box = storage_calculator(docs=1000, dim=8)
    assert isinstance(box, widgets.VBox)
    *inputs, output = box.children
    dtype = next(w for w in inputs if w.description == "dtype")
    dtype.value = "int8"  # observe() recomputes the report
    docs = next(w for w in inputs if w.description == "documents")
    docs.value = 0  # an invalid input prints the reason instead of raising
    assert isinstance(output, widgets.Output)
