"""The reader's edition in a real browser: the site `make book` builds from the notebooks this run
executed, opened from disk in headless Chromium (Debian's, through Playwright, as the quiz test).

Every page: no broken internal link (files and in-page anchors), every image loaded with a
non-zero size, no error output, no request leaving the disk; the contents page lists the lessons
and solutions in course order with their run times.

It needs this session's executed copies, so conftest.py runs it after the notebooks; alone (no
notebook run in this session and no fresh copies in build/executed/) it skips and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_harness import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

from tinyir.course import book

pytestmark = [*BROWSER_MARKS, pytest.mark.book, pytest.mark.timeout(900)]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="needs Playwright's Python package (pip install playwright)")

# Run in the page: what is wrong with it, as a list of strings ([] when nothing is).
PAGE_CHECKS = """() => {
  const problems = [];
  for (const a of document.querySelectorAll("a[href]")) {
    const href = a.getAttribute("href");
    if (href.startsWith("#")) {
      const id = href.slice(1);
      if (!document.getElementById(id) && !document.getElementById(decodeURIComponent(id)))
        problems.push("anchor without a target: " + href);
    } else if (!a.href.startsWith("file://")) {
      problems.push("link off the disk: " + href);
    }
  }
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0 || img.naturalHeight === 0)
      problems.push("image not loaded: " + img.src.slice(0, 80));
  }
  for (const svg of document.querySelectorAll(".jp-OutputArea-output svg")) {
    const box = svg.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) problems.push("empty svg figure");
  }
  if (document.body.innerText.includes("Traceback (most recent call last)"))
    problems.push("an error output");
  return problems;
}"""


def test_every_page_of_the_book(tmp_path, request):
    unpublishable = [f"{p.source.name}: {why}" for p in book.pages() if (why := book.stale(p))]
    if unpublishable:
        ran = any(str(item.path).endswith(".ipynb") for item in request.session.items)
        if ran:  # the notebooks ran in this session: a copy that cannot be published is a failure
            pytest.fail("executed copies that cannot be published: " + "; ".join(unpublishable))
        pytest.skip("needs fresh executed notebooks: run `make test` (or `make book`) first")
    summary = book.build(tmp_path / "book", run=False)
    site = Path(summary["out"])
    files = sorted(site.rglob("*.html"))
    assert len(files) == summary["pages"] == len(book.pages()) + 1

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requested = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto((site / "index.html").as_uri())
            linked = page.eval_on_selector_all("table.tinyir-map a",
                                               "links => links.map(a => a.getAttribute('href'))")
            assert linked == [p.href for p in book.pages()]  # the course map, in order
            times = page.eval_on_selector_all("table.tinyir-map td:nth-child(2)",
                                              "cells => cells.map(c => c.innerText)")
            assert all(t.endswith(" s") for t in times) and len(times) == len(linked)
            problems = {}
            for path in files:
                page.goto(path.as_uri())
                found = page.evaluate(PAGE_CHECKS)
                if page.title() == "" or not page.inner_text("main").strip():
                    found.append("empty page")
                if found:
                    problems[str(path.relative_to(site))] = found
            assert problems == {}
            assert [u for u in requested if not u.startswith("file://")] == []
        finally:
            browser.close()
