"""Linked cells: ``"linked": true`` keeps a cell's kernel, and ``"session": id`` runs more cells in
it, each a request of its own (its id, its ``/output``, its status), in the order they came."""

from __future__ import annotations

import time

import pytest

from singlecell.client import Client, ClientError
from tests.jupyter import HttpError, call
from tests.servers import Server, Servers, wait_until


@pytest.fixture(scope="module")
def server(module_servers: Servers) -> Server:
    return module_servers("serve", name="linked")


@pytest.fixture
def client(server: Server) -> Client:
    return server.client()


def test_linked_cells_share_one_kernel_each_with_its_own_output(client: Client, server: Server) -> None:
    first = client.eval("x = 20\nprint('first')", linked=True)
    session = first["session"]
    assert first["status"] == "ok" and first["stdout"] == "first\n" and len(session) == 36
    second = client.eval("x * 2 + 2", session=session)
    assert second["result"]["text/plain"] == "42" and second["session"] == session and second["id"] != first["id"]
    failing = client.eval("1/0", session=session)
    assert failing["status"] == "error" and failing["error"]["ename"] == "ZeroDivisionError"
    assert client.eval("print(x)", session=session)["stdout"] == "20\n"  # an error does not end it
    kernels = [k["id"] for k in call("GET", server.url + "/api/kernels")]
    assert session in kernels  # linked cells' kernel is a kernel of the API
    call("DELETE", f"{server.url}/api/kernels/{session}")


def test_cells_queued_in_a_session_run_in_order_and_a_stop_interrupts_only_its_own(client: Client) -> None:
    session = client.eval("import time\nseen = []", linked=True)["session"]
    slow = client.execute("time.sleep(60)", session=session)
    after = [client.execute(f"seen.append({i}); print(seen)", session=session) for i in range(3)]
    time.sleep(1)
    assert client.stop(slow)["status"] == "running"
    stopped = client.output(slow, wait=20)
    while not stopped["done"]:
        stopped = client.output(slow, after=stopped["next"], wait=20)
    assert stopped["status"] == "aborted"
    results = []
    for request_id in after:
        messages = list(client.messages(request_id))
        results.append("".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream"))
    assert results == ["[0]\n", "[0, 1]\n", "[0, 1, 2]\n"]
    client.stop(client.execute("0", session=session))  # a stop of a finished or waiting cell is harmless


def test_a_kernel_of_the_api_takes_linked_cells_and_its_end_ends_those_waiting(client: Client, server: Server) -> None:
    kernel = call("POST", server.url + "/api/kernels", {})["id"]
    assert client.eval("y = 7", session=kernel)["status"] == "ok"
    running = client.execute("import time\ntime.sleep(60)", session=kernel)
    waiting = client.execute("print(y)", session=kernel)
    time.sleep(1)
    call("DELETE", f"{server.url}/api/kernels/{kernel}")
    for request_id in (running, waiting):
        messages = list(client.messages(request_id))
        record = client.output(request_id)
        assert record["status"] == "aborted"
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert errors and messages[-1]["msg_type"] == "status"
    said = next(m for m in client.messages(waiting) if m["msg_type"] == "error")
    assert "ended before it ran" in said["content"]["evalue"]
    with pytest.raises(ClientError) as ended:
        client.eval("1", session=kernel)
    assert ended.value.status == 409 and "not live" in str(ended.value)


def test_a_linked_cell_past_the_time_limit_times_out_and_ends_the_session(module_servers: Servers) -> None:
    server = module_servers("serve", "--time-limit", "2", name="linked-time")
    client = server.client()
    session = client.eval("pass", linked=True)["session"]
    spin = client.eval("while True: pass", session=session)
    assert spin["status"] == "timeout" and spin["error"]["ename"] == "TimeLimitExceeded"

    def ended() -> bool:  # the cell ends just before its session's end is stored
        try:
            call("GET", f"{server.url}/api/kernels/{session}")
        except HttpError as exc:
            return exc.status == 404
        return False

    assert wait_until(ended, 10)


def test_bad_linked_requests_say_what_to_fix(client: Client, server: Server) -> None:
    for body, says in (({"code": "1", "session": "nope"}, "live kernel"),
                       ({"code": "1", "linked": "yes"}, "true or false"),
                       ({"code": "1", "session": "0" * 32, "linked": True}, "takes no files"),
                       ({"code": "1", "session": "0" * 32}, "not live")):
        with pytest.raises(ClientError) as refused:
            client._json("POST", "/eval", body)
        assert says in str(refused.value), refused.value
