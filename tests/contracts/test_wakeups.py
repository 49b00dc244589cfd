"""The wake-up contract (singlecell/wakeup.py), run once per backend: the ZeroMQ one of a host,
PostgreSQL's LISTEN/NOTIFY and MongoDB's (change streams on a replica set; on mongomock, or a
standalone server, this host's ZeroMQ). A web end and a device end, each in this process's loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from filestore.mongodb import database_for
from singlecell.store import documents
from singlecell.wakeup import (
    HostWakeups,
    MongoWakeups,
    PostgresWakeups,
    Wakeups,
    change_streams_missing,
    describe_wakeups,
    open_wakeups,
)
from tests import mongo, postgres

Pair = tuple[Wakeups, Wakeups]  # (web, device)


@pytest.fixture(params=["host", pytest.param("postgresql", marks=pytest.mark.postgres), "mongodb"])
def make_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Pair]]:
    if request.param in ("postgresql", "mongodb"):
        with postgres.database() if request.param == "postgresql" else mongo.database() as url:
            yield lambda: (open_wakeups(url, str(tmp_path), "web"), open_wakeups(url, str(tmp_path), "device"))
        return
    store = f"sqlite:///{tmp_path / 'store.db'}"
    yield lambda: (open_wakeups(store, str(tmp_path), "web"), open_wakeups(store, str(tmp_path), "device"))


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("the wake-up never came")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def started(pair: Pair) -> AsyncIterator[Pair]:
    for end in pair:
        await end.start()
    for end in pair:  # a listener must be up before anything is sent to it
        if isinstance(end, PostgresWakeups):
            await asyncio.wait_for(end.listening.wait(), 10)
        if isinstance(end, MongoWakeups) and end.streaming:
            await asyncio.to_thread(end.listening.wait, 10)
            assert end.listening.is_set()
    try:
        yield pair
    finally:
        for end in pair:
            end.close()


def test_open_wakeups_picks_the_backend_by_store(tmp_path: Path) -> None:
    assert isinstance(open_wakeups(f"sqlite:///{tmp_path}/s.db", str(tmp_path), "web"), HostWakeups)
    assert isinstance(open_wakeups("postgresql://u@h/db", str(tmp_path), "web"), PostgresWakeups)
    assert isinstance(open_wakeups("postgresql+psycopg://u@h/db", str(tmp_path), "device"), PostgresWakeups)
    assert isinstance(open_wakeups("mongodb://h/db", str(tmp_path), "web"), MongoWakeups)
    assert isinstance(open_wakeups("mongodb+srv://h/db", str(tmp_path), "device"), MongoWakeups)


def test_each_end_hears_what_the_other_says(make_pair: Callable[[], Pair]) -> None:
    async def scenario() -> None:
        async with started(make_pair()) as (web, device):
            heard: dict[str, Any] = {"queued": 0, "stop": 0, "progress": []}
            device.on_queued = lambda: heard.__setitem__("queued", heard["queued"] + 1)
            device.on_stop = lambda: heard.__setitem__("stop", heard["stop"] + 1)
            web.on_progress = heard["progress"].append
            # the ZeroMQ sockets connect in the background: say it until heard once
            for _ in range(200):
                web.queued()
                await asyncio.sleep(0.01)
                if heard["queued"]:
                    break
            heard["queued"] = 0
            web.queued()
            await until(lambda: heard["queued"] >= 1)
            assert heard["stop"] == 0  # a queued request is not a stop
            web.stop_requested()
            await until(lambda: heard["stop"] == 1)
            for _ in range(200):
                device.progressed(["warm"])
                await asyncio.sleep(0.01)
                if heard["progress"]:
                    break
            heard["progress"].clear()
            ids = [f"{i:032x}" for i in range(600)]  # more than one PostgreSQL payload holds
            device.progressed(ids[:300])
            device.progressed(ids[300:])
            await until(lambda: set(ids) <= set(heard["progress"]))
            # each end says only its own part: the web tier's ``progressed`` is not heard
            before = list(heard["progress"])
            web.progressed(["nobody"])
            device.queued()
            await asyncio.sleep(0.2)
            assert heard["progress"] == before and "nobody" not in heard["progress"]

    asyncio.run(scenario())


@pytest.mark.postgres
def test_postgres_wake_ups_come_back_after_the_connection_is_killed() -> None:
    with postgres.database() as url:
        async def scenario() -> None:
            async with started((PostgresWakeups(url, "web"), PostgresWakeups(url, "device"))) as (web, device):
                heard: list[str] = []
                device.on_queued = lambda: heard.append("q")
                web.queued()
                await until(lambda: heard == ["q"])
                assert isinstance(device, PostgresWakeups)
                # the server drops every other connection of this database, as a restart would
                admin = postgres.admin()
                with admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))
                await until(lambda: not device.listening.is_set(), timeout=10)
                await asyncio.wait_for(device.listening.wait(), 15)
                for _ in range(100):  # the sender's connection is made again on its next send
                    web.queued()
                    await asyncio.sleep(0.05)
                    if len(heard) >= 2:
                        break
                assert len(heard) >= 2

        asyncio.run(scenario())


def test_mongodb_wake_ups_say_whether_they_cross_hosts(tmp_path: Path) -> None:
    """Change streams where the server has them, else this host's ZeroMQ; ``streaming`` and the
    reason tell an operator (and ``doctor``) which."""
    with mongo.database() as url:
        missing = change_streams_missing(database_for(url))
        if not mongo.real():
            assert "did not say whether it is a replica set" in missing  # mongomock answers no hello
        said = describe_wakeups(url, 0.25)  # what doctor prints
        assert said == ("MongoDB change streams: processes on any host" if not missing else
                        f"ZeroMQ between this host's processes; processes on other hosts poll every 0.25 s ({missing})")

        async def scenario() -> None:
            end = MongoWakeups(url, str(tmp_path), "device")
            assert end.streaming is None  # not asked yet
            await end.start()
            try:
                assert end.streaming is (missing == "")
            finally:
                end.close()

        asyncio.run(scenario())


def test_mongodb_change_streams_carry_wake_ups_between_hosts(tmp_path: Path) -> None:
    """Ends with different data dirs share no ZeroMQ socket, as on two hosts: only the change
    stream can carry what they say. The relayed documents expire (documents.py's TTL index)."""
    mongo.need_server("change streams")
    with mongo.database() as url:
        db = database_for(url)
        if change_streams_missing(db):
            pytest.skip(f"SINGLECELL_TEST_MONGODB names a server without change streams: {change_streams_missing(db)}")
        documents.migrate(db)

        async def scenario() -> None:
            web = MongoWakeups(url, str(tmp_path / "host-a"), "web")
            device = MongoWakeups(url, str(tmp_path / "host-b"), "device")
            async with started((web, device)):
                heard: dict[str, list[str]] = {"work": [], "progress": []}
                device.on_queued = lambda: heard["work"].append("q")
                device.on_input = heard["work"].append
                web.on_progress = heard["progress"].append
                web.queued()
                web.input_added("r1")
                await until(lambda: heard["work"] == ["q", "r1"])
                ids = [f"{i:032x}" for i in range(3000)]  # more than one document holds
                device.progressed(ids)
                await until(lambda: set(ids) <= set(heard["progress"]))
            assert db["wakeups"].count_documents({"to": "web"}) >= 2
            assert all(doc["at"] is not None for doc in db["wakeups"].find())

        asyncio.run(scenario())
