"""Benchmark of the Jupyter kernel API against its peer, Jupyter Kernel Gateway 3, in one run.

    python loadtests/kernel_bench.py                       # ours on SQLite and PostgreSQL, then Kernel Gateway
    python loadtests/kernel_bench.py --starts 20 --executes 300 --targets sqlite,gateway

Each target is a server started here in a temporary folder (``singlecell serve``, SQLite or a new
PostgreSQL database; ``jupyter kernelgateway`` in its default mode, from the venv of its own that
``loadtests/peer.py`` makes on first use), measured by the same client over the same API:

1. **Kernel start**: ``POST /api/kernels``, then the WebSocket, then a ``kernel_info_request``
   until its reply: the time a client waits for a kernel that answers. ``--starts`` in sequence,
   each kernel deleted afterwards (not timed).
2. **Execute round trip** of ``1+1`` over one kernel's WebSocket: from sending the
   ``execute_request`` to having both its ``execute_reply`` and its ``idle``. ``--executes`` in
   sequence, after a warm-up.

For each, the CPU ms per operation of each process role, from ``/proc``: ours, the web process,
the device, the kernel template and the kernels; Kernel Gateway, its one process and its kernels
(ipykernel); with ``cutime``/``cstime`` for the kernels that ended. Ratios are ours to Kernel
Gateway's, measured minutes apart on the same machine. Prints markdown tables and writes every
figure as JSON to ``loadtests/results/kernels-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests import peer  # noqa: E402
from loadtests.harness import free_port  # noqa: E402
from loadtests.interact_bench import (  # noqa: E402
    Server,
    below,
    machine,
    pct,
    postgres_database,
    stat,
)
from loadtests.library_bench import database_pids  # noqa: E402

EXECUTE = "1+1"


def ours_cpu(server: Server) -> dict[str, float]:
    sample = server.sample()
    return {"web": sample.web, "device": sample.device, "template": sample.template,
            "kernels": sum(sample.kernels.values()) + sample.reaped,
            **({"database": sum(sample.database.values())} if sample.database is not None else {})}


# -- a client of the kernel API ----------------------------------------------------------------------

def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


class Socket:
    """One kernel's WebSocket (``websocket-client``, TCP_NODELAY as it sets by default)."""

    def __init__(self, base: str, kernel_id: str) -> None:
        import websocket

        self.ws = websocket.create_connection(f"{base.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels"
                                              f"?session_id={uuid.uuid4().hex}", timeout=60)
        self.session = uuid.uuid4().hex

    def request(self, msg_type: str, content: dict[str, Any], until_idle: bool) -> None:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                                            "username": "bench", "version": "5.3", "date": ""},
                                 "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}))
        replied = idle = False
        while not (replied and (idle or not until_idle)):
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg.get("msg_type") or msg["header"]["msg_type"]
            replied = replied or kind.endswith("_reply")
            idle = idle or (kind == "status" and msg["content"]["execution_state"] == "idle")

    def close(self) -> None:
        self.ws.close()


def measure(base: str, cpu: Any, starts: int, executes: int, warmup: int) -> dict[str, Any]:
    # kernel starts
    for _ in range(2):  # warm-up: imports, first connections
        kid = call("POST", base + "/api/kernels", {"name": "python3"})["id"]
        call("DELETE", f"{base}/api/kernels/{kid}")
    times: list[float] = []
    start_cpu: dict[str, float] = {}
    for _ in range(starts):
        before = cpu()
        t0 = time.perf_counter()
        kid = call("POST", base + "/api/kernels", {"name": "python3"})["id"]
        socket = Socket(base, kid)
        socket.request("kernel_info_request", {}, until_idle=False)
        times.append((time.perf_counter() - t0) * 1000)
        after = cpu()
        for role in after:
            start_cpu[role] = start_cpu.get(role, 0.0) + after[role] - before.get(role, 0.0)
        socket.close()
        call("DELETE", f"{base}/api/kernels/{kid}")
        time.sleep(0.2)  # let the pool refill, as between two people's clicks
    # execute round trips
    kid = call("POST", base + "/api/kernels", {"name": "python3"})["id"]
    socket = Socket(base, kid)
    socket.request("kernel_info_request", {}, until_idle=False)
    content = {"code": EXECUTE, "silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    for _ in range(warmup):
        socket.request("execute_request", content, until_idle=True)
    trips: list[float] = []
    before = cpu()
    for _ in range(executes):
        t0 = time.perf_counter()
        socket.request("execute_request", content, until_idle=True)
        trips.append((time.perf_counter() - t0) * 1000)
    after = cpu()
    socket.close()
    call("DELETE", f"{base}/api/kernels/{kid}")
    return {
        "start_ms": {"p50": statistics.median(times), "p90": pct(times, 0.9), "min": min(times), "n": len(times)},
        "start_cpu_ms": {role: ms / starts for role, ms in start_cpu.items()},
        "execute_ms": {"p50": statistics.median(trips), "p99": pct(trips, 0.99), "min": min(trips), "n": len(trips)},
        "execute_cpu_ms": {role: (after[role] - before.get(role, 0.0)) / executes for role in after},
    }


def run_ours(backend: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    with (postgres_database(args.postgres) if backend == "postgresql" else nullcontext()) as pg:
        if backend == "postgresql" and pg is None:
            return {"skipped": "PostgreSQL unreachable"}
        db = args.postgres.rsplit("/", 1)[0] + "/" + pg if pg else None
        server = Server(folder / backend, db, ["--max-sessions", "16", "--max-sessions-per-client", "16"],
                        database_pids(args.postgres, pg) if pg else None)
        try:
            server.wait_up()
            return measure(server.url, lambda: ours_cpu(server), args.starts, args.executes, args.warmup)
        finally:
            left = server.stop()
            if left:
                print(f"left behind by {backend}: {left}", file=sys.stderr)


def run_gateway(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    gateway = peer.Gateway(folder / "gateway", free_port(), "kernels")

    def cpu() -> dict[str, float]:
        """CPU ms so far: the gateway process, and its kernels (living, and reaped)."""
        own = stat(gateway.proc.pid)
        kernels = sum((stat(pid) or ("", 0, 0, 0.0, 0.0))[3] for pid in below(gateway.proc.pid))
        return {"gateway": own[3] if own else 0.0, "kernels": kernels + (own[4] if own else 0.0)}

    try:
        gateway.wait_up()
        return measure(gateway.url, cpu, args.starts, args.executes, args.warmup)
    finally:
        gateway.stop(below(gateway.proc.pid))


def report(results: dict[str, dict[str, Any]]) -> None:
    peer = results.get("gateway", {})
    print("\n### Kernel start to kernel_info_reply, and an execute round trip of `1+1` over the WebSocket\n")
    print("| target | start p50 ms | start vs gateway | execute p50 ms | execute p99 ms | execute vs gateway (p50) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} | | | | |")
            continue
        start, execute = r["start_ms"], r["execute_ms"]
        s_ratio = f"{peer['start_ms']['p50'] / start['p50']:.1f}× faster" if "start_ms" in peer and name != "gateway" \
            else "–"
        e_ratio = f"{execute['p50'] / peer['execute_ms']['p50']:.2f}×" if "execute_ms" in peer and name != "gateway" \
            else "–"
        print(f"| {name} | {start['p50']:.1f} | {s_ratio} | {execute['p50']:.2f} | {execute['p99']:.2f} | {e_ratio} |")
    print("\n### CPU ms per operation, by process role\n")
    print("| target | operation | " + " | ".join(("web / gateway", "device", "template", "kernels", "database"))
          + " | total |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if "skipped" in r:
            continue
        for op in ("start", "execute"):
            cpu = r[f"{op}_cpu_ms"]
            cells = [cpu.get("web", cpu.get("gateway")), cpu.get("device"), cpu.get("template"), cpu.get("kernels"),
                     cpu.get("database")]
            print(f"| {name} | {op} | " + " | ".join("–" if c is None else f"{c:.2f}" for c in cells)
                  + f" | {sum(c for c in cells if c is not None):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=20, help="kernel starts measured per target")
    parser.add_argument("--executes", type=int, default=300, help="execute round trips measured per target")
    parser.add_argument("--warmup", type=int, default=30, help="execute round trips before measuring")
    parser.add_argument("--targets", default="sqlite,postgresql,gateway",
                        help="which of sqlite, postgresql, gateway to measure, in that order")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an admin URL of the PostgreSQL server (a database is made and dropped)")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kernel-bench-") as tmp:
        for target in args.targets.split(","):
            print(f"measuring {target} …", file=sys.stderr)
            results[target] = run_gateway(Path(tmp), args) if target == "gateway" else \
                run_ours(target, Path(tmp), args)
    info = machine()
    print(f"\n{info['date']}, {info['nproc']} CPUs, Python {info['python']}, {info['user']}, "
          f"git {info['git_head'][:10]}{' (dirty)' if info['git_dirty'] else ''}, load {info['load_average']}")
    report(results)
    out = ROOT / "loadtests" / "results" / f"kernels-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": info, "args": vars(args), "results": results}, indent=1))
    print(f"\nwritten to {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
