"""A FileStore keeping the bytes in one SQL table (SQLAlchemy Core): ``sqlite:///…`` or
``postgresql://…`` (through psycopg 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    make_url,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from filestore.base import (
    MAX_NAME_BYTES,
    MAX_REQUEST_ID_BYTES,
    FileStore,
    UnknownFileStore,
    check_name,
    check_request_id,
)

_metadata = MetaData()
_blobs = Table(
    "blobs",
    _metadata,
    Column("request_id", String(MAX_REQUEST_ID_BYTES), primary_key=True),
    Column("name", String(MAX_NAME_BYTES), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("size", BigInteger, nullable=False),
)

# Both dialects spell the upsert the same way; only the insert() construct differs.
_UPSERT_INSERTS: dict[str, Callable[[Table], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}

#: The PostgreSQL advisory lock under which every table of this project is made or migrated:
#: this filestore's and the store's (singlecell/store/schema.py takes the same key). Processes
#: started at once on a new database then make tables one at a time; ``CREATE TABLE IF NOT
#: EXISTS`` alone races in the system catalogue (pg_type's unique index).
SCHEMA_LOCK_KEY = 0x5C_5C4E

# Execution option marking a transaction that writes, so SQLite takes the write lock at BEGIN.
_WRITE = "filestore_write"


def _tune_sqlite(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite recipe: we emit BEGIN ourselves, IMMEDIATE for writes.

    Several processes write one file: a deferred BEGIN that later needs the write lock fails
    with SQLITE_BUSY at once, whereas BEGIN IMMEDIATE waits up to the busy timeout.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # stop pysqlite emitting its own BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers and the writer do not block each other
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe under WAL: survives a process crash
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


class SqlFileStore(FileStore):
    """Bytes in table ``blobs`` keyed by ``(request_id, name)``; location ``sql:<request_id>/<name>``."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        if self.url.drivername == "postgresql":  # psycopg 3, not SQLAlchemy's default psycopg2
            self.url = self.url.set(drivername="postgresql+psycopg")
        # connects lazily: nothing touches the DB here; pre-ping replaces connections PostgreSQL dropped
        self._engine = create_engine(self.url, pool_pre_ping=self.url.get_backend_name() != "sqlite")
        dialect = self._engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise UnknownFileStore(
                f"no SQL filestore for dialect {dialect!r}; known: {', '.join(sorted(_UPSERT_INSERTS))}"
            )
        if dialect == "sqlite":
            _tune_sqlite(self._engine)
        self._insert = _UPSERT_INSERTS[dialect]
        self._writer = self._engine.execution_options(**{_WRITE: True})  # same pool and listeners

    def create(self) -> None:
        database = self.url.database
        if self.url.get_backend_name() == "sqlite" and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE already serialises
                conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
            _metadata.create_all(conn)  # checks first: idempotent, keeps existing rows

    def put(self, request_id: str, name: str, data: bytes) -> str:
        check_request_id(request_id)
        check_name(name)
        insert = self._insert(_blobs).values(request_id=request_id, name=name, data=data, size=len(data))
        upsert = insert.on_conflict_do_update(
            index_elements=[_blobs.c.request_id, _blobs.c.name],
            set_={"data": insert.excluded.data, "size": insert.excluded.size},
        )
        with self._writer.begin() as conn:
            conn.execute(upsert)
        return f"sql:{request_id}/{name}"

    def get(self, request_id: str, name: str) -> bytes | None:
        check_request_id(request_id)
        check_name(name)
        query = select(_blobs.c.data).where(_blobs.c.request_id == request_id, _blobs.c.name == name)
        with self._engine.connect() as conn:
            data: bytes | None = conn.execute(query).scalar_one_or_none()  # LargeBinary yields bytes
        return data

    def delete_file(self, request_id: str, name: str) -> bool:
        check_request_id(request_id)
        check_name(name)
        with self._writer.begin() as conn:
            gone = conn.execute(_blobs.delete().where(_blobs.c.request_id == request_id, _blobs.c.name == name))
        return bool(gone.rowcount)

    def delete(self, request_id: str) -> int:
        check_request_id(request_id)
        with self._writer.begin() as conn:
            return conn.execute(_blobs.delete().where(_blobs.c.request_id == request_id)).rowcount

    def describe(self) -> str:
        where = self.url.render_as_string(hide_password=True)
        if self.url.get_backend_name() == "sqlite":  # a library in this process: nothing to connect to first
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version} at {where} (table blobs)"
        with self._engine.connect() as conn:
            version = ".".join(str(part) for part in conn.dialect.server_version_info or ())
        return f"PostgreSQL {version} at {where} (table blobs)"

    def close(self) -> None:
        self._engine.dispose()
