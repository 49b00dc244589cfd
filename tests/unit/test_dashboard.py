"""docs/grafana-dashboard.json asks only for metrics and labels the processes export
(singlecell/metrics.py): a renamed metric breaks this test, not the operator's dashboard."""

from __future__ import annotations

import json
import re

from prometheus_client.metrics import MetricWrapperBase

from singlecell.metrics import Metrics
from tests.servers import ROOT

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Each sample name a web process or a device exports → the labels it may carry."""
    names: dict[str, set[str]] = {}
    for role in ("web", "device"):
        for metric in vars(Metrics(role)).values():
            if isinstance(metric, MetricWrapperBase):
                base = metric._name  # prometheus_client has no public accessor for a metric's labels
                for suffix in SUFFIXES[metric._type]:
                    labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                    names.setdefault(base.removesuffix("_total") + suffix if metric._type == "counter"
                                     else base + suffix, set()).update(labels)
    return names


def test_every_query_of_the_dashboard_names_an_exported_metric_and_its_labels() -> None:
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    known = exported()
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 10
    for expr in queries:
        used = re.findall(r"singlecell_[a-z_]+", expr)
        assert used, expr
        for name in used:
            assert name in known, f"{name} in {expr!r} is exported by no process"
            for group in re.findall(r"by \(([^)]*)\)", expr):
                for label in (g.strip() for g in group.split(",")):
                    assert label in known[name], f"{name} has no label {label!r} ({expr!r})"
            for label in re.findall(rf"{name}{{([a-z_]+)=", expr):
                assert label in known[name], f"{name} has no label {label!r} ({expr!r})"


def test_the_dashboard_shows_every_metric_the_issue_names() -> None:
    text = (ROOT / "docs/grafana-dashboard.json").read_text()
    for name in ("singlecell_http_requests_total", "singlecell_queue_wait_seconds", "singlecell_run_seconds",
                 "singlecell_end_to_end_seconds", "singlecell_queue_depth", "singlecell_kernels",
                 "singlecell_live_sessions", "singlecell_limits_hit_total", "singlecell_store_call_seconds",
                 "singlecell_wakeups_total", "singlecell_requests_lost_total"):
        assert name in text, name
