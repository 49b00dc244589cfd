"""The snippet library in a real Chromium: a person's path through the site, hostile input in
every field a person controls, and the phone layout."""

from __future__ import annotations

import json
import secrets
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Watched, run_and_wait, screenshot, settle
from tests.servers import Server

SHAPES = "import math\n\nclass Circle:\n    def __init__(self, r):\n        self.r = r\n\n    def area(self):\n" \
         "        return math.pi * self.r ** 2\n"
MAIN = "from shapes import Circle\nprint(round(Circle(1).area(), 4))\n"


def sign_up(page: Any, server: Server, name: str, password: str = "a long password") -> None:
    page.goto(server.url + "/signup")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/library")
    assert page.locator("header.site .me").inner_text() == name


def create_snippet(page: Any, server: Server, title: str, tags: str, files: dict[str, str], blurb: str = "",
                   command: str = "") -> str:
    page.goto(server.url + "/new")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Tags").fill(tags)
    page.get_by_label("Description (Markdown)").fill(blurb)
    for n, (path, text) in enumerate(files.items()):
        page.locator(f"input[name=path-{n}]").fill(path)
        page.locator(f"textarea[name=text-{n}]").fill(text)
    page.locator("textarea[name=command]").fill(command)
    page.get_by_role("button", name="Publish").click()
    page.wait_for_url("**/s/*")
    return str(page.url.rsplit("/", 1)[1])


def set_cell_code(page: Any, code: str) -> None:
    page.locator("#cell .cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)


def test_a_persons_path_through_the_library(watched: Watched, server: Server, tmp_path: Path) -> None:
    page = watched.page
    word = "zq" + secrets.token_hex(3)  # a word only this snippet holds, to find it by
    ada, grace = f"ada-{word}", f"grace-{word}"

    # 1. sign up; 2. a two-file snippet with tags
    sign_up(page, server, ada)
    snippet = create_snippet(page, server, f"Shapes {word}", "geometry/2d, classes",
                             {"shapes.py": SHAPES, "main.py": MAIN}, blurb=f"Circles, **{word}**.",
                             command="from shapes import Circle\nround(Circle(2).area(), 4)")
    assert page.locator("h1").inner_text() == f"Shapes {word}"
    assert page.locator(".blurb strong").inner_text() == word
    assert page.locator("figure.file figcaption .path").all_inner_texts() == ["main.py", "shapes.py"]
    screenshot(page, "library-snippet")

    # 3. found by search, and by tag
    page.goto(server.url + "/library")
    page.get_by_label("Search snippets").fill(word)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=f"Shapes {word}").wait_for()
    screenshot(page, "library-search")
    page.goto(server.url + f"/s/{snippet}")
    page.locator("p.tags a", has_text="geometry/2d").click()
    page.get_by_role("link", name=f"Shapes {word}").wait_for()
    assert "tag=geometry" in page.url

    # 4. a cell that imports from it, run on its page
    page.get_by_role("link", name=f"Shapes {word}").click()
    done = run_and_wait(page, "#cell")
    assert done["status"] == "done", done
    page.locator("#cell .sc-display", has_text="12.5664").wait_for()
    set_cell_code(page, "import main")
    assert run_and_wait(page, "#cell")["status"] == "done"
    assert page.locator("#cell .sc-stdout").inner_text() == "3.1416\n"

    # 5. another person forks it, edits the fork, and sees both revisions and their diff
    page.get_by_role("button", name="Log out").click()
    sign_up(page, server, grace)
    page.goto(server.url + f"/s/{snippet}")
    page.get_by_role("button", name="Fork").click()
    page.wait_for_url("**/s/*")
    fork = page.url.rsplit("/", 1)[1]
    assert fork != snippet and page.locator(".credits").inner_text().count(snippet) == 1
    page.get_by_role("link", name="Edit").click()
    page.locator("textarea[name=text-0]").fill(MAIN.replace("Circle(1)", "Circle(3)"))
    page.get_by_role("button", name="Save a new revision").click()
    page.wait_for_url(f"**/s/{fork}")
    page.get_by_role("link", name="History (2)").click()
    assert page.locator("table.revisions tbody tr").count() == 2
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url("**/diff?**")
    assert page.locator("tr.removed code").all_inner_texts() == ["-print(round(Circle(1).area(), 4))"]
    assert page.locator("tr.added code").all_inner_texts() == ["+print(round(Circle(3).area(), 4))"]
    screenshot(page, "library-diff")

    # 6. a comment on one line of the original
    page.goto(server.url + f"/s/{snippet}")
    page.locator("tr[id='L-shapes.py-8'] td.ln a").click()
    page.get_by_label("Comment").fill("Why **pi** here?")
    page.get_by_role("button", name="Comment", exact=True).click()
    page.wait_for_url("**#comments")
    inline = page.locator("tr.line-comment")
    assert inline.count() == 1 and inline.locator("strong").inner_text() == "pi"
    assert "shapes.py line 8" in page.locator("#comments .where").inner_text()

    # 7. a rating
    page.get_by_role("button", name="4 stars").click()
    page.wait_for_url(f"**/s/{snippet}")
    assert "★ 4.0 from 1 rating" in page.locator("#rating").inner_text()

    # 8. the zip, and 9. a raw file
    with page.expect_download() as download:
        page.get_by_role("link", name="Download zip").click()
    saved = tmp_path / "snippet.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert sorted(name.split("/", 1)[1] for name in archive.namelist()) == ["main.py", "shapes.py"]
    page.locator("figure.file", has_text="shapes.py").get_by_role("link", name="raw").click()
    assert page.locator("body").inner_text().startswith("import math")
    assert watched.errors == []


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


def test_hostile_input_in_every_field_stays_inert(watched: Watched, server: Server) -> None:
    """Script, event-handler and javascript: payloads in the title, blurb, tags, file names, file
    content, command and comments: on every page that shows them nothing runs, no element is
    added, and nothing is read as a template."""
    page = watched.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # a user name is letters and digits: a hostile one is refused, and the form shows it back inert
    page.goto(server.url + "/signup")
    page.get_by_label("Name").fill(HOSTILE)
    page.get_by_label("Password", exact=True).fill("a long password")
    page.get_by_label("Password again").fill("a long password")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_load_state("networkidle")
    assert "a user name is 2 to 32 letters" in page.locator("main").inner_text()
    assert page.get_by_label("Name").input_value() == HOSTILE[:32]  # the field's maxlength
    assert page.evaluate("window.__pwned === undefined && !document.querySelector('img[src=\"x\"]')")
    assert [e for e in watched.errors if "status of 400" not in e] == []  # the refusal is the page's 400
    watched.errors.clear()
    sign_up(page, server, "mallory-" + secrets.token_hex(3))
    page.goto(server.url + "/library")
    tag_error = page.evaluate("""async () => {
        const r = await fetch("/api/tags?prefix=" + encodeURIComponent("<script>"));
        return r.status; }""")
    assert tag_error == 200  # a hostile prefix is only a prefix
    name = 'x"><img src=x onerror="window.__pwned=1">.py'
    snippet = create_snippet(
        page, server, HOSTILE + " {{ 7*7 }} {% raw 1 %}", "xss, tags",
        {name: "</textarea>" + HOSTILE + "\nprint('ok')\n", "main.py": "# javascript:alert(1)\n"},
        blurb=HOSTILE + "\n\n[click me](javascript:window.__pwned=1)\n\n<a href='#' onclick='window.__pwned=1'>a</a>",
        command="</textarea>" + HOSTILE)
    page.locator("tr[id='L-main.py-1'] td.ln a").click()
    page.get_by_label("Comment").fill(HOSTILE + "[x](javascript:window.__pwned=1)")
    page.get_by_role("button", name="Comment", exact=True).click()
    page.wait_for_url("**#comments")
    for path in (f"/s/{snippet}", f"/s/{snippet}/history", f"/s/{snippet}/diff", f"/s/{snippet}/edit", "/library",
                 "/library?q=" + "onerror", "/library?q=%3Cscript%3E", "/library?tag=xss"):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        state = page.evaluate("""() => ({
            pwned: window.__pwned === undefined ? null : window.__pwned,
            injected: document.querySelectorAll(
                'img[src="x"], main script, a[href^="javascript:"], [onclick], [onerror]').length,
            evaluated: (document.body.innerText.match(/.{0,30}\b49\b.{0,30}/) || [null])[0],
        })""")
        assert state == {"pwned": None, "injected": 0, "evaluated": None}, (path, state)
    page.goto(server.url + f"/s/{snippet}")
    assert HOSTILE + " {{ 7*7 }} {% raw 1 %}" == page.locator("h1").inner_text()  # shown as typed, not run
    assert name in page.locator("figure.file figcaption .path").all_inner_texts()
    # the edit form gives back every field as it was typed, </textarea> included
    page.goto(server.url + f"/s/{snippet}/edit")
    texts = page.locator("textarea").evaluate_all("(areas) => areas.map((a) => a.value)")
    assert any(t.startswith("</textarea>" + HOSTILE) for t in texts)
    raw = page.request.get(server.url + f"/s/{snippet}/raw/" + name.replace('"', "%22").replace(" ", "%20"))
    assert raw.ok and raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["content-security-policy"].startswith("sandbox")
    assert dialogs == [] and watched.errors == []
    screenshot(page, "library-hostile")


PLOT = "import matplotlib.pyplot as plt\nplt.plot([0, 1, 4, 9], color='crimson')\nplt.show()\n"


def test_the_owner_chooses_a_plot_of_a_run_as_the_thumbnail(watched: Watched, server: Server) -> None:
    page = watched.page
    word = "zq" + secrets.token_hex(3)
    sign_up(page, server, f"ada-{word}")
    snippet = create_snippet(page, server, f"Squares {word}", "plotting/2d", {"plot.py": PLOT},
                             command="plt.figure(); plt.bar([1, 2], [3, 1]); plt.savefig('bars.png'); plt.close()")
    assert page.locator("#thumbnail-choice").is_hidden()  # nothing to choose before a run
    assert run_and_wait(page, "#cell")["status"] == "done"
    choices = page.locator("#thumbnail-choice button.thumb-choice")
    assert choices.all_inner_texts() == ["output 1", "bars.png"]  # the plot shown, then the file written
    assert choices.locator("img").evaluate_all("(images) => images.map((i) => i.naturalWidth > 0)") == [True, True]
    screenshot(page, "library-thumbnail-choice")
    choices.first.click()
    page.wait_for_url(f"**/s/{snippet}")
    page.goto(server.url + f"/library?q={word}")
    card = page.locator("li.card", has_text=f"Squares {word}")
    thumb = card.locator("img.thumb")
    thumb.wait_for()
    assert thumb.evaluate("(i) => i.complete && i.naturalWidth > 0")
    assert thumb.get_attribute("src").startswith("/thumbnails/")
    screenshot(page, "library-thumbnail-card")
    # someone else sees no chooser on the owner's page
    page.get_by_role("button", name="Log out").click()
    page.goto(server.url + f"/s/{snippet}")
    assert run_and_wait(page, "#cell")["status"] == "done"
    assert page.locator("#thumbnail-choice").count() == 0
    assert watched.errors == []


@pytest.mark.parametrize("path", ["/library", "/s/{example}", "/signup"])
def test_library_pages_fit_a_phone(browser: Any, server: Server, path: str) -> None:
    example = json.loads(server.client().request("GET", "/api/snippets?q=tangent_line", b"", {})[2])["items"][0]["id"]
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + path.format(example=example))
    page.wait_for_load_state("networkidle")
    if path.startswith("/s/"):
        settle(page)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} is {overflow}px wider than a phone's screen"
    assert errors == []
    screenshot(page, "phone" + path.replace("/", "-").replace("{example}", "snippet"))
    context.close()


def test_with_require_token_a_logged_in_person_runs_cells_and_a_visitor_is_told_why_not(
        watched: Watched, start_server: Any) -> None:
    server = start_server("serve", "--require-token", ready=False)  # its own first cell would need a token
    server.wait_up()
    page = watched.page
    page.goto(server.url + "/")
    refused = run_and_wait(page, "#cell")
    assert refused["status"] == "failed" and "needs an API token" in refused["error"], refused
    assert "or log in" in page.locator("#cell .sc-status").inner_text()
    assert "-H 'Authorization: Bearer <your API token>'" in page.locator("pre.code").inner_text()
    screenshot(page, "require-token-visitor")
    watched.errors.clear()  # the 401 is logged by Chromium as a failed fetch: it is the point here
    sign_up(page, server, "kay-" + secrets.token_hex(3))
    page.goto(server.url + "/")
    set_cell_code(page, "print(6 * 7)")
    done = run_and_wait(page, "#cell", timeout=90_000)  # the template starts with this first cell
    assert done["status"] == "done", done
    assert page.locator("#cell .sc-stdout").inner_text() == "42\n"
    rows = server.db_rows("SELECT quota_key FROM requests")
    assert len(rows) == 1 and rows[0][0].startswith("u:")  # counted against the account, not the address
    screenshot(page, "require-token-logged-in")
