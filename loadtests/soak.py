"""Soak: a mixed load for a long time, watching every process's memory and descriptors.

    python loadtests/soak.py                      # starts its own server; 30 minutes, 4 clients
    python loadtests/soak.py --minutes 5 --clients 8

Each client loops over a mix: ``/eval`` of ``1+1``, a print loop, a plot, an error, a file written
and downloaded, numpy; a widget session (a slider, two updates, then stopped); a batch of three
cells whose callbacks come back to a receiver of the soak's own; and the snippet site (the
library page, an example snippet's page, the snippet API and a search). Every answer is
checked. Every minute it prints, for that minute: the requests that succeeded and failed and
their p50/p99; each process's RSS and open descriptors (web, device, kernel template, and the
kernels alive); the kernel uids the device holds (its lock files) and the template's
network-namespace descriptors; the host's network namespaces (``lsns -t net``, which counts only
those some process is in, and every one, those only a descriptor holds too) and the kernel's
Slab memory, with the part of it that cannot be reclaimed. At the end it says whether memory and
descriptors levelled off: each figure's last minute against its value after the warm-up
(minute 2), and its growth a minute over the second half of the run.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.harness import start_server  # noqa: E402
from singlecell.client import Client, ClientError  # noqa: E402

CELLS = {
    "1+1": ("1 + 1", lambda a: a["status"] == "ok" and a["result"]["text/plain"] == "2"),
    "print loop": ("for i in range(200):\n    print(i)",
                   lambda a: a["status"] == "ok" and a["stdout"].endswith("199\n")),
    "plot": ("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
             lambda a: a["status"] == "ok" and any("image/png" in d for d in a["displays"])),
    "error": ("1 / 0", lambda a: a["status"] == "error" and a["error"]["ename"] == "ZeroDivisionError"),
    "numpy": ("import numpy as np\nint(np.arange(10).sum())", lambda a: a["result"]["text/plain"] == "45"),
}
SLIDER = ("import ipywidgets as w\ns = w.IntSlider()\n"
          "s.observe(lambda change: print('value', change['new']), names='value')\ndisplay(s)")


@dataclass
class Minute:
    ok: list[float] = field(default_factory=list)  # latencies, seconds
    failed: list[str] = field(default_factory=list)


class Load:
    """The clients' record: latencies and failures by the minute they ended in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.minutes: dict[int, Minute] = {}
        self.start = time.monotonic()

    def done(self, began: float, failure: str | None) -> None:
        minute = int((time.monotonic() - self.start) // 60)
        with self.lock:
            record = self.minutes.setdefault(minute, Minute())
            if failure is None:
                record.ok.append(time.monotonic() - began)
            else:
                record.failed.append(failure)


class Hooks:
    """The callbacks' receiver: an HTTP server on 127.0.0.1 that records each summary's request id."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.changed = threading.Condition()
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hooks.changed:
                    hooks.seen.add(json.loads(body)["id"])
                    hooks.changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, ids: list[str], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.seen.issuperset(ids), timeout)


def client_loop(url: str, load: Load, until: float, rng: random.Random, hooks: Hooks) -> None:
    client = Client(url, timeout=120)
    snippet_ids: list[str] = []
    while time.monotonic() < until:
        began = time.monotonic()
        kind = rng.choices(["cell", "file", "session", "batch", "site"], weights=[65, 10, 5, 5, 15])[0]
        try:
            failure = {"cell": lambda: one_cell(client, rng), "file": lambda: one_file(client),
                       "session": lambda: one_session(client), "batch": lambda: one_batch(client, hooks),
                       "site": lambda: one_site(client, snippet_ids)}[kind]()
        except (ClientError, OSError, KeyError, TypeError) as exc:
            failure = f"{kind}: {type(exc).__name__}: {exc}"[:200]
        load.done(began, failure)
    client.close()


def one_cell(client: Client, rng: random.Random) -> str | None:
    name = rng.choice(list(CELLS))
    code, check = CELLS[name]
    answer = client.eval(code)
    return None if check(answer) else f"{name}: {str(answer)[:150]}"


def one_file(client: Client) -> str | None:
    token = uuid.uuid4().hex
    answer = client.eval(f"open('out.txt', 'w').write('{token}')")
    if answer["status"] != "ok" or not answer["files"]:
        return f"file: {str(answer)[:150]}"
    return None if client.file(answer["files"][0]["url"]) == token.encode() else "file: other bytes"


def one_session(client: Client) -> str | None:
    request_id = client.execute(SLIDER)
    after, comm, live = 0, None, False
    deadline = time.monotonic() + 30
    # inputs are taken once the cell has ended and become a live session, as a page waits for
    while not (comm is not None and live) and time.monotonic() < deadline:
        page = client.output(request_id, after=after, wait=5)
        after = page["next"]
        live = page["done"] and (page.get("session") or {}).get("state") == "live"
        for item in page["messages"]:
            msg = item["msg"]
            state = msg["content"].get("data", {}).get("state", {}) if msg["msg_type"] == "comm_open" else {}
            if state.get("_model_name") == "IntSliderModel":
                comm = msg["content"]["comm_id"]
        if page["done"] and (page.get("session") or {}).get("state") != "live" and comm is None:
            return f"session: ended without a slider ({page['status']})"
    if comm is None or not live:
        return f"session: no live slider within 30 s (slider {comm is not None}, live {live})"
    for value in (3, 7):
        try:
            client.send_input(request_id, "comm_msg", {"comm_id": comm, "data": {
                "method": "update", "state": {"value": value}, "buffer_paths": []}})
        except ClientError as exc:
            if exc.status != 409:
                raise
            session = client.output(request_id, after=after).get("session") or {}
            return f"session: it ended before its input ({session.get('reason')}): {exc}"[:200]
    seen = ""
    while "value 7" not in seen and time.monotonic() < deadline:
        page = client.output(request_id, after=after, wait=5)
        after = page["next"]
        seen += "".join(str(i["msg"]["content"].get("text", "")) for i in page["messages"]
                        if i["msg"]["msg_type"] == "stream")
    client.stop(request_id)
    return None if "value 7" in seen else f"session: the updates were not answered ({seen[:80]!r})"


def one_batch(client: Client, hooks: Hooks) -> str | None:
    batch = client.batch(["1 + 1", "print('batched')", "1 / 0"], callback_url=hooks.url)
    if not hooks.wait(batch["ids"], 60):
        return f"batch: not every callback came within 60 s ({client.batch_state(batch['id'])})"[:200]
    statuses = [cell["status"] for cell in client.batch_state(batch["id"])["cells"]]
    return None if statuses == ["done", "done", "error"] else f"batch: statuses {statuses}"


def one_site(client: Client, snippet_ids: list[str]) -> str | None:
    for path in ("/library", "/library?q=plot"):
        status, _, body = client.request("GET", path)
        if status != 200 or b"</html>" not in body:
            return f"site: GET {path} answered {status}"
    if not snippet_ids:
        status, _, body = client.request("GET", "/api/snippets")
        if status != 200:
            return f"site: GET /api/snippets answered {status}"
        snippet_ids.extend(s["id"] for s in json.loads(body)["items"][:5])
    for snippet in snippet_ids[:2]:
        status, _, body = client.request("GET", f"/s/{snippet}")
        if status != 200:
            return f"site: GET /s/{snippet} answered {status}"
    return None


# -- the processes ------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fds(pid: int, prefix: str = "") -> int:
    """The process's open descriptors (whose target starts with ``prefix``); -1 when it is gone."""
    try:
        listed = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return -1
    count = 0
    for fd in listed:
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix)
        except OSError:  # closed between the listing and this look
            continue
    return count


def roles(serve_pid: int) -> dict[str, list[int]]:
    """web (serve itself), device, template, kernels: found by their command lines."""
    found: dict[str, list[int]] = {"web": [serve_pid], "device": [], "template": [], "kernels": []}
    for pid in children(serve_pid):
        if " device" in cmdline(pid):
            found["device"].append(pid)
            for child in children(pid):
                if "device.template" in cmdline(child):
                    found["template"].append(child)
                    found["kernels"] += children(child)
    return found


def lsns_net() -> int:
    """``lsns -t net``'s count: namespaces some process is in (not those only a descriptor holds)."""
    try:
        done = subprocess.run(["lsns", "-t", "net", "-n", "-o", "NS"], capture_output=True, text=True, timeout=30)
        return len(done.stdout.split())
    except (OSError, subprocess.SubprocessError):
        return -1


def net_namespaces() -> int:
    """The host's network namespaces: those a process is in, and those only a descriptor holds
    (the template's, between kernels), told apart by inode."""
    seen: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        links = [f"/proc/{entry}/ns/net"]
        try:
            links += [f"/proc/{entry}/fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target.startswith("net:["):
                seen.add(target)
    return len(seen)


def meminfo_kb(name: str) -> int:
    """A figure of /proc/meminfo: ``Slab`` (the kernel's object caches) or ``SUnreclaim`` (the part
    of them memory pressure cannot take back; dentries and buffer heads of a growing database
    are reclaimable)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return -1


COLUMNS = ("min", "ok", "failed", "p50 ms", "p99 ms", "web MB", "web fds", "device MB", "device fds",
           "kernel uids", "template MB", "template fds", "template net fds", "kernels", "kernels MB",
           "lsns net", "net namespaces", "Slab MB", "SUnreclaim MB")


def sample(serve_pid: int) -> dict[str, float]:
    found = roles(serve_pid)
    one = {role: (found[role][0] if found[role] else -1) for role in ("web", "device", "template")}
    return {
        "web MB": rss_mb(one["web"]), "web fds": fds(one["web"]),
        "device MB": rss_mb(one["device"]), "device fds": fds(one["device"]),
        "kernel uids": fds(one["device"], "/run/singlecell/kernel-uids/"),  # the device's uid locks
        "template MB": rss_mb(one["template"]), "template fds": fds(one["template"]),
        "template net fds": fds(one["template"], "net:["),
        "kernels": len(found["kernels"]),
        "kernels MB": sum(mb for mb in map(rss_mb, found["kernels"]) if mb == mb),  # one may exit meanwhile (nan)
        "lsns net": lsns_net(), "net namespaces": net_namespaces(),
        "Slab MB": meminfo_kb("Slab") / 1024, "SUnreclaim MB": meminfo_kb("SUnreclaim") / 1024,
    }


def percentile_ms(values: list[float], q: int) -> str:
    """The nearest-rank ``q`` percentile of ``values``, in milliseconds."""
    if not values:
        return "–"
    ordered = sorted(values)
    return f"{ordered[max(0, -(-q * len(ordered) // 100) - 1)] * 1000:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kernels", type=int, default=8, help="the server's --kernels (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="soak-")
    proc, url = start_server(folder, args.kernels, "--max-sessions-per-client", str(args.clients * 2 + 4),
                             "--callback-allow", "127.0.0.1")
    hooks = Hooks()
    print(f"soak: {args.minutes:g} minutes, {args.clients} clients, against {url} (logs in {folder})")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    load = Load()
    until = load.start + args.minutes * 60
    threads = [threading.Thread(target=client_loop, args=(url, load, until, random.Random(args.seed + i), hooks),
                                daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    rows: list[dict[str, float]] = []
    failures: list[str] = []
    try:
        for minute in range(int(args.minutes + 0.999)):
            time.sleep(max(0.0, load.start + (minute + 1) * 60 - time.monotonic()))
            with load.lock:
                record = load.minutes.get(minute, Minute())
            figures = sample(proc.pid)
            rows.append(figures)
            failures += record.failed
            cells = [f"{minute + 1}", str(len(record.ok)), str(len(record.failed)), percentile_ms(record.ok, 50),
                     percentile_ms(record.ok, 99)] + [f"{figures[c]:.0f}" if "MB" in c else f"{figures[c]:g}"
                                                      for c in COLUMNS[5:]]
            print("| " + " | ".join(cells) + " |", flush=True)
        for thread in threads:
            thread.join(150)
    finally:
        proc.terminate()
        proc.wait(60)
    print()
    if len(rows) >= 3:
        base, last = rows[1], rows[-1]
        middle = len(rows) // 2
        half = max(1, len(rows) - 1 - middle)
        print("after the warm-up (minute 2) → the last minute, and the growth a minute over the second half:")
        for column in COLUMNS[5:]:
            slope = (last[column] - rows[middle][column]) / half
            print(f"  {column:<17} {base[column]:>9.1f} → {last[column]:>9.1f}  ({last[column] - base[column]:+.1f}; "
                  f"{slope:+.2f}/min)")
    print(f"requests: {sum(len(m.ok) for m in load.minutes.values())} succeeded, {len(failures)} failed")
    for failure, count in Counter(failures).most_common(20):
        print(f"  FAILED {count}×  {failure}")
    if proc.returncode == 0:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
