"""``/status`` in a real Chromium, after some cells: readable, charts drawn, no console errors."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import screenshot
from tests.servers import Server


def test_the_status_page_draws_its_charts_and_devices(browser: Any, server: Server) -> None:
    with server.client() as client:
        for code in ("print(1)", "1/0", "2 + 2"):
            client.eval(code)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/status")
    assert page.title() == "Status — singlecell"
    assert page.locator("figure.status-chart svg").count() == 3
    assert page.locator("section.device").count() >= 1
    assert page.locator("section.device td.on").count() >= 1
    box = page.locator("figure.status-chart svg").first.bounding_box()
    assert box is not None and box["width"] >= 200 and box["height"] >= 50
    assert errors == []
    screenshot(page, "status")
    context.close()
