"""Several web processes and devices on one PostgreSQL database, as on several hosts."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from singlecell.client import Client
from tests import postgres
from tests.e2e.cluster import Witness, cluster
from tests.e2e.test_web_api import wait_done
from tests.servers import Server, free_port, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def witness() -> Iterator[Witness]:
    w = Witness()
    yield w
    w.close()


def stdout(client: Client, request_id: str) -> str:
    messages = client.output(request_id)["messages"]
    return "".join(m["msg"]["content"]["text"] for m in messages
                   if m["msg"]["msg_type"] == "stream" and m["msg"]["content"]["name"] == "stdout")


def test_two_webs_and_two_devices_run_every_request_exactly_once(
        start_server: Callable[..., Server], witness: Witness) -> None:
    with cluster(start_server) as c:
        webs = [c.web(), c.web()]
        devices = [c.device(), c.device()]
        clients = [w.client() for w in webs]
        tokens = {}
        for i in range(120):
            token = uuid.uuid4().hex
            tokens[clients[i % 2].execute(witness.code(token))] = token
        for request_id, token in tokens.items():
            # read each through the other web process: any of them serves any request
            reader = clients[1 - list(tokens).index(request_id) % 2]
            assert wait_done(reader, request_id)["status"] == "done"
            assert stdout(reader, request_id) == "".join(f"{token} {i}\n" for i in range(3))
        assert sorted(witness.seen.values()) == [1] * len(tokens)  # every cell ran, and once
        assert set(witness.seen) == set(tokens.values())
        # both devices took part
        by_device = c.rows("SELECT device, count(*) FROM requests GROUP BY device")
        assert len(by_device) == 2 and all(n > 0 for _, n in by_device), by_device
        assert len(devices) == 2
        # a file written on one device's host is read through either web process
        request_id = clients[0].execute("open('out.txt', 'w').write('shared bytes')")
        assert wait_done(clients[1], request_id)["status"] == "done"
        assert clients[1].file(f"/files/{request_id}/out.txt") == b"shared bytes"
        assert clients[0].file(f"/files/{request_id}/out.txt") == b"shared bytes"
        for client in clients:
            client.close()


def test_a_device_drains_on_sigterm_and_the_other_takes_the_queue(
        start_server: Callable[..., Server], witness: Witness) -> None:
    with cluster(start_server) as c:
        web = c.web()
        draining = c.device("--shutdown-grace", "30", "--kernels", "2")
        with web.client() as client:
            slow = [client.execute("import time\ntime.sleep(3)\nprint('finished')") for _ in range(2)]
            deadline = time.monotonic() + 20
            while any(client.status(r) != "running" for r in slow):  # both on the draining device
                assert time.monotonic() < deadline, [client.status(r) for r in slow]
                time.sleep(0.05)
            waiting = [client.execute(witness.code(uuid.uuid4().hex, lines=1)) for _ in range(4)]
            draining.stop()  # SIGTERM: it must finish its cells (3 s) and exit 0, claiming nothing more
            for request_id in slow:
                page = wait_done(client, request_id)
                assert page["status"] == "done", page
                assert stdout(client, request_id) == "finished\n"
            assert all(client.status(r) == "queued" for r in waiting)  # it claimed none of them
            c.device()
            for request_id in waiting:
                assert wait_done(client, request_id)["status"] == "done"
            assert sorted(witness.seen.values()) == [1] * 4


def test_a_killed_devices_requests_end_lost_and_readable_on_postgres(
        start_server: Callable[..., Server]) -> None:
    with cluster(start_server) as c:
        web = c.web()
        doomed = c.device()
        with web.client() as client:
            request_id = client.execute("import time\nprint('started', flush=True)\ntime.sleep(60)")
            deadline = time.monotonic() + 20
            while "started" not in json.dumps(client.output(request_id)["messages"]):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            doomed.kill()
            c.devices.remove(doomed)
            page = wait_done(client, request_id, timeout=20)  # lease 3 s; the web tier expires it
            assert page["status"] == "lost"
            names = [m["msg"]["content"].get("ename") for m in page["messages"] if m["msg"]["msg_type"] == "error"]
            assert names == ["DeviceLost"]
            assert "started" in json.dumps(page["messages"])  # what it printed before is kept


def test_the_wake_ups_go_through_postgres(start_server: Callable[..., Server]) -> None:
    """With a poll interval of 30 s, only LISTEN/NOTIFY can make a request run and answer fast."""
    with cluster(start_server) as c:
        flags = ["--poll-interval", "30"]
        web = start_server("web", *c.flags(), *flags)
        c.webs.append(web)
        device = start_server("device", *c.flags(), *flags, "--kernels", "2")
        device.wait_for_log(r"device \S+ running")
        c.devices.append(device)
        with web.client() as client:
            client.eval("1")  # the first cell warms everything up
            started = time.monotonic()
            for _ in range(10):
                assert client.eval("1 + 1")["result"] == {"text/plain": "2"}
            per_cell = (time.monotonic() - started) / 10
            assert per_cell < 2.0, f"{per_cell:.2f} s a cell: wake-ups are not arriving"
            # and a stop reaches the device at once
            request_id = client.execute("import time\nprint('go', flush=True)\ntime.sleep(60)")
            deadline = time.monotonic() + 20
            while "go" not in json.dumps(client.output(request_id, wait=5)["messages"]):
                assert time.monotonic() < deadline
            status, _, _ = client.request("POST", f"/stop/{request_id}", b"", {})
            assert status == 202
            assert wait_done(client, request_id, timeout=10)["status"] == "aborted"



def test_four_processes_started_at_once_on_a_new_database_all_come_up(start_server: Callable[..., Server]) -> None:
    """A supervisor (systemd, compose, Kubernetes) starts every process at the same moment. Two
    web processes and two devices on a new, empty database must all come up: every table of
    the store and of the SQL filestore is made under one lock. Ten rounds, each on a new database."""
    for _ in range(10):
        with postgres.database("sc_start") as url:
            flags = ["--db", url, "--files", url]
            device_flags = [*flags, "--preload", "", "--kernels", "1", "--ready-kernels", "1"]
            started = [start_server("web", *flags, ready=False), start_server("web", *flags, ready=False),
                       start_server("device", *device_flags), start_server("device", *device_flags)]
            for server in started:
                if server.command == "web":
                    server.wait_up()
                else:
                    server.wait_for_log(r"device \S+ running")
            with started[0].client() as client:
                assert client.eval("print(6 * 7)")["stdout"] == "42\n"
            for server in started:
                server.stop()


def test_a_sessions_inputs_reach_its_device_through_any_web_process(start_server: Callable[..., Server]) -> None:
    """On PostgreSQL an input wakes the session's device by NOTIFY, whichever web process took it,
    and the answers reach a page polling another web process."""
    from tests.e2e.test_sessions import Session

    with cluster(start_server) as c:
        webs = [c.web(), c.web()]
        devices = [c.device(), c.device()]
        first, second = (w.client() for w in webs)
        session = Session(first)
        assert session.state == "live"
        for n in range(1, 7):
            session.client = (first, second)[n % 2]  # inputs and reads alternate between the two
            answers = session.answers(session.update({"value": n}), timeout=10)
            assert "".join(m["content"]["text"] for m in answers if m["msg_type"] == "stream") == f"value {n}\n"
        held = c.rows(f"SELECT device FROM sessions WHERE request_id = '{session.id}'")
        assert len(held) == 1 and len(devices) == 2
        first.stop(session.id)
        assert session.ended()["reason"] == "stopped"
        first.close()
        second.close()


def test_a_kernel_and_its_linked_cells_work_across_web_processes_on_postgres(
        start_server: Callable[..., Server]) -> None:
    """A kernel started through one web process is driven through the other: its WebSocket's
    inputs wake its device by NOTIFY, its answers reach a socket on another process, and a linked
    cell sent to either runs in it."""
    from tests.jupyter import KernelSocket, call
    from tests.jupyter import stdout as socket_stdout

    with cluster(start_server) as c:
        webs = [c.web(), c.web()]
        c.device()
        c.device()
        kernel_id = call("POST", webs[0].url + "/api/kernels", {})["id"]
        ws = KernelSocket(f"{webs[1].url.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels")
        assert socket_stdout(ws.execute("total = 40\nprint('on the other web process')")) == \
            "on the other web process\n"
        linked = webs[0].client().eval("total + 2", session=kernel_id)
        assert linked["result"]["text/plain"] == "42"
        reply = ws.reply(ws.send("complete_request", {"code": "tot", "cursor_pos": 3}))
        assert "total" in reply["content"]["matches"]
        ws.close()
        call("DELETE", f"{webs[1].url}/api/kernels/{kernel_id}")


class Cable:
    """A TCP forwarder from a local port to PostgreSQL that the test can unplug: unplugged, it
    closes every connection through it and refuses new ones, as a database restart or a network
    cut does to the processes on the other side."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def plug(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def unplug(self) -> None:
        assert self._listener is not None
        # shutdown first: close() alone would not wake the thread blocked in accept(), which
        # would then take one more connection through
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # unplugged
            server = socket.create_connection(self.target)
            with self._lock:
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _post_eval(url: str, code: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(url + "/eval", data=json.dumps({"code": code}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_a_store_outage_answers_503_and_the_server_serves_again_once_it_is_back(
        start_server: Callable[..., Server]) -> None:
    """While the database cannot be reached, a submit is refused with 503 and Retry-After (never a
    reset or a 500), the device's claims fail without ending it, and afterwards everything runs
    again with no restart: the pool replaces the connections the cut closed."""
    host, port = postgres.ADMIN_URL.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    cable = Cable((host, int(port)))
    cable.plug()
    with postgres.database("sc_outage") as url:
        through = url.replace(f"{host}:{port}", f"127.0.0.1:{cable.port}")
        server = start_server("serve", "--db", through, "--poll-interval", "0.2")
        assert _post_eval(server.url, "print(6 * 7)")[2]["stdout"] == "42\n"
        cable.unplug()
        status, headers, body = _post_eval(server.url, "print(1)")
        assert status == 503, body
        assert body["error"]["code"] == "store_unavailable" and "cannot be reached" in body["error"]["message"]
        assert headers["Retry-After"] == "1"
        server.wait_for_log("claiming queued requests failed", timeout=20)
        cable.plug()
        assert _post_eval(server.url, "print(6 * 7)")[2]["stdout"] == "42\n"
        assert server.running


def test_a_tokens_limits_and_its_callbacks_hold_across_web_processes_on_postgres(
        start_server: Callable[..., Server]) -> None:
    import subprocess
    import sys

    from tests.e2e.test_callbacks import Receiver, verify
    from tests.e2e.test_quotas import call
    from tests.servers import ROOT

    def admin(url: str, *args: str, stdin: str = "") -> str:
        done = subprocess.run([sys.executable, "-m", "singlecell", *args, "--db", url], input=stdin,
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    receiver = Receiver()
    try:
        with cluster(start_server) as c:
            webs = [c.web("--callback-allow", "127.0.0.1"), c.web("--callback-allow", "127.0.0.1")]
            c.device()
            admin(c.url, "user", "create", "pat", stdin="a long password\n")
            secret = admin(c.url, "token", "create", "--user", "pat", "--rate", "3/min", "--max-running", "0",
                           "--cpu-per-day", "0")
            answers = [call(web.url, "/execute", {"code": "print('hooked')", "callback_url": receiver.url}, secret)
                       for web in webs * 3]
            assert [status for status, _, _ in answers] == [202] * 3 + [429] * 3
            assert all(body["error"]["limit"] == "rate" for _, _, body in answers[3:])
            assert c.rows("SELECT count(*) FROM requests")[0][0] == 3  # the refused ones were never stored
            assert wait_until(lambda: len(receiver.got) == 3, 60)
            assert {json.loads(body)["id"] for _, _, body in receiver.got} == {b["id"] for _, _, b in answers[:3]}
            assert all(verify(secret, headers, body) for _, headers, body in receiver.got)
            # the receiver has each POST before its sender records the answer: wait for the records
            assert wait_until(lambda: c.rows("SELECT state, count(*) FROM callbacks GROUP BY state")
                              == [("delivered", 3)], 10)
    finally:
        receiver.close()
