"""``GET /status``: a page a person can look at: over the last minutes, the cells that ended per
minute, their latency (p50 and p99), the queue, the kernels in use, and each device with its
sandbox layers. Read from the store (``Store.timings`` and ``Store.devices``), so it needs no
Prometheus and every web process shows the same."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from singlecell.activity import MINUTE, minutes, window
from singlecell.web.handlers import BaseHandler, PageMixin, Services

WINDOW_MINUTES = 15
REFRESH_SECONDS = 30
CHART_WIDTH, CHART_HEIGHT = 300, 80


@dataclass(frozen=True)
class Chart:
    """A small line chart, drawn by the template as SVG polylines: numbers only, computed here."""

    title: str
    unit: str
    top: float  # the value at the chart's top edge
    lines: list[tuple[str, str]]  # (css class, polyline points)
    last: list[tuple[str, str]]  # (label, the last minute's value, formatted)


def _points(values: Sequence[float | None], top: float) -> str:
    step = CHART_WIDTH / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{CHART_HEIGHT - (v / top) * CHART_HEIGHT:.1f}"
                    for i, v in enumerate(values) if v is not None)


def chart(title: str, unit: str, series: list[tuple[str, str, Sequence[float | None]]], fmt: str = "{:g}") -> Chart:
    top = max([v for _, _, values in series for v in values if v is not None] + [0.0]) or 1.0
    return Chart(title, unit, top, [(css, _points(values, top)) for css, _, values in series],
                 [(label, "–" if values[-1] is None else fmt.format(values[-1])) for _, label, values in series])


class StatusPage(PageMixin, BaseHandler):
    """``GET /status``."""

    def get(self) -> None:
        store, config = self.services.store, self.services.config
        now = time.time()
        until = now - now % MINUTE  # whole minutes: the current one is not over
        since = until - WINDOW_MINUTES * MINUTE
        timings = store.timings(since)
        per_minute = minutes(timings, since, until)
        summary = window(timings, since, now)
        devices = store.devices(now - 3 * config.lease_seconds)
        charts = [
            chart("Cells ended", "per minute", [("line-a", "ended", [float(m.ended) for m in per_minute])]),
            chart("Latency, submitted to ended", "seconds",
                  [("line-a", "p50", [m.p50 for m in per_minute]), ("line-b", "p99", [m.p99 for m in per_minute])],
                  "{:.3g} s"),
            chart("Queue and running cells", "at each minute's end",
                  [("line-a", "waiting", [float(m.waiting) for m in per_minute]),
                   ("line-b", "running", [float(m.running) for m in per_minute])]),
        ]
        self.set_header("Cache-Control", "no-store")
        self.page("status.html", summary=summary, charts=charts, devices=devices, now=now,
                  window_minutes=WINDOW_MINUTES, refresh=REFRESH_SECONDS, width=CHART_WIDTH, height=CHART_HEIGHT,
                  busy=sum(d.busy for d in devices), kernels=sum(d.kernels for d in devices))


def status_routes(services: Services) -> list[Any]:
    return [(r"/status", StatusPage, {"services": services})]


__all__ = ["status_routes"]
