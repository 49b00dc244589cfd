"""The server's own pages in a real Chromium: home, Share and the permalink page, the embedding
guide; titles, favicon, phone layout, keyboard, no console errors. Screenshots are artifacts."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Watched, editor_code, run_and_wait, screenshot, settle
from tests.servers import Server

PAGES = [("/", "singlecell — run Python in your browser"),
         ("/embedding", "Embed singlecell cells in your pages")]


def test_home_share_and_the_permalink_round_trip(watched: Watched, server: Server) -> None:
    page = watched.page
    page.goto(server.url + "/")
    assert page.title() == PAGES[0][1]
    done = run_and_wait(page, "#cell")
    assert done["status"] == "done"
    cell = page.locator("#cell")
    assert cell.locator(".sc-stdout").inner_text() == "Hello from singlecell!\n"
    assert cell.locator('.sc-display[data-mime="image/png"] img').count() == 1
    screenshot(page, "home")

    code = "import math\nprint('shared:', math.factorial(5))\n"
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)
    cell.get_by_role("button", name="Share").click()
    link = cell.locator(".sc-share input")
    link.wait_for()
    url = link.input_value()
    assert url.startswith(server.url + "/c/")
    with server.client() as client:
        saved = client._json("GET", "/permalink/" + url.rsplit("/", 1)[1])
    assert saved["code"] == code and saved["url"] == url

    page.goto(url)
    assert page.title().startswith("singlecell — shared code ")
    shared = page.locator("#cell")
    assert editor_code(page, "#cell") == code
    assert run_and_wait(page, "#cell")["status"] == "done"
    assert shared.locator(".sc-stdout").inner_text() == "shared: 120\n"
    assert watched.errors == []
    screenshot(page, "permalink")


def test_the_embedding_page_examples_all_run(watched: Watched, server: Server) -> None:
    page = watched.page
    page.goto(server.url + "/embedding")
    assert page.title() == PAGES[1][1]
    for example in ("#example-basic", "#example-script", "#example-rich", "#example-dark"):
        assert run_and_wait(page, example)["status"] == "done", example
    assert page.locator("#example-dark .sc").first.get_attribute("data-theme") == "dark"
    assert page.locator("#example-basic .sc").first.get_attribute("data-theme") == "light"
    assert page.locator("#example-script .sc-stdout").inner_text() == "[0 1 0 1 0]\n"
    page.frame_locator("#example-rich .sc-frame-latex").locator("mjx-container svg").first.wait_for()
    page.frame_locator("#example-rich .sc-frame-markdown").locator("strong", has_text="Markdown").wait_for()
    assert page.locator("#example-rich .sc-files a", has_text="squares.csv").count() == 1
    settle(page)
    page.get_by_role("button", name="Add them up").click()
    page.locator("#demo-output .sc-display", has_text="5050").wait_for()
    page.locator("#demo-status", has_text="done").wait_for()
    # the endless example: started, then stopped
    page.locator("#example-stop").get_by_role("button", name="Start counting").click()
    page.locator("#example-stop .sc-stdout", has_text="2").wait_for()
    page.locator("#example-stop").get_by_role("button", name="Stop").click()
    page.locator("#example-stop .sc-status", has_text="Stopped after").wait_for()
    # the widgets example: live, and its plot drawn in its widget frame
    assert run_and_wait(page, "#example-widgets")["status"] == "done"
    page.locator("#example-widgets .sc-status", has_text="widgets live").wait_for()
    page.frame_locator("#example-widgets .sc-frame-widgets").locator(".widget-output img").first.wait_for()
    assert watched.errors == []
    screenshot(page, "embedding")
    page.locator("#example-widgets").get_by_role("button", name="Stop").click()
    page.locator("#example-widgets .sc-status", has_text="Session stopped").wait_for()


@pytest.mark.parametrize(("path", "title"), PAGES)
def test_pages_fit_a_phone_and_have_an_icon_and_no_console_errors(
        browser: object, server: Server, path: str, title: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,  # type: ignore[attr-defined]
                                  has_touch=True, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + path)
    page.wait_for_load_state("networkidle")
    assert page.title() == title
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None and page.request.get(server.url + icon).ok
    assert page.request.get(server.url + "/favicon.ico").ok
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} is {overflow}px wider than a phone's screen"
    run = page.locator(".singlecell button.sc-run").first
    box = run.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert errors == []
    name = "phone-home" if path == "/" else "phone" + path.replace("/", "-")
    screenshot(page, name)
    context.close()


def test_the_keyboard_alone_runs_a_cell_and_is_never_trapped(watched: Watched, server: Server) -> None:
    page = watched.page
    page.goto(server.url + "/")
    # Tab from the top of the page reaches the editor, through the skip link and the navigation
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id === 'cell'"):
            break
    focused = page.evaluate("() => document.querySelector('#cell').shadowRoot.activeElement?.className || ''")
    assert "cm-content" in focused
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("for i in range(2):")
    page.keyboard.press("Enter")
    page.keyboard.type("print('line', i)")  # the editor indented the line by itself
    page.keyboard.press("Shift+Enter")
    page.locator("#cell .sc-stdout", has_text="line 1").wait_for()
    code = editor_code(page, "#cell")
    assert code.endswith("for i in range(2):\n    print('line', i)")
    # Tab indents in the editor ...
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.querySelector('#cell').shadowRoot.activeElement?.className || ''") \
        .count("cm-content") == 1
    # ... and Escape, then Tab, moves on to the Run button
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.querySelector('#cell').shadowRoot.activeElement?.textContent") == "Run"
    page.keyboard.press("Enter")  # a focused button runs with the keyboard too
    page.locator("#cell .sc-status", has_text="Done").wait_for()
    assert watched.errors == []
