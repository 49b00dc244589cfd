"""loadtests/locustfile.py, headless for about 20 s against a live server: no request may fail."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import ROOT, Server

LOCUST = shutil.which("locust", path=str(Path(sys.executable).parent)) or shutil.which("locust")


def run_locust(url: str, seconds: int, users: int, out: Path) -> tuple[int, dict[str, dict[str, str]], str]:
    """(exit code, stats rows by name, output)."""
    if LOCUST is None:
        pytest.fail("locust is missing: pip install '.[test]'")
    result = subprocess.run(
        [LOCUST, "-f", str(ROOT / "loadtests/locustfile.py"), "--host", url, "--headless", "-u", str(users),
         "-r", str(users), "-t", f"{seconds}s", "--only-summary", "--csv", str(out / "locust"),
         "--exit-code-on-error", "1", "--stop-timeout", "30"],
        cwd=out, capture_output=True, text=True, timeout=seconds + 120)
    with open(out / "locust_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    return result.returncode, rows, result.stdout + result.stderr


def test_locust_for_20_seconds_with_no_failed_request(server: Server, tmp_path: Path) -> None:
    code, rows, output = run_locust(server.url, 20, 10, tmp_path)
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0, output[-3000:]
    assert code == 0, output[-3000:]
    assert int(total["Request Count"]) > 100
    # every kind of cell in the mix ran, both ways
    for name in ("trivial", "print loop", "plot", "error", "file"):
        assert int(rows[f"/eval [{name}]"]["Request Count"]) > 0, name
        assert int(rows[f"/execute [{name}]"]["Request Count"]) > 0, name
    assert int(rows["/output/[id]"]["Request Count"]) > 0 and int(rows["/files/[id]/[name]"]["Request Count"]) > 0


def test_locust_fails_when_requests_fail(start_server: Callable[..., Server], tmp_path: Path) -> None:
    # one waiting request at most: most of 10 users' requests get 503, which must count as failures
    busy = start_server("serve", "--max-queue", "1", "--kernels", "1", "--ready-kernels", "1")
    code, rows, output = run_locust(busy.url, 5, 10, tmp_path)
    assert int(rows["Aggregated"]["Failure Count"]) > 0, output[-2000:]
    assert code == 1
