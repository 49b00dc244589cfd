"""Benchmark of the snippet library: 10,000 generated snippets, on SQLite and on PostgreSQL.

    python loadtests/library_bench.py                  # SQLite, and PostgreSQL if reachable
    python loadtests/library_bench.py --snippets 2000 --postgres postgresql://postgres@127.0.0.1/test

For each database it fills a library (through the library's own interface), starts a real
``singlecell web`` on it, and measures over HTTP: full-text search of one word and of three words,
the browse page, a snippet's page, and a fork (API, with a token), beside a reference measured in
the same run: ``GET /health``, the floor (HTTP, tornado and one indexed count). Prints one table: p50 (also as a ratio
to the floor's) and p99 in ms, the web process's CPU ms per request and, on PostgreSQL, its
server processes' (on SQLite the database works inside the web process).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.harness import free_port, launch  # noqa: E402
from singlecell.client import Client  # noqa: E402

WORDS = ("plot surface tangent derivative integral matrix vector prime fibonacci sieve random walk histogram "
         "regression fourier signal filter image pixel graph tree sort search hash cipher queue stack parse "
         "tokenize grammar physics orbit gravity pendulum spring wave heat diffusion population epidemic "
         "market price option volatility portfolio weather climate ocean river network neuron gradient").split()
TAGS = ("plotting/2d", "plotting/3d", "math/calculus", "math/algebra", "numpy", "physics", "finance", "text",
        "algorithms/sorting", "algorithms/graphs", "statistics", "images")


def fill(url: str, files_url: str, count: int, seed: int = 1) -> tuple[list[str], float]:
    """``count`` snippets in the library at ``url``; their ids and the seconds it took."""
    from filestore import open_filestore
    from singlecell.accounts import open_accounts
    from singlecell.library import open_library
    from singlecell.library.model import Draft
    from singlecell.store import open_store

    store = open_store(url)
    store.create_schema()
    files = open_filestore(files_url)
    files.create()
    accounts = open_accounts(url)
    library = open_library(url, files)
    owner = accounts.create_user("bench", "a bench password")
    rng = random.Random(seed)
    ids = []
    started = time.perf_counter()
    for n in range(count):
        words = rng.sample(WORDS, 6)
        code = "\n".join(f"def {rng.choice(WORDS)}_{rng.choice(WORDS)}_{i}(x):\n    return x * {i}  # "
                         f"{' '.join(rng.sample(WORDS, 4))}" for i in range(rng.randint(3, 12)))
        draft = Draft(title=f"{words[0].title()} {words[1]} {n}", blurb=f"A snippet about {' and '.join(words[2:5])}.",
                      tags=tuple(rng.sample(TAGS, 2)), files={"main.py": code}, command=f"{words[5]}_x = 1")
        ids.append(library.create(owner.id, draft).id)
    seconds = time.perf_counter() - started
    library.close()
    accounts.close()
    store.close()
    files.close()
    return ids, seconds


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def database_pids(admin_url: str, database: str) -> Callable[[], list[int]]:
    """The PostgreSQL server processes serving ``database`` (the web process's pooled connections)."""
    import psycopg

    def pids() -> list[int]:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                                (database,)).fetchall()
        return [int(row[0]) for row in rows]
    return pids


def total_cpu_ms(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_ms(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass  # a connection that closed
    return found


def measure(client: Client, pid: int, paths: list[str], method: str = "GET", headers: dict[str, str] | None = None,
            db_pids: Callable[[], list[int]] | None = None) -> tuple[float, float, float, float | None]:
    """(p50 ms, p99 ms, web CPU ms per request, database server CPU ms per request or None) of
    ``paths``, one at a time."""
    times = []
    before = cpu_ms(pid)
    db_before = total_cpu_ms(db_pids()) if db_pids else {}
    for path in paths:
        start = time.perf_counter()
        status, _, _ = client.request(method, path, b"{}" if method == "POST" else b"",
                                      {"Content-Type": "application/json", **(headers or {})})
        times.append((time.perf_counter() - start) * 1000)
        assert status in (200, 201), (path, status)
    cpu = (cpu_ms(pid) - before) / len(paths)
    db_cpu = None
    if db_pids:  # a server process that began during the run counts from 0
        after = total_cpu_ms(db_pids())
        db_cpu = sum(ms - db_before.get(p, 0.0) for p, ms in after.items()) / len(paths)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], cpu, db_cpu


def bench(name: str, url: str, files_url: str, data_dir: str, count: int, rows: list[tuple[str, ...]],
          db_pids: Callable[[], list[int]] | None = None) -> None:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    ids, fill_seconds = fill(url, files_url, count)
    rows.append((name, f"fill {count} snippets (library.create)", f"{fill_seconds / count * 1000:.1f}", "", "", "",
                 ""))
    port = free_port()
    web = launch("web", data_dir, "--port", str(port), "--db", url, "--files", files_url, "--no-examples")
    client = Client(f"http://127.0.0.1:{port}")
    try:
        client.wait_until_up(60)
        token = subprocess.run([sys.executable, "-m", "singlecell", "token", "create", "--user", "bench", "--db",
                                url, "--data-dir", data_dir], capture_output=True, text=True, check=True,
                               cwd=ROOT).stdout.strip()
        rng = random.Random(2)
        one = [f"/api/snippets?q={rng.choice(WORDS)}" for _ in range(200)]
        three = [f"/api/snippets?q={'+'.join(rng.sample(WORDS, 3))}" for _ in range(200)]
        def run(paths: list[str], method: str = "GET", headers: dict[str, str] | None = None
                ) -> tuple[float, float, float, float | None]:
            return measure(client, web.pid, paths, method, headers, db_pids)

        cases: list[tuple[str, Callable[[], tuple[float, float, float, float | None]]]] = [
            ("reference: GET /health (HTTP, tornado, one indexed count)", lambda: run(["/health"] * 200)),
            ("search, one word (API)", lambda: run(one)),
            ("search, three words (API)", lambda: run(three)),
            ("search page, one word", lambda: run([p.replace("/api/snippets", "/library") for p in one[:100]])),
            ("browse page, newest", lambda: run([f"/library?page={rng.randint(1, 50)}" for _ in range(100)])),
            ("browse page, by tag", lambda: run([f"/library?tag={rng.choice(TAGS).split('/')[0]}"
                                                 for _ in range(100)])),
            ("snippet page", lambda: run([f"/s/{rng.choice(ids)}" for _ in range(200)])),
            ("fork (API)", lambda: run([f"/api/snippets/{rng.choice(ids)}/fork" for _ in range(100)], "POST",
                                       {"Authorization": f"Bearer {token}"})),
        ]
        floor = None
        for what, case in cases:
            measure(client, web.pid, ["/library"] * 5)  # warm
            p50, p99, cpu, db_cpu = case()
            floor = floor or p50
            rows.append((name, what, f"{p50:.1f}", f"{p50 / floor:.1f}×", f"{p99:.1f}", f"{cpu:.1f}",
                         "in the web process" if db_cpu is None else f"{db_cpu:.1f}"))
    finally:
        client.close()
        web.terminate()
        web.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snippets", type=int, default=10_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an admin URL: a database of its own is made there and dropped after")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    folder = tempfile.mkdtemp(prefix="library-bench-")
    try:
        bench("SQLite", f"sqlite:///{folder}/sqlite/singlecell.db", f"sqlite:///{folder}/sqlite/files.db",
              f"{folder}/sqlite", args.snippets, rows)
        if not args.no_postgres:
            import psycopg

            name = f"library_bench_{uuid.uuid4().hex[:8]}"
            try:
                admin = psycopg.connect(args.postgres, autocommit=True, connect_timeout=3)
            except psycopg.OperationalError as exc:
                print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
            else:
                admin.execute(f'CREATE DATABASE "{name}"')
                url = args.postgres.rsplit("/", 1)[0] + "/" + name
                try:
                    bench("PostgreSQL", url, url, f"{folder}/postgres", args.snippets, rows,
                          database_pids(args.postgres, name))
                finally:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    admin.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| database | what | p50 ms | p50 ÷ /health p50 | p99 ms | web CPU ms/request | "
          "database server CPU ms/request |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; requests one at a time, over HTTP, to a "
          "`singlecell web`")


if __name__ == "__main__":
    main()
