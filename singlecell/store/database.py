"""A database the SQL backends share the handling of: SQLite (one host) or PostgreSQL (any number).

:class:`Database` opens one from a URL with the settings each needs, and gives two views of its
pool: ``writer`` (a transaction that writes: SQLite takes the write lock at BEGIN) and ``reader``
(single statements, each atomic by itself, skipping BEGIN and ROLLBACK). The Store, accounts and
the snippet library each open their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from singlecell.errors import UnknownBackend

_BEGIN = "singlecell_begin"  # execution option: what the SQLite "begin" hook emits ("" = nothing)


def _sqlite_engine(url: sa.URL) -> Engine:
    """SQLite shared by several processes: WAL, and writers that lock up front.

    SQLAlchemy's default pool for a file (QueuePool) keeps connections open between calls, so
    the PRAGMAs below run once per connection, and a caller on one event loop reuses one.
    """
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _connection_record: Any) -> None:
        # isolation_level=None stops sqlite3 from emitting its own (deferred) BEGIN: we emit ours
        # in _begin. This is SQLAlchemy's documented pysqlite recipe ("Transactions with SQLite").
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # busy_timeout first, so switching to WAL waits out another process's lock.
        for pragma in ("busy_timeout = 10000", "journal_mode = WAL", "synchronous = NORMAL",
                       "foreign_keys = ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock at BEGIN: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY at once (no busy wait) when another process wrote
        # in between. Readers run single statements, which SQLite makes atomic by itself, so
        # they skip BEGIN/COMMIT altogether.
        statement = conn.get_execution_options().get(_BEGIN, "BEGIN")
        if statement:
            conn.exec_driver_sql(statement)

    return engine


def _postgresql_engine(url: sa.URL) -> Engine:
    """PostgreSQL through psycopg 3 (``postgresql://`` means it, not SQLAlchemy's default psycopg2).

    READ COMMITTED, the default, is enough: claims lock rows (FOR UPDATE SKIP LOCKED), every
    other write is one UPDATE whose WHERE is re-checked on the locked row, and submits take an
    advisory lock (``_lock_queue``). pool_pre_ping: a connection the server dropped (a restart,
    an idle timeout) is replaced instead of failing a request.
    """
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)


# SQLAlchemy dialect name → engine builder.
_ENGINES: dict[str, Callable[[sa.URL], Engine]] = {"sqlite": _sqlite_engine, "postgresql": _postgresql_engine}


class Database:
    """An engine on ``url`` and its two views (see the module's docstring)."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        build = _ENGINES.get(parsed.get_backend_name())
        if build is None:
            raise UnknownBackend(f"no SQL backend for {parsed.get_backend_name()!r} databases; "
                                 f"known: {', '.join(sorted(_ENGINES))}")
        self.engine = build(parsed)
        self.dialect = self.engine.dialect.name
        self.writer = self.engine.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
        # PostgreSQL readers run single statements, each atomic by itself, so they skip BEGIN and
        # ROLLBACK (two round trips of the three a read took)
        self.reader = self.engine.execution_options(
            **({_BEGIN: ""} if self.dialect == "sqlite" else {"isolation_level": "AUTOCOMMIT"}))

    def close(self) -> None:
        self.engine.dispose()
