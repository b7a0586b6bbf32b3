"""Headless Chromium from Debian's package, driven by Playwright (its
driver only: no browser is downloaded)."""

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def launch(p, **kw):
    """`kw`: more of Playwright's launch options (`downloads_path`)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, **kw)


def watch(page):
    """The page's console errors and uncaught exceptions, as they happen
    (a list the test asserts empty at the end)."""
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems
