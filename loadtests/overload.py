"""Overload: many more clients than kernels, past ``--max-queue``.

    python loadtests/overload.py                   # starts its own server (--max-queue 50, 8 kernels)
    python loadtests/overload.py --clients 128 --seconds 20

Each client posts ``/eval`` of a short cell in a loop, without waiting between requests, and does
not retry a 503: the server must refuse what it cannot queue at once (503 with Retry-After),
keep the accepted requests' latency bounded by the queue it allows, and keep its memory flat.
Prints the answers by status, their latencies, the queue length seen, and the web process's
memory (RSS) before, during (peak) and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.harness import start_server  # noqa: E402
from singlecell.client import Client, ClientError  # noqa: E402

CODE = "import time\ntime.sleep(0.02)\n1 + 1"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def pct(values: list[float], p: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--max-queue", type=int, default=50)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="singlecell-overload-")
    proc, url = start_server(data_dir, 8, "--max-queue", str(args.max_queue))
    latencies: dict[str, list[float]] = {"accepted": [], "refused": []}
    statuses: Counter[str] = Counter()
    retry_after_missing = 0
    queue_seen: list[int] = []
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds
    try:
        before = rss_mb(proc.pid)
        peak = before

        def flood() -> None:
            nonlocal retry_after_missing
            client = Client(url, timeout=120)
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    answer = client.eval(CODE)
                    kind, status = "accepted", answer["status"]
                except ClientError as exc:
                    kind, status = "refused", f"HTTP {exc.status}"
                    if exc.status == 503 and "retry-after" not in {k.lower() for k in exc.headers}:
                        with lock:
                            retry_after_missing += 1
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[kind].append(elapsed)
                    statuses[status] += 1
            client.close()

        threads = [threading.Thread(target=flood) for _ in range(args.clients)]
        for t in threads:
            t.start()
        watcher = Client(url)
        while any(t.is_alive() for t in threads):
            queue_seen.append(watcher.health()["queued"])
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.2)
        watcher.close()
        time.sleep(2)
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)

    total = sum(statuses.values())
    print(f"{args.clients} clients for {args.seconds:.0f} s, --max-queue {args.max_queue}, 8 kernels, "
          f"{os.cpu_count()} CPUs; cell: {CODE!r}")
    print("| answers | count | share | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for kind, label in (("accepted", "accepted (200)"), ("refused", "refused (503)")):
        values = latencies[kind]
        print(f"| {label} | {len(values)} | {len(values) / max(total, 1):.0%} | {pct(values, .5)} | "
              f"{pct(values, .99)} | {max(values) * 1000 if values else 0:.1f} |")
    print(f"statuses: {dict(statuses)}; 503 without Retry-After: {retry_after_missing}")
    print(f"queue length seen: max {max(queue_seen)}, median {statistics.median(queue_seen):.0f} "
          f"(limit {args.max_queue})")
    print(f"web process RSS: {before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after")


if __name__ == "__main__":
    main()
