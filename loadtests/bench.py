"""Benchmark: ``POST /eval`` latency and throughput, beside the bare ceiling of the machine.

    python loadtests/bench.py                 # starts its own `singlecell serve`, measures, stops it
    python loadtests/bench.py http://HOST:P   # measures a running server (no ceiling then, unless --ceiling)

Prints one table: requests/s and p50/p90/p99 latency of /eval for ``1+1`` at concurrency 1, 4
and 16 and for a matplotlib plot at 1 and 4 (every sandbox layer this host allows on), ``1+1``
again on a second server with no isolation layers (``--sandbox none``: the sandbox's cost), and
the bare ceiling: a template process forking a
kernel that runs ``1+1`` through IPython and answers over ZeroMQ, with no web tier, store or
device in between (``device.pool.KernelPool`` driven directly).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from singlecell.client import Client  # noqa: E402

TRIVIAL = "1+1"
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"


@dataclass
class Row:
    what: str
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    failures: int = 0

    def cells(self) -> list[str]:
        lat = sorted(self.latencies)

        def pct(p: float) -> str:
            return f"{lat[min(len(lat) - 1, int(p * len(lat)))] * 1000:.1f}" if lat else "-"

        return [self.what, str(self.concurrency), str(self.requests), f"{self.requests / self.seconds:.0f}",
                pct(0.50), pct(0.90), pct(0.99), str(self.failures)]


def run_http(url: str, what: str, code: str, concurrency: int, total: int) -> Row:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    left = [total]

    def worker() -> None:
        nonlocal failures
        client = Client(url)
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                start = time.perf_counter()
                try:
                    answer = client.eval(code)
                    ok = answer["status"] == "ok"
                except Exception:
                    ok = False
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    failures += not ok
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Row(what, concurrency, total, time.perf_counter() - start, latencies, failures)


async def _ceiling(concurrency: int, total: int, warmup: int) -> Row:
    from device.pool import KernelPool
    from singlecell import protocol

    work = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    pool = KernelPool(work_root=work, ready=max(4, concurrency), preload=["numpy", "matplotlib"],
                      layers={"resources": {"cpu_seconds": 30, "memory_mb": 1024}}, output_limit=1_000_000)
    await pool.start()
    latencies: list[float] = []
    left = [total + warmup]

    async def one() -> None:
        while left[0] > 0:
            left[0] -= 1
            kernel = await pool.acquire()
            start = time.perf_counter()
            await kernel.send(protocol.execute_request(TRIVIAL))
            idle = False
            while not idle:
                for msg, _ in await kernel.receive():
                    idle = idle or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle")
            latencies.append(time.perf_counter() - start)
            await kernel.exited
            pool.release(kernel)

    await asyncio.gather(*(one() for _ in range(min(concurrency, warmup) or 1)))
    latencies.clear()
    left[0] = total
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    await pool.close()
    shutil.rmtree(work, ignore_errors=True)
    return Row("ceiling: template fork, 1+1, ZeroMQ", concurrency, total, seconds, latencies)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(command: str, data_dir: str, *flags: str) -> subprocess.Popen[bytes]:
    """``singlecell COMMAND --data-dir DATA_DIR FLAGS…`` from this checkout, logging to DATA_DIR."""
    log = open(os.path.join(data_dir, f"{command}-{os.urandom(3).hex()}.log"), "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "singlecell", command, "--data-dir", data_dir, "--log-level", "warning", *flags],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def start_server(data_dir: str, kernels: int, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = launch("serve", data_dir, "--port", str(port), "--kernels", str(kernels), *flags)
    url = f"http://127.0.0.1:{port}"
    client = Client(url)
    client.wait_until_up(60)
    client.eval("1")
    client.close()
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="a running server; default: start one")
    parser.add_argument("--requests", type=int, default=400, help="requests per 1+1 row (default 400)")
    parser.add_argument("--plot-requests", type=int, default=60, help="requests per plot row (default 60)")
    parser.add_argument("--kernels", type=int, default=8, help="--kernels of the server it starts")
    parser.add_argument("--ceiling", action="store_true", help="measure the ceiling also with a URL given")
    parser.add_argument("--no-sandbox-off", action="store_true",
                        help="skip the rows of a second server with no isolation layers (--sandbox none)")
    args = parser.parse_args()

    proc = None
    data_dir = None
    url = args.url
    if url is None:
        data_dir = tempfile.mkdtemp(prefix="bench-data-")
        proc, url = start_server(data_dir, args.kernels)
    rows: list[Row] = []
    try:
        run_http(url, "warm-up", TRIVIAL, 4, 40)
        for concurrency in (1, 4, 16):
            rows.append(run_http(url, "/eval 1+1", TRIVIAL, concurrency, args.requests))
        for concurrency in (1, 4):
            rows.append(run_http(url, "/eval matplotlib plot", PLOT, concurrency, args.plot_requests))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.url is None and not args.no_sandbox_off:
        # the same, with no isolation layer (resource limits only): what the sandbox costs
        data_dir = tempfile.mkdtemp(prefix="bench-data-")
        proc, off_url = start_server(data_dir, args.kernels, "--sandbox", "none")
        try:
            run_http(off_url, "warm-up", TRIVIAL, 4, 40)
            for concurrency in (1, 4):
                rows.append(run_http(off_url, "/eval 1+1, sandbox off", TRIVIAL, concurrency, args.requests))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.url is None or args.ceiling:
        for concurrency in (1, 4, 16):
            rows.append(asyncio.run(_ceiling(concurrency, args.requests, 20)))

    header = ["what", "concurrency", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "failed"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    by = {(r.what, r.concurrency): r for r in rows}
    eval16 = by.get(("/eval 1+1", 16))
    ceilings = [r for r in rows if r.what.startswith("ceiling")]
    if eval16 and ceilings:
        best = max(r.requests / r.seconds for r in ceilings)
        mine = eval16.requests / eval16.seconds
        print(f"\n/eval 1+1 at concurrency 16: {mine:.0f} req/s = {100 * mine / best:.0f}% of the best "
              f"ceiling ({best:.0f} req/s)")
    one = by.get(("/eval 1+1", 1))
    if one:
        print(f"/eval 1+1 at concurrency 1: p50 {statistics.median(one.latencies) * 1000:.1f} ms")
    for concurrency in (1, 4):
        on, off = by.get(("/eval 1+1", concurrency)), by.get(("/eval 1+1, sandbox off", concurrency))
        if on and off:
            cost = (statistics.median(on.latencies) - statistics.median(off.latencies)) * 1000
            print(f"the sandbox's cost at concurrency {concurrency}: {cost:+.1f} ms at p50")
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
