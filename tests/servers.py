"""Real ``singlecell`` processes for the end-to-end tests: start one, wait until it serves, stop it
and prove it left nothing behind.

Every process started here carries a marker in its environment (``E2E_SERVER_MARK``), which the
device, the kernel template, every kernel and whatever a cell starts inherit; with the parent
chain seen while the server ran, that finds every process a server owns, even the ones that were
re-parented after their parent died. A server's stdout and stderr go to a log file, which the
conftest prints when a test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from singlecell.client import Client, ClientError

_UID_BASES = itertools.count(210000, 100)  # kernel uid ranges, one per Server

ROOT = Path(__file__).resolve().parent.parent
MARK_VAR = "E2E_SERVER_MARK"  # not SINGLECELL_*: `serve` hands its device only its own settings of those
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LEFTOVER_GRACE = 5.0  # seconds for kernels to follow their template after it exited

STARTED: list[Server] = []  # every server of this test run, for the failure report


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes, from /proc ---------------------------------------------------------------

Identity = tuple[int, int]  # (pid, start time in clock ticks): a pid may be reused, this may not


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _read_proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def alive(identity: Identity) -> bool:
    """True while the process runs (a zombie has finished: only its exit status is left)."""
    stat = _stat(identity[0])
    return stat is not None and stat[2] == identity[1] and stat[0] not in ("Z", "X")


def pid_alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def describe(pid: int) -> str:
    cmdline = _read_proc(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
    return f"{pid} ({cmdline or '?'})"


def descendants(root: int) -> set[Identity]:
    """The running processes below ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    found: set[Identity] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        found.add((pid, stat[2]))
        todo.extend(children.get(pid, []))
    return found


def marked(mark: str, data_dir: Path) -> set[Identity]:
    """Running processes whose environment carries ``mark``, or that carry no mark at all and
    name ``data_dir`` on their command line (several servers may share a data dir; each has
    its own mark)."""
    mark_prefix = f"{MARK_VAR}=".encode()
    found: set[Identity] = set()
    for pid in _pids():
        if pid == os.getpid():
            continue
        marks = [v for v in _read_proc(pid, "environ").split(b"\0") if v.startswith(mark_prefix)]
        if marks:
            ours = marks[0] == mark_prefix + mark.encode()
        else:
            ours = str(data_dir).encode() in _read_proc(pid, "cmdline")
        if ours:
            stat = _stat(pid)
            if stat is not None and stat[0] not in ("Z", "X"):
                found.add((pid, stat[2]))
    return found


def kernel_processes(identities: set[Identity]) -> set[Identity]:
    """The kernel template and the kernels forked from it, among ``identities``."""
    return {i for i in identities if b"device.template" in _read_proc(i[0], "cmdline")}


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- one server ----------------------------------------------------------------------------

class Server:
    """``python -m singlecell COMMAND --data-dir DATA_DIR [--port PORT] FLAGS…`` as a subprocess.

    The process gets a session of its own, so a signal to its process group is what Ctrl-C in
    a terminal would send, and Ctrl-C in pytest's terminal does not reach it.
    """

    def __init__(self, command: str, data_dir: Path, log_path: Path, flags: Sequence[str] = (),
                 port: int | None = None, program: Sequence[str] = ("-m", "singlecell")) -> None:
        self.command = command
        self.program = list(program)  # what Python runs: the package, or a script that wraps its CLI
        self.data_dir = Path(data_dir).absolute()
        self.log_path = log_path
        self.flags = list(flags)
        self.port = port if port is not None or command == "device" else free_port()
        self.mark = uuid.uuid4().hex
        self.uid_base = next(_UID_BASES)
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[Identity] = set()  # every process of this server seen while it ran
        self.started_at = 0.0
        self.stopped_at: float | None = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else "-"
        return f"<singlecell {self.command} pid {pid} port {self.port} data {self.data_dir}>"

    @property
    def url(self) -> str:
        assert self.port is not None, "a device has no URL"
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def db_path(self) -> Path:
        return self.data_dir / "singlecell.db"

    def client(self, timeout: float = 120.0) -> Client:
        return Client(self.url, timeout=timeout)

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLECELL_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env[MARK_VAR] = self.mark
        env["PYTHONUNBUFFERED"] = "1"
        args = [sys.executable, *self.program, self.command, "--data-dir", str(self.data_dir)]
        if self.port is not None:
            args += ["--port", str(self.port)]
        args += self.flags
        if self.command in ("serve", "device") and "--kernel-uids" not in self.flags:
            # servers of a test session run side by side: each gets kernel uids of its own
            args += ["--kernel-uids", f"{self.uid_base}-{self.uid_base + 99}"]
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()
        STARTED.append(self)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_running(self, doing: str) -> None:
        if not self.running:
            raise AssertionError(f"{self} exited with code {self.proc.returncode if self.proc else None} "
                                 f"while {doing}; its log:\n{self.log_tail()}")

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``GET /health`` answers."""
        client = self.client(timeout=5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._check_running("starting")
                try:
                    client.health()
                    return
                except (OSError, ClientError, ValueError):
                    client.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self} did not answer /health within {timeout:.0f} s")
                time.sleep(0.05)
        finally:
            client.close()

    def wait_serving(self, url: str | None = None, timeout: float = START_TIMEOUT) -> None:
        """Wait until a first cell runs (through ``url``, for a device: a web tier's URL)."""
        client = Client(url or self.url, timeout=timeout)
        try:
            answer = client.eval("print('ready')")
            self._check_running("running its first cell")
            assert answer["status"] == "ok" and answer["stdout"] == "ready\n", f"first cell: {answer}"
        finally:
            client.close()
        self.snapshot()

    def snapshot(self) -> set[Identity]:
        """Note the processes this server has now (call while it runs, to catch them all)."""
        if self.proc is not None and self.running:
            self.seen |= descendants(self.proc.pid)
        self.seen |= marked(self.mark, self.data_dir)
        return {i for i in self.seen if alive(i)}

    def processes(self) -> set[Identity]:
        """This server's running processes, other than the server itself."""
        current = self.snapshot()
        return {i for i in current if self.proc is None or i[0] != self.proc.pid}

    def leftovers(self) -> set[Identity]:
        return {i for i in self.seen | marked(self.mark, self.data_dir) if alive(i)}

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, whole_group: bool = False,
             timeout: float = STOP_TIMEOUT) -> None:
        """Send ``sig`` (to the process group with ``whole_group``, as Ctrl-C does); assert the
        server exits with code 0 within ``timeout`` s and leaves no process behind."""
        assert self.proc is not None
        self._check_running(f"about to be sent {sig.name}")
        self.snapshot()
        if whole_group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(f"{self} did not exit within {timeout:.0f} s of {sig.name}") from None
        finally:
            self.stopped_at = time.monotonic()
        if code != 0:
            self.kill_all()
            raise AssertionError(f"{self} exited with code {code} after {sig.name}, not 0")
        wait_until(lambda: not self.leftovers(), LEFTOVER_GRACE)
        left = self.leftovers()
        if left:
            names = ", ".join(describe(pid) for pid, _ in sorted(left))
            self.kill_all()
            raise AssertionError(f"{self} exited but left processes running: {names}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal only the server process (``kill -9`` by default) and reap it."""
        assert self.proc is not None
        self.snapshot()
        self.proc.send_signal(sig)
        self.proc.wait(STOP_TIMEOUT)
        self.stopped_at = time.monotonic()

    def kill_all(self) -> None:
        """SIGKILL the server and every process it owns (cleanup after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            self.snapshot()
            self.proc.kill()
            self.proc.wait()
            self.stopped_at = time.monotonic()
        for pid, start in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                if alive((pid, start)):
                    os.kill(pid, signal.SIGKILL)

    # -- looking inside --------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            self._check_running(f"waiting for {pattern!r} in its log")
            match = regex.search(self.log_text())
            if match:
                found.append(match)
            return match is not None

        if not wait_until(seen, timeout):
            raise AssertionError(f"{self} did not log {pattern!r} within {timeout:.0f} s")
        return found[0]

    def db_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows from the server's SQLite store, read-only, as an outsider would see them."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def request_count(self) -> int:
        return int(self.db_rows("SELECT count(*) FROM requests")[0][0])


class Servers:
    """Starts servers in one folder and stops every one still running at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.servers: list[Server] = []

    def __call__(self, command: str = "serve", *flags: str, data_dir: Path | None = None,
                 port: int | None = None, ready: bool = True, name: str | None = None,
                 program: Sequence[str] = ("-m", "singlecell")) -> Server:
        """Start ``singlecell COMMAND FLAGS…``; with ``ready``, wait until it answers (web),
        and until a first cell ran (serve)."""
        name = name or f"{command}-{len(self.servers) + 1}"
        for attempt in range(3):
            server = Server(command, data_dir or self.folder / f"{name}-data", self.folder / f"{name}.log",
                            flags, port=port, program=program)
            self.servers.append(server)
            server.start()
            if not ready or command == "device":
                return server
            try:
                server.wait_up()
            except AssertionError:
                # another process may have taken the free port between our look and its bind
                taken = not server.running and "cannot listen on" in server.log_text()
                if port is None and taken and attempt < 2:
                    continue
                raise
            if command == "serve":
                server.wait_serving()
            return server
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        """Stop the servers still running, asserting each stops cleanly."""
        problems = []
        for server in reversed(self.servers):
            if server.running:
                try:
                    server.stop()
                except AssertionError as exc:
                    problems.append(str(exc))
            else:
                server.kill_all()  # a test killed it: its kernels must not outlive the test run
        if problems:
            raise AssertionError("\n".join(problems))


def active_between(start: float, end: float) -> Iterator[Server]:
    """The servers that ran at some moment between ``start`` and ``end`` (monotonic clock)."""
    for server in STARTED:
        if server.started_at <= end and (server.stopped_at is None or server.stopped_at >= start):
            yield server


# -- talking to a server -------------------------------------------------------------------

def run_cell(client: Client, code: str, files: dict[str, bytes] | None = None, timeout: float | None = None,
             deadline: float = 120.0) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Queue a cell and read ``/output`` until done: (id, every ``{seq, msg}``, the last page)."""
    request_id = client.execute(code, files, timeout)
    items: list[dict[str, Any]] = []
    after = 0
    give_up = time.monotonic() + deadline
    while True:
        page = client.output(request_id, after=after, wait=max(0.1, min(10.0, give_up - time.monotonic())))
        items += page["messages"]
        after = page["next"]
        if page["done"]:
            return request_id, items, page
        if time.monotonic() > give_up:
            kinds = [item["msg"]["msg_type"] for item in items]
            raise AssertionError(f"request {request_id} is still {page['status']!r} after {deadline:.0f} s; "
                                 f"its messages so far: {kinds}")


def outcome(client: Client, code: str, files: dict[str, bytes] | None = None, timeout: float | None = None,
            deadline: float = 30.0) -> dict[str, Any]:
    """Run a cell through ``/execute`` and ``/output`` (failing after ``deadline`` s, where
    ``/eval`` would hang on) and tell how it ended: ``{id, status (the store's: done, error,
    timeout, aborted, lost), took, stdout, stderr, error (the first error's content, or None),
    limits (the contents of limit extensions), messages}``. A client that runs cells another way
    (``tests.jupyter.KernelCells``, through the kernel API) tells it itself."""
    through_kernels = getattr(client, "kernel_outcome", None)
    if through_kernels is not None:
        return through_kernels(code, files, timeout, deadline)  # type: ignore[no-any-return]
    started = time.monotonic()
    request_id, items, page = run_cell(client, code, files, timeout, deadline)
    return ending(request_id, page["status"], time.monotonic() - started, [item["msg"] for item in items])


def ending(request_id: str, status: str, took: float, msgs: list[dict[str, Any]]) -> dict[str, Any]:
    """How a request ended, from its messages: see :func:`outcome`."""
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    return {
        "id": request_id,
        "status": status,
        "took": took,
        "stdout": "".join(m["content"]["text"] for m in msgs
                          if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"),
        "stderr": "".join(m["content"]["text"] for m in msgs
                          if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"),
        "error": errors[0] if errors else None,
        "limits": [m["content"]["content"] for m in msgs
                   if m["msg_type"] == "extension" and m["content"]["msg_type"] == "limit"],
        "messages": msgs,
    }


def raw_exchange(port: int, head: bytes, body_parts: Sequence[bytes] = (),
                 timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send an HTTP request byte for byte, stopping quietly if the server stops reading or
    closes, then read its answer: (status, lower-cased headers, body). Raises ``ConnectionError``
    when the server closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
                data += chunk
        if b"\r\n\r\n" not in data:
            raise ConnectionError(f"the server closed the connection without an answer (got {data!r})")
        top, _, body = data.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        with contextlib.suppress(ConnectionResetError):
            while len(body) < length and (chunk := sock.recv(65536)):
                body += chunk
        return int(lines[0].split()[1]), headers, body
