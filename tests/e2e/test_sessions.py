"""Sessions over HTTP: a cell whose widgets stay open keeps its kernel; inputs reach it in order,
and every way a session ends is written as a ``session_end`` message, with its reason."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from singlecell.client import Client, ClientError
from tests.security.hostile import assert_confined_alike, confinement_probe
from tests.servers import Server, Servers, alive, kernel_processes, wait_until

SLIDER = """\
import ipywidgets as w
s = w.IntSlider(description="x")
s.observe(lambda change: print("value", change["new"]), names="value")
display(s)
"""


class Session:
    """A cell that became a session, read through ``/output`` as a page would."""

    def __init__(self, client: Client, code: str = SLIDER) -> None:
        self.client = client
        self.id = client.execute(code)
        self.messages: list[dict[str, Any]] = []
        self.after = 0
        self.page: dict[str, Any] = {}
        while not self.page.get("done"):
            self.read(wait=10)

    def read(self, wait: float = 5.0) -> list[dict[str, Any]]:
        self.page = self.client.output(self.id, after=self.after, wait=wait)
        new = [item["msg"] for item in self.page["messages"]]
        self.messages += new
        self.after = self.page["next"]
        return new

    @property
    def state(self) -> str | None:
        session = self.page.get("session")
        return None if session is None else str(session["state"])

    def comm(self, model: str = "IntSliderModel") -> str:
        for msg in self.messages:
            if msg["msg_type"] == "comm_open" and msg["content"]["data"]["state"].get("_model_name") == model:
                return str(msg["content"]["comm_id"])
        raise AssertionError(f"no comm_open of a {model} in {[m['msg_type'] for m in self.messages]}")

    def update(self, state: dict[str, Any], comm_id: str | None = None) -> str:
        """Send a widget update, as a front end does; returns the input's msg_id."""
        msg_id = uuid.uuid4().hex
        content = {"comm_id": comm_id or self.comm(), "data": {"method": "update", "state": state,
                                                               "buffer_paths": []}}
        answer = self.client.send_input(self.id, "comm_msg", content, msg_id=msg_id)
        assert answer["msg_id"] == msg_id and answer["seq"] >= 1
        return msg_id

    def answers(self, msg_id: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """What the kernel answered the input ``msg_id``, up to its idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(wait=1)
            mine = [m for m in self.messages if m["parent_header"].get("msg_id") == msg_id]
            if any(_idle(m) for m in mine) or self.state == "ended":
                return mine
        raise AssertionError(f"no idle for input {msg_id} within {timeout} s")

    def ended(self, timeout: float = 20.0) -> dict[str, Any]:
        """The ``session_end`` message's content, once the session ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.state != "ended":
            self.read(wait=1)
        self.read(wait=0)
        ends = [m["content"]["content"] for m in self.messages
                if m["msg_type"] == "extension" and m["content"]["msg_type"] == "session_end"]
        assert self.state == "ended" and len(ends) == 1, f"state {self.state}, ends {ends}"
        assert self.page["session"]["reason"] == ends[0]["reason"]
        return ends[0]


def _idle(msg: dict[str, Any]) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"


def _text(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


@pytest.fixture(scope="module")
def server(module_servers: Servers) -> Server:
    return module_servers("serve", name="sessions")


@pytest.fixture
def client(server: Server) -> Any:
    c = server.client()
    yield c
    c.close()


# -- the end-to-end test, and what a session is ----------------------------------------

def test_a_slider_update_reaches_the_observer_and_its_output_comes_back_parented_to_the_input(
        client: Client) -> None:
    session = Session(client)
    assert session.page["status"] == "done" and session.state == "live"
    kinds = [m["msg_type"] for m in session.messages]
    assert "comm_open" in kinds and "execute_reply" in kinds and _idle(session.messages[-1])
    display = next(m for m in session.messages if m["msg_type"] == "display_data")
    view = display["content"]["data"]["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == session.comm()
    live = [m["content"]["content"] for m in session.messages if m["msg_type"] == "extension"]
    assert live == [{"state": "live", "idle_timeout": 300.0, "lifetime": 1800.0}]

    msg_id = session.update({"value": 5})
    answers = session.answers(msg_id)
    assert answers[0]["msg_type"] == "status" and answers[0]["content"]["execution_state"] == "busy"
    assert _idle(answers[-1]) and _text(answers) == "value 5\n"
    assert [m["msg_type"] for m in answers if m["msg_type"] == "comm_msg"] == []  # no echo: one front end
    assert session.state == "live"
    client.stop(session.id)
    assert session.ended()["reason"] == "stopped"


def test_inputs_are_answered_in_order_each_under_its_own_parent(client: Client) -> None:
    session = Session(client)
    ids = [session.update({"value": n}) for n in range(1, 6)]
    for n, msg_id in enumerate(ids, start=1):
        assert _text(session.answers(msg_id)) == f"value {n}\n"
    seqs = [m["header"]["msg_id"] for m in session.messages]
    assert len(seqs) == len(set(seqs))
    client.stop(session.id)
    session.ended()


def test_a_widget_the_kernel_changes_is_sent_as_a_comm_msg_to_the_page(client: Client) -> None:
    code = ("import ipywidgets as w\na = w.IntSlider()\nb = w.IntText()\n"
            "a.observe(lambda c: setattr(b, 'value', c['new'] * 2), names='value')\ndisplay(a, b)")
    session = Session(client, code)
    b = session.comm("IntTextModel")
    answers = session.answers(session.update({"value": 21}, session.comm("IntSliderModel")))
    updates = [m["content"] for m in answers if m["msg_type"] == "comm_msg"]
    assert updates == [{"comm_id": b, "data": {"method": "update", "state": {"value": 42}, "buffer_paths": []}}]
    client.stop(session.id)
    session.ended()


def test_interact_reruns_its_function_in_the_same_kernel_and_its_output_is_captured(client: Client) -> None:
    code = ("from ipywidgets import interact\ncalls = []\n"
            "@interact(x=(0, 10), colour=['red', 'blue'])\n"
            "def f(x=3, colour='red'):\n    calls.append(x)\n    print(colour, x * x, len(calls))\n")
    session = Session(client, code)
    out = session.comm("OutputModel")
    sliders = [m["content"]["comm_id"] for m in session.messages if m["msg_type"] == "comm_open"
               and m["content"]["data"]["state"].get("_model_name") == "IntSliderModel"]
    assert _text(session.messages) == "red 9 1\n"
    msg_id = session.update({"value": 7}, sliders[0])
    answers = session.answers(msg_id)
    assert _text(answers) == "red 49 2\n"  # the namespace (calls) lives on
    # the Output widget captured it: its msg_id was set to the input's, as ipykernel does
    captures = [m["content"]["data"]["state"].get("msg_id") for m in answers
                if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == out]
    assert captures[0] == msg_id and captures[-1] == ""
    client.stop(session.id)
    session.ended()


def test_eval_and_cells_without_widgets_stay_one_shot(client: Client) -> None:
    result = client.eval(SLIDER)
    assert result["status"] == "ok" and "IntSlider(value=0" in str(result["displays"])
    page = client.output(result["id"])
    assert page["session"] is None and page["done"]
    plain = Session(client, "print(1)")
    assert plain.state is None and plain.page["status"] == "done"
    closed = Session(client, "import ipywidgets as w\ns = w.IntSlider()\ndisplay(s)\nw.Widget.close_all()")
    assert closed.state is None


def test_an_input_to_a_cell_without_a_live_session_is_refused_saying_why(client: Client) -> None:
    plain = Session(client, "1 + 1")
    with pytest.raises(ClientError) as refused:
        client.send_input(plain.id, "comm_msg", {"comm_id": "x", "data": {}})
    assert refused.value.status == 409 and refused.value.code == "session_ended"
    assert "run it again" in refused.value.message


@pytest.mark.parametrize(("body", "says"), [
    ({"msg_type": "execute_request", "content": {"code": "1"}}, "msg_type must be one of"),
    ({"msg_type": "comm_msg", "content": {"data": {}}}, "comm_id"),
    ({"msg_type": "comm_open", "content": {"comm_id": "x", "data": {}}}, "target_name"),
    ({"msg_type": "comm_msg", "content": {"comm_id": "x", "data": {}}, "buffers": ["%%"]}, "base64"),
    ([1, 2], "one Jupyter message"),
])
def test_a_bad_input_is_a_400_that_says_what_to_fix(client: Client, body: Any, says: str) -> None:
    session = Session(client)
    status, _, data = client.request("POST", f"/input/{session.id}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    assert status == 400 and says in json.loads(data)["error"]["message"]
    client.stop(session.id)
    session.ended()


def test_an_input_over_64_kib_is_a_413(client: Client) -> None:
    session = Session(client)
    content = {"comm_id": session.comm(), "data": {"method": "custom", "content": "x" * 70000}}
    with pytest.raises(ClientError) as refused:
        client.send_input(session.id, "comm_msg", content)
    assert refused.value.status == 413
    client.stop(session.id)
    session.ended()


# -- every way a session ends ------------------------------------------------------------------

@pytest.fixture(scope="module")
def short(module_servers: Servers) -> Server:
    """Sessions that end in seconds: 3 s idle, 4 s unread, 6 s in all; a 2 s time limit, 3 CPU
    seconds, 20 kB of output, and room for two sessions."""
    return module_servers("serve", "--session-idle", "3", "--session-unread", "4", "--session-lifetime", "6",
                          "--time-limit", "2", "--cpu-limit", "3", "--output-limit", "20000",
                          "--max-sessions", "2", "--max-sessions-per-client", "5", name="short-sessions")


@pytest.fixture
def short_client(short: Server) -> Any:
    c = short.client()
    yield c
    c.close()


def keep_reading(session: Session, seconds: float, every: float = 1.0) -> None:
    """Read as a page does (so the session is not unread), sending nothing."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and session.state == "live":
        session.read(wait=every)


def test_a_session_without_input_ends_idle(short_client: Client) -> None:
    session = Session(short_client)
    keep_reading(session, 8)
    end = session.ended()
    assert end == {"reason": "idle", "message": "Session ended after 3 seconds idle: press Run to start again"}


def test_a_session_nobody_reads_ends_unread(short_client: Client) -> None:
    session = Session(short_client)
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # inputs, so it is not idle, but no reads
        short_client.send_input(session.id, "comm_msg", {"comm_id": session.comm(), "data": {
            "method": "update", "state": {"value": 1}, "buffer_paths": []}})
        time.sleep(0.5)
    time.sleep(3)
    end = session.ended()
    assert end["reason"] == "unread" and "no page showed it for 4 seconds" in end["message"]


def test_a_session_ends_at_its_lifetime_however_busy(short_client: Client) -> None:
    session = Session(short_client)
    deadline = time.monotonic() + 12
    n = 0
    while session.state == "live" and time.monotonic() < deadline:
        n += 1
        try:
            session.answers(session.update({"value": n}))
        except ClientError as refused:  # it ended between our last read and this input
            assert refused.status == 409
            break
        time.sleep(0.4)
    end = session.ended()
    assert end["reason"] == "lifetime" and "6 seconds" in end["message"]


def test_an_input_running_past_the_time_limit_ends_the_session(short_client: Client) -> None:
    code = SLIDER.replace('print("value", change["new"])', '__import__("time").sleep(60)')
    session = Session(short_client, code)
    msg_id = session.update({"value": 1})
    end = session.ended(timeout=15)
    assert end["reason"] == "time" and "longer than 2 seconds" in end["message"]
    errors = [m["content"]["ename"] for m in session.messages if m["msg_type"] == "error"]
    assert errors == ["TimeLimitExceeded"]
    assert [m["parent_header"]["msg_id"] for m in session.messages if m["msg_type"] == "error"] == [msg_id]


def test_the_cpu_limit_counts_the_whole_session(short_client: Client) -> None:
    # each input burns about 1.2 CPU seconds, under the 2 s time limit: the third passes 3 in all
    burn = "t = __import__('time').process_time()\n    while __import__('time').process_time() - t < 1.2: pass"
    code = ("import ipywidgets as w\ns = w.IntSlider()\ndef burn(change):\n    " + burn + "\n    print('burnt')\n"
            "s.observe(burn, names='value')\ndisplay(s)")
    session = Session(short_client, code)
    for n in range(1, 5):
        session.answers(session.update({"value": n}), timeout=30)
        if session.state == "ended":
            break
    end = session.ended()
    assert end["reason"] == "cpu" and "3 seconds of CPU time" in end["message"]
    assert _text(session.messages).count("burnt") == 2


def test_the_output_limit_counts_the_whole_session(short_client: Client) -> None:
    code = SLIDER.replace('print("value", change["new"])', 'print("y" * 8000)')
    session = Session(short_client, code)
    for n in range(1, 6):
        session.answers(session.update({"value": n}))
        if session.state == "ended":
            break
    end = session.ended()
    assert end["reason"] == "output" and "20000 bytes" in end["message"]
    assert "OutputLimitExceeded" in [m["content"]["ename"] for m in session.messages if m["msg_type"] == "error"]


def test_closing_every_widget_ends_the_session(short_client: Client) -> None:
    code = SLIDER.replace('print("value", change["new"])', "w.Widget.close_all()")
    session = Session(short_client, code)
    session.update({"value": 1})
    assert session.ended()["reason"] == "closed"


def test_at_the_cap_the_least_recently_used_session_is_evicted(short_client: Client) -> None:
    first, second = Session(short_client), Session(short_client)
    second.answers(second.update({"value": 1}))  # first is now the least recently used
    third = Session(short_client)
    assert third.state == "live"
    end = first.ended()
    assert end["reason"] == "evicted" and "make room" in end["message"]
    assert second.state == "live"
    second.read(wait=0)
    assert second.state == "live"
    for session in (second, third):
        short_client.stop(session.id)
        session.ended()


def test_a_client_past_its_session_cap_gets_429_with_retry_after(
        module_servers: Servers) -> None:
    server = module_servers("serve", "--max-sessions-per-client", "1", name="one-session")
    client = server.client()
    first = Session(client)
    with pytest.raises(ClientError) as refused:
        client.execute("1 + 1")
    assert refused.value.status == 429 and refused.value.code == "too_many_sessions"
    assert refused.value.headers.get("retry-after") == "30"
    assert client.eval("1 + 1")["status"] == "ok"  # /eval never makes a session: it is not capped
    client.stop(first.id)
    first.ended()
    Session(client, "1 + 1")  # room again
    client.close()


def test_idle_sessions_do_not_take_the_ready_kernels_of_one_shot_cells(module_servers: Servers) -> None:
    server = module_servers("serve", "--ready-kernels", "1", "--kernels", "2", "--max-sessions", "4",
                            name="few-kernels")
    client = server.client()
    sessions = [Session(client) for _ in range(3)]
    assert all(s.state == "live" for s in sessions)
    for _ in range(3):
        assert client.eval("1 + 1")["result"]["text/plain"] == "2"
    assert all(s.answers(s.update({"value": 3})) for s in sessions)
    for session in sessions:
        client.stop(session.id)
        session.ended()
    client.close()


# -- a session survives its web process, and ends readable when its device dies -------------------

def test_a_sessions_inputs_and_outputs_survive_a_web_restart(module_servers: Servers) -> None:
    web = module_servers("web", name="session-web")
    device = module_servers("device", data_dir=web.data_dir, name="session-device")
    device.wait_serving(url=web.url)
    client = web.client()
    session = Session(client)
    assert _text(session.answers(session.update({"value": 1}))) == "value 1\n"
    web.stop()
    web.start().wait_up()
    client.close()
    session.client = client = web.client()
    session.read(wait=0)
    assert session.state == "live"
    assert _text(session.answers(session.update({"value": 2}))) == "value 2\n"
    client.stop(session.id)
    session.ended()
    client.close()


def test_a_killed_device_ends_its_sessions_lost_with_the_reason_readable(module_servers: Servers) -> None:
    web = module_servers("web", "--lease-seconds", "3", name="lost-web")
    device = module_servers("device", "--lease-seconds", "3", data_dir=web.data_dir, name="lost-device")
    device.wait_serving(url=web.url)
    client = web.client()
    session = Session(client)
    kernels = kernel_processes(device.processes())
    assert kernels
    device.kill()
    end = session.ended(timeout=20)
    assert end["reason"] == "lost" and "stopped answering" in end["message"]
    with pytest.raises(ClientError) as refused:
        client.send_input(session.id, "comm_msg", {"comm_id": session.comm(), "data": {}})
    assert refused.value.status == 409
    assert wait_until(lambda: not any(k for k in kernels if _alive(k)), 10), "the session's kernel outlived its device"
    client.close()


def _alive(identity: tuple[int, int]) -> bool:
    return alive(identity)


# -- the sandbox of a session's kernel ---------------------------------------------------------------

def test_a_sessions_kernel_is_as_confined_as_a_one_shot_kernel(client: Client, server: Server,
                                                                  active_layers: set[str]) -> None:
    probe = confinement_probe(server)
    one_shot = client.eval(probe + "print(probe())")["stdout"].strip()
    code = probe + SLIDER.replace('print("value", change["new"])', "print(probe())")
    session = Session(client, code)
    in_session = _text(session.answers(session.update({"value": 1}))).strip()
    client.stop(session.id)
    session.ended()
    assert_confined_alike(in_session, one_shot, active_layers)


def test_stopping_a_session_kills_its_kernel(client: Client, server: Server) -> None:
    # the kernel says which it is: the processes that appeared meanwhile include the ready kernel
    # forked to replace it, which rightly lives on (and under load is seen, or not, by a snapshot)
    session = Session(client, SLIDER + "import os\nprint('kernel', os.getpid())\n")
    printed = "".join(m["content"]["text"] for m in session.messages if m["msg_type"] == "stream")
    pid = int(printed.split("kernel ")[1].split()[0])
    kernel = next(k for k in kernel_processes(server.processes()) if k[0] == pid)
    assert _alive(kernel)
    client.stop(session.id)
    session.ended()
    assert wait_until(lambda: not _alive(kernel), 10)


def test_a_handlers_exception_is_shown_as_a_traceback_and_the_session_goes_on(client: Client) -> None:
    code = SLIDER.replace('print("value", change["new"])', '1 / (change["new"] - 1)')
    session = Session(client, code)
    answers = session.answers(session.update({"value": 1}))
    errors = [m["content"] for m in answers if m["msg_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ZeroDivisionError"] and errors[0]["traceback"]
    assert session.state == "live"
    assert [m["msg_type"] for m in session.answers(session.update({"value": 2}))] == ["status", "status"]
    client.stop(session.id)
    session.ended()


def test_the_memory_limit_counts_the_whole_session(module_servers: Servers) -> None:
    server = module_servers("serve", "--memory-limit", "150", name="session-memory")
    client = server.client()
    code = ("import ipywidgets as w\nkept = []\ns = w.IntSlider()\n"
            "s.observe(lambda c: kept.append(bytearray(60 * 2**20)), names='value')\ndisplay(s)")
    session = Session(client, code)
    for n in range(1, 6):
        session.answers(session.update({"value": n}), timeout=30)
        if session.state == "ended":
            break
    end = session.ended()
    assert end["reason"] == "memory" and "150 MB" in end["message"]
    assert 2 <= n <= 3, f"ended at input {n}: 60 MB each, 150 MB for the whole session"
    client.close()


def test_a_session_ends_server_stopped_when_serve_stops_and_says_so_after_a_restart(
        start_server: Callable[..., Server]) -> None:
    server = start_server("serve")
    client = server.client()
    session = Session(client)
    server.stop()
    server.start().wait_up()
    client.close()
    session.client = client = server.client()
    end = session.ended(timeout=10)
    assert end == {"reason": "server_stopped",
                   "message": "Session ended: the server was restarted; press Run to start again"}
    client.close()


def test_a_limit_the_kernel_names_in_a_handler_ends_the_session_in_its_words(module_servers: Servers) -> None:
    server = module_servers("serve", "--file-size-limit", "1000", name="session-file-size")
    client = server.client()
    code = SLIDER.replace('print("value", change["new"])', 'open("big.bin", "wb").write(b"x" * 50_000)')
    session = Session(client, code)
    session.answers(session.update({"value": 1}))
    end = session.ended()
    words = "Session ended: it tried to write a file larger than 1000 bytes; press Run to start again"
    assert end == {"reason": "file_size", "message": words}
    assert "FileSizeLimitExceeded" in [m["content"]["ename"] for m in session.messages if m["msg_type"] == "error"]
    client.close()
