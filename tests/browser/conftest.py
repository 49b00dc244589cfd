"""A real Chromium (Debian's, driven by Playwright) against a real server, and a second web
server on another origin for the pages that embed cells.

Chromium is never downloaded: the tests use ``/usr/bin/chromium`` (``.ci/run`` installs it) and
skip when it is missing, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SINGLECELL_ARTIFACTS", ROOT / "test-artifacts")) / "browser"


def _need_chromium() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the browser tests need Playwright: pip install '.[test]'"
    else:
        if CHROMIUM.exists():
            return
        reason = f"the browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: .ci/run installs it)")
    pytest.skip(reason)


# closed after this folder: Playwright's sync API keeps an event loop running in the main
# thread, where later tests call asyncio.run
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page, with what it said and fetched."""

    page: Any
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    w = Watched(page)

    def console(message: Any) -> None:
        w.console.append(f"{message.type}: {message.text}")
        if message.type == "error":
            w.errors.append(message.text)

    def dialog(d: Any) -> None:
        w.dialogs.append(d.message)
        d.dismiss()

    page.on("console", console)
    page.on("pageerror", lambda error: w.errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: w.requests.append(request.url))
    page.on("dialog", dialog)
    yield w
    context.close()


class HostSite:
    """Pages of another origin (``http://localhost:PORT``; the server is at 127.0.0.1), served by
    a real HTTP server in a thread."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.origin = f"http://localhost:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, html: str) -> str:
        self.pages[path] = html.encode()
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    yield site
    site.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot as a test artifact (test-artifacts/browser/NAME.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # Chromium does not paint cross-origin frames outside the viewport: make the whole page the
    # viewport for the shot, then put it back
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def settle(page: Any, timeout: float = 10.0) -> None:
    """Wait until every output frame on the page has its height and kept it for a moment.

    Frames grow when their content says its size (after MathJax, say); a click aimed while the
    page still shifts lands on whatever moved under the pointer."""
    frames = page.locator(".sc-frame")
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        now = frames.evaluate_all("(fs) => fs.map((f) => [f.hasAttribute('data-sized'), f.style.height])")
        if all(sized for sized, _ in now) and now == last:
            return
        last = now
        page.wait_for_timeout(150)
    raise AssertionError(f"the output frames never settled: {last}")


def run_and_wait(page: Any, selector: str, timeout: float = 30_000) -> dict[str, Any]:
    """Click the cell's Run button (once the page has stopped moving); return the detail of its
    ``singlecell:done`` event."""
    settle(page)
    page.evaluate("""(selector) => {
        const element = document.querySelector(selector);
        element.scDone = null;
        element.addEventListener("singlecell:done", (e) => { element.scDone = e.detail; }, {once: true});
    }""", selector)
    page.locator(selector).locator("button.sc-run").click()
    page.wait_for_function("(selector) => document.querySelector(selector).scDone", arg=selector, timeout=timeout)
    return page.evaluate("(selector) => document.querySelector(selector).scDone", selector)  # type: ignore[no-any-return]


def editor_code(page: Any, selector: str) -> str:
    """The code in a cell's CodeMirror editor, line by line as the editor holds it."""
    return page.locator(selector).locator(".cm-content").evaluate(  # type: ignore[no-any-return]
        "(content) => [...content.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\\n')")
