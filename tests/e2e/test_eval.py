"""``POST /eval``: one answer with everything a cell produced, as JSON or as plain text."""

from __future__ import annotations

import json
import re

from singlecell.client import Client
from tests.servers import Server

EVAL_FIELDS = {"id", "status", "stdout", "stderr", "result", "displays", "error", "files"}


def post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return client.request("POST", "/eval", body, headers)


def test_ok_cell_answers_with_every_field(client: Client) -> None:
    code = ("import sys\nfrom IPython.display import HTML, display\nprint('out')\n"
            "print('err', file=sys.stderr)\ndisplay(HTML('<i>x</i>'))\n6 * 7")
    answer = client.eval(code)
    assert set(answer) == EVAL_FIELDS
    assert re.fullmatch(r"[0-9a-f]{32}", answer["id"])
    assert answer["status"] == "ok"
    assert answer["stdout"] == "out\n"
    assert answer["stderr"] == "err\n"
    assert answer["result"] == {"text/plain": "42"}
    assert len(answer["displays"]) == 1 and answer["displays"][0]["text/html"] == "<i>x</i>"
    assert answer["error"] is None
    assert answer["files"] == []


def test_error_cell_answers_with_status_error_and_a_plain_traceback(client: Client) -> None:
    answer = client.eval("print('partial')\n{}['missing']")
    assert set(answer) == EVAL_FIELDS
    assert answer["status"] == "error"
    assert answer["stdout"] == "partial\n"
    assert answer["result"] is None
    error = answer["error"]
    assert error["ename"] == "KeyError"
    assert error["evalue"] == "'missing'"
    trace = "\n".join(error["traceback"])
    assert "KeyError" in trace and "missing" in trace
    assert "\x1b[" not in trace  # no terminal colours in JSON


def test_eval_id_names_the_same_request_in_output(client: Client) -> None:
    answer = client.eval("print('via eval')")
    page = client.output(answer["id"])
    assert page["done"] is True and page["status"] == "done"
    texts = [m["msg"]["content"]["text"] for m in page["messages"] if m["msg"]["msg_type"] == "stream"]
    assert texts == ["via eval\n"]


def test_plain_text_body_gets_exactly_the_printed_text(client: Client) -> None:
    status, headers, body = post(client, b"print(6*7)", {"Content-Type": "text/plain"})
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert body == b"42\n"
    assert headers.get("x-singlecell-status") == "ok"


def test_plain_text_error_shows_the_traceback(client: Client) -> None:
    status, headers, body = post(client, b"print('a')\n1/0", {"Content-Type": "text/plain"})
    assert status == 200
    assert headers.get("x-singlecell-status") == "error"
    text = body.decode()
    assert text.startswith("a\n")
    assert "ZeroDivisionError" in text and "division by zero" in text
    assert "\x1b[" not in text


def test_plain_text_shows_the_value_of_the_last_expression(client: Client) -> None:
    _, _, body = post(client, b"print('x')\n'y' * 3", {"Content-Type": "text/plain"})
    assert body == b"x\n'yyy'\n"


def test_json_body_with_accept_text_plain_gets_plain_text(client: Client) -> None:
    status, headers, body = post(client, json.dumps({"code": "print('hello')"}).encode(),
                                 {"Content-Type": "application/json", "Accept": "text/plain"})
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert body == b"hello\n"


def test_plain_text_body_with_accept_json_gets_json(client: Client) -> None:
    status, headers, body = post(client, b"print('hello')",
                                 {"Content-Type": "text/plain", "Accept": "application/json"})
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["status"] == "ok" and answer["stdout"] == "hello\n"


def test_plain_text_lists_written_files_with_their_urls(client: Client, server: Server) -> None:
    _, _, body = post(client, b"_ = open('r.txt', 'w').write('abc')", {"Content-Type": "text/plain"})
    match = re.fullmatch(rb"\[file\] r\.txt \(3 bytes\): (\S+)\n", body)
    assert match, body
    assert client.file(match.group(1).decode()) == b"abc"


def test_unicode_code_and_output_round_trip(client: Client) -> None:
    answer = client.eval("s = 'π ≈ 3.14159 — ünïcödé 🐍'\nprint(s)\ns")
    assert answer["stdout"] == "π ≈ 3.14159 — ünïcödé 🐍\n"
    assert answer["result"] == {"text/plain": "'π ≈ 3.14159 — ünïcödé 🐍'"}


def test_each_request_runs_in_a_fresh_kernel(client: Client) -> None:
    first = client.eval("secret_variable = 1\nopen('left.txt', 'w').write('x')\nimport os\nos.getpid()")
    second = client.eval("import os\nprint('secret_variable' in dir(), sorted(os.listdir('.')))\nos.getpid()")
    assert second["stdout"] == "False []\n"
    assert first["result"] != second["result"]
