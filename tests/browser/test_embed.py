"""SingleCellBlock embedded in a page of another origin, in a real Chromium."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.browser.conftest import HostSite, Watched, editor_code, run_and_wait, screenshot
from tests.e2e.test_streaming import texts
from tests.servers import Server


def host_page(server: Server, body: str, css: str = "", title: str = "Host page") -> str:
    """A page of the host site that loads singlecell.js from the server. It writes the globals it
    had before loading the script into an attribute, so the test can see what the script added."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<style>{css}</style></head>
<body>
{body}
<script>document.documentElement.setAttribute("data-globals", JSON.stringify(Object.keys(window)));</script>
<script src="{server.url}/static/singlecell.js"></script>
</body></html>"""


def attribute_cell(cell_id: str, code: str) -> str:
    """A cell whose code is a data-code attribute: holds any text, even "</script>"."""
    return f'<div class="singlecell" id="{cell_id}" data-code="{html.escape(code, quote=True)}"></div>'


def python(cell_id: str, code: str, attrs: str = "") -> str:
    """A <script type="text/x-python"> cell: code with < and & stays as it is."""
    return f'<script type="text/x-python" class="singlecell" id="{cell_id}" {attrs}>\n{code}\n</script>'


RICH = r"""
import sys
import matplotlib.pyplot as plt
from IPython.display import HTML, Math, display
print("hello from the first cell")
print("a warning", file=sys.stderr)
plt.plot([1, 3, 2])
plt.show()
display(HTML("<table id='t'><tr><th>n</th><th>square</th></tr><tr><td>3</td><td>9</td></tr></table>"))
display(Math(r"\int_0^1 x^2\,dx = \frac{1}{3}"))
with open("result.txt", "w") as f:
    f.write("n < 4 & square = 9\n")
plt.figure()
plt.bar([1, 2], [3, 4])
plt.savefig("bars.png")
{"answer": 42}
"""

FAILING = """
print("before the error")
def f(x):
    return 1 / x
f(0)
"""


def test_two_cells_on_another_origin_show_every_kind_of_output(
        watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    url = host_site.add("/two-cells.html", host_page(server, f"""
<h1>Two cells</h1>
{python("a", RICH)}
<div class="singlecell" id="b">{html.escape(FAILING)}</div>
"""))
    assert not url.startswith(server.url)  # another origin: localhost, not 127.0.0.1
    page.goto(url)
    added = page.evaluate("""() => {
        const before = new Set(JSON.parse(document.documentElement.getAttribute("data-globals")));
        return Object.keys(window).filter((k) => !before.has(k));
    }""")
    assert added == ["SingleCellBlock"]
    a, b = page.locator("#a"), page.locator("#b")
    assert editor_code(page, "#a") == RICH.strip("\n")  # the script became a CodeMirror cell
    for element in (a, b):
        element.locator("button.sc-run").click()
    page.wait_for_function("""() => ["#a", "#b"].every((s) =>
        /^(Done|Error)/.test(document.querySelector(s).shadowRoot.querySelector(".sc-status").textContent))""")

    # printed text, stderr marked
    assert a.locator(".sc-stdout").inner_text() == "hello from the first cell\n"
    assert a.locator(".sc-stderr").inner_text() == "a warning\n"
    # the plot, as an image that decoded
    plot = a.locator('.sc-display[data-mime="image/png"] img').first
    assert plot.evaluate("(img) => img.complete && img.naturalWidth") > 100
    # the HTML table, in a sandboxed frame
    table = page.frame_locator("#a .sc-frame-html")
    assert table.locator("#t td").nth(1).inner_text() == "9"
    # the LaTeX formula, typeset by MathJax from this server
    latex = page.frame_locator("#a .sc-frame-latex")
    latex.locator("body[data-typeset=done] mjx-container svg").first.wait_for()
    assert a.locator(".sc-frame-latex[data-sized]").evaluate("(f) => f.getBoundingClientRect().height") > 20
    # the result as JSON? no: a dict's richest form from IPython is text/plain
    assert "'answer': 42" in a.locator('.sc-display[data-mime="text/plain"]').inner_text()
    # the files: links to the server, the image inline
    link = a.locator(".sc-files a", has_text="result.txt")
    assert re.fullmatch(re.escape(server.url) + r"/files/[0-9a-f]{32}/result\.txt", link.get_attribute("href") or "")
    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.locator("body").inner_text() == "n < 4 & square = 9\n"
    tab.close()
    bars = a.locator(".sc-files img.sc-file-image")
    bars.wait_for()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 100", arg=bars.element_handle())

    # the error: a readable, coloured traceback after the output before it
    assert b.locator(".sc-stdout").inner_text() == "before the error\n"
    error = b.locator(".sc-error")
    text = error.inner_text()
    assert "ZeroDivisionError" in text and "return 1 / x" in text and "\x1b" not in text
    assert error.locator("span[class*=sc-ansi-fg]").count() > 0
    assert b.locator(".sc-status").inner_text().startswith("Error after")

    # nothing came from anywhere but the host and the server; nothing went wrong in the console
    origins = {re.match(r"[a-z]+://[^/]+", u).group(0) for u in watched.requests  # type: ignore[union-attr]
               if not u.startswith(("data:", "about:"))}
    assert origins <= {host_site.origin, server.url}, origins
    assert watched.errors == []
    screenshot(page, "embedded-two-cells")


def test_stop_ends_an_infinite_loop(watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    page.goto(host_site.add("/stop.html", host_page(server, python("loop", """
import itertools, time
for i in itertools.count():
    print(i, flush=True)
    time.sleep(0.05)
"""))))
    cell = page.locator("#loop")
    page.evaluate("""() => { const e = document.querySelector("#loop");
        e.addEventListener("singlecell:done", (ev) => { e.scDone = ev.detail; }); }""")
    assert not cell.locator("button.sc-stop").is_visible()
    cell.locator("button.sc-run").click()
    cell.locator(".sc-stdout", has_text="5").wait_for()
    assert cell.locator(".sc-status").inner_text().startswith("Running…")
    cell.locator("button.sc-stop").click()
    page.wait_for_function("() => document.querySelector('#loop').scDone", timeout=10_000)
    done = page.evaluate("() => document.querySelector('#loop').scDone")
    assert done["status"] == "aborted"
    assert cell.locator(".sc-status").inner_text().startswith("Stopped after")
    assert "CellStopped" in cell.locator(".sc-error").inner_text()
    assert not cell.locator("button.sc-stop").is_visible()
    numbers = cell.locator(".sc-stdout").inner_text().split()
    assert numbers == [str(i) for i in range(len(numbers))]  # every line, in order, none twice
    with server.client() as client:
        assert client.status(done["id"]) == "aborted"
    # the kernel is free again: the cell runs anew
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("print('again')")
    assert run_and_wait(page, "#loop")["status"] == "done"
    assert cell.locator(".sc-stdout").inner_text() == "again\n"
    assert watched.errors == []


def test_a_limit_that_stops_the_cell_is_named(watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    page.goto(host_site.add("/limit.html", host_page(server, python("spin", "while True:\n    pass",
                                                                   'data-timeout="1"'))))
    done = run_and_wait(page, "#spin")
    assert done["status"] == "timeout"
    note = page.locator("#spin .sc-limit")
    assert note.get_attribute("data-limit") == "time"
    assert "TimeLimitExceeded" in note.inner_text() and "1 second" in note.inner_text()
    assert page.locator("#spin .sc-error").count() == 0  # the bare error became the note
    assert page.locator("#spin .sc-status").inner_text().startswith("Timed out after")


HOSTILE = r'''
from IPython.display import HTML, Javascript, Markdown, SVG, display
display(HTML("""
<script>
try { top.document.title = "pwned"; } catch (e) {}
try { parent.document.getElementById("marker").remove(); } catch (e) {}
try { parent.SingleCellBlock = null; } catch (e) {}
try { localStorage.setItem("pwned", "1"); } catch (e) {}
try { alert("pwned"); } catch (e) {}
try { top.location = "about:blank#pwned"; } catch (e) {}
</script>
<style>html, body, * { background: red !important; color: red !important; }</style>
<p id="inside">hostile html</p>
"""))
display(Javascript("top.document.title = 'pwned by js'; parent.document.body.innerHTML = '';"))
display(Markdown("<img src=x onerror=\"top.document.title='pwned by md'\"> **md**"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            '<script>top.document.title="pwned by svg"</script><circle r="5"/></svg>'))
print("<script>document.title='pwned by text'</script><b>not bold</b>")
'''


def test_hostile_output_leaves_the_host_page_untouched(watched: Watched, server: Server,
                                                        host_site: HostSite) -> None:
    page = watched.page
    url = host_site.add("/hostile.html", host_page(server, f"""
<p id="marker">the host's own paragraph</p>
{attribute_cell("evil", HOSTILE)}
{python("raise", 'raise ValueError("<img src=x onerror=alert(1)>")')}
""", css="body { background: rgb(250, 250, 250); } p { color: rgb(10, 20, 30); }"))
    page.goto(url)
    styles = "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(marker).color]"
    before = page.evaluate(styles)
    run_and_wait(page, "#evil")
    run_and_wait(page, "#raise")
    page.frame_locator("#evil .sc-frame-html").locator("#inside").wait_for()
    page.frame_locator("#evil .sc-frame-markdown").locator("strong").wait_for()
    page.wait_for_timeout(1000)  # time for any script that would run late

    assert page.title() == "Host page"
    assert page.url == url
    assert page.locator("#marker").inner_text() == "the host's own paragraph"
    assert page.evaluate(styles) == before
    assert page.evaluate("typeof SingleCellBlock") == "function"
    assert page.evaluate("localStorage.getItem('pwned')") is None
    assert watched.dialogs == []
    # the frames run their scripts, but in an opaque origin that cannot reach the page
    frame = page.locator("#evil .sc-frame-html").element_handle().content_frame()
    assert frame.evaluate("() => window.origin") == "null"
    assert frame.evaluate("() => { try { return parent.document.title; } catch (e) { return e.name; } }") \
        == "SecurityError"
    assert page.locator("#evil .sc-frame-html").get_attribute("sandbox") == \
        "allow-scripts allow-popups allow-popups-to-escape-sandbox"
    # text stays text; SVG is an image, whose scripts never run
    text = page.locator("#evil .sc-stdout")
    assert text.inner_text() == "<script>document.title='pwned by text'</script><b>not bold</b>\n"
    assert text.locator("b, script").count() == 0
    assert page.locator('#evil .sc-display[data-mime="image/svg+xml"] img').count() == 1
    error = page.locator("#raise .sc-error")
    assert "<img src=x onerror=alert(1)>" in error.inner_text() and error.locator("img").count() == 0
    screenshot(page, "hostile-output")


def test_host_css_does_not_restyle_the_cell_and_the_cells_css_stays_in(
        watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    page.goto(host_site.add("/css.html", host_page(server, """
<button class="sc-run" id="host-button">the host's button</button>
<pre class="sc-stdout" id="host-pre">the host's pre</pre>
<div class="singlecell" id="c">print("styled by singlecell")</div>
""", css="""
* { color: rgb(255, 0, 0) !important; font-family: serif !important; letter-spacing: 5px; }
button { visibility: hidden !important; }
pre { font-size: 40px !important; }
.sc, .sc-run, .sc-output, .cm-editor { border: 9px solid rgb(0, 255, 0) !important; }
div { line-height: 50px; }
""")))
    run_and_wait(page, "#c")
    style = """(e, props) => { const s = getComputedStyle(e); return props.map((p) => s[p]); }"""
    props = ["color", "fontSize", "visibility", "borderTopWidth", "letterSpacing", "lineHeight"]
    inside_button = page.locator("#c button.sc-run").evaluate(style, props)
    assert inside_button[0] == "rgb(255, 255, 255)" and inside_button[2] == "visible"
    assert inside_button[3] == "1px" and inside_button[4] == "normal"
    inside_pre = page.locator("#c .sc-stdout").evaluate(style, props)
    assert inside_pre[:2] == ["rgb(29, 29, 31)", "13px"] and inside_pre[5] != "50px"
    assert page.locator("#c .cm-editor").evaluate(style, ["borderTopWidth"]) == ["0px"]
    assert "serif" != page.locator("#c .sc-stdout").evaluate("(e) => getComputedStyle(e).fontFamily")
    # and the cell's styles for .sc-run and .sc-stdout did not reach the host's own elements
    assert page.locator("#host-button").evaluate(style, props)[:4] == ["rgb(255, 0, 0)", "13.3333px", "hidden", "9px"]
    assert page.locator("#host-pre").evaluate(style, props)[:2] == ["rgb(255, 0, 0)", "40px"]
    screenshot(page, "host-css")


def test_a_dropped_connection_resumes_with_no_duplicate_and_no_gap(
        watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    polls: list[str] = []

    def flaky(route: Any) -> None:
        polls.append(route.request.url)
        if len(polls) in (2, 3):  # drop long-polls mid-run, as a flaky network does
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r".*/watch\?.*"), flaky)
    page.goto(host_site.add("/flaky.html", host_page(server, python("count", """
import time
for i in range(30):
    print(i, flush=True)
    time.sleep(0.05)
"""))))
    done = run_and_wait(page, "#count")
    assert done["status"] == "done"
    assert page.locator("#count .sc-stdout").inner_text() == "".join(f"{i}\n" for i in range(30))
    assert len(polls) >= 4
    # the retries resumed from the last seq shown
    afters = [int(re.search(r"ids=[0-9a-f]{32}:(\d+)", p).group(1)) for p in polls]  # type: ignore[union-attr]
    assert afters == sorted(afters)
    with server.client() as client:
        stored = client.output(done["id"])["messages"]
    assert texts(stored) == page.locator("#count .sc-stdout").inner_text()
    # the failed polls are expected (Chromium logs them); nothing else went wrong
    assert all("net::ERR_CONNECTION_RESET" in e or "Failed to load resource" in e for e in watched.errors), \
        watched.errors


def test_options_events_and_a_cell_made_from_code(watched: Watched, server: Server, host_site: HostSite) -> None:
    page = watched.page
    page.goto(host_site.add("/options.html", host_page(server, """
<div id="made"></div>
<div id="elsewhere"></div>
<div class="singlecell" id="auto" data-autoeval data-editor="readonly" data-hide="permalink, status">print(7 * 6)</div>
<div class="singlecell" id="plain" data-editor="textarea" data-eval-button-text="Go">print("textarea")</div>
""")))
    events = page.evaluate("""() => new Promise((resolve) => {
        const seen = [];
        const cell = new SingleCellBlock(document.getElementById("made"), {
            code: "print('from options')\\n1 + 1",
            evalButtonText: "Compute",
            hide: ["editor"],
            outputLocation: "#elsewhere",
            onStarted: (info) => seen.push(["started", typeof info.id]),
            onOutput: (msg, seq) => seen.push(["output", msg.msg_type, seq]),
            onDone: (result) => { seen.push(["done", result.status]); resolve(seen); },
        });
        cell.run();
    })""")
    assert events[0] == ["started", "string"] and events[-1] == ["done", "done"]
    outputs = [e for e in events if e[0] == "output"]
    assert [e[2] for e in outputs] == list(range(1, len(outputs) + 1))
    assert [e[1] for e in outputs][:4] == ["status", "execute_input", "stream", "execute_result"]
    assert page.locator("#made button.sc-run").inner_text() == "Compute"
    assert not page.locator("#made .sc-editor").is_visible()
    assert page.locator("#elsewhere .sc-stdout").inner_text() == "from options\n"
    assert page.locator("#made .sc-output").count() == 0  # the output went elsewhere
    # autoeval ran on load; read-only code cannot be typed into; hidden parts are hidden
    page.locator("#auto .sc-stdout", has_text="42").wait_for()
    assert page.locator("#auto .cm-content").get_attribute("contenteditable") == "false"
    assert not page.locator("#auto button.sc-share-button").is_visible()
    assert not page.locator("#auto .sc-status").is_visible()
    # the textarea editor, with its own button text, and Shift+Enter
    plain = page.locator("#plain")
    assert plain.locator("button.sc-run").inner_text() == "Go"
    plain.locator("textarea").fill("print('typed')")
    plain.locator("textarea").press("Shift+Enter")
    plain.locator(".sc-stdout", has_text="typed").wait_for()
    # cells added later are made by init(), once
    made = page.evaluate("""() => { const div = document.createElement("div");
        div.className = "singlecell"; div.id = "late"; div.textContent = "print('late')";
        document.body.append(div); return [SingleCellBlock.init().length, SingleCellBlock.init().length]; }""")
    assert made == [1, 0]
    assert run_and_wait(page, "#late")["status"] == "done"
    # bad options fail loudly, saying what to fix
    message = page.evaluate("""() => { try { new SingleCellBlock(document.body.appendChild(
        document.createElement("div")), {editor: "vim"}); } catch (e) { return e.message; } }""")
    assert "editor must be one of codemirror, textarea, readonly" in message
    assert watched.errors == []


def test_a_page_of_an_origin_the_server_refuses_cannot_run_code(
        watched: Watched, start_server: Any, host_site: HostSite) -> None:
    server = start_server("serve", "--cors-origins", "https://elsewhere.example")
    page = watched.page
    page.goto(host_site.add("/refused.html", host_page(server, '<div class="singlecell" id="r">1</div>')))
    done = run_and_wait(page, "#r")
    assert done["status"] == "failed"
    assert page.locator("#r .sc-status").inner_text().startswith("Failed: could not reach")
    # the browser's preflight was refused, so the code was never even sent
    assert server.db_rows("SELECT count(*) FROM requests WHERE message LIKE ?", ('%"code":"1"%',)) == [(0,)]
