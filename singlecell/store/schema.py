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

#: version 1's requests table, as migration 1 makes it (version 5 adds a column below)
_v1 = sa.MetaData()
_V1_REQUESTS = request_table.to_metadata(_v1)

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

# -- version 3: accounts, and the snippet library (singlecell/accounts, singlecell/library) -----

user_table = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),  # as its owner typed it
    sa.Column("name_key", sa.Text, nullable=False, unique=True),  # NFKC, case-folded: one account a name
    sa.Column("password_hash", sa.Text, nullable=False),  # Argon2id, PHC string
    sa.Column("created", sa.Float, nullable=False),
)

login_session_table = sa.Table(
    "login_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),  # SHA-256 of the cookie's token: the token is never stored
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)

api_token_table = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("revoked", sa.Float),
)

rate_table = sa.Table(  # rate limits shared by every web process: hits per key per window
    "rate_hits",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("hits", sa.Integer, nullable=False),
)

revision_table = sa.Table(  # immutable: the id is the hash of the content
    "revisions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("blurb", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),  # JSON list
    sa.Column("command", sa.Text, nullable=False),  # the suggested cell
    sa.Column("created", sa.Float, nullable=False),
)

revision_file_table = sa.Table(  # a revision's files; their bytes are in the FileStore, by SHA-256
    "revision_files",
    metadata,
    sa.Column("revision_id", sa.Text, sa.ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, nullable=False, index=True),
    sa.Column("size", sa.Integer, nullable=False),
)

snippet_table = sa.Table(  # a mutable pointer to its head revision
    "snippets",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("owner_id", sa.Text, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("head", sa.Text, sa.ForeignKey("revisions.id"), nullable=False),
    sa.Column("title", sa.Text, nullable=False),  # the head's, for lists
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("forked_from", sa.Text),
    sa.Column("forked_revision", sa.Text),
    sa.Column("example", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted", sa.Float),
    sa.Column("thumbnail", sa.Text),  # JSON {request, name}: an image a run of it wrote
    sa.Column("rating_sum", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rating_count", sa.Integer, nullable=False, server_default="0"),
    # browse, newest first: live snippets only, in the order the pages want them
    sa.Index("snippets_newest", "updated", "id", postgresql_where=sa.text("deleted IS NULL"),
             sqlite_where=sa.text("deleted IS NULL")),
)

history_table = sa.Table(
    "snippet_history",
    metadata,
    sa.Column("snippet_id", sa.Text, sa.ForeignKey("snippets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("revision_id", sa.Text, sa.ForeignKey("revisions.id"), nullable=False, index=True),
    sa.Column("author_id", sa.Text, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

tag_table = sa.Table(  # the head's tags, for browsing
    "snippet_tags",
    metadata,
    sa.Column("snippet_id", sa.Text, sa.ForeignKey("snippets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.Text, primary_key=True),
    sa.Index("snippet_tags_by_tag", "tag"),
)

comment_table = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("snippet_id", sa.Text, sa.ForeignKey("snippets.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("author_id", sa.Text, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("revision_id", sa.Text),  # a line comment: pinned to (revision, path, line)
    sa.Column("path", sa.Text),
    sa.Column("line", sa.Integer),
    sa.Column("created", sa.Float, nullable=False),
)

rating_table = sa.Table(
    "ratings",
    metadata,
    sa.Column("snippet_id", sa.Text, sa.ForeignKey("snippets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("stars", sa.Integer, nullable=False),
)

related_table = sa.Table(
    "related_snippets",
    metadata,
    sa.Column("snippet_id", sa.Text, sa.ForeignKey("snippets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("other_id", sa.Text, sa.ForeignKey("snippets.id", ondelete="CASCADE"), primary_key=True),
)

LIBRARY_TABLES = (user_table, login_session_table, api_token_table, rate_table, revision_table, revision_file_table,
                  snippet_table,
                  history_table, tag_table, comment_table, rating_table, related_table)

# The full-text index of snippets' heads: per database, so written out (see singlecell/library/search/)
_SEARCH_DDL = {
    # its rowid is the snippet's rowid in snippets (see singlecell/library/search/sqlite.py)
    "sqlite": ["""CREATE VIRTUAL TABLE IF NOT EXISTS snippet_search USING fts5(
        title, tags, blurb, code, tokenize="unicode61 tokenchars '_'")"""],
    "postgresql": ["CREATE TABLE IF NOT EXISTS snippet_search (snippet_id TEXT PRIMARY KEY, "
                   "document TSVECTOR NOT NULL)",
                   "CREATE INDEX IF NOT EXISTS snippet_search_document ON snippet_search USING GIN (document)"],
}


def _library(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(LIBRARY_TABLES))
    for statement in _SEARCH_DDL[conn.dialect.name]:
        conn.exec_driver_sql(statement)


# -- version 4: sessions, kernels kept alive for a cell's open widgets (device/session.py) -----

session_table = sa.Table(  # one row per cell that became a session; it stays after the session ends
    "sessions",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("live", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),  # why it ended: a key of singlecell.sessions.SESSION_ENDS
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("ended", sa.Float),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("last_read", sa.Float, nullable=False),  # a client last read its output (web tier)
    sa.Column("last_input", sa.Integer, nullable=False, server_default="0"),  # the last input's seq
    sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),  # inputs answered up to
    sa.Index("sessions_live_device", "live", "device"),
    sa.Index("sessions_live_client", "live", "client"),
)

#: version 4's sessions table, as migration 4 makes it (version 5 adds columns below: see _kernels);
#: the copy of ``requests`` beside it is there for its foreign key, and is never made from here
_v4 = sa.MetaData()
request_table.to_metadata(_v4)
_V4_SESSIONS = session_table.to_metadata(_v4)

input_table = sa.Table(  # what clients sent a session's kernel (POST /input), in order
    "session_inputs",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("message", sa.Text, nullable=False),
)

# -- version 5: Jupyter clients' kernels (sessions started by POST /api/kernels) ---------------

session_kind = sa.Column("kind", sa.Text, nullable=False, server_default="widgets")  # or "kernel"
session_owner = sa.Column("owner", sa.Text, nullable=False, server_default="")  # the API token's, or ""
session_table.append_column(session_kind)
session_table.append_column(session_owner)
session_table.append_constraint(sa.Index("sessions_live_owner", "live", "owner"))
# a linked cell (POST /execute with "session") runs in that live session's kernel
request_session = sa.Column("session_id", sa.Text)
request_table.append_column(request_session)
request_table.append_constraint(sa.Index("requests_session", "session_id"))

cursor_table = sa.Table(  # how far each reader of a session (a WebSocket's session_id) has read
    "session_cursors",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("reader", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
)


# -- version 6: what devices say of themselves, and requests by age (the status page) ------------

request_table.append_constraint(sa.Index("requests_created", "created"))
device_table = sa.Table(
    "devices",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("seen", sa.Float, nullable=False, index=True),
    sa.Column("kernels", sa.Integer, nullable=False),
    sa.Column("busy", sa.Integer, nullable=False),
    sa.Column("ready", sa.Integer, nullable=False),
    sa.Column("layers", sa.Text, nullable=False),  # JSON: [[name, active, detail], …]
)


# -- version 7: quotas, batches and callbacks (singlecell/quotas.py, singlecell/callbacks.py) -------

# whose a request is, for its limits: "t:<SHA-256 of the API token>", or "a:<client address>"
request_quota = sa.Column("quota_key", sa.Text, nullable=False, server_default="")
request_cpu = sa.Column("cpu", sa.Float)  # CPU seconds its kernel used, as the device measured them
request_table.append_column(request_quota)
request_table.append_column(request_cpu)
request_table.append_constraint(sa.Index("requests_quota_status", "quota_key", "status"))  # max_running

token_limit_table = sa.Table(  # an API token's own limits; a missing row or a NULL: the server's setting
    "token_limits",
    metadata,
    sa.Column("token_id", sa.Text, sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("rate", sa.Text),  # like "5/s"; "0": none
    sa.Column("max_running", sa.Integer),
    sa.Column("cpu_per_day", sa.Float),
)

pace_table = sa.Table(  # the request rate's state per key: GCRA's theoretical arrival time
    "quota_pace",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("tat", sa.Float, nullable=False),
)

usage_table = sa.Table(  # CPU seconds per key per UTC day, added as each request finishes
    "quota_usage",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),  # days since 1970-01-01, UTC
    sa.Column("cpu", sa.Float, nullable=False),
)

batch_table = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("ids", sa.Text, nullable=False),  # JSON: the requests' ids, in the order submitted
)

callback_table = sa.Table(  # a request's summary to POST to its callback_url once it ends
    "callbacks",
    metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("base_url", sa.Text, nullable=False),  # the server's URL as the client used it: for output URLs
    sa.Column("secret", sa.Text, nullable=False),  # the HMAC key: the token's SHA-256 as stored; "": unsigned
    sa.Column("state", sa.Text, nullable=False),  # pending, delivered or failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_try", sa.Float, nullable=False),  # a sender's claim moves it on, like a lease
    sa.Column("finished", sa.Float),
    sa.Column("last_error", sa.Text),
    sa.Index("callbacks_due", "state", "next_try"),
)


def _first(conn: Connection) -> None:
    _v1.create_all(conn, tables=[_V1_REQUESTS])
    metadata.create_all(conn, tables=[message_table, file_table])


def _sessions(conn: Connection) -> None:
    _v4.create_all(conn, tables=[_V4_SESSIONS])
    metadata.create_all(conn, tables=[input_table])


def _kernels(conn: Connection) -> None:
    # the sessions table of version 4 gains two columns: the live Table above already has them
    for column in (session_kind, session_owner):
        default = column.server_default.arg  # type: ignore[union-attr]
        conn.exec_driver_sql(f"ALTER TABLE sessions ADD COLUMN {column.name} TEXT NOT NULL DEFAULT '{default}'")
    conn.exec_driver_sql("CREATE INDEX sessions_live_owner ON sessions (live, owner)")
    conn.exec_driver_sql("ALTER TABLE requests ADD COLUMN session_id TEXT")
    conn.exec_driver_sql("CREATE INDEX requests_session ON requests (session_id)")
    metadata.create_all(conn, tables=[cursor_table])


def _devices(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE INDEX requests_created ON requests (created)")
    metadata.create_all(conn, tables=[device_table])


def _quotas(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE requests ADD COLUMN quota_key TEXT NOT NULL DEFAULT ''")
    conn.exec_driver_sql(f"ALTER TABLE requests ADD COLUMN cpu {'REAL' if conn.dialect.name == 'sqlite' else 'FLOAT'}")
    conn.exec_driver_sql("CREATE INDEX requests_quota_status ON requests (quota_key, status)")
    metadata.create_all(conn, tables=[token_limit_table, pace_table, usage_table, batch_table, callback_table])


version_table = sa.Table("singlecell_schema", sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))

# PostgreSQL only; the one lock every table of the project is made under (the SQL filestore's too)
_MIGRATION_LOCK = sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY))


def _tables(*tables: sa.Table) -> Callable[[Connection], None]:
    def create(conn: Connection) -> None:
        metadata.create_all(conn, tables=list(tables))
    return create


#: MIGRATIONS[i]: version i → i + 1
MIGRATIONS: list[Callable[[Connection], None]] = [
    _first,  # 1: singlecell 0.1
    _tables(stop_table, permalink_table),  # 2: stop requests and permalinks
    _library,  # 3: accounts and the snippet library
    _sessions,  # 4: sessions and their inputs
    _kernels,  # 5: Jupyter clients' kernels, and where each reader of a session has read to
    _devices,  # 6: devices' reports, and requests by age
    _quotas,  # 7: quotas (whose each request is, its CPU, token limits, usage), batches and callbacks
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
