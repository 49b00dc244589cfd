"""Benchmark of live sessions (open ipywidgets): an input's round trip, what idle sessions hold, and
what they cost one-shot cells; on SQLite and on PostgreSQL, each its own ``singlecell serve``.

    python loadtests/interact_bench.py                                  # SQLite, then PostgreSQL if reachable
    python loadtests/interact_bench.py --inputs 50 --sessions 5 --backends sqlite

For each database it starts a server in a temporary folder and measures, over HTTP:

1. the round trip of a widget input, as a client of the API sees it: a long-poll on ``/output``
   is already waiting (a thread and a connection of its own) when ``POST /input`` sends a
   slider's new value; the trip ends when a poll returns the ``idle`` parented to that input
   (the embed script's ``/watch`` is the same poll for all of a page's cells). ``--inputs`` in
   sequence on one session, for an observer that prints the value and for an ``interact``
   function; the trip's parts by the dates the kernel puts on its busy and idle. The reference is
   ``GET /health`` on the same server: ratios are to its p50. The CPU ms per input of the web
   process, the device, the kernel template, the kernels (the template's children, with those it
   reaped) and, on PostgreSQL, the database's server processes, from ``/proc``; and the share of
   the CPUs other work on the machine took meanwhile, to judge the noise.
2. ``--sessions`` idle sessions (a slider each, each read by a long-poll as an open page reads
   it): each session kernel's private memory and Pss (``/proc/<pid>/smaps_rollup``), beside a
   ready kernel's and the template's; the CPU the server spends per second holding them; and
   how many such sessions MemAvailable would hold, by a straight line.
3. ``POST /eval`` of ``1+1`` with no session, with the idle sessions held open, and with none
   again (the drift of the machine during the run): p50/p90/p99 one at a time, requests/s at
   ``--concurrency``.

Prints markdown tables and writes every figure as JSON to ``loadtests/results/interact-<time>.json``.
The servers run in sessions of their own; each one's whole process tree is ended before the
script exits, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.harness import free_port  # noqa: E402
from loadtests.library_bench import database_pids, total_cpu_ms  # noqa: E402
from singlecell.client import Client, ClientError  # noqa: E402

SLIDER = """\
import os
import ipywidgets as w
s = w.IntSlider(max=100)
s.observe(lambda change: print("value", change["new"]), names="value")
print("pid", os.getpid())
display(s)
"""
INTERACT = """\
import os
from ipywidgets import interact
print("pid", os.getpid())

@interact(x=(0, 100))
def f(x=50):
    print(x * x)
"""
CASES = {  # name → (code, what the kernel prints for the value v)
    "slider, an observer prints the value": (SLIDER, lambda v: f"value {v}\n"),
    "interact, f(x) prints x*x": (INTERACT, lambda v: f"{v * v}\n"),
}
POLL_WAIT = 25.0  # s, a long-poll's wait, as the page's
TICK = os.sysconf("SC_CLK_TCK")
CPUS = len(os.sched_getaffinity(0))
MB = 1024 * 1024

# -- processes, from /proc ---------------------------------------------------------------------

Identity = tuple[int, int]  # (pid, start time): a pid may be reused, this may not


def stat(pid: int) -> tuple[str, int, int, float, float] | None:
    """(state, parent, start time, CPU ms, CPU ms of reaped children) of a process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw[raw.rfind(")") + 2:].split()
    return f[0], int(f[1]), int(f[19]), (int(f[11]) + int(f[12])) * 1000 / TICK, (int(f[13]) + int(f[14])) * 1000 / TICK


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def describe(pid: int) -> str:
    return cmdline(pid).replace(b"\0", b" ").decode(errors="replace").strip()


def running(pid: int) -> bool:
    s = stat(pid)
    return s is not None and s[0] not in "ZX"


def children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := stat(int(entry))) is not None and s[0] not in "ZX":
            kids.setdefault(s[1], []).append(int(entry))
    return kids


def below(root: int) -> list[int]:
    """Every running process under ``root``, however deep."""
    kids, found, todo = children(), [], [root]
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


def alive(identity: Identity) -> bool:
    s = stat(identity[0])
    return s is not None and s[2] == identity[1] and s[0] not in "ZX"


def memory(pid: int) -> dict[str, float]:
    """MB from ``smaps_rollup``: private (clean + dirty), Pss, RSS."""
    kb: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            kb[name] = int(value.split()[0])
    except OSError:
        return {}
    return {"private": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024, "pss": kb["Pss"] / 1024,
            "rss": kb["Rss"] / 1024}


def machine_busy_ms() -> float:
    """CPU ms every CPU of the machine spent busy so far (user, nice, system, irq, softirq, steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) * 1000 / TICK


def meminfo(name: str) -> int:
    """A line of /proc/meminfo, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


@dataclass
class Sample:
    """The CPU ms so far of each role of a server's tree (and of its database's backends)."""
    web: float
    device: float
    template: float
    reaped: float  # the template's reaped children: kernels that ended
    kernels: dict[Identity, float]
    other: dict[Identity, float]
    database: dict[int, float] | None
    machine: float = field(default_factory=machine_busy_ms)  # every CPU's busy ms
    bench: float = field(default_factory=lambda: (stat(os.getpid()) or ("", 0, 0, 0.0, 0.0))[3])  # this script's
    wall: float = field(default_factory=lambda: time.perf_counter() * 1000)

    def elsewhere(self, before: Sample) -> dict[str, float]:
        """What the rest of the machine did meanwhile: its CPU ms outside the server's tree, its
        database and this script, and that as a share of every CPU over the wall time."""
        ours = sum(v for v in self.minus(before).values() if v is not None)
        wall = self.wall - before.wall
        rest = self.machine - before.machine - ours - (self.bench - before.bench)
        return {"wall_ms": wall, "elsewhere_ms": rest, "bench_ms": self.bench - before.bench,
                "elsewhere_share": max(0.0, rest) / (wall * CPUS)}

    def minus(self, before: Sample) -> dict[str, float | None]:
        gone = sum(ms for i, ms in before.kernels.items() if i not in self.kernels)
        kernels = sum(ms - before.kernels.get(i, 0.0) for i, ms in self.kernels.items()) + self.reaped - before.reaped
        db = None
        if self.database is not None and before.database is not None:
            db = sum(ms - before.database.get(p, 0.0) for p, ms in self.database.items())
        return {"web": self.web - before.web, "device": self.device - before.device,
                "template": self.template - before.template, "kernels": kernels - gone,
                "other": sum(ms - before.other.get(i, 0.0) for i, ms in self.other.items()), "database": db}


# -- a server, its tree, and its end -------------------------------------------------------------

class Server:
    """``singlecell serve`` in a session of its own, so a Ctrl-C reaches only this script, which
    then ends the server's whole tree itself."""

    live: list[Server] = []

    def __init__(self, data_dir: Path, db: str | None, flags: list[str],
                 db_pids: Callable[[], list[int]] | None = None, root: Path = ROOT) -> None:
        data_dir.mkdir(parents=True)
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_pids = db_pids
        self.seen: set[Identity] = set()
        self.log = open(data_dir / "serve.log", "wb")  # closed by stop()
        command = [sys.executable, "-m", "singlecell", "serve", "--port", str(self.port), "--data-dir", str(data_dir),
                   "--no-examples", "--log-level", "warning", *(["--db", db] if db else []), *flags]
        self.command = command
        # root: this checkout, or another one (an A/B run of loadtests/bench.py)
        self.proc = subprocess.Popen(command, cwd=root, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(root)}, start_new_session=True)
        Server.live.append(self)

    def wait_up(self) -> None:
        client = Client(self.url)
        try:
            client.wait_until_up(90)
            assert client.eval("1+1")["status"] == "ok"
        finally:
            client.close()
        self.tree()

    def tree(self) -> dict[str, list[int]]:
        """The server's processes by role: web (this process), device, template, kernels, other."""
        kids = children()
        roles: dict[str, list[int]] = {"web": [self.proc.pid], "device": [], "template": [], "kernels": [],
                                       "other": []}
        todo = [(pid, "device") for pid in kids.get(self.proc.pid, [])]
        while todo:
            pid, role = todo.pop()
            if role == "device" and b"device.template" in cmdline(pid):
                role = "template"
            roles[role].append(pid)
            below = {"device": "device", "template": "kernels"}.get(role, "other")
            todo += [(kid, below) for kid in kids.get(pid, [])]
        for pids in roles.values():
            for pid in pids:
                if (s := stat(pid)) is not None:
                    self.seen.add((pid, s[2]))
        return roles

    def sample(self) -> Sample:
        roles = self.tree()

        def one(pid: int) -> tuple[Identity, float, float]:
            s = stat(pid)
            return ((pid, s[2]), s[3], s[4]) if s else ((pid, 0), 0.0, 0.0)

        def total(role: str) -> float:
            return sum(one(pid)[1] for pid in roles[role])

        template = [one(pid) for pid in roles["template"]]
        return Sample(web=total("web"), device=total("device"), template=sum(t[1] for t in template),
                      reaped=sum(t[2] for t in template),
                      kernels={i: ms for i, ms, _ in map(one, roles["kernels"])},
                      other={i: ms for i, ms, _ in map(one, roles["other"])},
                      database=total_cpu_ms(self.db_pids()) if self.db_pids else None)

    def kernel_of(self, pid_inside: int) -> int | None:
        """The host pid of the kernel that calls itself ``pid_inside`` (its innermost NSpid)."""
        for pid in self.tree()["kernels"]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if nspid and int(nspid[-1]) == pid_inside:
                return pid
        return None

    def stop(self) -> list[str]:
        """SIGTERM, as a supervisor stops it; then SIGKILL to anything of its tree left. Returns
        what was left (a server that ends cleanly leaves nothing)."""
        if self not in Server.live:
            return []
        Server.live.remove(self)
        if self.proc.poll() is None:
            self.tree()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(i) for i in self.seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [i for i in self.seen if alive(i)]
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()
        return [f"{pid} ({describe(pid)})" for pid, _ in left]

    def log_problems(self) -> list[str]:
        """The server log's lines at WARNING or above, and tracebacks' last lines."""
        lines = (self.data_dir / "serve.log").read_text(errors="replace").splitlines()
        return [line for line in lines if any(w in line for w in ("WARNING", "ERROR", "CRITICAL", "Traceback"))
                or (line and not line[0].isspace() and ("Error:" in line or "Exception:" in line))]

    @classmethod
    def kill_all(cls) -> None:
        """The last resort (a second Ctrl-C during a stop): SIGKILL every process seen."""
        for server in list(cls.live):
            if server.proc.poll() is None:
                server.tree()
            for pid, _ in [i for i in server.seen if alive(i)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            cls.live.remove(server)


# -- a session, read as a page reads it ------------------------------------------------------------

class Page:
    """A cell that became a session, with one long-poll on ``/output`` always waiting (a thread
    and a connection of its own), as an open page holds one."""

    def __init__(self, server: Server, client: Client, code: str) -> None:
        self.server = server
        self.client = client
        started = time.perf_counter()
        self.id = client.execute(code)
        self.messages: list[dict[str, Any]] = []
        self.after = 0
        page: dict[str, Any] = {}
        while not page.get("done"):
            page = client.output(self.id, after=self.after, wait=10)
            self.messages += [item["msg"] for item in page["messages"]]
            self.after = page["next"]
        self.open_ms = (time.perf_counter() - started) * 1000
        self.session = page.get("session") or {}
        if self.session.get("state") != "live":
            raise RuntimeError(f"the cell did not become a live session: {page.get('status')}, {self.session}, "
                               f"{[m['msg_type'] for m in self.messages]}")
        text = "".join(m["content"]["text"] for m in self.messages if m["msg_type"] == "stream")
        inside = int(text.split("pid", 1)[1].split()[0])
        self.pid = server.kernel_of(inside)
        self.slider = next(m["content"]["comm_id"] for m in self.messages if m["msg_type"] == "comm_open"
                           and m["content"]["data"]["state"].get("_model_name") == "IntSliderModel")
        self.cond = threading.Condition()
        self.polling_since: float | None = None  # when the waiting poll was sent; None between polls
        self.polls = 0
        self.poll_errors = 0
        self.idle_at: dict[str, float] = {}  # input msg_id → when the poll carrying its idle returned
        self.idle_wall: dict[str, float] = {}  # the same, by the wall clock the kernel's dates use
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.finished = False
        self.closing = False
        self.thread = threading.Thread(target=self._poll, daemon=True, name=f"poll-{self.id[:8]}")
        self.thread.start()

    def _poll(self) -> None:
        client = Client(self.server.url)
        try:
            while not self.closing:
                with self.cond:
                    self.polling_since = time.perf_counter()
                    self.cond.notify_all()
                try:
                    page = client.output(self.id, after=self.after, wait=POLL_WAIT)
                except Exception:
                    with self.cond:
                        self.polling_since = None
                    if self.closing or self.server.proc.poll() is not None:
                        return
                    self.poll_errors += 1
                    time.sleep(0.2)
                    continue
                now, wall = time.perf_counter(), time.time()
                with self.cond:
                    self.polling_since = None
                    self.polls += 1
                    for item in page["messages"]:
                        msg = item["msg"]
                        parent = msg["parent_header"].get("msg_id", "")
                        self.answers.setdefault(parent, []).append(msg)
                        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                            self.idle_at[parent] = now
                            self.idle_wall[parent] = wall
                    self.after = page["next"]
                    self.session = page.get("session") or {}
                    self.cond.notify_all()
                if self.session.get("state") != "live":
                    return
        finally:
            client.close()
            with self.cond:
                self.polling_since = None
                self.finished = True
                self.cond.notify_all()

    def wait_parked(self, think: float, timeout: float = 30.0) -> None:
        """Until a poll has been waiting ``think`` seconds (a person's pause between two moves)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                if not self.cond.wait_for(lambda: self.polling_since is not None or self.finished,
                                          max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("no long-poll waiting")
                if self.finished:
                    raise RuntimeError(f"the session ended: {self.session}")
                assert self.polling_since is not None
                left = think - (time.perf_counter() - self.polling_since)
            if left <= 0:
                return
            time.sleep(left)

    def round_trip(self, client: Client, value: int, think: float) -> dict[str, Any]:
        """Send the slider ``value`` while the long-poll waits. Returns ms: the round trip (until the
        poll brought its idle), POST /input's answer, and the trip's three parts by the dates the
        kernel put on its busy and idle (same host, same clock): to the kernel, in the kernel, back;
        the polls it took, the text the kernel printed, and the machine's busy CPU ms meanwhile."""
        self.wait_parked(think)
        busy = machine_busy_ms()
        msg_id = uuid.uuid4().hex
        content = {"comm_id": self.slider, "data": {"method": "update", "state": {"value": value},
                                                    "buffer_paths": []}}
        polls = self.polls
        wall = time.time()
        start = time.perf_counter()
        client.send_input(self.id, "comm_msg", content, msg_id=msg_id)
        posted = time.perf_counter()
        with self.cond:
            if not self.cond.wait_for(lambda: msg_id in self.idle_at or self.finished, 30):
                raise TimeoutError(f"no idle for input {msg_id} within 30 s")
            if msg_id not in self.idle_at:
                raise RuntimeError(f"the session ended: {self.session}")
            answers = self.answers[msg_id]
            dates = {m["content"]["execution_state"]: kernel_date(m) for m in answers if m["msg_type"] == "status"}
            return {"ms": (self.idle_at[msg_id] - start) * 1000, "post_ms": (posted - start) * 1000,
                    "to_kernel_ms": (dates["busy"] - wall) * 1000,
                    "in_kernel_ms": (dates["idle"] - dates["busy"]) * 1000,
                    "back_ms": (self.idle_wall[msg_id] - dates["idle"]) * 1000, "polls": self.polls - polls,
                    "text": "".join(m["content"]["text"] for m in answers if m["msg_type"] == "stream"),
                    "machine_busy_ms": machine_busy_ms() - busy}

    def end(self, client: Client, stop: bool = True, timeout: float = 20.0) -> None:
        """Stop the session (unless asked already) and wait until its reader saw it end and its
        kernel is gone."""
        if stop:
            try:
                client.stop(self.id)
            except (ClientError, OSError):
                pass
        self.thread.join(timeout)
        self.closing = True
        deadline = time.monotonic() + timeout
        while self.pid is not None and running(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


# -- measures ---------------------------------------------------------------------------------------

def kernel_date(msg: dict[str, Any]) -> float:
    """The date a message's header carries (the kernel's clock), in seconds since the epoch."""
    return datetime.fromisoformat(msg["header"]["date"]).timestamp()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def spread(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": statistics.median(values), "p90": pct(values, 0.90),
            "p99": pct(values, 0.99), "max": max(values), "min": min(values)}


def health(server: Server, requests: int) -> dict[str, Any]:
    client = Client(server.url)
    try:
        for _ in range(20):
            client.health()
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            client.health()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        client.close()
    return spread(times)


def inputs(server: Server, code: str, expect: Callable[[int], str], count: int, warmup: int,
           think: float) -> dict[str, Any]:
    """``count`` inputs in sequence on one new session, after ``warmup`` not counted."""
    client = Client(server.url)
    try:
        page = Page(server, client, code)
    except BaseException:
        client.close()
        raise
    try:
        first = None
        for n in range(warmup):
            warm = page.round_trip(client, n % 100 + 1, think)
            first = first if first is not None else warm["ms"]
        trips, wrong = [], 0
        before = server.sample()
        started = time.perf_counter()
        for n in range(warmup, warmup + count):
            value = n % 100 + 1
            trip = page.round_trip(client, value, think)
            wrong += trip.pop("text") != expect(value)
            trips.append({"input": n - warmup, **trip})
        seconds = time.perf_counter() - started
        after = server.sample()
        cpu = after.minus(before)
    finally:
        page.end(client)
        client.close()
    slowest = sorted(trips, key=lambda t: -t["ms"])[:5]
    return {"round_trip_ms": spread([t["ms"] for t in trips]),
            "post_input_ms": spread([t["post_ms"] for t in trips]),
            "parts_ms": {part: spread([t[part] for t in trips])
                         for part in ("to_kernel_ms", "in_kernel_ms", "back_ms")},
            "first_input_ms": first, "open_ms": page.open_ms,
            "polls_per_input": statistics.mean(t["polls"] for t in trips),
            "wrong": wrong, "poll_errors": page.poll_errors, "seconds": seconds, "think_ms": think * 1000,
            "cpu_ms_per_input": {k: (None if v is None else v / count) for k, v in cpu.items()},
            "machine": after.elsewhere(before), "slowest": slowest,
            "samples_ms": [round(t["ms"], 3) for t in trips]}


def evals(server: Server, requests: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """``/eval 1+1``: ``requests`` one at a time, then ``concurrency`` at once for ``seconds``."""
    client = Client(server.url)
    failures = 0
    try:
        for _ in range(10):
            client.eval("1+1")
        times = []
        before = server.sample()
        for _ in range(requests):
            start = time.perf_counter()
            try:
                ok = client.eval("1+1")["status"] == "ok"
            except (ClientError, OSError):
                ok = False
            times.append((time.perf_counter() - start) * 1000)
            failures += not ok
        after = server.sample()
        cpu = after.minus(before)
    finally:
        client.close()
    together: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal failures
        mine = Client(server.url)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    ok = mine.eval("1+1")["status"] == "ok"
                except (ClientError, OSError):
                    ok = False
                with lock:
                    together.append((time.perf_counter() - start) * 1000)
                    failures += not ok
        finally:
            mine.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    at_start = server.sample()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    at_end = server.sample()
    return {"sequential_ms": spread(times), "failed": failures,
            "concurrent_cpu_ms_per_request": {k: (None if v is None else v / max(1, len(together)))
                                              for k, v in at_end.minus(at_start).items()},
            "concurrent_machine": at_end.elsewhere(at_start),
            "cpu_ms_per_request": {k: (None if v is None else v / requests) for k, v in cpu.items()},
            "machine": after.elsewhere(before), "concurrency": concurrency, "concurrent_requests": len(together),
            "requests_per_second": len(together) / elapsed, "concurrent_ms": spread(together)}


def idle_cpu(server: Server, seconds: float) -> dict[str, float | None]:
    """CPU ms per second of each role while nothing is asked of the server but the pages' polls."""
    before = server.sample()
    time.sleep(seconds)
    return {k: (None if v is None else v / seconds) for k, v in server.sample().minus(before).items()}


def sessions_held(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Open ``count`` idle sessions, each read by a waiting long-poll; their memory, the CPU of
    holding them, and /eval beside them. Ends them before returning."""
    client = Client(server.url)
    pages: list[Page] = []
    try:
        for _ in range(args.sessions):
            pages.append(Page(server, client, SLIDER))
        time.sleep(2)  # the kernels that replaced the ready ones are forked and settled
        roles = server.tree()
        session_pids = {p.pid for p in pages if p.pid is not None}
        mem = {"session_kernel": [memory(pid) for pid in sorted(session_pids)],
               "ready_kernel": [memory(pid) for pid in roles["kernels"] if pid not in session_pids],
               "template": [memory(pid) for pid in roles["template"]],
               "device": [memory(pid) for pid in roles["device"]],
               "web": [memory(pid) for pid in roles["web"]]}
        mem = {k: [m for m in v if m] for k, v in mem.items()}
        held = {"sessions": args.sessions, "kernels_found": len(session_pids),
                "open_ms": spread([p.open_ms for p in pages]),
                "memory_mb": mem, "mem_available_bytes": meminfo("MemAvailable"),
                "idle_cpu_ms_per_s": idle_cpu(server, args.idle_seconds)}
        for page in pages:  # every page's poll waiting again after the quiet
            page.wait_parked(0)
        held["eval"] = evals(server, args.eval_requests, args.eval_seconds, args.concurrency)
        held["still_live"] = sum(p.session.get("state") == "live" and not p.finished for p in pages)
        held["poll_errors"] = sum(p.poll_errors for p in pages)
        return held
    finally:
        for page in pages:  # every stop asked first: they end together
            try:
                client.stop(page.id)
            except (ClientError, OSError):
                pass
        for page in pages:
            page.end(client, stop=False)
        client.close()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A new database of its own, dropped afterwards; None (with a note) when unreachable."""
    try:
        import psycopg
    except ImportError:
        print("PostgreSQL skipped: psycopg is not installed", file=sys.stderr)
        yield None
        return
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL skipped: unreachable at {admin_url} ({str(exc).strip().splitlines()[0]})",
              file=sys.stderr)
        yield None
        return
    name = f"interact_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def bench(backend: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    flags = ["--max-sessions", str(max(32, args.sessions + 4)), "--max-sessions-per-client", str(args.sessions + 4),
             "--session-idle", "1800"]
    with (postgres_database(args.postgres) if backend == "postgresql" else nullcontext()) as pg:
        if backend == "postgresql" and pg is None:
            return {"skipped": "PostgreSQL unreachable"}
        db = args.postgres.rsplit("/", 1)[0] + "/" + pg if pg else None
        server = Server(folder / backend, db, flags, database_pids(args.postgres, pg) if pg else None)
        result: dict[str, Any] = {"command": [os.path.relpath(c, ROOT) if c == sys.executable else c
                                              for c in server.command]}
        try:
            server.wait_up()
            client = Client(server.url)
            for _ in range(20):
                client.eval("1+1")
            client.close()
            result["health_ms"] = health(server, args.health_requests)
            result["inputs"] = {
                name: inputs(server, code, expect, args.inputs, args.warmup_inputs, args.think_ms / 1000)
                for name, (code, expect) in CASES.items()}
            result["eval_before"] = evals(server, args.eval_requests, args.eval_seconds, args.concurrency)
            result["idle_cpu_no_sessions_ms_per_s"] = idle_cpu(server, args.idle_seconds)
            result["held"] = sessions_held(server, args)
            time.sleep(1)
            result["eval_after"] = evals(server, args.eval_requests, args.eval_seconds, args.concurrency)
        finally:
            result["left_behind"] = server.stop()
            result["log_problems"] = server.log_problems()[:50]
        return result


# -- the report ----------------------------------------------------------------------------------------

def f1(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def machine() -> dict[str, Any]:
    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "nproc": len(os.sched_getaffinity(0)),
            "mem_total_bytes": meminfo("MemTotal"), "kernel": platform.release(), "python": sys.version.split()[0],
            "user": "root" if os.geteuid() == 0 else "not root", "git_head": git("rev-parse", "HEAD"),
            "git_subject": git("log", "-1", "--format=%s")[:100],
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "load_average": os.getloadavg()}


def report(info: dict[str, Any], results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"## interact_bench, {info['date']}\n")
    print(f"{info['nproc']} CPUs (nproc), MemTotal {info['mem_total_bytes'] / 2**30:.1f} GiB, Linux {info['kernel']}, "
          f"Python {info['python']}, as {info['user']}; git {info['git_head'][:12]}"
          f"{' with uncommitted changes' if info['git_dirty'] else ''} ({info['git_subject']}); load average "
          f"at start {', '.join(f'{x:.2f}' for x in info['load_average'])}, at the end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    ran = {name: r for name, r in results.items() if "skipped" not in r}
    for name, r in results.items():
        if "skipped" in r:
            print(f"*{name}: skipped, {r['skipped']}*\n")

    print(f"### 1. A widget input's round trip (POST /input while the long-poll waits → the poll that brings "
          f"its idle), {args.inputs} in sequence on one session, {args.think_ms:g} ms pause between\n")
    head = ["database", "what", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 ÷ /health p50", "first input ms",
            "POST /input p50 ms", "polls per input", "wrong answers", "other work on the machine"]
    table(head)
    for name, r in ran.items():
        h = r["health_ms"]
        row(name, "reference: GET /health", h["n"], f1(h["p50"]), f1(h["p90"]), f1(h["p99"]), f1(h["max"]), "1.0×",
            "", "", "", "", "")
        for what, i in r["inputs"].items():
            t = i["round_trip_ms"]
            row(name, what, t["n"], f1(t["p50"]), f1(t["p90"]), f1(t["p99"]), f1(t["max"]),
                f"{t['p50'] / h['p50']:.1f}×", f1(i["first_input_ms"]), f1(i["post_input_ms"]["p50"]),
                f"{i['polls_per_input']:.2f}", i["wrong"], share(i["machine"]))
    print(f"\n*other work on the machine*: CPU time outside the server, its database and this script, as a share of "
          f"the {CPUS} CPUs over the run. The slowest inputs (ms, its number in the run, polls it took, how busy "
          f"the machine's CPUs were meanwhile, server included, to 10 ms):\n")
    for name, r in ran.items():
        for what, i in r["inputs"].items():
            print(f"- {name}, {what}: " + ", ".join(
                f"{s['ms']:.1f} (#{s['input']}, {s['polls']}, {s['machine_busy_ms'] / (s['ms'] * CPUS):.0%}; "
                f"{s['to_kernel_ms']:.1f} + {s['in_kernel_ms']:.1f} + {s['back_ms']:.1f})"
                for s in i["slowest"]))
    print("\nWhere the round trip goes, by the dates the kernel puts on its busy and idle (ms, p50 / p99; "
          "the parts' p50s need not add up to the whole's):\n")
    table(["database", "what", "POST /input → kernel busy", "busy → idle, in the kernel",
           "kernel idle → the poll returns it", "whole"])
    for name, r in ran.items():
        for what, i in r["inputs"].items():
            parts = [i["parts_ms"][k] for k in ("to_kernel_ms", "in_kernel_ms", "back_ms")] + [i["round_trip_ms"]]
            row(name, what, *(f"{p['p50']:.1f} / {p['p99']:.1f}" for p in parts))

    print("\n### CPU ms per input (and per /eval 1+1, for reference), by process, from /proc\n")
    table(["database", "what", "web", "device", "template", "kernels", "PostgreSQL backends", "all"])
    for name, r in ran.items():
        items = [(what, i["cpu_ms_per_input"]) for what, i in r["inputs"].items()]
        items += [("/eval 1+1, no session", r["eval_before"]["cpu_ms_per_request"]),
                  (f"/eval 1+1, {args.sessions} idle sessions", r["held"]["eval"]["cpu_ms_per_request"])]
        for what, cpu in items:
            everything = sum(v for k, v in cpu.items() if v is not None)
            row(name, what, f1(cpu["web"]), f1(cpu["device"]), f1(cpu["template"]), f1(cpu["kernels"]),
                f1(cpu["database"]) if cpu["database"] is not None else "in web and device", f1(everything))

    print(f"\n### 2. {args.sessions} idle sessions, each with its page's long-poll waiting\n")
    table(["database", "process", "count", "private MB min", "median", "max", "Pss MB min", "median", "max",
           "RSS MB median"])
    for name, r in ran.items():
        for what, key in (("idle session kernel", "session_kernel"), ("ready kernel (reference)", "ready_kernel"),
                          ("kernel template (reference)", "template"), ("device", "device"), ("web", "web")):
            found = r["held"]["memory_mb"][key]
            if not found:
                row(name, what, 0, *[""] * 7)
                continue
            private = [m["private"] for m in found]
            pss = [m["pss"] for m in found]
            row(name, what, len(found), f1(min(private)), f1(statistics.median(private)), f1(max(private)),
                f1(min(pss)), f1(statistics.median(pss)), f1(max(pss)),
                f1(statistics.median(m["rss"] for m in found)))
    print()
    for name, r in ran.items():
        held = r["held"]
        found = held["memory_mb"]["session_kernel"]
        if found:
            median = statistics.median(m["private"] for m in found)
            available = held["mem_available_bytes"] / MB
            print(f"- {name}: MemAvailable {available:,.0f} MB ÷ {median:.1f} MB (an idle session kernel's median "
                  f"private memory) ≈ {available / median:,.0f} more idle sessions, by a straight line (not a "
                  f"claim: a session that runs more grows, and --max-sessions caps a device)")
        o = held["open_ms"]
        print(f"- {name}: opening a session (POST /execute → the page that says live): p50 {o['p50']:.0f} ms, "
              f"max {o['max']:.0f} ms; {held['kernels_found']} of {held['sessions']} kernels found in /proc, "
              f"{held['still_live']} still live after the /eval rows, {held['poll_errors']} failed polls")

    print(f"\nCPU ms per second while idle (nothing asked but the pages' long-polls; {args.idle_seconds:g} s, "
          f"/proc counts in ticks of {1000 / TICK:g} ms):\n")
    table(["database", "sessions held", "web", "device", "template", "kernels", "PostgreSQL backends"])
    for name, r in ran.items():
        for held_count, cpu in ((0, r["idle_cpu_no_sessions_ms_per_s"]),
                                (args.sessions, r["held"]["idle_cpu_ms_per_s"])):
            row(name, held_count, f1(cpu["web"]), f1(cpu["device"]), f1(cpu["template"]), f1(cpu["kernels"]),
                f1(cpu["database"]) if cpu["database"] is not None else "in web and device")

    print(f"\n### 3. One-shot /eval of 1+1 beside idle sessions: {args.eval_requests} one at a time, then "
          f"{args.concurrency} at once for {args.eval_seconds:g} s\n")
    table(["database", "live sessions", "p50 ms", "p90 ms", "p99 ms", f"req/s at {args.concurrency}",
           f"p50 ms at {args.concurrency}", "failed", "p50 ÷ before", "req/s ÷ before",
           f"other work on the machine, one at a time / {args.concurrency} at once",
           f"server CPU ms per request at {args.concurrency}"])
    for name, r in ran.items():
        before = r["eval_before"]
        for label, e in (("0 (before)", before), (f"{args.sessions} idle", r["held"]["eval"]),
                         ("0 (after)", r["eval_after"])):
            s = e["sequential_ms"]
            row(name, label, f1(s["p50"]), f1(s["p90"]), f1(s["p99"]), f"{e['requests_per_second']:.1f}",
                f1(e["concurrent_ms"]["p50"]), e["failed"], f"{s['p50'] / before['sequential_ms']['p50']:.2f}",
                f"{e['requests_per_second'] / before['requests_per_second']:.2f}",
                f"{share(e['machine'])} / {share(e['concurrent_machine'])}",
                f1(sum(v for v in e["concurrent_cpu_ms_per_request"].values() if v is not None)))
    print()
    for name, r in ran.items():
        left = r.get("left_behind") or []
        problems = r.get("log_problems") or []
        print(f"- {name}: `{' '.join(r['command'])}`; at stop "
              + (f"**left behind: {', '.join(left)}**" if left else "its whole process tree had ended")
              + (f"; **its log has {len(problems)} warning(s) or error(s)**, the first: {problems[0][:300]}"
                 if problems else "; nothing logged at WARNING or above"))


def share(machine: dict[str, float]) -> str:
    return f"{machine['elsewhere_share']:.0%}"


def table(head: list[str]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql or both (in that order)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an admin URL: a database of its own is made there and dropped after")
    parser.add_argument("--inputs", type=int, default=300, help="inputs measured per session (default 300)")
    parser.add_argument("--warmup-inputs", type=int, default=5, help="inputs first, not counted (default 5)")
    parser.add_argument("--think-ms", type=float, default=20.0,
                        help="how long the long-poll has been waiting when an input is sent (default 20)")
    parser.add_argument("--sessions", type=int, default=20, help="idle sessions held (default 20)")
    parser.add_argument("--health-requests", type=int, default=200)
    parser.add_argument("--eval-requests", type=int, default=200)
    parser.add_argument("--eval-seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="the quiet CPU windows (default 5)")
    parser.add_argument("--results", default=str(ROOT / "loadtests" / "results"), help="the JSON's folder")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        parser.error("--backends takes sqlite, postgresql or both")

    def stop_on_term(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop_on_term)
    signal.signal(signal.SIGHUP, stop_on_term)

    info = machine()
    results: dict[str, dict[str, Any]] = {}
    folder = Path(tempfile.mkdtemp(prefix="interact-bench-"))
    try:
        for backend in backends:
            print(f"measuring {backend}…", file=sys.stderr, flush=True)
            results[{"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]] = bench(backend, folder, args)
    except KeyboardInterrupt:
        print("interrupted: the servers were stopped, nothing was written", file=sys.stderr)
        sys.exit(130)
    finally:
        Server.kill_all()
        shutil.rmtree(folder, ignore_errors=True)
    report(info, results, args)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"interact-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": info, "args": vars(args), "results": results}, indent=1) + "\n")
    print(f"\nresults: {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
