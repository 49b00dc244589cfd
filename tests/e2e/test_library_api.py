"""The snippet library's HTTP API on a real server: tokens and cookies, owners, forks, history,
comments, ratings, raw files and zips, running a snippet, and the examples of a first start."""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import zipfile
from typing import Any

import pytest

from singlecell.library.examples import EXAMPLES
from tests.servers import ROOT, Server, Servers

JSON = {"Content-Type": "application/json"}
TWO_FILES = {
    "title": "Shapes", "blurb": "A *circle*.", "tags": ["geometry/2d", "classes"],
    "files": {"shapes.py": "import math\n\nclass Circle:\n    def __init__(self, r):\n        self.r = r\n\n"
                           "    def area(self):\n        return math.pi * self.r ** 2\n",
              "main.py": "from shapes import Circle\nprint(round(Circle(1).area(), 4))\n"},
    "command": "from shapes import Circle\nround(Circle(2).area(), 4)",
}


def admin(server: Server, *args: str, stdin: str = "") -> str:
    """``singlecell ARGS --data-dir`` of the server, as an operator types it."""
    done = subprocess.run([sys.executable, "-m", "singlecell", *args, "--data-dir", str(server.data_dir)],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Api:
    """JSON requests to one server, as one account (a Bearer token) or as nobody."""

    def __init__(self, server: Server, token: str | None = None) -> None:
        self.client = server.client()
        self.token = token

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             expect: int | None = None) -> Any:
        sent = {**JSON, **({"Authorization": f"Bearer {self.token}"} if self.token else {}), **(headers or {})}
        data = json.dumps(body).encode() if body is not None else b""
        status, answer_headers, raw = self.client.request(method, path, data, sent)
        if expect is not None:
            assert status == expect, (status, raw[:500])
        if answer_headers.get("content-type", "").startswith("application/json") and raw:
            return json.loads(raw)
        return raw


@pytest.fixture(scope="module")
def server(module_servers: Servers) -> Server:
    return module_servers("serve", name="library")


@pytest.fixture(scope="module")
def ada(server: Server) -> Api:
    admin(server, "user", "create", "ada", stdin="ada's password\n")
    return Api(server, admin(server, "token", "create", "--user", "ada"))


@pytest.fixture(scope="module")
def grace(server: Server) -> Api:
    admin(server, "user", "create", "grace", stdin="grace's password\n")
    return Api(server, admin(server, "token", "create", "--user", "grace"))


@pytest.fixture(scope="module")
def nobody(server: Server) -> Api:
    return Api(server)


@pytest.fixture(scope="module")
def shapes(ada: Api) -> dict[str, Any]:
    made: dict[str, Any] = ada.call("POST", "/api/snippets", TWO_FILES, expect=201)
    return made


def test_a_first_start_shows_the_examples(nobody: Api) -> None:
    found = nobody.call("GET", "/api/snippets?owner=examples", expect=200)
    assert found["total"] == len(EXAMPLES) == 8 and all(item["example"] for item in found["items"])
    assert found["items"][0]["title"] == "Hello, world"
    titles = {item["title"] for item in found["items"]}
    assert {"A matplotlib plot", "LaTeX and HTML output", "Tangent lines", "Write a CSV file",
            "An interactive plot"} <= titles


def test_writing_needs_an_account_and_a_valid_token(nobody: Api, server: Server) -> None:
    error = nobody.call("POST", "/api/snippets", TWO_FILES, expect=401)
    assert error["error"]["code"] == "unauthorized"
    forged = Api(server, "sc_not-a-real-token")
    assert forged.call("POST", "/api/snippets", TWO_FILES, expect=401)["error"]["code"] == "unauthorized"


def test_a_snippet_reads_back_with_its_files_and_credits(nobody: Api, shapes: dict[str, Any]) -> None:
    got = nobody.call("GET", f"/api/snippets/{shapes['id']}", expect=200)
    assert got["revision"] == shapes["revision"] and got["owner"] == "ada" and got["title"] == "Shapes"
    assert got["files"] == TWO_FILES["files"] and got["tags"] == ["geometry/2d", "classes"]
    assert nobody.call("GET", "/api/snippets/aaaaaaaaaa", expect=404)["error"]["code"] == "not_found"


def test_only_the_owner_saves_a_revision_and_anyone_forks(ada: Api, grace: Api, shapes: dict[str, Any]) -> None:
    snippet = shapes["id"]
    error = grace.call("POST", f"/api/snippets/{snippet}/revisions", {**TWO_FILES, "title": "mine"}, expect=403)
    assert error["error"]["code"] == "forbidden" and "fork it" in error["error"]["message"]
    fork = grace.call("POST", f"/api/snippets/{snippet}/fork", {}, expect=201)
    assert fork["revision"] == shapes["revision"]
    saved = grace.call("POST", f"/api/snippets/{fork['id']}/revisions",
                       {**TWO_FILES, "title": "Shapes, with squares"}, expect=201)
    history = grace.call("GET", f"/api/snippets/{fork['id']}/revisions", expect=200)["revisions"]
    assert [h["revision"] for h in history] == [saved["revision"], shapes["revision"]]
    old = grace.call("GET", f"/api/snippets/{fork['id']}/revisions/{shapes['revision']}", expect=200)
    assert old["title"] == "Shapes"
    got = grace.call("GET", f"/api/snippets/{fork['id']}")
    assert got["forked_from"] == snippet and got["owner"] == "grace"
    assert ada.call("GET", f"/api/snippets/{snippet}")["title"] == "Shapes"


def test_search_tags_and_browse(nobody: Api, shapes: dict[str, Any]) -> None:
    assert shapes["id"] in [i["id"] for i in nobody.call("GET", "/api/snippets?q=Circle")["items"]]
    assert shapes["id"] in [i["id"] for i in nobody.call("GET", "/api/snippets?tag=geometry")["items"]]
    tags = nobody.call("GET", "/api/tags?prefix=geo")["tags"]
    assert {"tag": "geometry/2d", "snippets": tags[0]["snippets"]} in tags
    for query in ('"', "OR (", "-- ;", "\\", "%", "a" * 2000):
        assert nobody.call("GET", "/api/snippets?q=" + urllib.parse.quote(query), expect=200)["total"] >= 0
    assert nobody.call("GET", "/api/snippets?sort=upside-down", expect=400)["error"]["code"] == "bad_request"
    assert nobody.call("GET", "/api/snippets?page=0", expect=400)["error"]["code"] == "bad_request"


def test_comments_ratings_and_related(ada: Api, grace: Api, nobody: Api, shapes: dict[str, Any]) -> None:
    snippet = shapes["id"]
    grace.call("POST", f"/api/snippets/{snippet}/comments", {"body": "Nice *circle*"}, expect=201)
    line = grace.call("POST", f"/api/snippets/{snippet}/comments",
                      {"body": "pi?", "revision": shapes["revision"], "path": "shapes.py", "line": 8}, expect=201)
    assert line["path"] == "shapes.py" and line["line"] == 8
    grace.call("POST", f"/api/snippets/{snippet}/comments",
               {"body": "x", "revision": shapes["revision"], "path": "shapes.py", "line": 99}, expect=400)
    comments = nobody.call("GET", f"/api/snippets/{snippet}/comments")["comments"]
    assert [c["body"] for c in comments][:2] == ["Nice *circle*", "pi?"]
    assert grace.call("PUT", f"/api/snippets/{snippet}/rating", {"stars": 5}, expect=200) == {"rating": 5.0,
                                                                                            "ratings": 1}
    assert grace.call("PUT", f"/api/snippets/{snippet}/rating", {"stars": 3}, expect=200)["ratings"] == 1
    grace.call("PUT", f"/api/snippets/{snippet}/rating", {"stars": 9}, expect=400)
    other = nobody.call("GET", "/api/snippets?owner=examples")["items"][0]["id"]
    grace.call("PUT", f"/api/snippets/{snippet}/related/{other}", {}, expect=403)
    related = ada.call("PUT", f"/api/snippets/{snippet}/related/{other}", {}, expect=200)["related"]
    assert [r["id"] for r in related] == [other]


def test_raw_files_are_text_that_never_runs_and_the_zip_holds_every_file(server: Server,
                                                                        shapes: dict[str, Any]) -> None:
    client = server.client()
    for path in (f"/s/{shapes['id']}/raw/main.py", f"/s/{shapes['id']}/r/{shapes['revision']}/raw/main.py"):
        status, headers, body = client.request("GET", path, b"", {})
        assert status == 200 and body.decode() == TWO_FILES["files"]["main.py"]
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"].startswith("sandbox")
    status, headers, body = client.request("GET", f"/s/{shapes['id']}.zip", b"", {})
    assert status == 200 and headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        contents = {name.split("/", 1)[1]: archive.read(name).decode() for name in archive.namelist()}
    assert contents == TWO_FILES["files"]
    assert client.request("GET", f"/s/{shapes['id']}/raw/nope.py", b"", {})[0] == 404


def test_a_cell_imports_from_a_snippet_of_several_files(nobody: Api, server: Server,
                                                       shapes: dict[str, Any]) -> None:
    client = server.client()
    answer = client._json("POST", "/eval", {"code": TWO_FILES["command"], "snippet": shapes["id"]})
    assert answer["status"] == "ok" and answer["result"] == {"text/plain": "12.5664"}, answer
    pinned = client._json("POST", "/eval", {"code": "import main", "snippet": f"{shapes['id']}@{shapes['revision']}"})
    assert pinned["stdout"] == "3.1416\n", pinned


def test_a_one_file_snippet_runs_before_the_cell_in_its_namespace(server: Server, ada: Api) -> None:
    greeting = {"title": "Greeting", "files": {"greet.py": "who = 'world'\nprint('hi')\n"}}
    one = ada.call("POST", "/api/snippets", greeting, expect=201)
    answer = server.client()._json("POST", "/eval", {"code": "print(who.upper())", "snippet": one["id"]})
    assert answer["status"] == "ok" and answer["stdout"] == "hi\nWORLD\n", answer
    failing = ada.call("POST", "/api/snippets", {"title": "Broken", "files": {"bad.py": "1 / 0\n"}}, expect=201)
    broken = server.client()._json("POST", "/eval", {"code": "print('never')", "snippet": failing["id"]})
    assert broken["status"] == "error" and broken["error"]["ename"] == "ZeroDivisionError" and broken["stdout"] == ""
    assert any("bad.py" in line for line in broken["error"]["traceback"])


@pytest.mark.parametrize(("snippet", "status"), [("aaaaaaaaaa", 404), ("not an id", 400),
                                                 ("aaaaaaaaaa@" + "b" * 20, 404)])
def test_running_an_unknown_snippet_is_refused(server: Server, snippet: str, status: int) -> None:
    got, _, body = server.client().request("POST", "/eval", json.dumps({"code": "1", "snippet": snippet}).encode(),
                                           JSON)
    assert got == status, body


def test_a_cookie_write_needs_the_xsrf_token(server: Server, ada: Api) -> None:
    """A page of another site could post with the browser's cookie; without the token it fails."""
    client = server.client()
    status, _, _ = client.request("POST", "/login", b"name=ada&password=ada%27s+password",
                                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403  # the login form itself needs its token
    page_status, page_headers, page = client.request("GET", "/login", b"", {})
    assert page_status == 200
    xsrf_cookie = re.search(r"_xsrf=([^;]+)", page_headers["set-cookie"]).group(1)  # type: ignore[union-attr]
    token = re.search(rb'name="_xsrf" value="([^"]+)"', page).group(1).decode()  # type: ignore[union-attr]
    form = urllib.parse.urlencode({"name": "ada", "password": "ada's password", "_xsrf": token}).encode()
    status, headers, _ = client.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                                  "Cookie": f"_xsrf={xsrf_cookie}"})
    assert status == 303
    session = re.search(r"singlecell_session=([^;]+)", headers["set-cookie"]).group(1)  # type: ignore[union-attr]
    assert "httponly" in headers["set-cookie"].lower() and "samesite=lax" in headers["set-cookie"].lower()
    cookie = {"Cookie": f"singlecell_session={session}; _xsrf={xsrf_cookie}", **JSON}
    status, _, body = client.request("POST", "/api/snippets", json.dumps(TWO_FILES).encode(), cookie)
    assert status == 403 and b"XSRF" in body
    status, _, body = client.request("POST", "/api/snippets", json.dumps(TWO_FILES).encode(),
                                     {**cookie, "X-XSRFToken": token})
    assert status == 201, body
    status, _, body = client.request("GET", "/api/me", b"", cookie)
    assert status == 200 and json.loads(body)["name"] == "ada"


def test_tokens_are_listed_and_revoked(server: Server) -> None:
    admin(server, "user", "create", "linus", stdin="linus's password\n")
    api = Api(server, admin(server, "token", "create", "--user", "linus", "--label", "ci"))
    listed = api.call("GET", "/api/tokens", expect=200)["tokens"]
    assert [t["label"] for t in listed] == ["ci"]
    second = api.call("POST", "/api/tokens", {"label": "laptop"}, expect=201)
    assert second["token"].startswith("sc_")
    api.call("DELETE", f"/api/tokens/{listed[0]['id']}", expect=204)
    assert api.call("GET", "/api/me", expect=401)["error"]["code"] == "unauthorized"
    assert Api(server, second["token"]).call("GET", "/api/me", expect=200)["name"] == "linus"


def test_an_image_of_a_run_becomes_the_thumbnail(server: Server, ada: Api, grace: Api,
                                                 shapes: dict[str, Any]) -> None:
    """A file the run wrote or a plot it displayed; the thumbnail is a copy, named by its hash."""
    code = ("import matplotlib.pyplot as plt\nplt.plot([1, 2, 1]); plt.savefig('plot.png')\n"
            "open('notes.txt', 'w').write('not an image')\nplt.show()\nprint('done')")
    run = server.client()._json("POST", "/eval", {"code": code, "snippet": shapes["id"]})
    assert {f["name"] for f in run["files"]} == {"plot.png", "notes.txt"}, run
    messages = json.loads(server.client().request("GET", f"/output/{run['id']}", b"", {})[2])["messages"]
    shown = [m["seq"] for m in messages if "image/png" in m["msg"]["content"].get("data", {})]
    printed = [m["seq"] for m in messages if m["msg"]["msg_type"] == "stream"]
    assert len(shown) == 1 and printed, messages
    url = f"/api/snippets/{shapes['id']}/thumbnail"
    grace.call("PUT", url, {"request": run["id"], "name": "plot.png"}, expect=403)
    for wrong, words in (({"name": "notes.txt"}, "PNG, JPEG or GIF"), ({"name": "nope.png"}, "no file named"),
                         ({"output": printed[0]}, "not an image it displayed"), ({"output": 10_000}, "not an image"),
                         ({"output": True}, "name the image"), ({}, "name the image")):
        error = ada.call("PUT", url, {"request": run["id"], **wrong}, expect=400)["error"]["message"]
        assert words in error, (wrong, error)
    assert "request id" in ada.call("PUT", url, {"request": "../x", "output": 1}, expect=400)["error"]["message"]

    by_file = ada.call("PUT", url, {"request": run["id"], "name": "plot.png"}, expect=200)["thumbnail"]
    status, headers, image = server.client().request("GET", by_file, b"", {})
    assert status == 200 and headers["content-type"] == "image/png" and image.startswith(b"\x89PNG")
    assert "immutable" in headers["cache-control"] and "sandbox" in headers["content-security-policy"]
    assert by_file == "/thumbnails/" + hashlib.sha256(image).hexdigest()
    by_output = ada.call("PUT", url, {"request": run["id"], "output": shown[0]}, expect=200)["thumbnail"]
    assert by_output != by_file and ada.call("GET", f"/api/snippets/{shapes['id']}")["thumbnail"] == by_output
    assert server.client().request("GET", by_output, b"", {})[0] == 200
    assert server.client().request("GET", by_file, b"", {})[0] == 404  # no snippet shows it any more
    listed = ada.call("GET", "/api/snippets?owner=ada")["items"]
    assert [s["thumbnail"] for s in listed if s["id"] == shapes["id"]] == [by_output]


def form_post(server: Server, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Post a page's form as a browser would: with the XSRF token and cookie its page gave."""
    client = server.client()
    _, headers, page = client.request("GET", path, b"", {})
    cookie = re.search(r"_xsrf=([^;]+)", headers["set-cookie"]).group(1)  # type: ignore[union-attr]
    token = re.search(rb'name="_xsrf" value="([^"]+)"', page).group(1).decode()  # type: ignore[union-attr]
    body = urllib.parse.urlencode({**fields, "_xsrf": token}).encode()
    status, answer, _ = client.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded",
                                                             "Cookie": f"_xsrf={cookie}"})
    return status, answer


@pytest.mark.parametrize("public_url", ["", "https://cells.example.org"])
def test_the_cookies_are_secure_when_the_site_is_https(module_servers: Servers, public_url: str) -> None:
    """The session and XSRF cookies: HttpOnly, SameSite=Lax, and Secure when the public URL is https.
    (A web process of its own: a sign-up here must not count against the shared server's limit.)"""
    site = module_servers("web", "--no-examples", *(["--public-url", public_url] if public_url else []),
                          name="https" if public_url else "http")
    client = site.client()
    _, headers, page = client.request("GET", "/signup", b"", {})
    xsrf = headers["set-cookie"]
    token = re.search(rb'name="_xsrf" value="([^"]+)"', page).group(1).decode()  # type: ignore[union-attr]
    body = urllib.parse.urlencode({"name": "cookie-" + secrets.token_hex(3), "password": "a long password",
                                   "password2": "a long password", "_xsrf": token}).encode()
    status, headers, _ = client.request("POST", "/signup", body, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": "_xsrf=" + xsrf.split(";")[0].split("=", 1)[1]})
    session = headers["set-cookie"]
    assert status == 303 and session.startswith("singlecell_session=") and xsrf.startswith("_xsrf="), headers
    for cookie in (xsrf, session):
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax"} <= flags, cookie
        assert ("secure" in flags) == bool(public_url), cookie


def _clear_of_window_edges(windows: tuple[int, ...], margin: float = 30.0) -> None:
    """Wait, if need be, until the next ``margin`` seconds cross no edge of the limiter's fixed
    windows (it counts hits per ``now // window``): a burst split by an edge is counted in two
    windows, and then never reaches the limit."""
    while any(window - time.time() % window < margin for window in windows):
        time.sleep(1)


def test_sign_ups_and_logins_are_rate_limited(server: Server) -> None:
    """Ten sign-ups an hour from one address; ten logins per five minutes to one account."""
    _clear_of_window_edges((3600, 300))
    statuses = [form_post(server, "/signup", {"name": f"burst{n}", "password": "a long password",
                                               "password2": "a long password"})[0] for n in range(11)]
    assert statuses[:10] == [303] * 10 and statuses[10] == 429
    logins = [form_post(server, "/login", {"name": "burst0", "password": "wrong password"})[0] for _ in range(11)]
    refused = logins.index(429)  # this address may have logged in before, in another test
    assert 0 < refused <= 10 and set(logins[:refused]) == {401} and set(logins[refused:]) == {429}, logins
