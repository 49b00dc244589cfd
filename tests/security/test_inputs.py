"""Attacks through what is sent to the server and what comes back: bodies that are huge, not
UTF-8, binary, hold NULs or lone surrogates, nest deeply; ambiguous HTTP framing (smuggling);
SQL-looking code and names; zip bombs; output that is binary or not UTF-8; paths that climb
out of /files."""

from __future__ import annotations

import io
import json
import urllib.parse
import zipfile

import pytest

from singlecell.client import Client, ClientError
from tests.security.hostile import (
    ENDED_WITHIN,
    FILE_SIZE_LIMIT,
    MEMORY_LIMIT,
    assert_limit,
    assert_serves_normally,
)
from tests.servers import Server, outcome, raw_exchange

JSON = {"Content-Type": "application/json"}
PLAIN = {"Content-Type": "text/plain"}


def assert_refused(status: int, headers: dict[str, str], body: bytes, expected: tuple[int, ...] = (400,)) -> None:
    assert status in expected, f"answered {status}: {body[:300]!r}"
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] in ("bad_request", "too_large") and len(error["message"]) > 10, error


BAD_BODIES = [
    pytest.param(b'{"code": "print(\\"\\ud800\\")"}', JSON, id="lone-surrogate"),
    pytest.param(b'{"code": "print(1)", "files": {"\\udcff.txt": "eA=="}}', JSON, id="lone-surrogate-name"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, JSON, id="deeply-nested-json"),
    pytest.param(b'{"code": {"code": ' * 5000 + b'"1"' + b"}" * 5000, JSON, id="deeply-nested-objects"),
    pytest.param(b'{"code": "print(\'\xff\xfe\')"}', JSON, id="json-not-utf8"),
    pytest.param(b"print('\xc3\x28')", PLAIN, id="plain-not-utf8"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", PLAIN, id="binary"),
    pytest.param(b"print(1)\x00import os", PLAIN, id="raw-nul"),
    pytest.param(b'{"code": "print(1)\\u0000"}', JSON, id="escaped-nul"),
    pytest.param(b'{"code": "print(1)", "timeout": NaN}', JSON, id="timeout-nan"),
    pytest.param(b'{"code": "print(1)", "timeout": -Infinity}', JSON, id="timeout-minus-infinity"),
    pytest.param(b'{"code": 1e999}', JSON, id="code-infinite-number"),
    pytest.param(json.dumps({"code": "1", "files": {f"f{i}": "" for i in range(100_000)}}).encode(), JSON,
                 id="a-hundred-thousand-uploads"),
    pytest.param(json.dumps({"code": "1", "files": {"a": "eA==", "a/b": "eA=="}}).encode(), JSON,
                 id="upload-names-that-collide"),
]


@pytest.mark.parametrize(("body", "headers"), BAD_BODIES)
def test_a_bad_body_is_refused_with_a_4xx_and_never_stored(client: Client, hostile: Server, body: bytes,
                                                           headers: dict[str, str]) -> None:
    before = hostile.request_count()
    assert_refused(*client.request("POST", "/execute", body, headers))
    assert hostile.request_count() == before, "the refused request was stored"
    assert_serves_normally(client)


@pytest.mark.parametrize("code", [
    "x = '" + "a" * 65_000 + "'\nprint(len(x))",
    "\n" * 30_000 + "print(30000)",
    "print('" + "\\u202e\\u0301\\U0001f600" * 1000 + "'.count('\\U0001f600'))",
    "# -*- coding: latin-1 -*-\nprint('caf\u00e9')",
], ids=["one-giant-line", "thirty-thousand-lines", "combining-and-rtl", "coding-cookie"])
def test_large_or_strange_but_legal_code_runs(client: Client, code: str) -> None:
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    assert ended["stdout"].strip() in ("65000", "30000", "1000", "caf\u00e9")
    assert_serves_normally(client)


BINARY_OUTPUT = """
import os, sys
from IPython.display import display
os.write(1, bytes(range(256)))
sys.stdout.write('|nul\\x00byte|')
print('|lone\\ud800surrogate|')
display({'text/plain': 'display\\x00nul', 'text/html': '<b>\\x00</b>'}, raw=True)
display({'image/png': b'\\x89PNG\\r\\n\\x1a\\n', 'text/plain': 'png'}, raw=True)
'\\ud800\\x00'
"""


def test_binary_nul_and_invalid_utf8_output_is_stored_and_served_as_valid_json(client: Client) -> None:
    ended = outcome(client, BINARY_OUTPUT, deadline=ENDED_WITHIN)  # every /output page parsed as JSON
    assert ended["status"] == "done", ended["error"]
    assert "|nul\x00byte|" in ended["stdout"]
    assert "\ufffd" in ended["stdout"] and "|lone?surrogate|" in ended["stdout"]
    status, headers, body = client.request("POST", "/eval", BINARY_OUTPUT.encode(), {**PLAIN, "Accept": "text/plain"})
    assert status == 200 and headers["x-singlecell-status"] == "ok"
    body.decode("utf-8")  # the plain text answer is UTF-8 too
    assert_serves_normally(client)


SQL = "'); DROP TABLE requests; DELETE FROM messages; --"


def test_sql_looking_code_and_file_names_are_only_data(client: Client, hostile: Server) -> None:
    earlier = client.eval("print('earlier')")
    before = hostile.request_count()
    code = f"print({SQL!r})\nopen({SQL + '.txt'!r}, 'w').write(open({'in' + SQL!r}).read())"
    answer = client.eval(code, files={"in" + SQL: b"uploaded"})
    assert answer["status"] == "ok", answer["error"]
    assert answer["stdout"] == SQL + "\n"
    assert [f["name"] for f in answer["files"]] == [SQL + ".txt"]
    assert client.file(answer["files"][0]["url"]) == b"uploaded"
    assert hostile.request_count() == before + 1
    assert client.output(earlier["id"])["messages"], "an earlier request lost its messages"
    assert_serves_normally(client)


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """A 300 KB zip that expands to 300 MB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as entry:
            chunk = bytes(1 << 20)
            for _ in range(300):
                entry.write(chunk)
    return buffer.getvalue()


@pytest.mark.parametrize(("code", "ename", "limit", "value"), [
    ("import zipfile\nzipfile.ZipFile('bomb.zip').extractall()", "FileSizeLimitExceeded", "file_size",
     FILE_SIZE_LIMIT),
    ("import zipfile\ndata = zipfile.ZipFile('bomb.zip').read('zeros.bin')", "MemoryLimitExceeded", "memory",
     MEMORY_LIMIT),
], ids=["extracted-to-disk", "read-into-memory"])
def test_an_uploaded_zip_bomb_is_stopped_by_a_limit(client: Client, zip_bomb: bytes, code: str, ename: str,
                                                     limit: str, value: int) -> None:
    assert len(zip_bomb) < 1 << 20
    ended = outcome(client, code, files={"bomb.zip": zip_bomb}, deadline=ENDED_WITHIN)
    assert_limit(ended, ename, limit, value)
    assert_serves_normally(client)


AMBIGUOUS = [
    pytest.param(b"Content-Length: 8\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
                 id="length-and-chunked"),
    pytest.param(b"Content-Length: 8\r\nContent-Length: 30\r\n\r\nprint(1)", id="two-lengths"),
    pytest.param(b"Content-Length: 8, 30\r\n\r\nprint(1)", id="length-list"),
    pytest.param(b"Content-Length: +8\r\n\r\nprint(1)", id="signed-length"),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\nzz\r\nprint(1)\r\n0\r\n\r\n", id="bad-chunk-size"),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\n-8\r\nprint(1)\r\n0\r\n\r\n", id="negative-chunk-size"),
    pytest.param(b"Transfer-Encoding: chunked, identity\r\n\r\n8\r\nprint(1)\r\n0\r\n\r\n", id="two-codings"),
    pytest.param(b"Transfer-Encoding: xchunked\r\n\r\n8\r\nprint(1)\r\n0\r\n\r\n", id="unknown-coding"),
    pytest.param(b"Content-Length : 8\r\n\r\nprint(1)", id="space-before-colon"),
    pytest.param(b"X-Folded: a\r\n Content-Length: 8\r\n\r\nprint(1)", id="obs-fold"),
    pytest.param(b"X-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 8\r\n\r\nprint(1)", id="giant-header"),
    pytest.param(b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)) + b"Content-Length: 8\r\n\r\nprint(1)",
                 id="twenty-thousand-headers"),
]


@pytest.mark.parametrize("rest", AMBIGUOUS)
def test_ambiguous_or_giant_http_framing_is_refused_and_runs_nothing(client: Client, hostile: Server,
                                                                     rest: bytes) -> None:
    """What a front proxy and this server could read differently (request smuggling) must be
    refused outright, and never reach the store."""
    before = hostile.request_count()
    head = b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n" + rest
    try:
        status, _, body = raw_exchange(hostile.port or 0, head, timeout=10)
    except ConnectionError:
        status, body = 0, b""  # closed without an answer: refused too
    assert status in (0, 400, 413, 431), f"answered {status}: {body[:200]!r}"
    assert hostile.request_count() == before, "an ambiguous request was stored"
    assert_serves_normally(client)


def test_a_files_path_cannot_climb_out_of_its_request(client: Client, hostile: Server) -> None:
    other = client.eval("open('secret.txt', 'w').write('other request')")
    mine = client.eval("open('a.txt', 'w').write('mine')")
    quoted = urllib.parse.quote
    for name in ("../" + other["id"] + "/secret.txt", quoted("../" + other["id"] + "/secret.txt", safe=""),
                 "..%2f..%2fsinglecell.db", "%2e%2e/%2e%2e/singlecell.db", "a.txt/../../" + other["id"] + "/secret.txt",
                 quoted(str(hostile.db_path), safe=""), "%00a.txt", "a.txt%00.png", "..\\..\\singlecell.db"):
        status, _, body = client.request("GET", f"/files/{mine['id']}/{name}")
        assert status in (400, 404), f"/files/{mine['id']}/{name} answered {status}"
        assert b"other request" not in body and b"SQLite" not in body
    assert client.file(mine["files"][0]["url"]) == b"mine"
    assert_serves_normally(client)


def test_output_of_a_request_is_served_only_under_its_own_id(client: Client) -> None:
    answer = client.eval("print('mine')")
    for request_id in (answer["id"].upper(), answer["id"][:-1], answer["id"] + "0", "../" + answer["id"],
                       answer["id"] + "%00", "%2e%2e"):
        with pytest.raises(ClientError) as caught:
            client.output(request_id)
        assert caught.value.status == 404
    assert_serves_normally(client)

