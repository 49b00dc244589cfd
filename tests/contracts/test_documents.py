"""The MongoDB store's lock documents and schema versions (singlecell/store/documents.py), on a
real server when ``SINGLECELL_TEST_MONGODB`` names one, else on mongomock (tests/mongo.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from filestore.mongodb import database_for
from singlecell.errors import ConfigError, StoreUnavailable
from singlecell.store import documents
from tests import mongo


@pytest.fixture
def db() -> Iterator[Any]:
    with mongo.database() as url:
        yield database_for(url)


def test_a_lock_is_held_by_one_holder_at_a_time(db: Any) -> None:
    inside, most = 0, 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, most
        for _ in range(5):
            with documents.locked(db, "admission"):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert most == 1 and inside == 0


def test_a_lock_its_holder_never_released_is_free_once_its_time_ran_out(db: Any) -> None:
    db[documents.LOCKS].insert_one({"_id": "schema", "holder": "a process that died", "until": time.time() + 0.2})
    with pytest.raises(StoreUnavailable, match="stayed held"):
        with documents.locked(db, "schema", wait=0.05):
            pass
    began = time.monotonic()
    with documents.locked(db, "schema", wait=5):
        assert db[documents.LOCKS].find_one({"_id": "schema"})["holder"] != "a process that died"
    assert time.monotonic() - began < 2


def test_migrating_makes_the_indexes_once_and_records_the_version(db: Any) -> None:
    assert documents.schema_version(db) == 0
    assert documents.migrate(db) == 0
    assert documents.schema_version(db) == documents.LATEST
    names = {index["name"] for index in db["messages"].list_indexes()}
    assert "by_request" in names
    assert "claim_order" in {index["name"] for index in db["requests"].list_indexes()}
    assert documents.migrate(db) == documents.LATEST  # again: nothing to do
    assert db[documents.VERSIONS].count_documents({}) == 1


def test_a_database_of_an_older_version_is_brought_up_step_by_step(db: Any) -> None:
    assert documents.migrate(db, to=1) == 0
    assert documents.schema_version(db) == 1
    assert "expire" not in {index["name"] for index in db["wakeups"].list_indexes()}
    assert documents.migrate(db) == 1
    assert documents.schema_version(db) == documents.LATEST
    expire = next(index for index in db["wakeups"].list_indexes() if index["name"] == "expire")
    assert expire["expireAfterSeconds"] == 60  # relayed wake-ups do not pile up


def test_a_database_newer_than_the_code_is_refused_untouched(db: Any) -> None:
    db[documents.VERSIONS].insert_one({"_id": "version", "version": documents.LATEST + 1})
    with pytest.raises(ConfigError, match="newer singlecell"):
        documents.migrate(db)
    assert documents.schema_version(db) == documents.LATEST + 1
    assert db[documents.LOCKS].find_one({"_id": documents.SCHEMA_LOCK})["holder"] is None  # released


def test_a_server_that_cannot_be_reached_is_store_unavailable_from_every_mongodb_backend(tmp_path: Any) -> None:
    import pymongo

    from filestore import mongodb
    from singlecell.accounts.mongo import MongoAccounts
    from singlecell.library.mongo import MongoLibrary
    from singlecell.store.mongo import MongoStore

    url = "mongodb://127.0.0.1:9/nothing"  # nothing listens on port 9
    mongodb.register(url, pymongo.MongoClient(url, serverSelectionTimeoutMS=200, connect=False))
    try:
        for call in (lambda: MongoStore(url).get_request("r1"), lambda: MongoStore(url).count_queued(),
                     lambda: MongoAccounts(url).user_named("ada"), lambda: MongoLibrary(url, None).count()):  # type: ignore[arg-type]
            with pytest.raises(StoreUnavailable, match="cannot be reached"):
                call()
    finally:
        mongodb.forget(url)
