"""The reader's edition: the executed course as a static site, built from what ``make test`` ran.

    python -m tinyir.course.book                 # build/book/index.html (executes what is stale)
    python -m tinyir.course.book --no-execute    # fail instead of executing

``make test`` runs every lesson and solution notebook once (nbval, a fresh kernel each) and keeps
the executed copies in ``build/executed/`` (see conftest.py). This module turns those copies into
one HTML page per notebook, in course order, and a contents page with the course map and each
notebook's run time. A copy that is missing, incomplete (a cell failed or did not run) or older
than its source is executed first, by the same nbval run; one that still fails stops the build.

Offline by construction: a page holds no script and fetches nothing. Math is converted to MathML
at build time (``latex2mathml``; browsers render MathML themselves), figures are inline images,
one stylesheet (JupyterLab's, from nbconvert) sits beside the pages. Widgets cannot run in a
static page: the course's own carry a static fallback (a quiz's questions with the answers
folded away, the storage calculator's table for its starting inputs); any other widget becomes
a note saying so, and progress bars are left out.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tinyir.atomic import atomic_folder

ROOT = Path(__file__).resolve().parents[2]
BOOK_DIR = ROOT / "build" / "book"
FOLDERS = ("notebooks", "solutions")  # the book's parts, in this order
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ('<p class="tinyir-widget-note"><i>An interactive widget runs here in Jupyter; '
               "it cannot run in a static page. Open the notebook to use it.</i></p>")
NBVAL = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=600"]
# tqdm's widget bars show as text like "train:  40%|####      | 4/10 [00:01<00:02, 3.1step/s]"
_PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*[\d.]+[kM]?/[\d.?]+[kM]?\s*\[")
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])")


@dataclass(frozen=True)
class Page:
    source: Path      # notebooks/04_temperature.ipynb
    executed: Path    # build/executed/notebooks/04_temperature.ipynb
    href: str         # notebooks/04_temperature.html, relative to the book's root

    @property
    def name(self) -> str:
        return self.source.stem


def executed_copy(source: Path, root: Path = ROOT) -> Path:
    """Where the test run keeps ``source``'s executed copy: build/executed/<folder>/<name>."""
    return root / "build" / "executed" / source.parent.name / source.name


def pages(root: Path = ROOT) -> list[Page]:
    """Every lesson, then every solution, in course order (by file name)."""
    return [Page(path, executed_copy(path, root), f"{folder}/{path.stem}.html")
            for folder in FOLDERS for path in sorted((root / folder).glob("[0-9][0-9]_*.ipynb"))]


def stale(page: Page) -> str | None:
    """Why ``page``'s executed copy cannot be published (None when it can)."""
    if not page.executed.is_file():
        return "not executed yet"
    executed = nbformat.read(page.executed, as_version=4).metadata.get("tinyir", {}).get(
        "executed", {})
    if not executed.get("complete"):
        return (f"its last run was incomplete ({executed.get('cells_failed', '?')} cells failed, "
                f"{executed.get('cells_run', '?')} ran)")
    if executed.get("source_sha256") != hashlib.sha256(page.source.read_bytes()).hexdigest():
        return "the notebook changed since it was executed"
    return None


def execute(sources: list[Path], root: Path = ROOT) -> None:
    """Run ``sources`` under nbval (as ``make test`` does), which writes their executed copies."""
    command = [sys.executable, "-m", "pytest", *map(str, sources), *NBVAL, "-q",
               "-p", "no:cacheprovider"]
    print("executing:", " ".join(p.name for p in sources), file=sys.stderr)
    subprocess.run(command, cwd=root, check=False)


# -----------------------------------------------------------------------------------------------
# One page


def math_to_mathml(markdown: str) -> str:
    """``$$...$$`` (display) and ``$...$`` (inline) LaTeX in ``markdown`` as MathML elements."""
    from latex2mathml.converter import convert

    text = _DISPLAY_MATH.sub(lambda m: convert(m.group(1).strip(), display="block"), markdown)
    return _INLINE_MATH.sub(lambda m: convert(m.group(1)), text)


def static_outputs(outputs: list) -> list:
    """The outputs a static page can show: a widget's own HTML fallback where it has one, a note
    where it has none, nothing for a progress bar."""
    kept = []
    for output in outputs:
        data = output.get("data", {})
        if WIDGET_VIEW not in data:
            kept.append(output)
        elif "text/html" in data:
            kept.append({**output, "data": {"text/html": data["text/html"]}})
        elif not _PROGRESS_BAR.search(data.get("text/plain", "")):
            kept.append({**output, "data": {"text/html": WIDGET_NOTE}})
    return kept


def for_the_page(nb):
    """A copy of the executed notebook ready for nbconvert: math as MathML, static outputs."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = math_to_mathml(cell.source)
        elif cell.cell_type == "code":
            cell.outputs = [nbformat.from_dict(o) for o in static_outputs(cell.outputs)]
    nb.metadata.pop("widgets", None)  # widget state: nothing on the page reads it
    return nb


def render(nb) -> tuple[str, str]:
    """(the page's main HTML, its stylesheet) from nbconvert's JupyterLab template, with every
    script removed and the styles moved out."""
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter(template_name="lab").from_notebook_node(for_the_page(nb))
    styles = "\n".join(re.findall(r"<style[^>]*>(.*?)</style>", page, re.S))
    main = re.search(r"<main>(.*)</main>", page, re.S).group(1)
    main = re.sub(r"<script\b.*?</script>", "", main, flags=re.S)
    return main, styles


def page_html(title: str, main: str, nav: str, depth: int) -> str:
    up = "../" * depth
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)} · tinyir</title>"
            f'<link rel="stylesheet" href="{up}style.css"></head>\n'
            f'<body class="jp-Notebook" data-jp-theme-light="true" '
            f'data-jp-theme-name="JupyterLab Light">\n<nav class="tinyir-nav">{nav}</nav>\n'
            f"<main>{main}</main>\n<nav class=\"tinyir-nav\">{nav}</nav>\n</body></html>\n")


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    return fallback


# -----------------------------------------------------------------------------------------------
# The book


BOOK_CSS = """
.tinyir-nav { padding: 8px 20px; border-bottom: 1px solid #ddd; font-family: sans-serif; }
.tinyir-nav a { margin-right: 1.5em; }
.tinyir-nav a, .tinyir-contents a { color: #1565c0; text-decoration: underline; }
.tinyir-contents { max-width: 900px; margin: 0 auto; padding: 20px; font-family: sans-serif; }
.tinyir-contents td, .tinyir-contents th { padding: 4px 12px; text-align: left; }
.tinyir-widget-note, .tinyir-quiz-static { border-left: 3px solid #1e88e5; padding-left: 10px; }
math[display="block"] { margin: 1em 0; }
"""


def build(out: Path = BOOK_DIR, *, root: Path = ROOT, run: bool = True) -> dict:
    """Write the site to ``out`` (atomically: a finished site or the old one); returns a summary
    (pages, bytes, seconds). Executes stale notebooks first when ``run``; raises RuntimeError
    naming every notebook that cannot be published."""
    start = time.perf_counter()
    book = pages(root)
    todo = [p for p in book if stale(p)]
    if todo and run:
        execute([p.source for p in todo], root)
    problems = [f"{p.source.relative_to(root)}: {why}" for p in book if (why := stale(p))]
    if problems:
        raise RuntimeError("cannot publish: " + "; ".join(problems)
                           + (" (run `make book`, which executes them)" if not run else ""))
    notebooks = [nbformat.read(p.executed, as_version=4) for p in book]
    titles = [_title(nb, p.name) for nb, p in zip(notebooks, book, strict=True)]
    with atomic_folder(out) as tmp:
        styles = ""
        for i, (page, nb) in enumerate(zip(book, notebooks, strict=True)):
            main, styles = render(nb)
            links = ['<a href="../index.html">Contents</a>']
            if i > 0:
                links.append(f'<a href="../{book[i - 1].href}">← {html.escape(titles[i - 1])}</a>')
            if i + 1 < len(book):
                links.append(f'<a href="../{book[i + 1].href}">{html.escape(titles[i + 1])} →</a>')
            target = tmp / page.href
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page_html(titles[i], main, " ".join(links), depth=1),
                              encoding="utf-8")
        (tmp / "style.css").write_text(styles + BOOK_CSS, encoding="utf-8")
        (tmp / "index.html").write_text(_contents(book, notebooks, titles), encoding="utf-8")
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    return {"out": str(out), "pages": len(book) + 1, "bytes": size,
            "seconds": round(time.perf_counter() - start, 1)}


def _contents(book: list[Page], notebooks: list, titles: list[str]) -> str:
    parts = ['<div class="tinyir-contents"><h1>tinyir: how embedding models and rerankers '
             "really work</h1><p>The course as executed by its test run: every plot and "
             "printed result below was produced by the code on its page. Times are the run "
             "times of that execution.</p>"]
    for folder, heading in zip(FOLDERS, ("Lessons", "Exercise solutions"), strict=True):
        rows = [f'<tr><td><a href="{p.href}">{html.escape(t)}</a></td>'
                f'<td>{nb.metadata["tinyir"]["executed"]["seconds"]:.0f} s</td></tr>'
                for p, nb, t in zip(book, notebooks, titles, strict=True)
                if p.href.startswith(folder + "/")]
        parts.append(f'<h2>{heading}</h2><table class="tinyir-map"><tr><th>notebook</th>'
                     f"<th>run time</th></tr>{''.join(rows)}</table>")
    parts.append("</div>")
    return page_html("Contents", "".join(parts), "", depth=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyir.course.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BOOK_DIR, help="the site's folder")
    parser.add_argument("--no-execute", action="store_true",
                        help="fail when an executed copy is missing or stale")
    args = parser.parse_args(argv)
    try:
        summary = build(args.out, run=not args.no_execute)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"open {os.path.relpath(Path(summary['out']) / 'index.html')}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
