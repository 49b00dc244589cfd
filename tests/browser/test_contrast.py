"""A cell is readable on any page: on a near-black page and on a white one, every kind of text it
shows has a WCAG contrast of at least 4.5:1 against the background actually behind it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import HostSite, Watched, run_and_wait, screenshot, settle
from tests.browser.test_embed import host_page, python
from tests.servers import Server

CODE = """
import sys
from IPython.display import HTML, display
print("forty-two: 42")
print("a warning", file=sys.stderr)
display(HTML("<p id='frame-text'>text in an HTML frame</p>"))
def f(x):
    return 1 / x
f(0)
"""

PAGES = {
    "dark": "body { background: #0b0b0f; color: #e8e8e8; font-family: serif; }",
    "light": "body { background: #ffffff; color: #111111; }",
    # no colour of its own: the page asks for a dark scheme, and the browser paints the canvas dark
    "dark-scheme": ":root { color-scheme: dark; }",
}

# Every text node under `root` (crossing into open shadow roots), with its element's colour and
# the first mostly opaque background behind it, walking up through shadow hosts; null when the
# walk reaches the top of its document without one.
TEXTS = """(root) => {
    const opaque = (c) => {
        const m = c.match(/[\\d.]+/g);
        return m && (m.length < 4 || Number(m[3]) >= 0.99) ? c : null;
    };
    const behind = (e) => {
        for (; e; e = e.parentElement || (e.getRootNode().host || null)) {
            const bg = opaque(getComputedStyle(e).backgroundColor);
            if (bg) return bg;
        }
        return null;
    };
    const out = [];
    const walk = (node) => {
        for (const child of node.childNodes) {
            if (child.nodeType === 3 && child.textContent.trim()) {
                const e = child.parentElement;
                if (e.closest("script,style")) continue;
                out.push({text: child.textContent.trim().slice(0, 40), color: getComputedStyle(e).color,
                          background: behind(e), cls: e.className || e.tagName});
            } else if (child.nodeType === 1) {
                walk(child);
                if (child.shadowRoot) walk(child.shadowRoot);
            }
        }
    };
    walk(root);
    if (root.shadowRoot) walk(root.shadowRoot);
    return out;
}"""


def rgb(css: str) -> tuple[float, float, float]:
    values = [float(v) for v in css[css.index("(") + 1:css.index(")")].replace(",", " ").replace("/", " ").split()]
    return values[0], values[1], values[2]


def luminance(color: tuple[float, float, float]) -> float:
    def channel(v: float) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = luminance(rgb(a)), luminance(rgb(b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_contrast_helpers_agree_with_wcag() -> None:
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21.0)
    assert contrast("rgb(118, 118, 118)", "rgb(255, 255, 255)") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("scheme", list(PAGES))
def test_every_text_of_a_cell_is_readable_on_a_dark_and_a_light_page(
        watched: Watched, server: Server, host_site: HostSite, scheme: str) -> None:
    page = watched.page
    page.goto(host_site.add(f"/contrast-{scheme}.html", host_page(
        server, f"<h1>A {scheme} page</h1>\n{python('cell', CODE)}", css=PAGES[scheme], title=f"{scheme} page")))
    done = run_and_wait(page, "#cell")
    assert done["status"] == "error"
    settle(page)
    cell = page.locator("#cell")
    expected_theme = "light" if scheme == "light" else "dark"
    assert cell.locator(".sc").first.get_attribute("data-theme") == expected_theme

    texts: list[dict[str, Any]] = page.evaluate(TEXTS, page.locator("#cell").element_handle())
    frame = next(f for f in page.frames if f != page.main_frame and f.locator("#frame-text").count())
    in_frame: list[dict[str, Any]] = frame.evaluate(TEXTS, frame.locator("body").element_handle())
    page_backdrop = page.evaluate("getComputedStyle(document.body).backgroundColor")
    kinds = {
        "stdout": [t for t in texts if "sc-stdout" in t["cls"]],
        "stderr": [t for t in texts if "sc-stderr" in t["cls"]],
        "traceback": [t for t in texts if t["cls"].startswith("sc-ansi") or t["cls"] == "sc-error"],
        "status": [t for t in texts if "sc-status" in t["cls"]],
        "html frame": [t for t in in_frame if t["text"] == "text in an HTML frame"],
    }
    too_faint = []
    for kind, found in kinds.items():
        assert found, f"no {kind} text in the cell: {texts}"
        for text in found:
            background = text["background"] or page_backdrop  # the frame's page shows through
            ratio = contrast(text["color"], background)
            if ratio < 4.5:
                too_faint.append(f"{kind} {text['text']!r}: {text['color']} on {background} is {ratio:.2f}:1")
    assert not too_faint, "\n".join(too_faint)
    assert any("ZeroDivisionError" in t["text"] for t in kinds["traceback"])
    screenshot(page, f"contrast-{scheme}")


@pytest.mark.parametrize(("css", "given", "shown"), [
    (PAGES["dark"], "light", "light"), (PAGES["light"], "dark", "dark"), (PAGES["light"], "auto", "light")])
def test_the_theme_option_chooses_and_the_cell_paints_its_own_background(
        watched: Watched, server: Server, host_site: HostSite, css: str, given: str, shown: str) -> None:
    page = watched.page
    page.goto(host_site.add(f"/theme-{given}.html", host_page(
        server, python("cell", "print('themed')", attrs=f'data-theme="{given}"'), css=css)))
    assert run_and_wait(page, "#cell")["status"] == "done"
    root = page.locator("#cell .sc").first
    assert root.get_attribute("data-theme") == shown
    (stdout,) = [t for t in page.evaluate(TEXTS, page.locator("#cell").element_handle()) if "sc-stdout" in t["cls"]]
    assert contrast(stdout["color"], stdout["background"]) >= 4.5, stdout


def test_a_theme_the_cell_does_not_know_is_refused(watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    page.goto(host_site.add("/theme-bad.html", host_page(server, "<div id='x'></div>")))
    error = page.evaluate("""() => { try { new SingleCellBlock("#x", {theme: "sepia"}); return null; }
                                     catch (e) { return e.constructor.name + ": " + e.message; } }""")
    assert error == 'TypeError: theme must be one of auto, light, dark, not "sepia"'
