"""Prometheus metrics (``prometheus_client``) of a web process and of a device.

Each process keeps its own :class:`Metrics`, in a registry of its own (never the library's global
one, so nothing is registered at import and tests can hold several). A web process serves its
own at ``GET /metrics``; a device at ``--metrics-port``. Both are Prometheus's text format.

Every name starts ``singlecell_``. What a process cannot see it does not export: the web tier
has no kernels, a device answers no HTTP. Gauges whose value lives elsewhere (the queue in the
store, the kernels in the pool) are read when scraped, through the functions given to
:meth:`Metrics.watch`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

T = TypeVar("T")

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: seconds: a cell's latencies run from milliseconds (a warm kernel) to the time limit
CELL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: seconds: one store call, from a cached read to a write waiting for a lock
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    """The metrics of one process; ``role`` is ``web`` or ``device``."""

    def __init__(self, role: str) -> None:
        if role not in ("web", "device"):
            raise ValueError(f"role must be 'web' or 'device', not {role!r}")
        self.role = role
        self.registry = CollectorRegistry()
        r = self.registry
        # both roles
        self.store_seconds = Histogram("singlecell_store_call_seconds", "Time of one store call, by call",
                                       ["call"], buckets=STORE_BUCKETS, registry=r)
        self.wakeups = Counter("singlecell_wakeups_total", "What made this process look at the store again: a "
                               "wake-up (ZeroMQ or NOTIFY), or the fallback poll finding news a wake-up missed",
                               ["source"], registry=r)
        self.limits = Counter("singlecell_limits_hit_total", "Limits hit, by kind: the web tier's refusals (a full "
                              "queue, rate limits, session caps, bodies too large) and the device's cell limits",
                              ["limit"], registry=r)
        self.lost = Counter("singlecell_requests_lost_total", "Requests this process declared lost: their "
                            "device stopped renewing its lease", registry=r)
        self.queue_depth = Gauge("singlecell_queue_depth", "Requests waiting for a device (read from the store "
                                 "when scraped)", registry=r)
        if role == "web":
            self.requests = Counter("singlecell_http_requests_total", "HTTP requests answered, by route (its "
                                    "pattern, not the path), method and status", ["route", "method", "status"],
                                    registry=r)
            self.callbacks = Counter("singlecell_callbacks_total", "Callback attempts this process made, by outcome: "
                                     "delivered, retried (it failed, and is tried again later), failed (out of "
                                     "attempts) or refused (an address callbacks may not reach)", ["outcome"],
                                     registry=r)
            self.http_seconds = Histogram("singlecell_http_request_seconds", "Time to answer an HTTP request, by "
                                          "route (long-polls and /eval include their wait)", ["route"],
                                          buckets=CELL_BUCKETS, registry=r)
        else:
            self.cells = Counter("singlecell_cells_total", "Cells this device ended, by terminal status",
                                 ["status"], registry=r)
            self.queue_wait = Histogram("singlecell_queue_wait_seconds", "From submitted to claimed by a device",
                                        buckets=CELL_BUCKETS, registry=r)
            self.run_seconds = Histogram("singlecell_run_seconds", "From claimed to ended (the kernel's work, "
                                         "and collecting its output and files)", buckets=CELL_BUCKETS, registry=r)
            self.end_to_end = Histogram("singlecell_end_to_end_seconds", "From submitted to ended",
                                        buckets=CELL_BUCKETS, registry=r)
            self.kernels = Gauge("singlecell_kernels", "This device's kernels: ready (started ahead, waiting) and "
                                 "busy (running a cell, or kept by a live session)", ["state"], registry=r)
            self.sessions = Gauge("singlecell_live_sessions", "Live sessions (widgets, Jupyter kernels) on this "
                                  "device", registry=r)
            self.uids = Gauge("singlecell_kernel_uids", "Kernel uids this device keeps claimed, each with its "
                              "control groups and network namespace (at most --uid-cache; 0 unless root)",
                              registry=r)

    # -- what is read when scraped ---------------------------------------------------------

    def watch(self, queue_depth: Callable[[], int] | None = None, ready: Callable[[], int] | None = None,
              busy: Callable[[], int] | None = None, sessions: Callable[[], int] | None = None,
              uids: Callable[[], int] | None = None) -> None:
        """The functions that give the gauges their values at each scrape. A function that
        raises (the store unreachable) leaves the gauge at NaN for that scrape."""
        if queue_depth is not None:
            self.queue_depth.set_function(_or_nan(queue_depth))
        if ready is not None:
            self.kernels.labels("ready").set_function(_or_nan(ready))
        if busy is not None:
            self.kernels.labels("busy").set_function(_or_nan(busy))
        if sessions is not None:
            self.sessions.set_function(_or_nan(sessions))
        if uids is not None:
            self.uids.set_function(_or_nan(uids))

    # -- events ------------------------------------------------------------------------------

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    def ended(self, status: str, created: float, started: float | None, now: float | None = None) -> None:
        """A cell ended (its terminal status stored) at ``now``; it was submitted at ``created``
        and claimed at ``started``."""
        now = time.time() if now is None else now
        self.cells.labels(status).inc()
        self.end_to_end.observe(max(0.0, now - created))
        if started is not None:
            self.queue_wait.observe(max(0.0, started - created))
            self.run_seconds.observe(max(0.0, now - started))

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format."""
        return generate_latest(self.registry)


def _or_nan(read: Callable[[], int]) -> Callable[[], float]:
    def value() -> float:
        try:
            return float(read())
        except Exception:  # a scrape must answer even when the store does not
            return float("nan")
    return value


class TimedCalls(Generic[T]):
    """``target``, every method call of which is timed into ``histogram`` by method name: a Store
    wrapped so (``timed(store, metrics)``) is used exactly as the store is."""

    def __init__(self, target: T, histogram: Histogram) -> None:
        self._target = target
        self._histogram = histogram
        self._wrapped: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or name.startswith("_"):
            return value
        known = self._wrapped.get(name)
        if known is not None:
            return known
        child = self._histogram.labels(name)

        @functools.wraps(value)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return getattr(self._target, name)(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - start)

        self._wrapped[name] = wrapped
        return wrapped


def timed(target: T, metrics: Metrics) -> T:
    """``target`` (a Store) with each call's time observed in ``singlecell_store_call_seconds``."""
    return TimedCalls(target, metrics.store_seconds)  # type: ignore[return-value]


__all__ = ["CONTENT_TYPE", "Metrics", "timed"]
