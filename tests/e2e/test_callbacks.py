"""Callbacks, end to end: a real server POSTs each ended request's summary to a real receiver,
signed with the token's secret, tries again with back-off, survives its own restart, and never
reaches an address it may not (each kind, a name that resolves to one, a redirect to one)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.test_quotas import admin, call, token
from tests.servers import Server, Servers, free_port, wait_until


class Receiver:
    """An HTTP server on ``host`` that records every POST; ``answers`` are the statuses it gives,
    in order (then 200), and ``redirect`` makes every answer a 307 there."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.got: list[tuple[float, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.redirect: str | None = None
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.got.append((time.time(), dict(self.headers), body))
                if receiver.redirect is not None:
                    self.send_response(307)
                    self.send_header("Location", receiver.redirect)
                else:
                    self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, port or free_port()), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture(scope="module")
def server(module_servers: Servers) -> Server:
    return module_servers("serve", "--callback-allow", "127.0.0.1", "--kernels", "2", name="callbacks")


@pytest.fixture(scope="module")
def plain(module_servers: Servers) -> Server:
    """A server that lets callbacks reach public addresses only."""
    return module_servers("serve", "--kernels", "1", name="no-callbacks-allowed")


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: the HMAC-SHA256 of "<timestamp>.<body>" under the token's SHA-256."""
    key = hashlib.sha256(secret.encode()).hexdigest().encode()
    expected = hmac.new(key, headers["X-Singlecell-Timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Singlecell-Signature", ""), f"sha256={expected}")


def batch_state(server: Server, batch_id: str) -> dict[str, Any]:
    status, _, state = call(server.url, f"/batch/{batch_id}")
    assert status == 200
    return state


def test_an_ended_cells_summary_is_posted_signed_with_its_tokens_secret(server: Server, receiver: Receiver) -> None:
    secret = token(server)
    status, _, queued = call(server.url, "/execute", {"code": "print(6 * 7)", "callback_url": receiver.url}, secret)
    assert status == 202
    assert wait_until(lambda: receiver.got, 30)
    (_, headers, body), = receiver.got
    summary = json.loads(body)
    assert (summary["id"], summary["status"], summary["stdout"]) == (queued["id"], "ok", "42\n")
    assert headers["X-Singlecell-Request"] == queued["id"] and headers["X-Singlecell-Attempt"] == "1"
    assert headers["Content-Type"] == "application/json" and verify(secret, headers, body)
    assert not verify("sc_another-token", headers, body)
    assert abs(int(headers["X-Singlecell-Timestamp"]) - time.time()) < 60


def test_a_batch_posts_each_cells_summary_and_says_how_each_callback_went(server: Server, receiver: Receiver) -> None:
    status, _, batch = call(server.url, "/batch", {"cells": [{"code": "1 + 1"}, {"code": "1 / 0"}, {"code": "3"}],
                                                   "callback_url": receiver.url})
    assert status == 202 and len(batch["ids"]) == 3
    assert wait_until(lambda: len(receiver.got) == 3, 60)
    summaries = {json.loads(body)["id"]: json.loads(body) for _, _, body in receiver.got}
    assert set(summaries) == set(batch["ids"])
    assert summaries[batch["ids"][1]]["error"]["ename"] == "ZeroDivisionError"
    assert all("X-Singlecell-Signature" not in headers for _, headers, _ in receiver.got)  # no token: unsigned
    assert wait_until(lambda: batch_state(server, batch["id"])["ended"] == 3, 10)
    state = batch_state(server, batch["id"])
    assert [cell["id"] for cell in state["cells"]] == batch["ids"]
    assert [cell["status"] for cell in state["cells"]] == ["done", "error", "done"]
    assert wait_until(lambda: all(c["callback"]["state"] == "delivered"
                                  for c in batch_state(server, batch["id"])["cells"]), 10)


def test_a_failed_callback_is_tried_again_with_back_off_until_it_is_delivered(
        server: Server, receiver: Receiver) -> None:
    from tests.e2e.test_metrics import scrape, value

    before = scrape(server.url + "/metrics")
    receiver.answers = [503, 500]
    status, _, queued = call(server.url, "/execute", {"code": "1", "callback_url": receiver.url})
    assert status == 202
    assert wait_until(lambda: len(receiver.got) == 3, 30)
    times = [at for at, _, _ in receiver.got]
    assert [headers["X-Singlecell-Attempt"] for _, headers, _ in receiver.got] == ["1", "2", "3"]
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.9  # 1 s, then 2 s
    assert wait_until(lambda: server.db_rows("SELECT state, attempts FROM callbacks WHERE request_id = ?",
                                             [queued["id"]]) == [("delivered", 3)], 10)
    shown = admin(server, "requests", "show", queued["id"])
    assert f"callback {receiver.url}: delivered after 3 attempt(s)" in shown, shown
    after = scrape(server.url + "/metrics")
    for outcome, more in (("retried", 2), ("delivered", 1)):
        name = "singlecell_callbacks_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == more, outcome


def test_a_redirect_to_an_address_callbacks_may_not_reach_is_not_followed(server: Server) -> None:
    allowed, forbidden = Receiver("127.0.0.1"), Receiver("127.0.0.2")  # --callback-allow 127.0.0.1 only
    try:
        allowed.redirect = forbidden.url
        _, _, batch = call(server.url, "/batch", {"cells": [{"code": "1"}], "callback_url": allowed.url})
        assert wait_until(lambda: batch_state(server, batch["id"])["cells"][0]["callback"]["state"] == "failed", 30)
        hook = batch_state(server, batch["id"])["cells"][0]["callback"]
        assert hook["attempts"] == 1 and "127.0.0.2, a loopback address" in hook["last_error"], hook
        assert len(allowed.got) == 1 and forbidden.got == []
    finally:
        allowed.close()
        forbidden.close()


@pytest.mark.parametrize(("host", "kind"), [
    ("127.0.0.1", "loopback"), ("[::1]", "loopback"), ("localhost", "loopback"), ("10.0.0.7", "private"),
    ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "metadata"),
    ("[fd00:ec2::254]", "metadata"), ("169.254.10.10", "link-local"), ("0.0.0.0", "unspecified"),
    ("[::ffff:127.0.0.1]", "loopback"), ("100.64.1.1", "not a public"),
])
def test_callbacks_to_addresses_that_are_not_public_are_refused_as_they_are_submitted(
        plain: Server, host: str, kind: str) -> None:
    before = int(plain.db_rows("SELECT count(*) FROM requests")[0][0])
    for path, body in (("/execute", {"code": "1", "callback_url": f"http://{host}:8080/hook"}),
                       ("/batch", {"cells": [{"code": "1"}], "callback_url": f"https://{host}/hook"})):
        status, _, answer = call(plain.url, path, body)
        assert status == 400 and answer["error"]["code"] == "callback_refused", answer
        assert kind in answer["error"]["message"] and "--callback-allow" in answer["error"]["message"]
    assert int(plain.db_rows("SELECT count(*) FROM requests")[0][0]) == before


def test_eval_takes_no_callback_url(server: Server, receiver: Receiver) -> None:
    status, _, answer = call(server.url, "/eval", {"code": "1", "callback_url": receiver.url})
    assert status == 400 and "/eval answers with the summary itself" in answer["error"]["message"]


def test_a_callback_outlives_the_server_that_could_not_deliver_it(start_server: Callable[..., Server]) -> None:
    port = free_port()  # nothing listens there yet: every attempt fails
    first = start_server("serve", "--callback-allow", "127.0.0.1", "--kernels", "1", name="before")
    status, _, queued = call(first.url, "/execute", {"code": "print('kept')",
                                                     "callback_url": f"http://127.0.0.1:{port}/hook"})
    assert status == 202
    assert wait_until(lambda: first.db_rows("SELECT attempts FROM callbacks")[0][0] >= 2, 30)
    first.stop()
    receiver = Receiver(port=port)
    try:
        second = start_server("serve", "--callback-allow", "127.0.0.1", "--kernels", "1", data_dir=first.data_dir,
                              name="after")
        assert wait_until(lambda: receiver.got, 60)
        summary = json.loads(receiver.got[0][2])
        assert summary["id"] == queued["id"] and summary["stdout"] == "kept\n"
        assert wait_until(lambda: second.db_rows("SELECT state FROM callbacks")[0][0] == "delivered", 10)
        (attempts,), = second.db_rows("SELECT attempts FROM callbacks")
        assert attempts >= 3  # two or more refused by the closed port, then this one
    finally:
        receiver.close()
