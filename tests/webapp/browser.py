"""Headless Chromium for the web page's tests: Debian's ``chromium`` driven by Playwright.

The browser is the system one (``make test`` installs Debian's package); Playwright's own
browser downloads are never used. Outside CI a machine without it skips the browser tests,
saying why; in CI (``PERPBFT_CI=1``) a skipped test fails the run (tests/conftest.py).
Screenshots go to ``$PERPBFT_ARTIFACTS`` (default ``test-artifacts/``) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from node.api.webapp import STATIC_DIR, content_type_of

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Pages of the codec tests are served from memory under this origin (never resolved).
STATIC_ORIGIN = "http://perpbft-static.test"


def chromium_path() -> str | None:
    for path in (os.environ.get("PERPBFT_CHROMIUM", ""), *CHROMIUM_PATHS):
        if path and shutil.which(path):
            return path
    return None


def artifacts_dir() -> Path:
    path = Path(os.environ.get("PERPBFT_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def browser_page() -> Iterator[Any]:
    """A fresh page in headless Chromium; the browser is closed afterwards whatever happens."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium; make test does)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def serve_static(page: Any) -> str:
    """Serve the package's static files to ``page`` under ``STATIC_ORIGIN/app/`` from memory,
    and a blank page at ``/app/blank.html``; returns the blank page's URL."""

    def handle(route: Any) -> None:
        rest = route.request.url[len(STATIC_ORIGIN + "/app/") :]
        if rest == "blank.html":
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><p>blank")
            return
        path = STATIC_DIR / rest
        if ".." in rest or not path.is_file():
            route.fulfill(status=404, body="not found")
            return
        route.fulfill(status=200, content_type=content_type_of(path.name), body=path.read_bytes())

    page.route(STATIC_ORIGIN + "/app/**", handle)
    return STATIC_ORIGIN + "/app/blank.html"


def load_codec(page: Any) -> None:
    """Open the blank page and load the vendored msgpack and ``js/codec.js`` as ``window.codec``."""
    page.goto(serve_static(page))
    page.add_script_tag(url=STATIC_ORIGIN + "/app/vendor/msgpack-msgpack/msgpack.min.js")
    page.add_script_tag(
        type="module",
        content=f'import * as c from "{STATIC_ORIGIN}/app/js/codec.js"; window.codec = c;',
    )
    page.wait_for_function("window.codec !== undefined")


def wait_js(page: Any, expression: str, what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``expression`` in the page until it is truthy; returns its value.

    ``page.wait_for_function`` evaluates a string with ``eval``, which the page's
    Content-Security-Policy forbids (as it should); ``evaluate`` goes through the debugging
    protocol and keeps the policy on, so the page is tested as users get it."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        page.wait_for_timeout(200)
