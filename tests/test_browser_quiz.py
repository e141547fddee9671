"""The quiz in a real browser: JupyterLab on a free localhost port with a temporary home, driven
by headless Chromium (Debian's ``chromium``, through Playwright's Python package with
``executable_path``: Playwright's own browser download is not reachable here).

It opens a notebook, runs it, clicks a wrong then a right choice, reads the feedback on screen,
and checks the progress file. Skipped when chromium or playwright is missing. Run it alone with
``pytest -m browser tests/test_browser_quiz.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tinyir.course.quiz import LETTERS, ProgressStore, Quiz

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
BANK = "06_pooling"  # its questions hold `code`, so the markdown rendering is checked too

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's chromium: apt-get install -y chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="needs Playwright's Python package (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path, source: str) -> None:
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "quiz-cell",
                   "metadata": {}, "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5}, indent=1))


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server: (url of the test notebook, the progress store it writes)."""
    home, notebooks, tinyir_home = (tmp_path / d for d in ("home", "notebooks", "tinyir"))
    for folder in (home, notebooks, tinyir_home):
        folder.mkdir()
    _notebook(notebooks / "quiz_test.ipynb",
              f'from tinyir.course import Quiz\n\nquiz = Quiz.load("{BANK}")\nquiz.show()')
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TINYIR_PLAIN_QUIZ")}
    env.update(HOME=str(home), TINYIR_HOME=str(tinyir_home), JUPYTER_CONFIG_DIR=str(home / "jc"),
               JUPYTER_RUNTIME_DIR=str(home / "jr"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "lab-workspaces"))
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={notebooks}", "--LabApp.expose_app_in_browser=True",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to run as root without it
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=notebooks, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}",
                                       timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n"
                                + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield (f"http://127.0.0.1:{port}/lab/tree/quiz_test.ipynb?token={token}",
               ProgressStore(tinyir_home / "progress.json"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_click_to_check_in_jupyterlab(jupyterlab, tmp_path):
    url, store = jupyterlab
    expected = Quiz.load(BANK, store=ProgressStore(tmp_path / "unused.json"))
    question = expected.questions[1]  # its prompt shows `hidden[:, -1]`
    wrong = next(LETTERS[i] for i, c in enumerate(question.choices) if not c.correct)
    wrong_why = question.choices[LETTERS.index(wrong)].explanation.split("`")[0][:40]

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            page.wait_for_function(
                "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                " const k = w && w.sessionContext && w.sessionContext.session"
                " && w.sessionContext.session.kernel; return k && k.status === 'idle'; }")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            quiz = page.wait_for_selector(".tinyir-quiz")
            assert "Click a choice to check it" in quiz.inner_text()
            # markdown rendered: backticks became <code>, none shown literally
            assert page.locator(".tinyir-quiz code").count() > 0
            assert "`" not in quiz.inner_text()
            # the cell above the widget shows no answer key
            cell_text = page.locator(".jp-CodeCell .jp-InputArea").first.inner_text()
            assert "True" not in cell_text and "correct" not in cell_text

            page.click(f".tinyir-quiz-choice-2-{wrong}")
            feedback = page.locator(".tinyir-quiz-feedback-2")
            feedback.get_by_text("Not this one").wait_for()
            wrong_text = feedback.inner_text()
            page.click(f".tinyir-quiz-choice-2-{question.answer}")
            feedback.get_by_text("Right").wait_for()
            right_text = feedback.inner_text()
            score_text = page.locator(".tinyir-quiz-score").inner_text()
        finally:
            browser.close()

    print(f"wrong click  -> {wrong_text}\nright click  -> {right_text}\nscore line   -> "
          f"{score_text}")
    assert wrong_why in wrong_text
    assert "first answer" in right_text  # the right answer came second: it explains, not scores
    assert "Score: 0/4" in score_text and "Not answered yet: 1, 3, 4." in score_text
    entry = store.load()[BANK]
    assert (entry["last"], entry["best"], entry["answered"], entry["attempts"], entry["total"]) \
        == (0, 0, 1, 1, 4)
