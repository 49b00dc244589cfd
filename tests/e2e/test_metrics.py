"""Every metric moves: the web process's ``/metrics`` and a device's ``--metrics-port``, scraped
before and after the things each counts, on real servers."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Server, free_port, wait_until

Labels = dict[str, str]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at ``url``: (name, sorted labels) → value."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have))


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def cell(url: str, code: str, path: str = "/eval", **fields: object) -> int:
    return post(url + path, json.dumps({"code": code, **fields}).encode())


def test_the_web_and_the_device_count_what_they_do(start_server: Callable[..., Server]) -> None:
    port = free_port()
    server = start_server("serve", "--kernels", "1", "--ready-kernels", "1", "--time-limit", "2",
                          "--max-upload-size", "1000", "--metrics-port", str(port))
    web, device = server.url + "/metrics", f"http://127.0.0.1:{port}/metrics"
    assert wait_until(lambda: value(scrape(device), "singlecell_kernels", state="ready") == 1, 15)
    web0, dev0 = scrape(web), scrape(device)

    assert cell(server.url, "1 + 1") == 200
    assert post(server.url + "/eval", b"x" * 1_000_000) == 413  # past the body limit (about 450 KB here)
    # one cell runs past the time limit while another waits behind it (one kernel): busy and queued
    assert cell(server.url, "import time; time.sleep(10)", "/execute") == 202
    assert cell(server.url, "2 + 2", "/execute") == 202
    assert wait_until(lambda: value(scrape(device), "singlecell_kernels", state="busy") == 1
                      and value(scrape(web), "singlecell_queue_depth") == 1, 10)
    # a widget keeps its kernel: a live session (queued with /execute; /eval never keeps one)
    assert wait_until(lambda: value(scrape(web), "singlecell_queue_depth") == 0, 15)
    assert cell(server.url, "import ipywidgets\nipywidgets.IntSlider()", "/execute") == 202
    assert wait_until(lambda: value(scrape(device), "singlecell_live_sessions") == 1, 10)
    # as root every kernel has a uid of its own, kept for the next: one cell, one waiting, one
    # session and the one being replaced, within the default --uid-cache (twice 1 + 1 + 12)
    uids = value(scrape(device), "singlecell_kernel_uids")
    assert (2 <= uids <= 28) if os.geteuid() == 0 else uids == 0, uids
    assert wait_until(lambda: value(scrape(device), "singlecell_cells_total") - value(dev0, "singlecell_cells_total")
                      >= 4, 15)
    web1, dev1 = scrape(web), scrape(device)

    def moved(before: dict, after: dict, name: str, by: float = 1, **labels: str) -> None:  # type: ignore[type-arg]
        change = value(after, name, **labels) - value(before, name, **labels)
        assert change >= by, f"{name}{labels} moved by {change}, not at least {by}"

    # the web process
    moved(web0, web1, "singlecell_http_requests_total", route="/eval$", method="POST", status="200")
    moved(web0, web1, "singlecell_http_requests_total", route="/execute$", method="POST", status="202", by=3)
    moved(web0, web1, "singlecell_http_request_seconds_count", route="/eval$", by=2)
    moved(web0, web1, "singlecell_limits_hit_total", limit="too_large")
    moved(web0, web1, "singlecell_store_call_seconds_count", call="submit", by=4)
    moved(web0, web1, "singlecell_wakeups_total", source="wakeup")
    # the device
    moved(dev0, dev1, "singlecell_cells_total", status="done", by=3)  # 1+1, 2+2, the widget cell
    moved(dev0, dev1, "singlecell_cells_total", status="timeout")
    moved(dev0, dev1, "singlecell_limits_hit_total", limit="time")
    for histogram in ("singlecell_queue_wait_seconds", "singlecell_run_seconds", "singlecell_end_to_end_seconds"):
        moved(dev0, dev1, histogram + "_count", by=4)
    # the queued cell waited for the slow one: at least a second in the queue shows in the buckets
    assert value(dev1, "singlecell_queue_wait_seconds_bucket", le="0.5") < value(
        dev1, "singlecell_queue_wait_seconds_count")
    moved(dev0, dev1, "singlecell_store_call_seconds_count", call="claim", by=4)
    moved(dev0, dev1, "singlecell_store_call_seconds_count", call="finish", by=4)
    moved(dev0, dev1, "singlecell_wakeups_total", source="wakeup", by=3)


def test_fallback_polls_and_lost_requests_are_counted(start_server: Callable[..., Server], tmp_path: object) -> None:
    """A web process and a device on one SQLite store but different data dirs share no wake-up
    socket: every piece of news comes by the fallback poll. A device killed mid-cell leaves its
    request to be declared lost by the web process."""
    web = start_server("web", "--lease-seconds", "2", "--poll-interval", "0.2", name="web")
    db = ["--db", f"sqlite:///{web.db_path}"]
    port = free_port()
    device = start_server("device", *db, "--lease-seconds", "2", "--poll-interval", "0.2", "--metrics-port", str(port),
                          "--kernels", "1", "--ready-kernels", "1", name="device")
    device_url = f"http://127.0.0.1:{port}/metrics"
    assert wait_until(lambda: _answers(device_url), 30)
    web0 = scrape(web.url + "/metrics")
    assert cell(web.url, "print(1)") == 200
    web1, dev1 = scrape(web.url + "/metrics"), scrape(device_url)
    assert value(dev1, "singlecell_wakeups_total", source="fallback") >= 1  # claimed by its poll
    assert value(dev1, "singlecell_wakeups_total", source="wakeup") == 0
    assert value(web1, "singlecell_wakeups_total", source="fallback") - value(
        web0, "singlecell_wakeups_total", source="fallback") >= 1  # /eval learnt of the end by its poll

    assert cell(web.url, "import time; print('go', flush=True); time.sleep(60)", "/execute") == 202
    assert wait_until(lambda: value(scrape(device_url), "singlecell_kernels", state="busy") == 1, 15)
    device.kill()
    assert wait_until(lambda: value(scrape(web.url + "/metrics"), "singlecell_requests_lost_total") == 1, 20)


def _answers(url: str) -> bool:
    try:
        scrape(url)
    except OSError:
        time.sleep(0.2)
        return False
    return True
