"""PostgreSQL for the tests: a database of its own per test, created and dropped here.

The server is the one on 127.0.0.1:5432 (trust auth, database ``test``), or the one
``SINGLECELL_TEST_POSTGRES`` names. When it is unreachable the tests that need it skip, saying
so, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psycopg

ADMIN_URL = os.environ.get("SINGLECELL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def admin() -> psycopg.Connection[Any]:
    """An autocommit connection to the admin database, or the test skips (fails under CI=true)."""
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is unreachable at {ADMIN_URL} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true needs it")
        pytest.skip(reason + "; set SINGLECELL_TEST_POSTGRES to test with another server")
    raise AssertionError("unreachable")


@contextmanager
def database(prefix: str = "sc_test") -> Iterator[str]:
    """A new, empty database; yields its URL and drops it (with any connection left) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
