"""Limits per API token, and per address without one, kept in the store: two web processes on one
store (``serve`` and a second ``web`` on its data dir) share every count, a refusal is a 429 that
names its limit and says when to retry, and nothing refused is stored or run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers import ROOT, Server, Servers, wait_until


def admin(server: Server, *args: str, stdin: str = "") -> str:
    """``singlecell ARGS --data-dir`` of the server, as an operator types it."""
    done = subprocess.run([sys.executable, "-m", "singlecell", *args, "--data-dir", str(server.data_dir)],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def token(server: Server, *limits: str) -> str:
    name = f"u{uuid.uuid4().hex[:8]}"
    admin(server, "user", "create", name, stdin="a long password\n")
    return admin(server, "token", "create", "--user", name, *limits)


def call(url: str, path: str, body: Any = None, secret: str | None = None,
         method: str | None = None) -> tuple[int, dict[str, str], Any]:
    """One JSON request: (status, headers, answer)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def requests_stored(server: Server) -> int:
    return int(server.db_rows("SELECT count(*) FROM requests")[0][0])


@pytest.fixture(scope="module")
def pair(module_servers: Servers) -> Iterator[tuple[Server, Server]]:
    """``serve`` and a second web process on its store; an address without a token may have one
    cell queued or running."""
    first = module_servers("serve", "--max-running", "1", "--kernels", "2", name="quota-serve")
    second = module_servers("web", "--max-running", "1", data_dir=first.data_dir, name="quota-web")
    yield first, second


def test_a_tokens_rate_holds_across_two_web_processes(pair: tuple[Server, Server]) -> None:
    first, second = pair
    secret = token(first, "--rate", "4/min", "--max-running", "0", "--cpu-per-day", "0")
    before = requests_stored(first)
    answers = [call(server.url, "/execute", {"code": "1"}, secret) for server in (first, second) * 4]
    statuses = [status for status, _, _ in answers]
    assert statuses == [202] * 4 + [429] * 4, statuses
    for _, headers, body in answers[4:]:
        error = body["error"]
        assert (error["code"], error["limit"]) == ("limit_exceeded", "rate"), error
        assert "4/min" in error["message"] and "this API token" in error["message"]
        assert 1 <= int(headers["Retry-After"]) <= 15 and error["retry_after"] == int(headers["Retry-After"])
    assert requests_stored(first) == before + 4  # the refused ones were never stored


def test_cells_at_once_hold_across_two_web_processes_and_free_up_as_cells_end(pair: tuple[Server, Server]) -> None:
    first, second = pair
    secret = token(first, "--rate", "0", "--max-running", "2", "--cpu-per-day", "0")
    sleepy = {"code": "import time; time.sleep(30)"}
    status_a, _, held = call(first.url, "/execute", sleepy, secret)
    status_b, _, _ = call(second.url, "/execute", sleepy, secret)
    assert (status_a, status_b) == (202, 202)
    status, headers, body = call(first.url, "/execute", {"code": "1"}, secret)
    assert status == 429 and body["error"]["limit"] == "max_running" and headers["Retry-After"] == "1"
    assert "has 2 cells queued or running" in body["error"]["message"]
    status, _, body = call(second.url, "/batch", {"cells": [{"code": "1"}]}, secret)
    assert status == 429 and body["error"]["limit"] == "max_running"
    assert call(second.url, f"/stop/{held['id']}", {})[0] == 202
    assert wait_until(lambda: call(first.url, f"/output/{held['id']}")[2]["done"], 30)
    status, _, answer = call(second.url, "/eval", {"code": "6 * 7"}, secret)
    assert status == 200 and answer["result"]["text/plain"] == "42"


def test_an_address_without_a_token_has_the_servers_limits(pair: tuple[Server, Server]) -> None:
    first, second = pair
    status, _, held = call(first.url, "/execute", {"code": "import time; time.sleep(30)"})
    assert status == 202
    status, _, body = call(second.url, "/eval", {"code": "1"})
    assert status == 429 and body["error"]["limit"] == "max_running"
    assert "this address (no API token)" in body["error"]["message"]
    call(first.url, f"/stop/{held['id']}", {})
    assert wait_until(lambda: call(second.url, "/eval", {"code": "1"})[0] == 200, 30)


def test_the_daily_cpu_quota_counts_what_kernels_used_and_refuses_past_it(pair: tuple[Server, Server]) -> None:
    first, second = pair
    secret = token(first, "--rate", "0", "--max-running", "0", "--cpu-per-day", "1")
    burn = "import time\nwhile time.process_time() < 1.2:\n    pass\nprint('burnt')"
    status, _, answer = call(first.url, "/eval", {"code": burn}, secret)
    assert status == 200 and answer["stdout"] == "burnt\n", answer
    (cpu,) = first.db_rows("SELECT cpu FROM requests WHERE id = ?", [answer["id"]])[0]
    assert 1.1 <= cpu < 10, cpu  # the kernel's CPU, read from outside it
    status, headers, body = call(second.url, "/execute", {"code": "1"}, secret)
    assert status == 429 and body["error"]["limit"] == "cpu_per_day", body
    assert "of its 1 CPU seconds of today" in body["error"]["message"]
    tomorrow = 86400 - time.time() % 86400
    assert abs(int(headers["Retry-After"]) - tomorrow) < 120


def test_a_tokens_limits_can_be_listed_and_changed_from_the_command_line(pair: tuple[Server, Server]) -> None:
    first, second = pair
    name = f"u{uuid.uuid4().hex[:8]}"
    admin(first, "user", "create", name, stdin="a long password\n")
    secret = admin(first, "token", "create", "--user", name, "--label", "ci \x1b[31mred", "--rate", "1/h")
    listed = admin(first, "token", "list", "--user", name)
    token_id = listed.split()[0]
    assert "rate 1/h, max-running server's, cpu-per-day server's" in listed
    assert "\x1b" not in listed and "\\x1b[31mred" in listed  # a label's escape codes are shown, not obeyed
    assert call(first.url, "/execute", {"code": "1"}, secret)[0] == 202
    assert call(second.url, "/execute", {"code": "1"}, secret)[0] == 429
    assert admin(first, "token", "limits", token_id, "--rate", "0") == (
        f"token {token_id}: rate none, max-running server's, cpu-per-day server's")
    assert "rate none" in admin(first, "token", "list", "--user", name)
    assert call(second.url, "/execute", {"code": "1"}, secret)[0] == 202
    refused = subprocess.run([sys.executable, "-m", "singlecell", "token", "limits", token_id, "--rate", "5/fortnight",
                              "--data-dir", str(first.data_dir)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 1 and "a rate is a count per period" in refused.stderr


def test_limits_hit_are_counted_by_kind(pair: tuple[Server, Server]) -> None:
    from tests.e2e.test_metrics import scrape, value

    first, _ = pair
    before = value(scrape(first.url + "/metrics"), "singlecell_limits_hit_total", limit="rate")
    secret = token(first, "--rate", "1/h", "--max-running", "0", "--cpu-per-day", "0")
    assert [call(first.url, "/execute", {"code": "1"}, secret)[0] for _ in range(3)] == [202, 429, 429]
    after = value(scrape(first.url + "/metrics"), "singlecell_limits_hit_total", limit="rate")
    assert after - before == 2


# -- --require-token -------------------------------------------------------------------------------


def test_require_token_closes_the_compute_and_kernel_apis_to_requests_without_one(
        start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--require-token", ready=False)  # its first cell needs a token
    server.wait_up()
    secret = token(server)
    for path, body in (("/execute", {"code": "1"}), ("/eval", {"code": "1"}), ("/batch", {"cells": [{"code": "1"}]}),
                       ("/api/kernels", {})):
        status, _, answer = call(server.url, path, body)
        assert status == 401 and answer["error"]["code"] == "unauthorized", (path, answer)
        assert "needs an API token" in answer["error"]["message"]
        status, _, answer = call(server.url, path, body, "sc_not-a-token")
        assert status == 401 and "not valid" in answer["error"]["message"], (path, answer)
    status, _, answer = call(server.url, "/eval", {"code": "6 * 7"}, secret)
    assert status == 200 and answer["result"]["text/plain"] == "42"
    assert call(server.url, "/batch", {"cells": [{"code": "1"}]}, secret)[0] == 202
    form = urllib.request.Request(server.url + "/service", data=b"code=print(1)", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(form, timeout=30)
    assert refused.value.code == 401
    assert requests_stored(server) == 2  # the /eval and the batch's cell: nothing refused was stored
