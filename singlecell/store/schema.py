"""The SQL store's tables, and the migrations that take any earlier database to them.

A database records its schema version in table ``singlecell_schema`` (one row).
``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``; :func:`migrate` runs the
missing ones in the caller's write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: DDL is
transactional, and an advisory lock makes processes that start together take turns), so an
upgrade keeps every request, message, file and permalink, and a failed one changes nothing.
A database made before versions were recorded (it has ``requests`` and no version) is version
1. A database of a newer version than this code knows is refused, untouched.

A migration that changes an existing table must not be written with these live ``Table``
objects only: it alters what the earlier migrations made (``ALTER TABLE``), and an earlier
migration that used a table it changes must keep that table's old definition, copied here.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from filestore.sql import SCHEMA_LOCK_KEY
from singlecell.errors import ConfigError

metadata = sa.MetaData()

request_table = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("message", sa.Text, nullable=False),  # the execute_request, JSON
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("timeout", sa.Float, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON {name: base64}
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("device", sa.Text),
    sa.Column("lease_until", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Index("requests_claim_order", "status", "created", "id"),  # claim without a sort; count_queued
    sa.Index("requests_status_lease", "status", "lease_until"),  # expire_leases, renew_lease
)

message_table = sa.Table(
    "messages",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("msg_type", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

file_table = sa.Table(
    "files",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
)

# A table of its own rather than a column of requests: migration 2 only adds tables.
stop_table = sa.Table(
    "stops",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("requested", sa.Float, nullable=False),
)

permalink_table = sa.Table(
    "permalinks",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

version_table = sa.Table("singlecell_schema", sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))

# PostgreSQL only; the one lock every table of the project is made under (the SQL filestore's too)
_MIGRATION_LOCK = sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY))


def _tables(*tables: sa.Table) -> Callable[[Connection], None]:
    def create(conn: Connection) -> None:
        metadata.create_all(conn, tables=list(tables))
    return create


#: MIGRATIONS[i]: version i → i + 1
MIGRATIONS: list[Callable[[Connection], None]] = [
    _tables(request_table, message_table, file_table),  # 1: singlecell 0.1
    _tables(stop_table, permalink_table),  # 2: stop requests and permalinks
]
LATEST = len(MIGRATIONS)


def schema_version(conn: Connection) -> int:
    """The database's schema version: 0 when it is empty."""
    inspector = sa.inspect(conn)
    if inspector.has_table(version_table.name):
        version = conn.execute(sa.select(version_table.c.version)).scalar()
        if version is not None:
            return int(version)
    return 1 if inspector.has_table(request_table.name) else 0


def migrate(conn: Connection, to: int = LATEST) -> int:
    """Bring the database to version ``to``, in the caller's transaction; returns the version it had."""
    if conn.dialect.name == "postgresql":
        conn.execute(_MIGRATION_LOCK)
    found = schema_version(conn)
    if found > LATEST:
        raise ConfigError(f"the database has schema version {found}, made by a newer singlecell than this one "
                          f"(which knows up to {LATEST}); upgrade singlecell before using it")
    for version in range(found, to):
        MIGRATIONS[version](conn)
    if found < to or not sa.inspect(conn).has_table(version_table.name):
        version_table.create(conn, checkfirst=True)
        conn.execute(version_table.delete())
        conn.execute(version_table.insert().values(version=max(found, to)))
    return found
