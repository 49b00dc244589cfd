"""A database the SQL backends share the handling of: SQLite (one host) or PostgreSQL (any number).

:class:`Database` opens one from a URL with the settings each needs, and gives two views of its
pool: ``writer`` (a transaction that writes: SQLite takes the write lock at BEGIN) and ``reader``
(single statements, each atomic by itself, skipping BEGIN and ROLLBACK). The Store, accounts and
the snippet library each open their own.
"""

from __future__ import annotations

import functools
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from singlecell.errors import BadRequest, StoreUnavailable, UnknownBackend

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
    advisory lock (``_lock_queue``). A connection the server dropped (a restart, a terminated
    backend, an idle timeout) is replaced at checkout instead of failing a call: see
    :func:`_check_on_checkout`.
    """
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, pool_size=4, max_overflow=8)
    sa.event.listen(engine, "connect", _stamp)
    sa.event.listen(engine, "checkin", _stamp)
    sa.event.listen(engine, "checkout", functools.partial(_check_on_checkout, engine.dialect))
    return engine


#: seconds a pooled connection may sit unused before its checkout costs a round trip (SELECT 1)
PING_AFTER_IDLE = 30.0


def _stamp(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _check_on_checkout(dialect: sa.Dialect, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has dropped; the pool then opens a new one.

    SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` at every checkout: five round trips of an
    ``/eval``'s twenty. A server that ends a connection (a restart, ``pg_terminate_backend``, an
    idle timeout) sends an error and closes it, so an idle connection whose socket is readable,
    or closed, is dead: polling the socket costs no round trip. A connection idle for longer than
    :data:`PING_AFTER_IDLE` is pinged as well, for a peer gone without a word (a firewall's
    dropped state, a host that vanished).
    """
    try:
        if dbapi_conn.closed or dbapi_conn.broken:
            raise sa.exc.DisconnectionError("the connection was closed")
        poller = select.poll()
        poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLPRI)
        # Nothing is in flight on an idle connection: anything to read is the server's goodbye.
        if poller.poll(0):
            raise sa.exc.DisconnectionError("the server closed the connection")
        if time.monotonic() - record.info.get("idle_since", 0.0) > PING_AFTER_IDLE:
            dialect.do_ping(dbapi_conn)
    except sa.exc.DisconnectionError:
        raise
    except Exception as exc:  # the ping failed, or the socket is gone
        raise sa.exc.DisconnectionError(f"the connection is unusable: {exc}") from exc


# SQLAlchemy dialect name → engine builder.
_ENGINES: dict[str, Callable[[sa.URL], Engine]] = {"sqlite": _sqlite_engine, "postgresql": _postgresql_engine}


def _unavailable(context: sa.engine.ExceptionContext) -> BaseException | None:
    """The error a call raises instead of the driver's: :class:`~singlecell.errors.StoreUnavailable`
    when the database could not be reached (the web tier answers 503 and ``Retry-After``), and
    :class:`~singlecell.errors.BadRequest` for text PostgreSQL cannot hold (a NUL). Other errors
    (a constraint, a bug) pass unchanged."""
    original = context.original_exception
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    if context.is_disconnect or (context.connection is None and context.dialect.name == "postgresql"):
        return StoreUnavailable(f"the store's database cannot be reached ({text}); try again shortly")
    if context.dialect.name == "sqlite" and "database is locked" in text:
        return StoreUnavailable(f"the store's database stayed locked by another process ({text}); try again")
    if context.dialect.name == "postgresql" and "cannot contain NUL" in text:
        # PostgreSQL's text holds no NUL character (SQLite's does): a field a client sent, refused
        return BadRequest("a text field holds a NUL character (\\u0000), which cannot be stored; remove it")
    return None


class Database:
    """An engine on ``url`` and its two views (see the module's docstring)."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        build = _ENGINES.get(parsed.get_backend_name())
        if build is None:
            raise UnknownBackend(f"no SQL backend for {parsed.get_backend_name()!r} databases; "
                                 f"known: {', '.join(sorted(_ENGINES))}")
        self.engine = build(parsed)
        sa.event.listen(self.engine, "handle_error", _unavailable, retval=True)
        self.dialect = self.engine.dialect.name
        self.writer = self.engine.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
        # PostgreSQL readers run single statements, each atomic by itself, so they skip BEGIN and
        # ROLLBACK (two round trips of the three a read took)
        self.reader = self.engine.execution_options(
            **({_BEGIN: ""} if self.dialect == "sqlite" else {"isolation_level": "AUTOCOMMIT"}))

    def close(self) -> None:
        self.engine.dispose()
