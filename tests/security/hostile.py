"""What the attack tests share: the limits of the hostile server, finding a kernel's processes
from the host, and the two checks every attack ends with — the attack was contained, and the
server then answers the next request normally."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from singlecell.client import Client
from tests.servers import Server, descendants, ending, outcome, wait_until

# The hostile server's limits: short, so every attack ends fast.
TIME_LIMIT = 3
PROCESS_LIMIT = 32
MEMORY_LIMIT = 200  # MB
DISK_LIMIT = 20  # MB
FILE_SIZE_LIMIT = 1_000_000
OUTPUT_LIMIT = 20_000
OPEN_FILES_LIMIT = 256  # the default
MAX_OUTPUT_FILES = 100  # the default
HOSTILE_FLAGS = (
    "--time-limit", str(TIME_LIMIT), "--process-limit", str(PROCESS_LIMIT), "--memory-limit", str(MEMORY_LIMIT),
    "--disk-limit", str(DISK_LIMIT), "--file-size-limit", str(FILE_SIZE_LIMIT), "--output-limit", str(OUTPUT_LIMIT),
    "--kernels", "4", "--ready-kernels", "2", "--kernel-uids", "202000-202999",
)
# Not the default range (200000-200999): other servers of the test run use that, and two
# devices on one host hand out the same uids (see test_processes.py), so an attack that kills
# every process of its uid would reach their kernels too.
KERNEL_UIDS = range(202000, 203000)
ENDED_WITHIN = TIME_LIMIT + 12.0  # seconds any attack may take, start to finish, before the test fails
LEFTOVER_GRACE = 5.0  # seconds a finished request's processes get to disappear


def require_layers(active: set[str], *names: str) -> None:
    """Skip, saying why, when a sandbox layer the attack is meant to meet is off on this host."""
    missing = [name for name in names if name not in active]
    if missing:
        pytest.skip(f"sandbox layer(s) {', '.join(missing)} not active here (see `singlecell doctor`)")


def assert_serves_normally(client: Client) -> None:
    """The end of every attack: the next request runs as if nothing had happened."""
    ended = outcome(client, "print('fine')", deadline=30)
    assert ended["status"] == "done", f"the request after the attack ended {ended['status']}: {ended['error']}"
    assert ended["stdout"] == "fine\n" and ended["stderr"] == "" and ended["error"] is None, ended
    assert ended["limits"] == []


def assert_limit(ended: dict[str, Any], ename: str, limit: str, value: float, status: str = "aborted") -> None:
    """The limit contract: an ``error`` naming the limit, whose evalue states it, a ``limit``
    extension saying the same, and the matching status."""
    assert ended["error"] is not None, f"no error: the attack was not stopped by a limit ({ended['status']})"
    assert ended["error"]["ename"] == ename, f"stopped by {ended['error']['ename']}: {ended['error']['evalue']}"
    words = str(int(value)) if float(value).is_integer() else str(value)
    assert words in ended["error"]["evalue"], f"the limit, {words}, is not in {ended['error']['evalue']!r}"
    assert [(x["limit"], x["value"], x["ename"]) for x in ended["limits"]] == [(limit, value, ename)], ended["limits"]
    assert ended["status"] == status


def printed_json(ended: dict[str, Any]) -> Any:
    """What a cell printed as JSON: the last line of its stdout that is JSON."""
    for line in reversed(ended["stdout"].strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise AssertionError(f"the cell printed no JSON ({ended['status']}: {ended['error']}): {ended['stdout'][-300:]!r}")


# -- processes, seen from the host (we run as root and see every one) ---------------------

def _status_field(pid: int, name: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def running_as(server: Server, uid: int) -> list[int]:
    """Running processes (not zombies) of ``server`` whose real uid is ``uid``. Other servers on
    this host (the other tests' servers, say) hand out the same kernel uids: only processes
    below this server's own process count. A process that left the kernel's tree is re-parented
    to the template or the device (both subreapers), so it is still below the server."""
    found = []
    for pid, _ in descendants(server.pid):
        uids, state = _status_field(pid, "Uid"), _status_field(pid, "State")
        if uids is not None and int(uids.split()[0]) == uid and state is not None and state[0] not in "ZX":
            found.append(pid)
    return found


def assert_nothing_left(server: Server, uid: int, timeout: float = LEFTOVER_GRACE) -> None:
    """No process of the attacking kernel's uid runs in ``server`` once its request has ended.
    Every live kernel has a uid of its own, and a freed uid goes to the back of a queue of 1000,
    so none of these can be a ready kernel of a later request."""
    assert uid in KERNEL_UIDS, f"the cell ran as uid {uid}, not a kernel uid: the identity layer is off"
    if wait_until(lambda: not running_as(server, uid), timeout):
        return
    left = []
    for pid in running_as(server, uid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:60].decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            left.append(f"{pid} (state {stat[0]}, parent {stat[1]}, policy {stat[38]}, "
                        f"{_status_field(pid, 'Name')}: {cmdline})")
    raise AssertionError(f"processes of the finished request's uid {uid} still run: {left}")


def server_pids(server: Server) -> dict[str, int]:
    """The server's own processes: the web tier, the device and the kernel template (the device's
    child: a kernel the template has just forked has the template's name and command line until
    it names itself)."""
    pids = {"web": server.pid}
    templates: dict[int, int] = {}  # pid → its parent
    for pid, _ in descendants(server.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"singlecell\0device" in cmdline:
            pids["device"] = pid
        elif b"device.template" in cmdline and _status_field(pid, "Name") == "sc-template":
            templates[pid] = parent
    for pid, parent in templates.items():
        if parent == pids.get("device"):
            pids["template"] = pid
    assert set(pids) == {"web", "device", "template"}, f"cannot find the server's processes: {pids}"
    return pids


def assert_server_alive(server: Server, before: dict[str, int]) -> None:
    """The same web, device and template processes still run."""
    assert server.running, f"the server exited; its log:\n{server.log_tail()}"
    now = server_pids(server)
    assert now == before, f"server processes changed from {before} to {now}: one was killed or restarted"


def read_stdout_until(client: Client, request_id: str, text: str, timeout: float = 15.0) -> str:
    """Long-poll a running request until its stdout contains ``text``; its stdout so far."""
    printed, after = "", 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.output(request_id, after=after, wait=1)
        printed += "".join(m["msg"]["content"]["text"] for m in page["messages"]
                           if m["msg"]["msg_type"] == "stream" and m["msg"]["content"]["name"] == "stdout")
        after = page["next"]
        if text in printed:
            return printed
        if page["done"]:
            break
    raise AssertionError(f"request {request_id} did not print {text!r} (printed {printed!r})")


def follow(client: Client, request_id: str, deadline: float = ENDED_WITHIN) -> dict[str, Any]:
    """How a request already queued ends, in the shape of :func:`tests.servers.outcome`."""
    started = time.monotonic()
    msgs: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.output(request_id, after=after, wait=max(0.1, min(5.0, started + deadline - time.monotonic())))
        msgs += [item["msg"] for item in page["messages"]]
        after = page["next"]
        if page["done"]:
            break
        if time.monotonic() > started + deadline:
            raise AssertionError(f"request {request_id} is still {page['status']!r} after {deadline:.0f} s; "
                                 f"its messages so far: {[m['msg_type'] for m in msgs]}")
    return ending(request_id, page["status"], time.monotonic() - started, msgs)


VICTIM = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(2)\nprint('victim ok')"


def start_victim(client: Client) -> tuple[str, int]:
    """A cell running at the same time as an attack: (its request id, its pid)."""
    request_id = client.execute(VICTIM)
    return request_id, int(read_stdout_until(client, request_id, "\n").split()[0])


def assert_victim_untouched(client: Client, request_id: str, pid: int) -> dict[str, Any]:
    """The victim ran to its end as if alone; how it ended."""
    ended = follow(client, request_id)
    assert ended["status"] == "done", f"the victim ended {ended['status']}: {ended['error']}"
    assert ended["stdout"] == f"{pid}\nvictim ok\n" and ended["stderr"] == "", ended
    return ended


def tmp_skeleton() -> list[str]:
    """What a fresh kernel's /tmp holds: nothing, except where this server's Python lives under
    /tmp (a checkout there, as in CI): the filesystem layer binds it at its path, inside /tmp."""
    import sys

    from tests.servers import ROOT

    return sorted({p.relative_to("/tmp").parts[0] for p in (ROOT.resolve(), Path(sys.prefix).resolve())
                   if p.is_relative_to("/tmp")})


def confinement_probe(server: Server) -> str:
    """Code that defines ``probe()``: one line of what confines the kernel it runs in — its uid,
    its NoNewPrivs and Seccomp modes, whether the server's port answers it, whether the server's
    data dir is there. Run in a one-shot cell and in a kept kernel, the two lines must agree."""
    return f"""\
import os, socket
def probe():
    status = open('/proc/self/status').read()
    seccomp = [l.split()[1] for l in status.splitlines() if l.startswith(('Seccomp:', 'NoNewPrivs:'))]
    try:
        socket.create_connection(('127.0.0.1', {server.port}), 1).close()
        net = 'open'
    except OSError:
        net = 'closed'
    return f"{{os.getuid()}} {{' '.join(seccomp)}} {{net}} {{os.path.exists({str(server.data_dir)!r})}}"
"""


def assert_confined_alike(kept: str, one_shot: str, active_layers: set[str]) -> None:
    """A kernel kept alive (a session, a Jupyter client's) is as confined as a one-shot kernel:
    ``probe()``'s lines agree but for the uid, and each active layer shows."""
    seen = kept.split()
    assert seen[1:] == one_shot.split()[1:]
    if "syscalls" in active_layers:
        assert seen[1:3] == ["1", "2"]  # NoNewPrivs, Seccomp (filter mode)
    if "network" in active_layers:
        assert seen[3] == "closed"
    if "filesystem" in active_layers:
        assert seen[4] == "False"
    if "identity" in active_layers:
        assert int(seen[0]) != 0
