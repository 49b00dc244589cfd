"""The status page's figures (singlecell/activity.py) against their definitions, on random timings."""

from __future__ import annotations

import random

from singlecell.activity import MINUTE, minutes, percentile, window
from singlecell.store.base import Status, Timing


def random_timings(rng: random.Random, since: float, count: int) -> list[Timing]:
    out = []
    for _ in range(count):
        created = since + rng.uniform(-120, 15 * MINUTE)
        started = created + rng.choice([0.0, rng.uniform(0, 90)]) if rng.random() < 0.8 else None
        end_from = started if started is not None else created
        finished = end_from + rng.uniform(0, 200) if rng.random() < 0.7 else None
        status = (Status.DONE if finished is not None else Status.RUNNING if started is not None else Status.QUEUED)
        out.append(Timing(created, started, finished, status))
    return out


def test_each_minute_counts_what_ended_in_it_and_what_waited_and_ran_at_its_end() -> None:
    rng = random.Random(7)
    since = 1_800_000_000.0
    timings = random_timings(rng, since, 2000)
    until = since + 15 * MINUTE
    result = minutes(timings, since, until)
    assert len(result) == 15
    for i, minute in enumerate(result):
        start, end = since + i * MINUTE, since + (i + 1) * MINUTE
        ended = [t.finished - t.created for t in timings if t.finished is not None and start <= t.finished < end]
        waiting = sum(t.created <= end and (t.started is None or t.started > end)
                      and (t.finished is None or t.finished > end) for t in timings)
        running = sum(t.started is not None and t.started <= end and (t.finished is None or t.finished > end)
                      for t in timings)
        assert (minute.start, minute.ended, minute.waiting, minute.running) == (start, len(ended), waiting, running)
        assert minute.p50 == percentile(ended, 50) and minute.p99 == percentile(ended, 99)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([float(v) for v in range(1, 101)], 50) == 50.0
    assert percentile([float(v) for v in range(1, 101)], 99) == 99.0
    assert percentile([1.0, 2.0], 50) == 1.0 and percentile([1.0, 2.0], 51) == 2.0


def test_the_window_counts_by_status_and_times_each_stage() -> None:
    since = 1000.0
    timings = [Timing(1000, 1001, 1003, Status.DONE), Timing(1010, 1012, 1020, Status.ERROR),
               Timing(1030, None, None, Status.QUEUED), Timing(1040, 1041, None, Status.RUNNING),
               Timing(900, 950, None, Status.RUNNING)]
    w = window(timings, since, 1060)
    assert w.submitted == 4 and w.ended == {"done": 1, "error": 1}
    assert (w.waiting, w.running) == (1, 2)
    assert w.queue_wait == (1, 2, 2) and w.run == (2, 8, 8) and w.end_to_end == (3, 10, 10)
