"""The API the browser side uses: POST /stop, permalinks, pages, and CORS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from singlecell.client import Client
from tests.e2e.test_streaming import read_until, texts
from tests.servers import Server

JSON = {"Content-Type": "application/json"}


def post(client: Client, path: str, payload: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    body = None if payload is None else json.dumps(payload).encode()
    status, answer_headers, data = client.request("POST", path, body, {**JSON, **(headers or {})})
    return status, answer_headers, json.loads(data) if data else None


def wait_done(client: Client, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.output(request_id, wait=2)
        if page["done"]:
            return page
    raise AssertionError(f"request {request_id} did not end within {timeout} s")


# -- stop ----------------------------------------------------------------------------------


def test_stop_ends_a_running_cell_aborted_keeping_its_output(client: Client) -> None:
    request_id = client.execute("import itertools, time\nfor i in itertools.count():\n"
                                "    print(i, flush=True)\n    time.sleep(0.05)")
    read_until(client, request_id, lambda items: "3\n" in texts(items))
    asked = time.monotonic()
    status, _, answer = post(client, f"/stop/{request_id}")
    assert status == 202 and answer == {"id": request_id, "status": "running"}
    wait_done(client, request_id)
    stopped_in = time.monotonic() - asked
    page = client.output(request_id)
    assert page["status"] == "aborted"
    messages = [item["msg"] for item in page["messages"]]
    assert texts(page["messages"]).startswith("0\n1\n2\n3\n")
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert [e["ename"] for e in errors] == ["CellStopped"]
    assert "client's request" in errors[0]["evalue"]
    assert messages[-1]["msg_type"] == "status" and messages[-1]["content"]["execution_state"] == "idle"
    assert stopped_in < 3.0, f"stopping took {stopped_in:.2f} s"
    # asking again, once it ended, changes nothing
    status, _, answer = post(client, f"/stop/{request_id}")
    assert status == 202 and answer["status"] == "aborted"
    assert client.output(request_id)["messages"] == page["messages"]


def test_stop_of_a_queued_request_ends_it_before_it_runs(start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--kernels", "1")
    with server.client() as client:
        blocker = client.execute("import time\ntime.sleep(3)")
        queued = client.execute("open('ran', 'w').write('yes')\nprint('ran')")
        assert client.status(queued) == "queued"
        status, _, answer = post(client, f"/stop/{queued}")
        assert status == 202 and answer["status"] == "aborted"
        page = wait_done(client, queued, timeout=2)
        assert page["status"] == "aborted"
        assert [m["msg"]["content"].get("ename") for m in page["messages"]] == ["CellStopped", None]
        assert "before it started" in page["messages"][0]["msg"]["content"]["evalue"]
        assert wait_done(client, blocker)["status"] == "done"
        # it never ran: no output, no files, even after the kernel was free
        time.sleep(1)
        assert client.output(queued)["messages"] == page["messages"]
        assert server.db_rows("SELECT count(*) FROM files WHERE request_id = ?", (queued,)) == [(0,)]


def test_stop_of_an_unknown_request_is_a_clear_404(client: Client) -> None:
    status, _, answer = post(client, "/stop/" + "0" * 32)
    assert status == 404 and "POST /execute" in answer["error"]["message"]


# -- permalinks ----------------------------------------------------------------------------


def test_permalink_round_trip(client: Client, server: Server) -> None:
    code = "# ünïcode ✓ and <html> & 'quotes'\nprint('shared')\n"
    status, _, saved = post(client, "/permalink", {"code": code})
    assert status == 201
    assert saved["code"] == code and saved["url"] == f"{server.url}/c/{saved['id']}"
    assert post(client, "/permalink", {"code": code})[2]["id"] == saved["id"]  # same code, same id
    got = client._json("GET", f"/permalink/{saved['id']}")
    assert got == saved
    status, headers, page = client.request("GET", f"/c/{saved['id']}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    # the code is in the page once, escaped as an attribute value
    assert page.decode().count("&lt;html&gt; &amp; &#x27;quotes&#x27;") == 1


def test_permalink_bad_input_says_what_to_fix(client: Client, server: Server) -> None:
    cases: list[tuple[bytes, int, str]] = [
        (b"not json", 400, "JSON object"),
        (b'{"code": ""}', 400, "no code"),
        (b'{"code": 5}', 400, "no code"),
        (b'{"code": "x", "extra": 1}', 400, "one field"),
        (b'["print(1)"]', 400, "one field"),
        (b'{"code": "\\ud800"}', 400, "surrogate"),
        (json.dumps({"code": "x" * (64 * 1024 + 1)}).encode(), 413, "limit"),
    ]
    for body, expected, words in cases:
        status, _, data = client.request("POST", "/permalink", body, JSON)
        assert status == expected, body[:40]
        assert words in json.loads(data)["error"]["message"], body[:40]
    status, _, data = client.request("GET", "/permalink/aaaaaaaa")
    assert status == 404 and "POST /permalink" in json.loads(data)["error"]["message"]
    status, headers, page = client.request("GET", "/c/nosuchid")
    assert status == 404 and headers["content-type"].startswith("text/html") and b"Not found" in page


def test_pages_and_static_files_are_served(client: Client) -> None:
    for path, kind, words in [("/", "text/html", b"Run Python in your browser"),
                              ("/embedding", "text/html", b"Embed a cell"),
                              ("/static/singlecell.js", "javascript", b"SingleCellBlock"),
                              ("/static/singlecell-frame.js", "javascript", b"MathJax"),
                              ("/static/mathjax/tex-svg-full.js", "javascript", b"MathJax"),
                              ("/favicon.ico", "image/", b""),
                              ("/static/favicon.svg", "image/svg+xml", b"<svg")]:
        status, headers, body = client.request("GET", path)
        assert status == 200, path
        assert kind in headers["content-type"], (path, headers["content-type"])
        assert words in body, path


# -- CORS ----------------------------------------------------------------------------------


def test_any_origin_may_call_the_api_by_default_without_credentials(client: Client) -> None:
    origin = {"Origin": "https://docs.example.org"}
    status, headers, _ = client.request("OPTIONS", "/execute", None, {
        **origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in headers
    status, headers, answer = post(client, "/execute", {"code": "1"}, origin)
    assert status == 202 and headers["access-control-allow-origin"] == "*"
    assert "retry-after" in headers["access-control-expose-headers"].lower()
    status, headers, _ = client.request("GET", f"/output/{answer['id']}", None, origin)
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    # errors carry the header too, so a page can read what to fix
    status, headers, _ = post(client, "/execute", {"code": ""}, origin)
    assert status == 400 and headers["access-control-allow-origin"] == "*"


def test_only_the_allowed_origins_may_call_the_api(start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--cors-origins", "https://allowed.example, http://localhost:8000")
    with server.client() as client:
        for origin in ("https://allowed.example", "http://localhost:8000"):
            status, headers, _ = post(client, "/execute", {"code": "1"}, {"Origin": origin})
            assert status == 202 and headers["access-control-allow-origin"] == origin
            assert headers["vary"] == "Origin"
        before = server.db_rows("SELECT count(*) FROM requests")
        status, headers, answer = post(client, "/execute", {"code": "print('no')"}, {"Origin": "https://evil.example"})
        assert status == 403 and answer["error"]["code"] == "origin_not_allowed"
        assert "--cors-origins" in answer["error"]["message"]
        assert "access-control-allow-origin" not in headers
        assert server.db_rows("SELECT count(*) FROM requests") == before  # refused before it was stored
        status, headers, _ = post(client, "/permalink", {"code": "1"}, {"Origin": "https://evil.example"})
        assert status == 403
        # its own pages are same-origin
        status, _, _ = post(client, "/permalink", {"code": "1"}, {"Origin": server.url})
        assert status == 201


def test_a_bad_cors_setting_is_refused_at_start(start_server: Callable[..., Server]) -> None:
    server = start_server("web", "--cors-origins", "https://example.org/path", ready=False)
    assert server.proc is not None and server.proc.wait(timeout=30) != 0
    assert "cors_origins takes" in server.log_text()


def test_stop_reaches_a_device_that_gets_no_wake_ups(start_server: Callable[..., Server], tmp_path: Any) -> None:
    """Web and device share the store but not a data dir, so no wake-up passes between them:
    the device still reads stop requests by itself, within its poll interval."""
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    files = f"sqlite:///{tmp_path / 'files.db'}"
    web = start_server("web", "--db", store, "--files", files)
    start_server("device", "--db", store, "--files", files)
    with web.client() as client:
        request_id = client.execute("import time\nprint('started', flush=True)\ntime.sleep(60)")
        read_until(client, request_id, lambda items: "started" in texts(items), timeout=30)
        asked = time.monotonic()
        assert post(client, f"/stop/{request_id}")[2]["status"] == "running"
        page = wait_done(client, request_id)
        assert page["status"] == "aborted"
        assert time.monotonic() - asked < 5.0  # the poll interval is 0.5 s; the cell would sleep 60
        assert "CellStopped" in json.dumps(page["messages"])
