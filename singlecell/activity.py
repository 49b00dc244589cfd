"""What a deployment did over a window, from the store's timings (``Store.timings``): per minute,
the cells that ended and their latency, and how many waited and ran; over the whole window, counts
and percentiles. The status page (``/status``) and ``singlecell stats`` show it; it needs no
Prometheus, and every web process sees the same figures, since they come from the one store."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from singlecell.store.base import Timing

MINUTE = 60.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q ≤ 100) of ``values``; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Minute:
    start: float
    ended: int  # cells that ended in this minute
    p50: float | None  # their end-to-end seconds, submitted to ended
    p99: float | None
    waiting: int  # cells waiting for a device at the minute's end
    running: int  # cells running at the minute's end


@dataclass(frozen=True)
class Window:
    since: float
    until: float
    submitted: int
    ended: dict[str, int]  # by terminal status
    waiting: int  # now
    running: int  # now
    queue_wait: tuple[float | None, float | None, float | None]  # p50, p90, p99 seconds
    run: tuple[float | None, float | None, float | None]
    end_to_end: tuple[float | None, float | None, float | None]


def _waiting_at(t: Timing, moment: float) -> bool:
    return t.created <= moment and (t.started is None or t.started > moment) and (
        t.finished is None or t.finished > moment)


def _running_at(t: Timing, moment: float) -> bool:
    return t.started is not None and t.started <= moment and (t.finished is None or t.finished > moment)


def minutes(timings: Sequence[Timing], since: float, until: float) -> list[Minute]:
    """One :class:`Minute` for each whole minute from ``since`` to ``until``: one pass over the
    timings (a busy window holds tens of thousands), not one per minute."""
    count = int((until - since + 1e-9) // MINUTE)
    latencies: list[list[float]] = [[] for _ in range(count)]
    waiting, running = [0] * (count + 1), [0] * (count + 1)  # difference arrays over the minutes' ends

    def mark(counts: list[int], begin: float, end: float | None) -> None:
        """Count the minutes whose end falls in [begin, end)."""
        first = max(0, math.ceil((begin - since) / MINUTE - 1))  # the first minute ending at or after begin
        last = count if end is None else min(count, math.ceil((end - since) / MINUTE - 1))
        if first < last:
            counts[first] += 1
            counts[last] -= 1

    for t in timings:
        if t.finished is not None and since <= t.finished < since + count * MINUTE:
            latencies[int((t.finished - since) // MINUTE)].append(t.finished - t.created)
        stop = t.finished if t.started is None else t.started if t.finished is None else min(t.started, t.finished)
        mark(waiting, t.created, stop)
        if t.started is not None:
            mark(running, t.started, t.finished)
    out = []
    now_waiting = now_running = 0
    for i in range(count):
        now_waiting += waiting[i]
        now_running += running[i]
        out.append(Minute(since + i * MINUTE, len(latencies[i]), percentile(latencies[i], 50),
                          percentile(latencies[i], 99), now_waiting, now_running))
    return out


def _three(values: list[float]) -> tuple[float | None, float | None, float | None]:
    return percentile(values, 50), percentile(values, 90), percentile(values, 99)


def window(timings: Sequence[Timing], since: float, until: float) -> Window:
    """The whole window's counts and percentiles (of the cells that ended in it)."""
    ended = [t for t in timings if t.finished is not None and since <= t.finished < until]
    started = [t for t in ended if t.started is not None]
    return Window(
        since, until,
        submitted=sum(since <= t.created < until for t in timings),
        ended=dict(Counter(t.status.value for t in ended)),
        waiting=sum(_waiting_at(t, until) for t in timings),
        running=sum(_running_at(t, until) for t in timings),
        queue_wait=_three([t.started - t.created for t in started if t.started is not None]),
        run=_three([t.finished - t.started for t in started if t.started is not None and t.finished is not None]),
        end_to_end=_three([t.finished - t.created for t in ended if t.finished is not None]),
    )


__all__ = ["Minute", "Window", "minutes", "percentile", "window"]
