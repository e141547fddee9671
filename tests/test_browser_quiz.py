"""The course's widgets in a real browser: JupyterLab 4 and Notebook 7 on free localhost ports
with a temporary home, driven by headless Chromium (Debian's ``chromium``, through Playwright's
Python package with ``executable_path``: Playwright's own browser download is not reachable here).

- Lesson 12, run whole in JupyterLab: a wrong then a right click on its quiz, the feedback on
  screen, the progress file; then the storage calculator: a changed dtype and index redraw its
  report completely (the text equals ``storage_report`` for the new inputs), and the HNSW slider
  shows only for an HNSW index and redraws the report when moved.
- Lesson 04 in JupyterLab, run up to its temperature slider: the first figure and the figure
  after the slider moves (twice, quickly, while the kernel is still drawing) are byte-identical
  to the figure the same function draws when called directly in that kernel: nothing the front
  end sends while a cell runs leaves a partial plot.
- A quiz in Notebook 7: click-to-check works there too; markdown in choices renders as code,
  and the cell above the widget shows no answer key.

Skipped when chromium or playwright is missing. Run them alone with ``make test-browser``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_harness import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

from tinyir.course.quiz import LETTERS, ProgressStore, Quiz
from tinyir.course.widgets import storage_report

ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 180_000

pytestmark = [*BROWSER_MARKS, pytest.mark.timeout(600)]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="needs Playwright's Python package (pip install playwright)")


# --- the harness: a Jupyter server, a browser page, the kernel behind the page -----------------

@dataclass
class Server:
    base: str
    token: str
    app: str          # "lab" or "notebook"
    runtime_dir: Path
    store: ProgressStore

    def url(self, notebook: str) -> str:
        path = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.base}/{path}/{notebook}?token={self.token}"

    def kernel_connection_file(self) -> Path:
        with urllib.request.urlopen(f"{self.base}/api/sessions?token={self.token}") as r:
            sessions = json.load(r)
        assert len(sessions) == 1, sessions
        return self.runtime_dir / f"kernel-{sessions[0]['kernel']['id']}.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_server(tmp_path: Path, app: str, notebooks: dict[str, str]):
    """Serve ``notebooks`` ({file name: JSON text}) with JupyterLab ("lab") or Notebook 7."""
    home, root, tinyir_home = (tmp_path / d for d in (f"{app}-home", f"{app}-root", f"{app}-tinyir"))
    for folder in (home, root, tinyir_home):
        folder.mkdir()
    for name, text in notebooks.items():
        (root / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TINYIR_PLAIN_QUIZ")}
    env.update(HOME=str(home), TINYIR_HOME=str(tinyir_home), JUPYTER_CONFIG_DIR=str(home / "jc"),
               JUPYTER_RUNTIME_DIR=str(home / "jr"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "lab-workspaces"))
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--expose-app-in-browser"]
    if app == "lab":
        command.append("--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses to run as root without it
    log_path = tmp_path / f"{app}.log"
    log = open(log_path, "wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter {app} did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield Server(base, token, app, home / "jr", ProgressStore(tinyir_home / "progress.json"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@contextmanager
def browser_page(tmp_path: Path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


KERNEL_IDLE = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
               " const k = w && w.sessionContext && w.sessionContext.session"
               " && w.sessionContext.session.kernel; return k && k.status === 'idle'; }")


def open_notebook(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.wait_for_function(KERNEL_IDLE)


def run(page, command: str, active_cell: int | None = None) -> None:
    """Run a notebook command (``notebook:run-all-cells`` ...), optionally from a given cell."""
    if active_cell is not None:
        page.evaluate(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex = {active_cell}")
    page.evaluate(f"window.jupyterapp.commands.execute('{command}')")


def wait_until_executed(page) -> None:
    """Every code cell has run: the kernel is idle and no prompt shows [*]."""
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w.sessionContext.session.kernel;"
        " const busy = [...document.querySelectorAll('.jp-InputPrompt')]"
        "   .some(e => e.textContent.includes('*'));"
        " return k.status === 'idle' && !busy; }")


def kernel_images(server: Server, code: str) -> list[bytes]:
    """Run ``code`` in the page's kernel from a second client; the PNGs it displays."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient()
    client.load_connection_file(str(server.kernel_connection_file()))
    client.start_channels()
    try:
        msg_id = client.execute(code)
        images = []
        while True:
            msg = client.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "display_data" and "image/png" in msg["content"]["data"]:
                images.append(base64.b64decode(msg["content"]["data"]["image/png"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return images
    finally:
        client.stop_channels()


def click_wrong_then_right(page, question, number: int) -> tuple[str, str]:
    """Click a wrong choice, then the right one, of question ``number``; both feedback texts."""
    wrong = next(LETTERS[i] for i, c in enumerate(question.choices) if not c.correct)
    page.click(f".tinyir-quiz-choice-{number}-{wrong}")
    feedback = page.locator(f".tinyir-quiz-feedback-{number}")
    feedback.get_by_text("Not this one").wait_for()
    wrong_text = feedback.inner_text()
    page.click(f".tinyir-quiz-choice-{number}-{question.answer}")
    feedback.get_by_text("Right").wait_for()
    return wrong_text, feedback.inner_text()


def bank(name: str, tmp_path: Path) -> Quiz:
    return Quiz.load(name, store=ProgressStore(tmp_path / "unused.json"))


def lesson(name: str) -> str:
    return (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")


# --- lesson 12 in JupyterLab: the quiz and the storage calculator -------------------------------

def _report_text(page) -> str:
    # text_content, not inner_text: JupyterLab skips rendering cells out of view, and innerText
    # of an unrendered element is empty
    text = page.locator(".tinyir-storage-calculator .widget-output").text_content()
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _wait_for_report(page, expected: str, seconds: float = 120) -> str:
    """Poll the calculator's report until it equals ``expected``; the last text seen."""
    deadline = time.monotonic() + seconds
    while True:
        text = _report_text(page)
        if text == expected or time.monotonic() > deadline:
            return text
        page.wait_for_timeout(200)


def _expected_report(**inputs) -> str:
    args = dict(docs=1_000_000, dim=1024, dtype="fp32", vectors_per_doc=1, index="flat",
                hnsw_m=32) | inputs
    return "\n".join(line.rstrip() for line in storage_report(**args).strip().splitlines())


def test_lesson_12_quiz_and_calculator_in_jupyterlab(tmp_path):
    name = "12_storage_calculator"
    question = bank(name, tmp_path).questions[0]
    wrong_why = question.choices[
        next(i for i, c in enumerate(question.choices) if not c.correct)].explanation
    wrong_why = wrong_why.split("`")[0][:40]
    with jupyter_server(tmp_path, "lab", {f"{name}.ipynb": lesson(name)}) as server, \
            browser_page(tmp_path) as page:
        open_notebook(page, server.url(f"{name}.ipynb"))
        run(page, "notebook:run-all-cells")
        page.wait_for_selector(".tinyir-quiz")
        wait_until_executed(page)
        assert not page.locator(".jp-OutputArea-output[data-mime-type="
                                "'application/vnd.jupyter.stderr']:has-text('Error')").count()

        wrong_text, right_text = click_wrong_then_right(page, question, 1)
        score_text = page.locator(".tinyir-quiz-score").inner_text()

        calc = page.locator(".tinyir-storage-calculator")
        calc.scroll_into_view_if_needed()
        slider = calc.locator(".widget-slider")
        seen = {"start": _wait_for_report(page, _expected_report())}
        assert seen["start"] == _expected_report()
        assert slider.is_hidden()                      # a flat index has no links
        steps = [("fp16", dict(dtype="fp16")), ("hnsw", dict(dtype="fp16", index="hnsw")),
                 ("M=36", dict(dtype="fp16", index="hnsw", hnsw_m=36))]
        for step, inputs in steps:
            if step == "fp16":
                calc.locator(".widget-dropdown", has_text="dtype").locator("select") \
                    .select_option("fp16")
            elif step == "hnsw":
                calc.locator(".widget-dropdown", has_text="index").locator("select") \
                    .select_option("hnsw")
                slider.wait_for(state="visible")       # shown only for an HNSW index
            else:
                slider.locator(".noUi-handle").focus()
                page.keyboard.press("ArrowRight")      # M 32 -> 36 (step 4)
            seen[step] = _wait_for_report(page, _expected_report(**inputs))
            assert seen[step] == _expected_report(**inputs), step
        calc.locator(".widget-dropdown", has_text="index").locator("select").select_option("flat")
        slider.wait_for(state="hidden")

    print(f"12, wrong click -> {wrong_text}\n12, right click -> {right_text}\n"
          f"12, score line  -> {score_text}")
    for step, text in seen.items():
        print(f"12, calculator after {step}: {text.splitlines()[0]} ... ({len(text.splitlines())} lines)")
    assert wrong_why in wrong_text
    assert "first answer" in right_text
    n = len(bank(name, tmp_path).questions)
    assert f"Score: 0/{n}" in score_text
    entry = server.store.load()[name]
    assert (entry["last"], entry["best"], entry["answered"], entry["attempts"], entry["total"]) \
        == (0, 0, 1, 1, n)


# --- lesson 04 in JupyterLab: the temperature slider redraws a complete figure ------------------

SLIDER_CELL = "widgets.interact(softmax_over_candidates"


def _interact_image(page) -> bytes:
    images = page.locator(".widget-interact .jp-OutputArea-output img")
    assert images.count() == 1, f"expected one figure in the slider's output, got {images.count()}"
    src = images.first.get_attribute("src")
    assert src.startswith("data:image/png;base64,"), src[:40]
    return base64.b64decode(src.split(",", 1)[1])


def test_lesson_04_slider_redraws_complete_figures(tmp_path):
    name = "04_temperature"
    text = lesson(name)
    cells = json.loads(text)["cells"]
    slider_cell = next(i for i, c in enumerate(cells) if SLIDER_CELL in "".join(c["source"]))
    with jupyter_server(tmp_path, "lab", {f"{name}.ipynb": text}) as server, \
            browser_page(tmp_path) as page:
        open_notebook(page, server.url(f"{name}.ipynb"))
        run(page, "notebook:run-all-above", active_cell=slider_cell)
        run(page, "notebook:run-cell", active_cell=slider_cell)
        page.wait_for_selector(".widget-interact .jp-OutputArea-output img")
        wait_until_executed(page)
        readout = page.locator(".widget-interact .widget-readout")
        first = {"tau": readout.inner_text().strip(), "png": _interact_image(page)}

        # Two quick moves: the second arrives while the kernel may still draw the first.
        page.locator(".widget-interact .noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "() => document.querySelector('.widget-interact .widget-readout')"
            ".textContent.trim() === '0.2'")
        # Wait for a figure that differs from the first and stays put for a second.
        deadline, last = time.monotonic() + 120, first["png"]
        while time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            wait_until_executed(page)
            now = _interact_image(page)
            if now == last and now != first["png"]:
                break
            last = now
        moved = {"tau": readout.inner_text().strip(), "png": _interact_image(page)}

        direct = {tau: kernel_images(server, f"softmax_over_candidates({tau});")
                  for tau in ("0.05", "0.2")}

    print(f"04: first figure at tau={first['tau']} ({len(first['png'])} bytes), after two moves "
          f"tau={moved['tau']} ({len(moved['png'])} bytes)")
    assert first["tau"] == "0.05" and moved["tau"] == "0.2"
    assert [len(images) for images in direct.values()] == [1, 1]
    # The same function, the same process: the slider's figures are the direct ones, byte for byte.
    assert first["png"] == direct["0.05"][0], "the first figure differs from a direct draw"
    assert moved["png"] == direct["0.2"][0], "the redrawn figure differs from a direct draw"
    assert first["png"] != moved["png"]


# --- a quiz in Notebook 7 -----------------------------------------------------------------------

BANK = "06_pooling"  # its questions hold `code`, so the markdown rendering is checked too


def _quiz_notebook(source: str) -> str:
    return json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "quiz-cell",
                   "metadata": {}, "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5}, indent=1)


def test_click_to_check_in_notebook7(tmp_path):
    question = bank(BANK, tmp_path).questions[1]  # its prompt shows `hidden[:, -1]`
    wrong_why = question.choices[
        next(i for i, c in enumerate(question.choices) if not c.correct)].explanation
    wrong_why = wrong_why.split("`")[0][:40]
    source = f'from tinyir.course import Quiz\n\nquiz = Quiz.load("{BANK}")\nquiz.show()'
    with jupyter_server(tmp_path, "notebook", {"quiz_test.ipynb": _quiz_notebook(source)}) \
            as server, browser_page(tmp_path) as page:
        open_notebook(page, server.url("quiz_test.ipynb"))
        run(page, "notebook:run-all-cells")
        quiz = page.wait_for_selector(".tinyir-quiz")
        assert "Click a choice to check it" in quiz.inner_text()
        # markdown rendered: backticks became <code>, none shown literally
        assert page.locator(".tinyir-quiz code").count() > 0
        assert "`" not in quiz.inner_text()
        # the cell above the widget shows no answer key
        cell_text = page.locator(".jp-CodeCell .jp-InputArea").first.inner_text()
        assert "True" not in cell_text and "correct" not in cell_text
        wrong_text, right_text = click_wrong_then_right(page, question, 2)
        score_text = page.locator(".tinyir-quiz-score").inner_text()

    print(f"Notebook 7, wrong click -> {wrong_text}\nNotebook 7, right click -> {right_text}\n"
          f"Notebook 7, score line  -> {score_text}")
    assert wrong_why in wrong_text
    assert "first answer" in right_text  # the right answer came second: it explains, not scores
    assert "Score: 0/4" in score_text and "Not answered yet: 1, 3, 4." in score_text
    entry = server.store.load()[BANK]
    assert (entry["last"], entry["best"], entry["answered"], entry["attempts"], entry["total"]) \
        == (0, 0, 1, 1, 4)
