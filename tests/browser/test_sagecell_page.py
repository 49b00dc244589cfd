"""A page written for SageMathCell (its embedding guide's example, its Sage turned into Python),
with only the script's host changed to ours; and SingleCellBlock's own linked cells, on a dark page."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import HostSite, Watched, run_and_wait, screenshot
from tests.servers import Server

SAGECELL_PAGE = """<!DOCTYPE HTML>
<html>
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width">
    <title>SageMathCell</title>
    <link rel="icon" href="data:,">
    <script src="{server}/static/embedded_sagecell.js"></script>
    <script>
    // Make the div with id 'mycell' a Sage cell
    sagecell.makeSagecell({{inputLocation:  '#mycell',
                           template:       sagecell.templates.minimal,
                           evalButtonText: 'Activate'}});
    // Make *any* div with class 'compute' a Sage cell
    sagecell.makeSagecell({{inputLocation: 'div.compute',
                           evalButtonText: 'Evaluate',
                           linked: true,
                           languages: ['sage', 'gap']}});
    </script>
  </head>
  <body>
  <h1>Embedded Sage Cells</h1>
  <h2>Factorial</h2>
  Click the &ldquo;Activate&rdquo; button below to calculate factorials.
    <div id="mycell"><script type="text/x-sage">
from math import factorial
print(factorial(10))
</script>
</div>
<h2>Your own computations</h2>
Type your own Sage computation below and click &ldquo;Evaluate&rdquo;.
    <div class="compute" id="first"><script type="text/x-sage">shared = 6 * 7</script></div>
    <div class="compute" id="second"><script type="text/x-sage">print("shared is", shared)</script></div>
  </body>
</html>
"""


def shadow(page: Any, selector: str, inner: str) -> Any:
    return page.locator(selector).locator(inner)


def test_a_sagemathcell_page_works_when_only_the_scripts_host_changes(
        watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    url = host_site.add("/sagecell.html", SAGECELL_PAGE.format(server=server.url))
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('#mycell, div.compute').length === 3 && "
                           "[...document.querySelectorAll('#mycell, div.compute')].every((e) => e.shadowRoot)")
    minimal = shadow(page, "#mycell", "button.sc-run")
    assert minimal.inner_text() == "Activate"
    assert not shadow(page, "#mycell", ".sc-editor").is_visible()  # the minimal template hides the editor
    done = run_and_wait(page, "#mycell")
    assert done["status"] == "done"
    assert shadow(page, "#mycell", ".sc-stdout").inner_text() == "3628800\n"
    assert shadow(page, "#first", "button.sc-run").inner_text() == "Evaluate"
    assert run_and_wait(page, "#first")["status"] == "done"
    assert run_and_wait(page, "#second")["status"] == "done"  # linked: it sees what the first defined
    assert shadow(page, "#second", ".sc-stdout").inner_text() == "shared is 42\n"
    warnings = [line for line in watched.console if line.startswith("warning:")]
    assert any("gap" in line for line in warnings) and any("not Sage" in line for line in warnings)
    assert not watched.errors, watched.errors
    assert all(request.startswith((server.url, host_site.origin, "data:")) for request in watched.requests)
    screenshot(page, "sagecell-page")


LINKED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Linked cells</title><link rel="icon" href="data:,">
<style>body {{ background: #101418; color: #e6e6e6; font-family: sans-serif; }}</style></head>
<body>
<h1>Linked cells on a dark page</h1>
<div class="singlecell" id="one" data-linked="true" data-code="import numpy as np&#10;data = np.arange(5)"></div>
<p>The next cell uses what the one above defined.</p>
<div class="singlecell" id="two" data-linked="true" data-code="print(data.sum())"></div>
<div class="singlecell" id="apart" data-code="print('data' in globals())"></div>
<script src="{server}/static/singlecell.js"></script>
</body></html>
"""


def test_linked_cells_share_a_kernel_and_a_cell_that_is_not_linked_does_not(
        watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    page.goto(host_site.add("/linked.html", LINKED_PAGE.format(server=server.url)))
    page.wait_for_function("() => ['one', 'two', 'apart'].every((id) => document.getElementById(id).shadowRoot)")
    assert run_and_wait(page, "#one")["status"] == "done"
    assert run_and_wait(page, "#two")["status"] == "done"
    assert shadow(page, "#two", ".sc-stdout").inner_text() == "10\n"
    assert run_and_wait(page, "#two")["status"] == "done"  # again: the same kernel, still there
    assert run_and_wait(page, "#apart")["status"] == "done"
    assert shadow(page, "#apart", ".sc-stdout").inner_text() == "False\n"
    assert "widgets live" not in shadow(page, "#one", ".sc-status").inner_text()
    assert not watched.errors, watched.errors
    screenshot(page, "linked-cells-dark")
