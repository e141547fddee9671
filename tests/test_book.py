"""The reader's edition (tinyir.course.book): math becomes MathML, widgets their static fallback,
stale or failed executions are refused by name, and the site is offline (no script, no URL).

The real site, page by page in Chromium, is tests/test_browser_book.py."""

from __future__ import annotations

import hashlib
import re

import nbformat
import pytest

from tinyir.course import book
from tinyir.course.book import WIDGET_NOTE, WIDGET_VIEW, math_to_mathml, static_outputs


def test_math_becomes_mathml_and_dollar_amounts_stay_text():
    text = math_to_mathml("If $\\lVert a \\rVert = 1$ then\n$$\\frac{a}{b}$$\nIt costs $5 or $10.")
    assert text.count("<math") == 2
    assert 'display="block"' in text and 'display="inline"' in text
    assert "<mfrac>" in text
    assert "It costs $5 or $10." in text
    assert math_to_mathml("no math here: a $ sign") == "no math here: a $ sign"


def _widget(plain: str, html: str | None = None) -> dict:
    data = {"text/plain": plain, WIDGET_VIEW: {"model_id": "x", "version_major": 2}}
    if html is not None:
        data["text/html"] = html
    return {"output_type": "display_data", "data": data, "metadata": {}}


def test_widgets_show_their_fallback_a_note_or_nothing():
    text = {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"},
             "metadata": {}}
    quiz = _widget("Concept check ...", "<div>questions</div>")
    bar = _widget("train:  40%|####      | 4/10 [00:01<00:02, 3.1step/s]")
    slider = _widget("interactive(children=(SelectionSlider(...)))")
    kept = static_outputs([text, image, quiz, bar, slider])
    assert kept[:2] == [text, image]
    assert kept[2]["data"] == {"text/html": "<div>questions</div>"}
    assert kept[3]["data"] == {"text/html": WIDGET_NOTE}
    assert len(kept) == 4  # the progress bar is left out


def _notebook(title: str, outputs: list | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWith $x^2$ in it."),
                nbformat.v4.new_code_cell("print('hi')")]
    nb.cells[1].outputs = [nbformat.from_dict(o) for o in outputs or []]
    return nb


def _course(root, names=("00_start", "01_next"), solutions=("01_next",)):
    """A tiny course under ``root`` with executed copies as conftest.py writes them."""
    for folder, stems in (("notebooks", names), ("solutions", solutions)):
        for stem in stems:
            source = root / folder / f"{stem}.ipynb"
            source.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(_notebook(stem), source)
            executed = _notebook(stem, [{"output_type": "stream", "name": "stdout",
                                         "text": f"ran {stem}\n"}])
            executed.metadata["tinyir"] = {"executed": {
                "complete": True, "cells_run": 1, "cells_failed": 0, "seconds": 12.3,
                "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}}
            target = root / "build" / "executed" / folder / f"{stem}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, target)


def test_build_writes_pages_in_course_order_offline(tmp_path):
    _course(tmp_path)
    summary = book.build(tmp_path / "site", root=tmp_path, run=False)
    site = tmp_path / "site"
    assert summary["pages"] == 4
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*.html")) == [
        "index.html", "notebooks/00_start.html", "notebooks/01_next.html",
        "solutions/01_next.html"]
    index = (site / "index.html").read_text()
    assert index.index("00_start") < index.index("notebooks/01_next") < index.index("solutions/")
    assert "12 s" in index
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "<script" not in text, page
        assert not re.search(r"(src|href)=\"(https?:)?//", text), page  # nothing fetched
        for link in re.findall(r'href="([^"#]+)"', text):
            assert (page.parent / link).resolve().is_file(), (page, link)
    lesson = (site / "notebooks/00_start.html").read_text()
    assert "ran 00_start" in lesson and "<math" in lesson


def test_stale_incomplete_or_missing_copies_are_refused_by_name(tmp_path):
    _course(tmp_path)
    source = tmp_path / "notebooks" / "01_next.ipynb"
    source.write_text(source.read_text().replace("print('hi')", "print('changed')"))
    failed = tmp_path / "build" / "executed" / "solutions" / "01_next.ipynb"
    nb = nbformat.read(failed, as_version=4)
    nb.metadata["tinyir"]["executed"].update(complete=False, cells_failed=1)
    nbformat.write(nb, failed)
    (tmp_path / "build" / "executed" / "notebooks" / "00_start.ipynb").unlink()
    old = tmp_path / "site"
    old.mkdir()
    (old / "index.html").write_text("the old site")
    with pytest.raises(RuntimeError) as err:
        book.build(old, root=tmp_path, run=False)
    message = str(err.value)
    assert "notebooks/00_start.ipynb: not executed yet" in message
    assert "notebooks/01_next.ipynb: the notebook changed since it was executed" in message
    assert "solutions/01_next.ipynb: its last run was incomplete (1 cells failed" in message
    assert (old / "index.html").read_text() == "the old site"  # nothing half-written
