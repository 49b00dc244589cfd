"""Nothing acknowledged is lost: a killed device's requests end ``lost`` with a readable error,
queued requests wait for a device, and results outlive a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from singlecell.client import Client
from tests.e2e.test_streaming import texts
from tests.servers import Server, Servers, describe, kernel_processes, outcome, pid_alive, wait_until

LEASE = "2"  # seconds: a dead device's claims expire this soon
SLEEPER = ("import subprocess, time\n"
           "child = subprocess.Popen(['sleep', '1000'])\n"
           "print('sleeping', child.pid, flush=True)\n"
           "time.sleep(60)")


def stream_text(client: Client, request_id: str) -> str:
    return texts(client.output(request_id)["messages"])


@pytest.fixture(scope="module")
def web(module_servers: Servers) -> Server:
    """A web tier on its own; devices come and go on its data dir."""
    return module_servers("web", "--lease-seconds", LEASE, name="web")


@pytest.fixture(scope="module")
def lost(module_servers: Servers, web: Server) -> dict[str, Any]:
    """A device runs a sleeping cell (which started a child process) and is killed with SIGKILL."""
    device = module_servers("device", "--lease-seconds", LEASE, data_dir=web.data_dir, name="device-a")
    device.wait_serving(url=web.url)
    client = web.client()
    request_id = client.execute(SLEEPER)
    assert wait_until(lambda: "sleeping" in stream_text(client, request_id), 15), "the cell did not start"
    child = int(stream_text(client, request_id).split()[1])
    kernels = kernel_processes(device.processes())
    assert kernels, "no kernel processes seen before the kill"
    device.kill()
    killed_at = time.monotonic()
    ended = None
    deadline = killed_at + 20
    while time.monotonic() < deadline:
        page = client.output(request_id, wait=1)
        if page["done"]:
            ended = page
            break
    took = time.monotonic() - killed_at
    client.close()
    return {"id": request_id, "page": ended, "took": took, "kernels": kernels, "child": child, "device": device}


def test_a_killed_devices_request_ends_lost_within_seconds(lost: dict[str, Any]) -> None:
    assert lost["page"] is not None, "the request did not end within 20 s of its device's death"
    assert lost["page"]["status"] == "lost"
    assert lost["took"] < 8, f"declared lost only {lost['took']:.1f} s after the kill, with a {LEASE} s lease"


def test_a_lost_request_says_so_in_a_readable_error(lost: dict[str, Any], web: Server) -> None:
    client = web.client()
    page = client.output(lost["id"])
    client.close()
    errors = [m["msg"]["content"] for m in page["messages"] if m["msg"]["msg_type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["ename"] == "DeviceLost"
    assert "again" in errors[0]["evalue"]
    assert errors[0]["traceback"]
    assert [m["seq"] for m in page["messages"]] == list(range(1, len(page["messages"]) + 1))
    assert all(m["msg"]["parent_header"]["msg_id"] == lost["id"] for m in page["messages"])
    texts = [m["msg"]["content"]["text"] for m in page["messages"] if m["msg"]["msg_type"] == "stream"]
    assert texts and texts[0].startswith("sleeping")  # what was said before the death is kept


def test_nothing_acknowledged_stays_running_after_its_device_died(lost: dict[str, Any], web: Server) -> None:
    unfinished = web.db_rows("SELECT id, status FROM requests WHERE status IN ('queued', 'running')")
    assert unfinished == []
    client = web.client()
    assert client.health()["queued"] == 0
    client.close()


def test_a_killed_device_leaves_no_template_or_kernel_running(lost: dict[str, Any]) -> None:
    def left() -> list[int]:
        return [pid for pid, _ in lost["kernels"] if pid_alive(pid)]

    assert wait_until(lambda: not left(), 5), f"still running: {[describe(pid) for pid in left()]}"


def test_a_killed_device_leaves_no_process_its_cells_started(lost: dict[str, Any]) -> None:
    child = lost["child"]
    assert wait_until(lambda: not pid_alive(child), 5), f"the cell's child {describe(child)} outlived its device"


def test_a_new_device_serves_after_one_was_lost(lost: dict[str, Any], web: Server,
                                                start_server: Callable[..., Server]) -> None:
    device = start_server("device", "--lease-seconds", LEASE, data_dir=web.data_dir, name="device-b")
    device.wait_serving(url=web.url)
    client = web.client()
    answer = client.eval("print('new device')")
    client.close()
    assert answer["status"] == "ok" and answer["stdout"] == "new device\n"


def test_a_request_queued_while_no_device_runs_is_run_when_one_starts(start_server: Callable[..., Server]) -> None:
    web_only = start_server("web", "--lease-seconds", LEASE)
    client = web_only.client()
    request_id = client.execute("print('finally')")
    time.sleep(1.5)
    assert client.status(request_id) == "queued"
    assert client.health()["queued"] == 1
    start_server("device", "--lease-seconds", LEASE, data_dir=web_only.data_dir)
    assert wait_until(lambda: client.output(request_id, wait=1)["done"], 60, interval=0)
    assert client.status(request_id) == "done"
    assert stream_text(client, request_id) == "finally\n"
    client.close()


# -- restarts ------------------------------------------------------------------------------

def test_results_stay_readable_after_serve_restarts(start_server: Callable[..., Server]) -> None:
    first = start_server("serve")
    client = first.client()
    code = ("from IPython.display import HTML, display\nprint('kept')\ndisplay(HTML('<b>k</b>'))\n"
            "_ = open('kept.bin', 'wb').write(bytes(range(256)))\n7")
    answer = client.eval(code)
    assert answer["status"] == "ok" and len(answer["files"]) == 1
    before = client.output(answer["id"])
    file_path = answer["files"][0]["url"].removeprefix(client.url)
    client.close()
    first.stop()

    second = start_server("serve", data_dir=first.data_dir)
    client = second.client()
    after = client.output(answer["id"])
    assert after == before
    assert client.file(file_path) == bytes(range(256))
    assert client.eval("print('and new ones run')")["stdout"] == "and new ones run\n"
    client.close()


def test_a_cell_running_when_serve_stops_ends_aborted(start_server: Callable[..., Server]) -> None:
    first = start_server("serve", "--shutdown-grace", "1")
    client = first.client()
    request_id = client.execute("import time\nprint('working', flush=True)\ntime.sleep(100)")
    assert wait_until(lambda: "working" in stream_text(client, request_id), 15)
    client.close()
    first.stop()  # asserts: exit 0 within 15 s, nothing left running

    second = start_server("serve", data_dir=first.data_dir)
    client = second.client()
    ended = outcome(client, "1")  # the new server works ...
    assert ended["status"] == "done"
    page = client.output(request_id)  # ... and the old cell has ended, saying why
    client.close()
    assert page["status"] == "aborted" and page["done"] is True
    errors = [m["msg"]["content"] for m in page["messages"] if m["msg"]["msg_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ServerStopped"]


def test_requests_queued_when_serve_stops_run_after_it_restarts(start_server: Callable[..., Server]) -> None:
    first = start_server("serve", "--kernels", "1", "--ready-kernels", "1", "--shutdown-grace", "0")
    client = first.client()
    running = client.execute("import time\ntime.sleep(100)")
    assert wait_until(lambda: client.status(running) == "running", 15)
    waiting = [client.execute(f"print('queued {i}')") for i in range(3)]
    assert [client.status(r) for r in waiting] == ["queued"] * 3
    client.close()
    first.stop()

    second = start_server("serve", data_dir=first.data_dir)
    client = second.client()
    for i, request_id in enumerate(waiting):
        assert wait_until(lambda r=request_id: client.output(r, wait=1)["done"], 30, interval=0)
        assert client.status(request_id) == "done"
        assert stream_text(client, request_id) == f"queued {i}\n"
    client.close()
