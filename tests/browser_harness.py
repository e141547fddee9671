"""What the browser tests share: Debian's chromium driven through Playwright's Python package
(``executable_path``: Playwright's own browser download is not reachable here), the switches that
keep it off the network, and the marks that skip a test cleanly where either is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's chromium: apt-get install -y chromium"),
]
