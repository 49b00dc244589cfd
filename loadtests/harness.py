"""What the benchmarks share: a free port, a `singlecell` process from this checkout, and /eval
driven over HTTP by threads of Python clients (``Row``: one measured row of a table)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from singlecell.client import Client  # noqa: E402

TRIVIAL = "1+1"


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
