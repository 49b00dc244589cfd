"""Benchmark of the browser side, in Debian's Chromium (Playwright, /usr/bin/chromium).

    python loadtests/browser_bench.py                 # starts its own `singlecell serve`
    python loadtests/browser_bench.py http://HOST:P   # measures a running server

Prints what a page pays for a cell: the embed script's size, the home page's load (a new browser
context, so a cold cache, and a reload, warm), and, measured inside the page, the time from a
click on Run to the cell's ``singlecell:done`` event for ``1+1`` (POST /execute, then long-polls)
and for a LaTeX formula until MathJax has typeset it in its frame; ``/eval`` of ``1+1`` from
Python beside them, for what the browser adds.

Widgets: the time from Run to a live slider (the first loads the widget runtime into its frame),
and the round trip of a slider moved from the keyboard, measured in the page from the start of
its ``POST /input`` to the page's long-poll (``/watch``) answering with the input's ``idle``; and
a ``fetch`` of ``/health`` from the page, the HTTP exchange a WebSocket would save per input at
most.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.bench import start_server  # noqa: E402
from singlecell.client import Client  # noqa: E402

RUN_CLICK = """async (code) => {
    const cell = document.querySelector("#cell");
    const done = new Promise((resolve) =>
        cell.addEventListener("singlecell:done", (e) => resolve(e.detail), {once: true}));
    window.scBenchCell.setCode(code);
    const start = performance.now();
    cell.shadowRoot.querySelector("button.sc-run").click();
    const detail = await done;
    return [performance.now() - start, detail.status];
}"""

LATEX_CLICK = """async () => {
    const cell = document.querySelector("#cell");
    window.scBenchCell.setCode("from IPython.display import Math\\nMath(r'\\\\int_0^1 x^2\\\\,dx = \\\\frac{1}{3}')");
    const start = performance.now();
    cell.shadowRoot.querySelector("button.sc-run").click();
    for (;;) {
        const frame = cell.shadowRoot.querySelector(".sc-frame-latex[data-sized]");
        if (frame && frame.getBoundingClientRect().height > 30) return performance.now() - start;
        await new Promise((r) => setTimeout(r, 5));
    }
}"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def row(what: str, values: list[float], unit: str = "ms") -> list[str]:
    return [what, str(len(values)), f"{statistics.median(values):.1f}", f"{pct(values, 0.9):.1f}",
            f"{max(values):.1f}", unit]


# In the page: the start of every POST /input, by its msg_id, and when the long-poll's answer
# holding that input's idle arrived (its headers: the body is read from a clone afterwards).
COUNT_INPUTS = """() => {
    window.scTrips = [];
    const sent = new Map();
    const realFetch = window.fetch;
    window.fetch = async (...args) => {
        const url = String(args[0]);
        const start = performance.now();
        if (url.includes("/input/")) sent.set(JSON.parse(args[1].body).header.msg_id, start);
        const response = await realFetch(...args);
        const arrived = performance.now();
        if (url.includes("/watch?")) {
            response.clone().json().then((answer) => {
                for (const page of Object.values(answer.requests || {})) {
                    for (const { msg } of page.messages) {
                        const parent = (msg.parent_header || {}).msg_id;
                        if (msg.msg_type === "status" && msg.content.execution_state === "idle" && sent.has(parent)) {
                            window.scTrips.push(arrived - sent.get(parent));
                            sent.delete(parent);
                        }
                    }
                }
            }).catch(() => {});
        }
        return response;
    };
}"""

SLIDER = ("import ipywidgets as w\ns = w.IntSlider(max=10000)\n"
          "s.observe(lambda c: print(c['new']), names='value')\ndisplay(s)")


def widget_rows(browser: Any, url: str, moves: int) -> list[list[str]]:
    """Run → live slider (cold and warm runtime), and the slider's round trips."""
    page = page_with_cell(browser, url)
    page.evaluate(COUNT_INPUTS)
    live = ("() => /widgets live/.test(document.querySelector('#cell').shadowRoot"
            ".querySelector('.sc-status').textContent)")
    starts = []
    for _ in range(5):
        page.evaluate("(code) => window.scBenchCell.setCode(code)", SLIDER)
        started = time.perf_counter()
        page.evaluate("() => document.querySelector('#cell').shadowRoot.querySelector('button.sc-run').click()")
        frame = page.frame_locator("#cell .sc-frame-widgets")
        frame.locator(".noUi-handle").wait_for()
        page.wait_for_function(live)
        starts.append((time.perf_counter() - started) * 1000)
    handle = page.frame_locator("#cell .sc-frame-widgets").locator(".noUi-handle")
    handle.focus()
    for n in range(1, moves + 1):
        handle.press("ArrowRight")
        page.wait_for_function("(n) => window.scTrips.length >= n", arg=n)
    trips = page.evaluate("() => window.scTrips")
    health = page.evaluate("""async (server) => { const times = [];
        for (let i = 0; i < 50; i++) { const t = performance.now(); await (await fetch(server + '/health')).json();
            times.push(performance.now() - t); } return times; }""", url)
    page.evaluate("() => document.querySelector('#cell').shadowRoot.querySelector('button.sc-stop').click()")
    page.context.close()
    return [row("click Run → live slider, first (widget runtime loads)", starts[:1]),
            row("click Run → live slider, again", starts[1:]),
            row("slider key → its idle in the page (POST /input → /watch)", trips),
            row("fetch /health from the page (an HTTP exchange)", health)]


def page_with_cell(browser: Any, url: str) -> Any:
    """The home page, with its cell reachable as window.scBenchCell (only here, for the bench)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/")
    page.evaluate("""() => { const e = document.querySelector("#cell");
        const block = new SingleCellBlock(document.body.appendChild(document.createElement("div")));
        e.remove(); block.element.id = "cell"; window.scBenchCell = block; }""")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="a running server; default: start one")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--moves", type=int, default=100, help="slider moves for the widget round trip")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data_dir = tempfile.mkdtemp(prefix="singlecell-browser-bench-")
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(data_dir, 8)
    rows: list[list[str]] = []
    try:
        script = (ROOT / "static/singlecell.js").read_bytes()
        print(f"singlecell.js: {len(script) / 1024:.0f} KiB, {len(gzip.compress(script)) / 1024:.0f} KiB gzipped; "
              f"singlecell-frame.js: {(ROOT / 'static/singlecell-frame.js').stat().st_size / 1024:.0f} KiB; "
              f"MathJax: {(ROOT / 'static/mathjax/tex-svg-full.js').stat().st_size / 1024:.0f} KiB (loaded by "
              "LaTeX and Markdown frames only); singlecell-widgets.js: "
              f"{(ROOT / 'static/singlecell-widgets.js').stat().st_size / 1024:.0f} KiB, "
              f"{len(gzip.compress((ROOT / 'static/singlecell-widgets.js').read_bytes())) / 1024:.0f} KiB gzipped "
              "(loaded by widget frames only)")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            cold: list[float] = []
            warm: list[float] = []
            ready = "() => document.querySelector('#cell').shadowRoot?.querySelector('.cm-content') !== null"
            timing = "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
            for _ in range(10):
                context = browser.new_context()
                page = context.new_page()
                page.goto(url + "/")
                page.wait_for_function(ready)
                cold.append(page.evaluate(timing))
                page.reload()
                page.wait_for_function(ready)
                warm.append(page.evaluate(timing))
                context.close()
            rows.append(row("home page load, cold cache (loadEventEnd)", cold))
            rows.append(row("home page load, warm cache", warm))

            page = page_with_cell(browser, url)
            latencies = []
            for _ in range(args.runs):
                elapsed, status = page.evaluate(RUN_CLICK, "1+1")
                assert status == "done", status
                latencies.append(elapsed)
            rows.append(row("click Run → done, 1+1", latencies))
            latex = [page.evaluate(LATEX_CLICK) for _ in range(10)]
            rows.append(row("click Run → LaTeX typeset (first: MathJax loads)", latex))
            page.context.close()
            rows += widget_rows(browser, url, args.moves)
            browser.close()

        client = Client(url)
        evals = []
        for _ in range(args.runs):
            started = time.perf_counter()
            client.eval("1+1")
            evals.append((time.perf_counter() - started) * 1000)
        client.close()
        rows.append(row("POST /eval 1+1 from Python (reference)", evals))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)

    header = ["what", "n", "p50", "p90", "max", "unit"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


if __name__ == "__main__":
    main()
