"""Bad input gets a 4xx with a message that says what to fix, and never reaches the store."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from singlecell.client import Client
from singlecell.config import Config
from singlecell.web.handlers import DRAIN_SECONDS
from tests.servers import Server, raw_exchange, wait_until

JSON = {"Content-Type": "application/json"}
MAX_CODE = 64 * 1024  # the default --max-code-size
# the default limit of a whole body: 6 * code + 2 * uploads + 64 KiB of slack
MAX_BODY = Config().max_body_size  # what the server reads of a body, at the default limits


@pytest.fixture
def untouched_store(server: Server) -> Iterator[None]:
    """The test's requests must leave no trace in the store: no row, nothing queued."""
    before = server.request_count()
    yield
    assert server.request_count() == before, "a rejected request was written to the store"


def error_of(status: int, headers: dict[str, str], body: bytes, expected_status: int) -> dict[str, Any]:
    assert status == expected_status, body
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"}
    assert len(error["message"]) > 10
    return error


def post_eval(client: Client, body: bytes, headers: dict[str, str] | None = None,
              path: str = "/eval") -> tuple[int, dict[str, str], bytes]:
    return client.request("POST", path, body, JSON if headers is None else headers)


# -- 400 -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("path", ["/eval", "/execute"])
def test_a_body_that_is_not_json_is_400(client: Client, path: str) -> None:
    error = error_of(*post_eval(client, b'{"code": "print(1)"', path=path), 400)
    assert error["code"] == "bad_request"
    assert "JSON" in error["message"]


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("body", [b'["print(1)"]', b'"print(1)"', b"42", b"null"], ids=["array", "string", "number",
                                                                                      "null"])
def test_a_json_body_that_is_not_an_object_is_400(client: Client, body: bytes) -> None:
    error = error_of(*post_eval(client, body), 400)
    assert "object" in error["message"]


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("payload", [{}, {"code": ""}, {"code": "   \n\t"}, {"files": {}}],
                         ids=["missing", "empty", "blank", "files-only"])
def test_missing_or_empty_code_is_400(client: Client, payload: dict[str, Any]) -> None:
    error = error_of(*post_eval(client, json.dumps(payload).encode()), 400)
    assert "code" in error["message"]


@pytest.mark.usefixtures("untouched_store")
def test_an_empty_plain_text_body_is_400(client: Client) -> None:
    error_of(*post_eval(client, b"", {"Content-Type": "text/plain"}), 400)


WRONG_FIELDS = [
    pytest.param({"code": 42}, "code", id="code-number"),
    pytest.param({"code": ["print(1)"]}, "code", id="code-list"),
    pytest.param({"code": None}, "code", id="code-null"),
    pytest.param({"code": "1", "timeout": -1}, "timeout", id="timeout-negative"),
    pytest.param({"code": "1", "timeout": 0}, "timeout", id="timeout-zero"),
    pytest.param({"code": "1", "timeout": True}, "timeout", id="timeout-bool"),
    pytest.param({"code": "1", "timeout": "5"}, "timeout", id="timeout-string"),
    pytest.param({"code": "1", "timeout": None}, "timeout", id="timeout-null"),
    pytest.param({"code": "1", "files": ["a.txt"]}, "files", id="files-list"),
    pytest.param({"code": "1", "files": "a.txt"}, "files", id="files-string"),
    pytest.param({"code": "1", "files": {"a.txt": 5}}, "base64", id="file-content-number"),
    pytest.param({"code": "1", "files": {"a.txt": "not base64!"}}, "base64", id="file-bad-base64"),
    pytest.param({"code": "1", "files": {"../escape.txt": "eA=="}}, "name", id="upload-dotdot"),
    pytest.param({"code": "1", "files": {"a/../../b": "eA=="}}, "name", id="upload-inner-dotdot"),
    pytest.param({"code": "1", "files": {"/etc/passwd": "eA=="}}, "name", id="upload-absolute"),
    pytest.param({"code": "1", "files": {"": "eA=="}}, "name", id="upload-empty-name"),
    pytest.param({"code": "print('\x00')"}, "NUL", id="code-nul"),
]


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize(("payload", "mentions"), WRONG_FIELDS)
def test_a_field_of_the_wrong_type_or_value_is_400_naming_it(client: Client, payload: dict[str, Any],
                                                              mentions: str) -> None:
    error = error_of(*post_eval(client, json.dumps(payload).encode()), 400)
    assert error["code"] == "bad_request"
    assert mentions in error["message"]


@pytest.mark.usefixtures("untouched_store")
def test_too_many_uploads_is_400(client: Client) -> None:
    files = {f"f{i}.txt": base64.b64encode(b"x").decode() for i in range(11)}
    error = error_of(*post_eval(client, json.dumps({"code": "1", "files": files}).encode()), 400)
    assert "10" in error["message"]


@pytest.mark.usefixtures("untouched_store")
def test_an_unknown_field_is_400_naming_it(client: Client) -> None:
    error = error_of(*post_eval(client, json.dumps({"code": "1", "langauge": "python"}).encode()), 400)
    assert "langauge" in error["message"]


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/xml"])
def test_an_unsupported_content_type_is_400(client: Client, content_type: str) -> None:
    error = error_of(*post_eval(client, b"code=print(1)", {"Content-Type": content_type}), 400)
    assert "Content-Type" in error["message"]


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"code": "print(\'\xff\xfe\')"}', "application/json"),
    (b"print('\xc3\x28')", "text/plain"),
], ids=["json", "plain"])
def test_a_body_that_is_not_utf8_is_400(client: Client, body: bytes, content_type: str) -> None:
    error = error_of(*post_eval(client, body, {"Content-Type": content_type}), 400)
    assert "UTF-8" in error["message"]


# -- 413 -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_code_over_the_size_limit_is_413(client: Client, content_type: str) -> None:
    code = "x = 1\n" + "#" * MAX_CODE
    body = json.dumps({"code": code}).encode() if content_type == "application/json" else code.encode()
    error = error_of(*post_eval(client, body, {"Content-Type": content_type}), 413)
    assert error["code"] == "too_large"
    assert str(MAX_CODE) in error["message"]


def test_code_of_exactly_the_size_limit_is_accepted(client: Client, server: Server) -> None:
    code = "x = 1\n" + "#" * (MAX_CODE - 7) + "\n"
    assert len(code.encode()) == MAX_CODE
    rows = server.request_count()
    status, _, _ = post_eval(client, json.dumps({"code": code}).encode(), path="/execute")
    assert status == 202
    assert server.request_count() == rows + 1


@pytest.mark.usefixtures("untouched_store")
def test_a_body_over_the_limit_is_413_before_it_is_read(server: Server) -> None:
    size = MAX_BODY + 1024
    head = (f"POST /eval HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    # the answer must come after the headers alone: the client need not send megabytes first
    status, headers, body = raw_exchange(server.port or 0, head, [b'{"code": "' + b"#" * 1000])
    error = error_of(status, headers, body, 413)
    assert error["code"] == "too_large"


@pytest.mark.usefixtures("untouched_store")
def test_a_chunked_body_over_the_limit_is_413(server: Server) -> None:
    head = (b"POST /eval HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"#" * (1 << 20)
    parts = [b"%x\r\n" % len(chunk) + chunk + b"\r\n"] * (MAX_BODY // len(chunk) + 2) + [b"0\r\n\r\n"]
    status, headers, body = raw_exchange(server.port or 0, head, parts)
    error = error_of(status, headers, body, 413)
    assert error["code"] == "too_large"


BIG_BODY = json.dumps({"code": "#" * (10 * 1024 * 1024)}).encode()  # 10 MB: past the limit, under the drain


def peak_rss_kb(pid: int) -> int:
    """The most memory the process has ever held (VmHWM), in kB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("path", ["/eval", "/execute", "/permalink"])
def test_a_10_mb_body_from_urllib_gets_413_not_a_reset(server: Server, path: str) -> None:
    """urllib sends the whole body before it reads a byte of the answer: a server that answers
    and closes while the body is still coming resets the connection, and the client never
    sees the answer. The server reads the rest of the body (keeping none of it) and answers."""
    request = urllib.request.Request(server.url + path, data=BIG_BODY, headers=JSON, method="POST")
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    took = time.monotonic() - started
    error = error_of(refused.value.code, {k.lower(): v for k, v in refused.value.headers.items()},
                     refused.value.read(), 413)
    assert error["code"] == "too_large"
    assert took < DRAIN_SECONDS / 2, f"{took:.1f} s: the answer waited for the drain's time limit"


@pytest.mark.usefixtures("untouched_store")
@pytest.mark.parametrize("expect", ["Expect:", "Expect: 100-continue"], ids=["no-expect", "expect-100"])
def test_a_10_mb_body_from_curl_gets_413_not_a_reset(server: Server, tmp_path: Path, expect: str) -> None:
    """curl asks ``Expect: 100-continue`` for big bodies unless told not to (``-H 'Expect:'``);
    either way it gets the 413 and its JSON."""
    body = tmp_path / "body.json"
    body.write_bytes(BIG_BODY)
    done = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
                           "-H", expect, "--data-binary", f"@{body}", server.url + "/eval"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    text, _, status = done.stdout.decode().rpartition("\n")
    assert status == "413", done.stdout[:500]
    assert json.loads(text)["error"]["code"] == "too_large"


def test_refused_bodies_are_not_kept_in_memory(start_server: Any) -> None:
    """The server reads a refused body to its end, but keeps none of it: its peak memory does not
    grow by the bodies' size."""
    server = start_server("web")
    request = urllib.request.Request(server.url + "/eval", data=BIG_BODY * 3, headers=JSON, method="POST")
    before = peak_rss_kb(server.pid)
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 413
    grown_mb = (peak_rss_kb(server.pid) - before) / 1024
    assert grown_mb < 8, f"the web process's peak memory grew by {grown_mb:.0f} MB for 30 MB bodies it refused"


# -- 404 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("request_id", ["0" * 32, "f" * 32, "not-an-id", "A" * 32])
def test_output_of_an_unknown_id_is_404(client: Client, request_id: str) -> None:
    status, headers, body = client.request("GET", f"/output/{request_id}")
    error = error_of(status, headers, body, 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize("path", [f"/files/{'0' * 32}/a.txt", "/files/not-an-id/a.txt"])
def test_files_of_an_unknown_id_are_404(client: Client, path: str) -> None:
    error = error_of(*client.request("GET", path), 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("POST", "/nope"), ("POST", "/eval/extra"),
                                             ("GET", "/output"), ("GET", "/files")])
def test_an_unknown_path_is_404_json(client: Client, method: str, path: str) -> None:
    error = error_of(*client.request(method, path, b"" if method == "POST" else None), 404)
    assert error["code"] == "not_found"


# -- bad query arguments -------------------------------------------------------------------

@pytest.mark.parametrize("query", ["after=x", "after=-1", "after=1.5", "wait=soon", "wait=-2", "wait=nan"])
def test_a_bad_after_or_wait_is_400(client: Client, query: str) -> None:
    request_id = client.eval("1")["id"]
    started = time.monotonic()
    error = error_of(*client.request("GET", f"/output/{request_id}?{query}"), 400)
    assert error["code"] == "bad_request"
    assert query.split("=")[0] in error["message"]
    assert time.monotonic() - started < 2


# -- 503 -----------------------------------------------------------------------------------

def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(start_server: Any) -> None:
    busy = start_server("serve", "--max-queue", "1", "--kernels", "1", "--ready-kernels", "1",
                        "--shutdown-grace", "0")
    client = busy.client()
    running = client.execute("import time\ntime.sleep(60)")
    assert wait_until(lambda: client.status(running) == "running", 15)
    waiting = client.execute("print('second')")
    assert client.status(waiting) == "queued"
    assert client.health()["queued"] == 1
    rows = busy.request_count()

    status, headers, body = client.request("POST", "/execute", json.dumps({"code": "1"}).encode(), JSON)
    error = error_of(status, headers, body, 503)
    assert error["code"] == "queue_full"
    assert int(headers["retry-after"]) >= 1
    status, headers, body = client.request("POST", "/eval", b"print(3)", {"Content-Type": "text/plain"})
    assert status == 503 and "retry-after" in headers
    assert busy.request_count() == rows
    assert client.health()["queued"] == 1
    client.close()
