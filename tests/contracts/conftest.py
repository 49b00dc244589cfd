"""Fixtures of the contract suites that run once per database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from singlecell.store import open_store
from tests import mongo, postgres


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
                        pytest.param("mongodb", id="mongodb")])
def schema_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new database holding the Store's schema (accounts, library and search tables
    included), on SQLite, on PostgreSQL and on MongoDB (tests/mongo.py)."""

    def made(url: str) -> str:
        store = open_store(url)
        store.create_schema()
        store.close()
        return url

    if request.param == "postgresql":
        with postgres.database() as url:
            yield made(url)
    elif request.param == "mongodb":  # a real server if SINGLECELL_TEST_MONGODB names one, else mongomock
        with mongo.database() as url:
            yield made(url)
    else:
        yield made(f"sqlite:///{tmp_path / 'store.db'}")
