"""Past --max-queue: refused at once with 503 and Retry-After, nothing refused is stored, every
accepted request is answered, the queue never passes its limit, and memory stays flat.
(loadtests/overload.py measures the latencies.)"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from loadtests.overload import rss_mb
from singlecell.client import Client, ClientError
from tests.servers import Server

MAX_QUEUE = 10


def test_a_flood_past_the_queue_limit_is_refused_cleanly(start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--max-queue", str(MAX_QUEUE), "--kernels", "2", "--ready-kernels", "2")
    before = rss_mb(server.pid)
    rows = server.request_count()  # the first cell the helper ran to see it serve
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + 6

    def flood() -> None:
        with Client(server.url, timeout=120) as client:
            while time.monotonic() < stop:
                try:
                    answer = client.eval("print('ran')")
                    outcome = "ok" if answer["status"] == "ok" and answer["stdout"] == "ran\n" else "wrong"
                except ClientError as exc:
                    outcome = f"{exc.status} {exc.code}"
                    if exc.status == 503 and int(exc.headers.get("retry-after", "0")) < 1:
                        with lock:
                            problems.append("a 503 without Retry-After")
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=flood) for _ in range(32)]
    for t in threads:
        t.start()
    queued: list[int] = []
    with Client(server.url) as watcher:
        while any(t.is_alive() for t in threads):
            queued.append(watcher.health()["queued"])
            time.sleep(0.1)
    for t in threads:
        t.join()

    assert problems == []
    assert set(outcomes) == {"ok", "503 queue_full"}, outcomes  # nothing wrong, nothing else
    assert outcomes["503 queue_full"] > outcomes["ok"] > 10, outcomes
    assert max(queued) <= MAX_QUEUE
    assert server.request_count() - rows == outcomes["ok"]  # a refused request left nothing behind
    # a few thousand refusals leave the web tier's memory where it was (a leak would show here)
    assert rss_mb(server.pid) < before + 50, (before, rss_mb(server.pid))
