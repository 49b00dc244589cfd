"""Scale-out benchmark: ``/eval`` of ``1+1`` through one ``singlecell web`` with one and with two
``singlecell device`` processes on this host, on SQLite and on PostgreSQL.

    python loadtests/scaleout.py                     # PostgreSQL at postgresql://postgres@127.0.0.1:5432/test
    python loadtests/scaleout.py --postgres postgresql://user@host:5432/db

For PostgreSQL it creates a database of its own beside the one named (and drops it after).
On SQLite the devices share the web tier's data dir: the first device gets the ZeroMQ wake-ups
of that folder, a second polls (``--poll-interval``, 0.5 s); on PostgreSQL every process hears
LISTEN/NOTIFY. Prints one table, and the latency the PostgreSQL path adds at concurrency 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.harness import TRIVIAL, Row, free_port, launch, run_http  # noqa: E402
from singlecell.client import Client  # noqa: E402


def deployment(store: str, devices: int, data_dir: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    port = free_port()
    common = ["--db", store, "--files", store] if store.startswith("postgresql") else []
    procs = [launch("web", data_dir, "--port", str(port), *common)]
    for i in range(devices):
        first = 240000 + 100 * i
        procs.append(launch("device", data_dir, *common, "--kernel-uids", f"{first}-{first + 99}"))
    url = f"http://127.0.0.1:{port}"
    client = Client(url)
    client.wait_until_up(60)
    client.eval("1")
    client.close()
    time.sleep(3)  # every device up and its ready kernels forked
    return procs, url


def measure(label: str, store: str, devices: int, requests: int) -> list[Row]:
    data_dir = tempfile.mkdtemp(prefix="bench-scaleout-")
    procs, url = deployment(store, devices, data_dir)
    try:
        run_http(url, "warm-up", TRIVIAL, 4, 40)
        return [run_http(url, label, TRIVIAL, c, requests) for c in (1, 4, 16)]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    import psycopg

    name = f"sc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    pg_url = args.postgres.rsplit("/", 1)[0] + "/" + name
    rows: list[Row] = []
    try:
        for devices in (1, 2):
            rows += measure(f"SQLite, {devices} device{'s' * (devices > 1)}", "sqlite", devices, args.requests)
            rows += measure(f"PostgreSQL, {devices} device{'s' * (devices > 1)}", pg_url, devices, args.requests)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    header = ["what", "concurrency", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "failed"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in sorted(rows, key=lambda r: (r.what.split(",")[1], r.what, r.concurrency)):
        print("| " + " | ".join(row.cells()) + " |")

    def p50(what: str, concurrency: int) -> float:
        (row,) = [r for r in rows if r.what == what and r.concurrency == concurrency]
        return sorted(row.latencies)[len(row.latencies) // 2] * 1000

    for devices in ("1 device", "2 devices"):
        added = p50(f"PostgreSQL, {devices}", 1) - p50(f"SQLite, {devices}", 1)
        print(f"PostgreSQL adds {added:+.1f} ms at p50, concurrency 1, {devices}")
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
