"""Fixtures of the attack tests: one hostile server (short limits) shared by every attack module.
(Its log is shown when an attack test fails, by the hooks of tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from singlecell.client import Client
from tests import servers
from tests.security.hostile import HOSTILE_FLAGS


@pytest.fixture(scope="session")
def hostile_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Servers]:
    pool = servers.Servers(tmp_path_factory.mktemp("hostile"))
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def hostile(hostile_pool: servers.Servers) -> servers.Server:
    """The server every attack is run against: every sandbox layer on, short limits, files kept
    in a directory filestore (the backend a path trick could break), 4 kernels at once."""
    files = hostile_pool.folder / "filestore"
    files.mkdir()
    return hostile_pool("serve", *HOSTILE_FLAGS, "--files", f"dir:{files}", name="hostile")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The modules that say ``THROUGH_KERNELS = True`` run every attack twice: as a one-shot cell,
    and in a Jupyter client's kernel (the kernel API and its WebSocket)."""
    if "client" in metafunc.fixturenames and getattr(metafunc.module, "THROUGH_KERNELS", False):
        metafunc.parametrize("client", ["cell", "kernel"], indirect=True)


@pytest.fixture
def client(hostile: servers.Server, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client of the hostile server (this overrides the shared default server's); for
    ``kernel``, one that runs each cell in a kernel of the kernel API."""
    if getattr(request, "param", "cell") == "kernel":
        from tests.jupyter import KernelCells

        yield KernelCells(hostile.url)  # type: ignore[misc]
        return
    c = hostile.client(timeout=60)
    yield c
    c.close()


@pytest.fixture
def second_client(hostile: servers.Server) -> Iterator[Client]:
    """Another connection, for the victim of an attack that runs at the same time."""
    c = hostile.client(timeout=60)
    yield c
    c.close()
