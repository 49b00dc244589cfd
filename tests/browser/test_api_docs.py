"""``/api/docs`` in a real Chromium: Swagger UI renders every operation of ``/openapi.json`` from
files this server bundles, and nothing is fetched from anywhere else (no CDN, no validator)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from singlecell.web.openapi import document, paths_and_methods
from tests.browser.conftest import screenshot
from tests.servers import Server


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_api_docs_page_renders_every_operation_from_this_server_alone(
        browser: Any, server: Server, scheme: str) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    fetched: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/api/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    page.wait_for_load_state("networkidle")
    shown = page.locator(".opblock").count()
    assert shown == len(paths_and_methods(document())), f"{shown} operations shown"
    assert page.locator(".opblock-summary-path[data-path='/eval']").count() == 1
    assert page.title() == "The singlecell HTTP API"
    ours = urllib.parse.urlsplit(server.url).netloc
    elsewhere = [url for url in fetched if urllib.parse.urlsplit(url).netloc not in (ours, "")
                 and not url.startswith("data:")]
    assert elsewhere == [], f"fetched from elsewhere: {elsewhere}"
    assert any(url.endswith("/openapi.json") for url in fetched)
    assert errors == []
    # one operation opened, with its schema and example, for the screenshot
    page.locator(".opblock-summary-path[data-path='/eval']").first.click()
    page.wait_for_selector(".opblock.is-open .responses-table", timeout=10_000)
    screenshot(page, f"api-docs-{scheme}")
    context.close()
