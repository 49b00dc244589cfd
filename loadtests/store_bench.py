"""The store's own cost per cell, in this process: submit, claim and finish (two messages), on a
new SQLite store, without and with what the quotas add (the caller's key on the request, the
kernel's CPU seconds on its ending and in its key's usage of the day).

    python loadtests/store_bench.py [--cells 500] [--rounds 6]

Rounds of each kind alternate after a warm-up; the table gives each kind's median CPU and wall
milliseconds per cell, and the ratio of the two (a ratio travels between machines; the
milliseconds do not).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from singlecell.protocol import execute_request, message  # noqa: E402
from singlecell.store import NewRequest, Status, Store, StoredMessage, open_store  # noqa: E402


def one_round(store: Store, cells: int, keyed: bool) -> tuple[float, float]:
    """(CPU ms, wall ms) per cell for ``cells`` cells."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(cells):
        request = execute_request("1 + 1")
        request_id = request["header"]["msg_id"]
        store.submit(NewRequest(request_id, request, 30.0, quota_key="a:127.0.0.1" if keyed else ""), 10_000)
        store.claim("bench", 1, 60.0)
        store.finish(request_id, "bench", Status.DONE,
                     [StoredMessage(1, message("status", {"execution_state": "busy"}, request)),
                      StoredMessage(2, message("status", {"execution_state": "idle"}, request))],
                     cpu=0.012 if keyed else None)
    return (time.process_time() - cpu) * 1000 / cells, (time.perf_counter() - wall) * 1000 / cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-bench-") as folder:
        store = open_store(f"sqlite:///{folder}/store.db")
        store.create_schema()
        one_round(store, args.cells // 2, False)  # warm-up: caches, pages, statement compilation
        one_round(store, args.cells // 2, True)
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for keyed in (False, True):
                results[keyed].append(one_round(store, args.cells, keyed))
        store.close()
    medians = {keyed: (median_of(r, 0), median_of(r, 1)) for keyed, r in results.items()}
    print(f"| cell's store work ({args.rounds} rounds of {args.cells}) | CPU ms/cell | wall ms/cell |")
    print("|---|---|---|")
    for keyed, label in ((False, "no key, no CPU"), (True, "key and CPU seconds (quotas)")):
        print(f"| {label} | {medians[keyed][0]:.3f} | {medians[keyed][1]:.3f} |")
    print(f"| ratio | {medians[True][0] / medians[False][0]:.2f} | {medians[True][1] / medians[False][1]:.2f} |")
    return 0


def median_of(rows: list[tuple[float, float]], column: int) -> float:
    return statistics.median(row[column] for row in rows)


if __name__ == "__main__":
    sys.exit(main())
