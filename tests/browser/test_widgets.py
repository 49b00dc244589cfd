"""Live widgets in an embedded cell, in a real Chromium, on a host page of another origin: an
``@interact`` driven from the keyboard, a session ending idle with its words on the page, and
widget output that cannot reach the host page."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest

from tests.browser.conftest import HostSite, Watched, screenshot
from tests.browser.test_embed import attribute_cell, host_page, python
from tests.servers import Server, Servers

INTERACT = """
from ipywidgets import interact
import matplotlib.pyplot as plt

@interact(n=(1, 10), colour=["red", "blue"])
def draw(n=3, colour="red"):
    print(f"n is {n}, colour {colour}")
    plt.plot(range(n), color=colour)
    plt.title(f"{n} points")
    plt.show()
"""

HOSTILE_WIDGETS = """
import ipywidgets as w
from IPython.display import HTML, display
html = w.HTML("<b id='bold'>bold</b><img src=x onerror=\\"parent.document.title='pwned'\\">"
              "<script>parent.document.title = 'pwned'</script>")
out = w.Output()
button = w.Button(description="Attack")
def attack(_):
    with out:
        display(HTML("<p id='inside'>inside</p><script>try { parent.document.body.remove() } catch (e) {}"
                     "try { localStorage.setItem('pwned', 1) } catch (e) {} top.location = 'about:blank'</script>"))
        print("<img src=x onerror=alert(1)>")
button.on_click(attack)
display(html, button, out)
"""


def frame_of(page: Any, cell: str) -> Any:
    return page.frame_locator(f"{cell} .sc-frame-widgets")


def wait_text(page: Any, cell: str, pattern: str, timeout: float = 20_000) -> None:
    """Wait until the cell's widget frame shows text matching ``pattern``."""
    frame = page.locator(f"{cell} .sc-frame-widgets").element_handle(timeout=timeout).content_frame()
    frame.wait_for_function("(p) => new RegExp(p).test(document.body.innerText)", arg=pattern, timeout=timeout)


def status(page: Any, cell: str) -> str:
    return str(page.locator(f"{cell} .sc-status").inner_text())


@pytest.mark.parametrize("dark", [False, True], ids=["light-page", "dark-page"])
def test_an_interact_redraws_its_plot_when_its_slider_moves_from_the_keyboard(
        watched: Watched, server: Server, host_site: HostSite, dark: bool) -> None:
    page = watched.page
    css = "body { background: #111418; color: #ddd; }" if dark else ""
    url = host_site.add(f"/interact-{dark}.html", host_page(server, python("plot", INTERACT), css=css))
    page.goto(url)
    before = page.evaluate("() => document.querySelectorAll('script[src]').length")
    page.locator("#plot button.sc-run").click()
    page.wait_for_function("() => /widgets live/.test(document.querySelector('#plot').shadowRoot"
                           ".querySelector('.sc-status').textContent)", timeout=30_000)
    assert re.fullmatch(r"Done in [0-9.]+ s · widgets live", status(page, "#plot"))
    frame = frame_of(page, "#plot")
    wait_text(page, "#plot", "n is 3, colour red")
    first_plot = frame.locator(".widget-output img").first.get_attribute("src")
    assert first_plot and first_plot.startswith("data:image/png;base64,")
    # the widget runtime came with the first widget, into the frame, from the server: nothing was
    # added to the page, which had not loaded it before
    assert page.evaluate("() => document.querySelectorAll('script[src]').length") == before
    assert not page.evaluate("() => performance.getEntriesByType('resource').some((e) => /widgets/.test(e.name))")
    inside = page.locator("#plot .sc-frame-widgets").element_handle().content_frame()
    loaded = inside.evaluate("() => performance.getEntriesByType('resource').map((e) => e.name)")
    assert next(u for u in loaded if "singlecell-widgets.js" in u).startswith(f"{server.url}/static/")
    screenshot(page, f"interact-{'dark' if dark else 'light'}-start")

    handle = frame.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    handle.press("ArrowRight")
    wait_text(page, "#plot", "n is 5, colour red")
    frame.locator(".widget-output img").first.wait_for()
    assert frame.locator(".widget-output").inner_text().count("n is") == 1  # cleared, redrawn
    second_plot = frame.locator(".widget-output img").first.get_attribute("src")
    assert second_plot != first_plot

    frame.locator("select").select_option("blue")
    wait_text(page, "#plot", "n is 5, colour blue")
    assert status(page, "#plot").endswith("widgets live")
    # the page shows nothing of the widgets' traffic as output of its own
    assert page.locator("#plot .sc-stdout").count() == 0
    assert watched.errors == []
    origins = {re.match(r"[a-z]+://[^/]+", u).group(0) for u in watched.requests  # type: ignore[union-attr]
               if not u.startswith(("data:", "about:", "blob:"))}
    assert origins <= {host_site.origin, server.url}, origins
    screenshot(page, f"interact-{'dark' if dark else 'light'}-moved")
    page.locator("#plot button.sc-stop").click()  # ends the session
    wait_text(page, "#plot", "Session stopped: press Run to start again")
    assert status(page, "#plot") == "Session stopped: press Run to start again"


@pytest.fixture(scope="module")
def idle_server(module_servers: Servers) -> Server:
    return module_servers("serve", "--session-idle", "4", name="idle-sessions")


def test_an_idle_session_ends_and_the_page_says_so_in_words(watched: Watched, idle_server: Server,
                                                           host_site: HostSite) -> None:
    page = watched.page
    url = host_site.add("/idle.html", host_page(idle_server, python(
        "slider", "import ipywidgets as w\ns = w.IntSlider(description='n')\n"
                  "s.observe(lambda c: print('n =', c['new']), names='value')\ndisplay(s)")))
    page.goto(url)
    page.evaluate("""() => document.querySelector('#slider').addEventListener('singlecell:session',
        (e) => { e.target.scSession = e.detail; })""")
    page.locator("#slider button.sc-run").click()
    frame = frame_of(page, "#slider")
    frame.locator(".noUi-handle").wait_for()
    page.wait_for_function("() => /widgets live/.test(document.querySelector('#slider').shadowRoot"
                           ".querySelector('.sc-status').textContent)")
    assert page.locator("#slider .sc-status").get_attribute("data-state") == "live"
    screenshot(page, "session-live")
    words = "Session ended after 4 seconds idle: press Run to start again"
    page.wait_for_function("(w) => document.querySelector('#slider').shadowRoot.querySelector('.sc-status')"
                           ".textContent === w", arg=words, timeout=20_000)
    assert page.locator("#slider .sc-status").get_attribute("data-state") == "ended"
    ended = page.evaluate("() => document.querySelector('#slider').scSession")
    assert ended == {"id": ended["id"], "state": "ended", "reason": "idle", "message": words}
    assert page.locator("#slider button.sc-stop").is_hidden()
    wait_text(page, "#slider", "Session ended after 4 seconds idle")  # in the widgets' frame too
    # the controls are off: a key on the slider sends nothing any more
    inputs: list[str] = []
    page.on("request", lambda r: inputs.append(r.url) if "/input/" in r.url else None)
    with contextlib.suppress(Exception):  # inert: the key may not even reach it
        frame.locator(".noUi-handle").press("ArrowRight", timeout=2000)
    page.wait_for_timeout(500)
    assert inputs == []
    screenshot(page, "session-ended-idle")
    # Run again starts a new session (told by its event: on a loaded machine the page may see the
    # new session only when its 4 s are already over, and then never shows it live)
    page.locator("#slider button.sc-run").click()
    page.wait_for_function("(old) => { const s = document.querySelector('#slider').scSession;"
                           " return s.state === 'live' && s.id !== old; }", arg=ended["id"])
    assert page.locator("#slider .sc-frame-widgets").count() == 1  # the old frame went with its output


def test_widget_output_cannot_reach_the_host_page(watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    url = host_site.add("/hostile-widgets.html", host_page(server, f"""
<p id="marker">the host's own paragraph</p>
{attribute_cell("evil", HOSTILE_WIDGETS)}
"""))
    page.goto(url)
    page.evaluate("() => localStorage.setItem('mine', 'kept')")
    dom = "() => [document.body.children.length, document.getElementById('marker').textContent]"
    before = page.evaluate(dom)
    page.locator("#evil button.sc-run").click()
    frame = frame_of(page, "#evil")
    frame.locator("#bold").wait_for()
    frame.get_by_role("button", name="Attack").click()
    frame.locator("iframe, #inside").first.wait_for()
    wait_text(page, "#evil", "onerror")
    page.wait_for_timeout(1000)  # time for any script that would run late

    assert page.title() == "Host page" and page.url == url
    assert page.evaluate(dom) == before
    assert page.evaluate("() => [localStorage.getItem('mine'), localStorage.getItem('pwned')]") == ["kept", None]
    assert watched.dialogs == []
    widgets = page.locator("#evil .sc-frame-widgets")
    assert widgets.get_attribute("sandbox") == "allow-scripts allow-popups allow-popups-to-escape-sandbox"
    inside = widgets.element_handle().content_frame()
    assert inside.evaluate("() => window.origin") == "null"
    assert inside.evaluate("() => { try { return parent.document.title; } catch (e) { return e.name; } }") \
        == "SecurityError"
    # printed text stayed text inside the Output widget
    assert frame.locator(".widget-output").locator("img[src=x]").count() == 0
    screenshot(page, "hostile-widgets")


@pytest.fixture(scope="module")
def roomy_server(module_servers: Servers) -> Server:
    return module_servers("serve", "--max-sessions-per-client", "20", name="roomy-sessions")


def test_eight_live_cells_share_one_long_poll_and_all_answer(watched: Watched, roomy_server: Server,
                                                             host_site: HostSite) -> None:
    """More live cells than a browser opens connections to one origin (six): with a long-poll each
    the seventh would wait; the page's one /watch serves them all."""
    page = watched.page
    count = """<script>
    window.scWatches = { inFlight: 0, most: 0, total: 0 };
    const realFetch = window.fetch;
    window.fetch = async (...args) => {
        const watch = String(args[0]).includes("/watch?");
        if (watch) {
            scWatches.inFlight++; scWatches.total++; scWatches.most = Math.max(scWatches.most, scWatches.inFlight);
        }
        try { return await realFetch(...args); } finally { if (watch) scWatches.inFlight--; }
    };
    </script>"""
    cells = "".join(python(f"c{n}", f"import ipywidgets as w\ns = w.IntSlider(description='cell {n}')\n"
                                    f"s.observe(lambda c: print('cell {n} at', c['new']), names='value')\n"
                                    "display(s)") for n in range(8))
    page.goto(host_site.add("/eight.html", host_page(roomy_server, count + cells)))
    for n in range(8):  # not click(): frames that appear move the buttons under the pointer
        page.locator(f"#c{n} button.sc-run").dispatch_event("click")
    page.wait_for_function("""() => [...Array(8).keys()].every((n) => /widgets live/.test(
        document.querySelector('#c' + n).shadowRoot.querySelector('.sc-status').textContent))""", timeout=60_000)
    for n in range(8):
        handle = frame_of(page, f"#c{n}").locator(".noUi-handle")
        handle.focus()
        handle.press("ArrowRight")
    for n in range(8):
        page.locator(f"#c{n} .sc-stdout").filter(has_text=f"cell {n} at 1").wait_for(timeout=20_000)
    watches = page.evaluate("() => window.scWatches")
    assert watches["most"] == 1, watches  # one poll at a time, for all eight cells
    screenshot(page, "eight-live-cells")
    for n in range(8):
        page.locator(f"#c{n} button.sc-stop").dispatch_event("click")
    page.wait_for_function("""() => [...Array(8).keys()].every((n) => /^Session stopped/.test(
        document.querySelector('#c' + n).shadowRoot.querySelector('.sc-status').textContent))""")


def test_the_librarys_interactive_example_is_live_on_its_page(watched: Watched, server: Server) -> None:
    """The snippet library's interacts: its example runs on its own page (the snippet's file first),
    and its slider redraws the plot."""
    page = watched.page
    found = json.loads(server.client().request("GET", "/api/snippets?q=interactive", b"", {})[2])
    snippet = next(item["id"] for item in found["items"] if item["title"] == "An interactive plot")
    page.goto(server.url + f"/s/{snippet}")
    page.locator("#cell button.sc-run").click()
    page.wait_for_function("() => /widgets live/.test(document.querySelector('#cell').shadowRoot"
                           ".querySelector('.sc-status').textContent)", timeout=30_000)
    frame = frame_of(page, "#cell")
    plot = frame.locator(".widget-output img").first
    before = plot.get_attribute("src")
    handle = frame.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    frame.locator(".widget-readout", has_text="3").wait_for()
    for _ in range(50):
        if plot.get_attribute("src") != before:
            break
        page.wait_for_timeout(100)
    assert plot.get_attribute("src") != before
    assert watched.errors == []
    screenshot(page, "library-interactive-example")
    page.locator("#cell button.sc-stop").click()
