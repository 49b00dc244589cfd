"""Limits: wall-clock time (server-wide and per request), output, CPU seconds and memory."""

from __future__ import annotations

import time
from typing import Any

import pytest

from singlecell.client import Client
from tests.servers import Server, Servers, outcome, pid_alive, run_cell, wait_until

STOPPED_WITHIN = 8.0  # seconds to wait for a cell a limit of 1 or 2 s must stop; beyond it, the test fails


@pytest.fixture(scope="module")
def limited(module_servers: Servers) -> Server:
    """A server with a short time limit, a small output limit and a small memory limit."""
    return module_servers("serve", "--time-limit", "2", "--output-limit", "10000", "--memory-limit", "100",
                          name="limited")


@pytest.fixture
def limited_client(limited: Server) -> Any:
    c = limited.client()
    yield c
    c.close()


# -- wall-clock time -------------------------------------------------------------------

@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(100)"], ids=["busy", "sleep"])
def test_the_time_limit_stops_a_cell_with_status_timeout(limited_client: Client, code: str) -> None:
    ended = outcome(limited_client, code, deadline=STOPPED_WITHIN)
    assert ended["status"] == "timeout"
    assert ended["error"]["ename"] == "TimeLimitExceeded"
    assert "2 seconds" in ended["error"]["evalue"]
    assert 1.9 <= ended["took"] < 8, f"stopped after {ended['took']:.1f} s with a 2 s limit"
    limits = ended["limits"]
    assert len(limits) == 1
    assert limits[0]["limit"] == "time" and limits[0]["value"] == 2
    assert limits[0]["ename"] == "TimeLimitExceeded"


def test_a_request_timeout_below_the_server_limit_applies(client: Client) -> None:
    ended = outcome(client, "import time\ntime.sleep(100)", timeout=1, deadline=STOPPED_WITHIN)
    assert ended["status"] == "timeout"
    assert ended["error"]["ename"] == "TimeLimitExceeded"
    assert 0.9 <= ended["took"] < 6, f"stopped after {ended['took']:.1f} s with a 1 s timeout"
    assert [limit["value"] for limit in ended["limits"]] == [1]


def test_a_request_timeout_above_the_server_limit_is_capped_by_it(limited_client: Client) -> None:
    ended = outcome(limited_client, "import time\ntime.sleep(100)", timeout=60, deadline=STOPPED_WITHIN)
    assert ended["status"] == "timeout"
    assert ended["took"] < 8, f"a 60 s request timeout overrode the 2 s server limit ({ended['took']:.1f} s)"


def test_output_before_the_time_limit_is_kept(limited_client: Client) -> None:
    ended = outcome(limited_client, "import time\nprint('started')\ntime.sleep(100)", deadline=STOPPED_WITHIN)
    assert ended["status"] == "timeout"
    assert ended["stdout"] == "started\n"


def read_until(client: Client, request_id: str, predicate: Any, timeout: float = 10.0) -> tuple[str, int]:
    """Long-poll a running cell until ``predicate(its stdout so far)``: (stdout, next seq)."""
    text, after = "", 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.output(request_id, after=after, wait=1)
        text += "".join(m["msg"]["content"]["text"] for m in page["messages"] if m["msg"]["msg_type"] == "stream")
        after = page["next"]
        if predicate(text):
            return text, after
    raise AssertionError(f"the cell did not print what was expected within {timeout} s: {text!r}")


CHILD = ("import subprocess, time\n"
         "p = subprocess.Popen(['sleep', '1000'], start_new_session={new_session})\n"
         "time.sleep(0.2)\n"
         "print(p.pid, p.poll(), flush=True)\n")


def started_child(stdout: str) -> int:
    """The pid the cell printed, after checking the child was still running then."""
    assert len(stdout.split()) == 2, f"the cell printed {stdout!r}"
    pid, returncode = stdout.split()
    assert returncode == "None", f"the child exited at once ({returncode}); the test proves nothing"
    return int(pid)


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "own-session"])
def test_a_child_process_of_a_timed_out_cell_is_killed(limited_client: Client, new_session: bool) -> None:
    request_id = limited_client.execute(CHILD.format(new_session=new_session) + "time.sleep(100)")
    printed, _ = read_until(limited_client, request_id, lambda text: text.endswith("\n"))
    child = started_child(printed)
    # the limit is 2 s: the child must be gone well within 2 + 5 s, however the request ends
    assert wait_until(lambda: not pid_alive(child), 7), f"the cell's child {child} still runs after the time limit"
    assert limited_client.status(request_id) == "timeout"


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "own-session"])
def test_a_child_process_left_by_a_finished_cell_is_killed(client: Client, new_session: bool) -> None:
    ended = outcome(client, CHILD.format(new_session=new_session))
    assert ended["status"] == "done"
    child = started_child(ended["stdout"])
    assert wait_until(lambda: not pid_alive(child), 5), f"the cell's child {child} still runs after the cell ended"


def test_the_next_cell_runs_normally_after_a_timeout(limited_client: Client) -> None:
    looping = limited_client.execute("while True: pass")
    time.sleep(3)  # past the 2 s limit
    ended = outcome(limited_client, "print('fine')")
    assert ended["status"] == "done" and ended["stdout"] == "fine\n"
    assert limited_client.status(looping) == "timeout"


# -- output ----------------------------------------------------------------------------

def test_the_output_limit_truncates_with_a_notice_and_stops_the_cell(limited_client: Client) -> None:
    answer = outcome(limited_client, "for i in range(1000):\n    print('x' * 99)\nprint('done')")
    assert answer["status"] == "aborted"
    assert answer["stdout"].startswith("x" * 99 + "\n")
    assert 5000 <= len(answer["stdout"]) <= 10000
    assert "done" not in answer["stdout"]
    assert "output truncated" in answer["stderr"]
    assert "10000" in answer["stderr"]
    assert answer["error"]["ename"] == "OutputLimitExceeded"
    assert "10000 bytes" in answer["error"]["evalue"]
    assert [(x["limit"], x["value"]) for x in answer["limits"]] == [("output", 10000)]


def test_a_runaway_print_loop_is_stopped_by_the_output_limit_not_the_clock(limited_client: Client) -> None:
    answer = outcome(limited_client, "while True:\n    print('y' * 1000)", deadline=STOPPED_WITHIN)
    assert answer["status"] == "aborted"
    assert answer["error"]["ename"] == "OutputLimitExceeded"
    assert answer["took"] < 1.9, f"the loop ran {answer['took']:.1f} s: stopped by the 2 s clock, not the output"


def test_the_output_limit_also_stops_a_flood_of_displays(limited_client: Client) -> None:
    code = ("from IPython.display import HTML, display\nfor i in range(200):\n"
            "    display(HTML('<p>' + 'y' * 200 + '</p>'))")
    _, items, page = run_cell(limited_client, code)
    assert page["status"] == "aborted"
    errors = [m["msg"]["content"]["ename"] for m in items if m["msg"]["msg_type"] == "error"]
    assert errors == ["OutputLimitExceeded"]
    shown = sum(len(m["msg"]["content"]["data"]["text/html"]) for m in items if m["msg"]["msg_type"] == "display_data")
    assert 0 < shown <= 10000 + 1000
    assert any("output truncated" in m["msg"]["content"].get("text", "") for m in items
               if m["msg"]["msg_type"] == "stream")


# -- CPU and memory --------------------------------------------------------------------

def test_the_cpu_limit_aborts_a_busy_cell(module_servers: Servers) -> None:
    server = module_servers("serve", "--cpu-limit", "1", "--time-limit", "30", name="cpu-limited")
    client = server.client()
    ended = outcome(client, "while True:\n    pass", deadline=STOPPED_WITHIN)
    client.close()
    assert ended["status"] == "aborted"
    assert ended["error"]["ename"] == "CPUTimeLimitExceeded"
    assert "1 CPU second" in ended["error"]["evalue"]
    assert [(x["limit"], x["value"]) for x in ended["limits"]] == [("cpu", 1)]
    assert ended["took"] < 10, f"a 1 s CPU limit stopped the cell only after {ended['took']:.1f} s"


def test_the_memory_limit_stops_the_cell_and_names_the_limit(limited_client: Client) -> None:
    answer = outcome(limited_client, "x = bytearray(500 * 1024 * 1024)")
    assert answer["status"] == "aborted"
    assert answer["error"]["ename"] == "MemoryLimitExceeded"
    assert "100 MB" in answer["error"]["evalue"]
    assert [(x["limit"], x["value"]) for x in answer["limits"]] == [("memory", 100)]


def test_a_memory_error_the_cell_catches_is_not_a_limit(limited_client: Client) -> None:
    answer = outcome(limited_client, "try:\n    x = bytearray(500 * 1024 * 1024)\nexcept MemoryError:\n"
                                     "    print('caught')")
    assert answer["status"] == "done" and answer["stdout"] == "caught\n"
    assert answer["limits"] == []


def test_allocations_under_the_memory_limit_succeed(limited_client: Client) -> None:
    answer = outcome(limited_client, "x = bytearray(40 * 1024 * 1024)\nprint(len(x))")
    assert answer["status"] == "done", answer["error"]
    assert answer["stdout"] == f"{40 * 1024 * 1024}\n"


# -- the sandbox's limits: file size, disk, processes, open files --------------------------

SANDBOX_LIMITS = {
    "file_size": ("open('big', 'wb').write(b'x' * 3_000_000)", "FileSizeLimitExceeded", "1000000 bytes"),
    "disk": ("for i in range(40):\n    open(f'f{i}', 'wb').write(b'x' * 900_000)", "DiskLimitExceeded", "20 MB"),
    "processes": ("import threading, time\nfor i in range(100):\n"
                  "    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()",
                  "ProcessLimitExceeded", "32 processes"),
    "open_files": ("files = [open(f'f{i}', 'w') for i in range(1000)]", "OpenFilesLimitExceeded", "64 files"),
}


@pytest.fixture(scope="module")
def boxed(module_servers: Servers) -> Server:
    return module_servers("serve", "--file-size-limit", "1000000", "--disk-limit", "20", "--process-limit", "32",
                          "--open-files-limit", "64", "--time-limit", "10", name="boxed")


@pytest.mark.parametrize("limit", list(SANDBOX_LIMITS))
def test_a_sandbox_limit_stops_the_cell_and_names_itself(boxed: Server, active_layers: set[str], limit: str) -> None:
    if limit in ("disk", "processes") and "identity" not in active_layers:
        pytest.skip(f"the {limit} limit needs a uid per kernel (run the tests as root)")
    if limit == "disk" and "filesystem" not in active_layers:
        pytest.skip("the disk limit needs the filesystem layer")
    code, ename, words = SANDBOX_LIMITS[limit]
    client = boxed.client()
    try:
        answer = outcome(client, code, deadline=20)
        assert answer["status"] == "aborted", answer
        assert answer["error"]["ename"] == ename, answer["error"]
        assert words in answer["error"]["evalue"]
        assert [x["limit"] for x in answer["limits"]] == [limit]
        after = outcome(client, "print('fine')")
        assert after["status"] == "done" and after["stdout"] == "fine\n"
    finally:
        client.close()


def test_the_memory_limit_holds_for_the_cells_processes_together(module_servers: Servers,
                                                                 active_layers: set[str]) -> None:
    if "identity" not in active_layers:
        pytest.skip("kernels get control groups of their own only with uids of their own (as root)")
    server = module_servers("serve", "--memory-limit", "100", "--disk-limit", "20", name="tree-limited")
    client = server.client()
    try:
        # six children of 90 MB each: every one is within the 100 MB per process, together not
        code = ("import os, time\npids = []\nfor i in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
                "        x = bytearray(90 * 1024 * 1024)\n        for j in range(0, len(x), 4096):\n"
                "            x[j] = 1\n        time.sleep(5)\n        os._exit(0)\n    pids.append(pid)\n"
                "killed = sum(os.waitpid(p, 0)[1] == 9 for p in pids)\nprint(killed)")
        answer = outcome(client, code, deadline=20)
        assert answer["status"] == "done", answer
        assert int(answer["stdout"]) >= 4, f"only {answer['stdout'].strip()} of 6 children were stopped"
        after = outcome(client, "print('fine')")
        assert after["status"] == "done" and after["stdout"] == "fine\n"
    finally:
        client.close()
