"""loadtests/tsung.xml, run by real Tsung (Debian's package; .ci/run installs it) for 10 s
against a live server: every session must finish, every <match> hold, every answer be 2xx."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import ROOT, Server


def test_the_tsung_scenario_runs_clean(server: Server, tmp_path: Path) -> None:
    tsung = shutil.which("tsung")
    if tsung is None:
        reason = "the Tsung test needs Debian's tsung: apt-get install tsung"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: .ci/run installs it)")
        pytest.skip(reason)
    scenario = (ROOT / "loadtests/tsung.xml").read_text()
    scenario = scenario.replace('port="8888"', f'port="{server.port}"')
    scenario = scenario.replace('duration="60"', 'duration="10"').replace('arrivalrate="10"', 'arrivalrate="4"')
    (tmp_path / "tsung.xml").write_text(scenario)
    result = subprocess.run([tsung, "-f", str(tmp_path / "tsung.xml"), "-l", str(tmp_path / "log"), "start"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (log,) = (tmp_path / "log").glob("*/tsung.log")
    totals: dict[str, int] = {}
    for name, total in re.findall(r"^stats: (\S+) \S+ (\S+)", log.read_text(), re.MULTILINE):
        totals[name] = int(float(total))  # the last line of each counter holds its running total
    assert totals.get("users_count", 0) >= 20 and totals["finish_users_count"] == totals["users_count"], totals
    assert totals.get("nomatch", 0) == 0 and totals.get("match", 0) > 0, totals
    codes = {name for name in totals if name.isdigit()}
    assert codes and codes <= {"200", "202"}, totals
    assert not [name for name in totals if name.startswith("error")], totals
