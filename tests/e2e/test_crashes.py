"""A kernel that dies mid-cell: the request ends ``aborted`` saying how, and the server goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtests.soak import fds
from singlecell.client import Client
from tests.security.hostile import follow
from tests.servers import Server, describe, outcome, pid_alive, wait_until

CRASHES = [
    pytest.param("import os\nos._exit(3)", "exited with code 3", id="exit-3"),
    pytest.param("import ctypes\nctypes.string_at(0)", "signal 11 (SIGSEGV)", id="segfault"),
    pytest.param("import os\nos.kill(os.getpid(), 9)", "signal 9 (SIGKILL)", id="kill-9"),
    pytest.param("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", "signal 15 (SIGTERM)", id="sigterm"),
    pytest.param("import os\nos.abort()", "signal 6 (SIGABRT)", id="abort"),
]


@pytest.mark.parametrize(("code", "says"), CRASHES)
def test_a_dying_kernel_ends_the_request_aborted_saying_how(client: Client, code: str, says: str) -> None:
    ended = outcome(client, code)
    assert ended["status"] == "aborted"
    assert ended["error"] is not None
    assert ended["error"]["ename"] == "KernelDied"
    assert says in ended["error"]["evalue"]
    assert ended["messages"][-1]["msg_type"] == "status"
    assert ended["messages"][-1]["content"]["execution_state"] == "idle"


def test_eval_reports_a_dead_kernel_as_aborted(client: Client) -> None:
    answer = client.eval("import ctypes\nctypes.string_at(0)")
    assert answer["status"] == "aborted"
    assert answer["error"]["ename"] == "KernelDied" and "SIGSEGV" in answer["error"]["evalue"]


@pytest.mark.parametrize(("code", "says"), CRASHES)
def test_the_next_request_is_served_normally_after_a_crash(client: Client, server: Server, code: str,
                                                           says: str) -> None:
    assert outcome(client, code)["status"] == "aborted"
    ended = outcome(client, "print(sum(range(10)))")
    assert ended["status"] == "done"
    assert ended["stdout"] == "45\n"
    assert server.running


def test_output_flushed_before_a_crash_is_kept(client: Client) -> None:
    ended = outcome(client, "import os\nprint('last words', flush=True)\nos._exit(1)")
    assert ended["status"] == "aborted"
    assert ended["stdout"] == "last words\n"


def test_files_written_before_a_crash_are_still_collected(client: Client) -> None:
    ended = outcome(client, "import os\nopen('partial.txt', 'w').write('so far')\nos._exit(2)")
    assert ended["status"] == "aborted"
    files = [m for m in ended["messages"] if m["msg_type"] == "extension" and m["content"]["msg_type"] == "files"]
    assert len(files) == 1
    assert [f["name"] for f in files[0]["content"]["content"]["files"]] == ["partial.txt"]


def test_many_crashes_in_a_row_do_not_wear_the_server_out(client: Client) -> None:
    for _ in range(12):
        assert outcome(client, "import os\nos.kill(os.getpid(), 9)")["status"] == "aborted"
    assert outcome(client, "print('alive')")["stdout"] == "alive\n"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def test_a_killed_template_takes_what_its_cells_started_with_it(start_server: Callable[..., Server]) -> None:
    server = start_server("serve")
    client = server.client()
    try:
        code = ("import subprocess, time\np = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
                "print(p.pid, flush=True)\ntime.sleep(100)")
        request_id = client.execute(code)
        printed: list[str] = []

        def child_printed() -> bool:
            page = client.output(request_id, after=0, wait=1)
            printed[:] = [m["msg"]["content"]["text"] for m in page["messages"] if m["msg"]["msg_type"] == "stream"]
            return bool("".join(printed).strip())

        assert wait_until(child_printed, 15), "the cell never printed its child's pid"
        child = int("".join(printed).split()[0])
        assert pid_alive(child)
        (device,) = _children(server.pid)
        (template,) = _children(device)
        os.kill(template, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(child), 10), "a detached child outlived its template"
        assert wait_until(lambda: client.status(request_id) == "aborted", 10)
        ended = outcome(client, "print('fine')")
        assert ended["status"] == "done" and ended["stdout"] == "fine\n"
    finally:
        client.close()


def test_kernel_uids_are_reused_so_a_small_range_serves_many_cells(start_server: Callable[..., Server],
                                                                   active_layers: set[str]) -> None:
    if "identity" not in active_layers or os.geteuid() != 0:
        pytest.skip("kernels get uids of their own only when the server runs as root")
    server = start_server("serve", "--kernel-uids", "200000-200011", "--kernels", "4", "--ready-kernels", "2")
    client = server.client()
    try:
        for i in range(40):  # over three times the range: each uid must come back once its kernel is gone
            ended = outcome(client, f"import os\nprint({i}, 200000 <= os.getuid() <= 200011)")
            assert ended["status"] == "done" and ended["stdout"] == f"{i} True\n", ended
    finally:
        client.close()


def test_a_burst_keeps_at_most_uid_cache_uids_each_with_one_namespace(start_server: Callable[..., Server],
                                                                     active_layers: set[str]) -> None:
    """A burst wants kernels faster than old ones exit; the device waits for them rather than
    claim more uids, so its uid locks, and the template's network namespaces, stay within
    --uid-cache however long it runs. Concurrent kernels still never share a namespace."""
    if not {"identity", "network"} <= active_layers or os.geteuid() != 0:
        pytest.skip("kernels get uids and namespaces of their own only as root, with both layers on")
    server = start_server("serve", "--uid-cache", "4", "--kernels", "2", "--ready-kernels", "2", "--max-sessions", "0")
    client = server.client()
    try:
        code = "import os, time\nprint(os.getuid(), os.readlink('/proc/self/ns/net'))\ntime.sleep(0.2)"
        ids = [client.execute(code) for _ in range(40)]
        seen = [follow(client, request_id, deadline=120) for request_id in ids]
        assert all(s["status"] == "done" for s in seen), [s for s in seen if s["status"] != "done"][:2]
        uid_of: dict[str, set[str]] = {}
        namespaces_of: dict[str, set[str]] = {}
        for s in seen:
            uid, namespace = s["stdout"].split()
            uid_of.setdefault(uid, set()).add(namespace)
            namespaces_of.setdefault(namespace, set()).add(uid)
        assert len(uid_of) <= 4, uid_of
        assert all(len(uids) == 1 for uids in namespaces_of.values()), namespaces_of  # never two uids' kernels
        processes = {pid: Path(f"/proc/{pid}/status").read_text() for pid, _ in server.processes()}
        device = next(pid for pid in processes if "singlecell device" in describe(pid))
        template = next(pid for pid, status in processes.items() if "\nName:\tsc-template" in "\n" + status)
        assert 1 <= fds(device, "/run/singlecell/kernel-uids/") <= 4  # (-1: the process is gone)
        assert 1 <= fds(template, "net:[") <= 4
    finally:
        client.close()
