"""Fixtures shared by the test suites; the end-to-end ones start real servers (tests/servers.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from singlecell.client import Client
from tests import servers

_STARTED_AT = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    item.stash[_STARTED_AT] = time.monotonic()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """When a test that runs servers (end-to-end, attacks) fails, show the log of every server
    that ran during it."""
    outcome: Any = yield
    report = outcome.get_result()
    if not report.failed or not servers.STARTED or not {"e2e", "security", "browser"} & set(item.path.parts):
        return
    start = item.stash.get(_STARTED_AT, 0.0)
    for server in servers.active_between(start, time.monotonic()):
        report.sections.append((f"log of {server!r} (last lines; all in {server.log_path})",
                                server.log_tail()))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """One `singlecell serve` with the default settings, shared by every test that cannot
    disturb another (the cells they run are independent; no test stops or limits it)."""
    pool = servers.Servers(tmp_path_factory.mktemp("shared-serve"))
    started = pool("serve", name="shared")
    yield started
    pool.stop_all()


@pytest.fixture
def client(server: servers.Server) -> Iterator[Client]:
    c = server.client()
    yield c
    c.close()


@pytest.fixture
def start_server(tmp_path: Any) -> Iterator[Callable[..., servers.Server]]:
    """Start dedicated servers for one test: ``start_server("serve", "--time-limit", "2")``;
    each still running at the end must stop cleanly on SIGTERM."""
    pool = servers.Servers(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Servers]:
    """Start dedicated servers shared by the tests of one module (same call as start_server)."""
    pool = servers.Servers(tmp_path_factory.mktemp("module-servers"))
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def active_layers() -> set[str]:
    """The sandbox layers a server started by the tests has on this host (as `doctor` says)."""
    from device.service import check_sandbox
    from singlecell import config

    return {status.name for status in check_sandbox(config.load(environ={})) if status.active}
