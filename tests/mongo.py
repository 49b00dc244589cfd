"""MongoDB for the tests: a database of its own per test, on a real server when
``SINGLECELL_TEST_MONGODB`` names one (``mongodb://host:27017``), else on mongomock.

No MongoDB server can be installed on the machines CI runs on, so there the suites run against
mongomock, an in-memory implementation of pymongo's API, through the same code: the backends get
their client from filestore/mongodb.py, where this module registers a mongomock client for the
test's URL. What mongomock cannot stand in for is skipped, saying so (:func:`need_server`):
several processes sharing one database (mongomock's data lives in one process) and change streams.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from filestore import mongodb

SERVER_URL = os.environ.get("SINGLECELL_TEST_MONGODB", "")
MOCK_HOST = "mongomock.invalid"  # never resolved: the registered mongomock client answers for it


def real() -> bool:
    """Whether the tests talk to a real MongoDB server."""
    return bool(SERVER_URL)


def need_server(what: str) -> None:
    """Skip, saying why, when only mongomock is here; ``what`` is what mongomock cannot show."""
    if not real():
        pytest.skip(f"mongomock cannot show {what}; set SINGLECELL_TEST_MONGODB=mongodb://… to test it on a "
                    "real server")


@contextmanager
def database(prefix: str = "sc_test") -> Iterator[str]:
    """A new, empty database; yields its URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    if real():
        base = SERVER_URL.split("?", 1)
        url = base[0].rstrip("/").rsplit("/", 1)[0] if base[0].count("/") > 2 else base[0].rstrip("/")
        url = f"{url}/{name}" + (f"?{base[1]}" if len(base) > 1 else "")
        try:
            yield url
        finally:
            mongodb.client_for(url).drop_database(name)
        return
    import mongomock

    url = f"mongodb://{MOCK_HOST}/{name}"
    mongodb.register(url, mongomock.MongoClient())
    try:
        yield url
    finally:
        mongodb.forget(url)
