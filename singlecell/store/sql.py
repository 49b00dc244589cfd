"""The SQL store: SQLAlchemy Core on SQLite (one host) or PostgreSQL (any number of hosts).

The queries are portable Core. What differs per database lives in ``_ENGINES`` (how to connect),
``_lock_queue`` and ``_insert_new``; both pass the same contract suite.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row

from singlecell import quotas
from singlecell.errors import DuplicateRequest, QueueFull
from singlecell.protocol import error_message, lost_error_message, message
from singlecell.sessions import end_text, session_end_message
from singlecell.store.base import (
    TERMINAL_STATUSES,
    TOUCH_EVERY,
    CallbackState,
    DeviceReport,
    FileRecord,
    JsonDict,
    NewRequest,
    NewSession,
    Permalink,
    Progress,
    Quota,
    RequestRecord,
    SessionState,
    Status,
    Store,
    StoredMessage,
    Timing,
    permalink_ids,
)
from singlecell.store.database import Database
from singlecell.store.schema import (
    batch_table,
    callback_table,
    cursor_table,
    device_table,
    file_table,
    input_table,
    message_table,
    migrate,
    pace_table,
    permalink_table,
    request_table,
    session_table,
    stop_table,
    usage_table,
)

_QUEUED, _RUNNING, _LOST = Status.QUEUED.value, Status.RUNNING.value, Status.LOST.value
_MAX_SEQ = 2**31 - 1

def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _record(row: Row[Any]) -> RequestRecord:
    started = getattr(row, "session_started", None)  # only _GET_REQUEST joins the session
    session = None if started is None else SessionState(
        bool(row.session_live), row.session_reason, started, row.session_ended, row.session_read,
        row.session_kind, row.session_owner, row.session_input > row.session_delivered)
    return RequestRecord(
        id=row.id,
        message=json.loads(row.message),
        status=Status(row.status),
        timeout=row.timeout,
        inputs={name: base64.b64decode(data) for name, data in json.loads(row.inputs).items()},
        client=row.client,
        device=row.device,
        lease_until=row.lease_until,
        created=row.created,
        started=row.started,
        finished=row.finished,
        last_seq=row.last_seq,
        session=session,
        linked_to=row.session_id,
        quota_key=row.quota_key,
        cpu=row.cpu,
    )


def _end_linked(conn: Connection, session_id: str, reason: str) -> list[str]:
    """End (``aborted``) the linked cells still waiting in a session that ends: an error that says
    why, then ``idle``. Returns their ids."""
    ended = conn.execute(_END_LINKED, {"sid": session_id, "now": time.time()}).all()
    rows = []
    for row in ended:
        request = json.loads(row.message)
        said = error_message(request, "SessionEnded", f"the session this cell was linked to ended before it ran "
                                                      f"({reason}); run the cell again")
        rows += [_message_row(row.id, row.last_seq - 1, said),
                 _message_row(row.id, row.last_seq, message("status", {"execution_state": "idle"}, request))]
    if rows:
        conn.execute(_INSERT_MESSAGES, rows)
    return [row.id for row in ended]


def _message_row(request_id: str, seq: int, message: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": request_id, "seq": seq, "msg_type": str(message.get("msg_type", "")),
            "message": _dumps(message)}


def _check_seqs(msgs: Sequence[StoredMessage]) -> None:
    if any(a.seq >= b.seq for a, b in itertools.pairwise(msgs)):
        raise ValueError(f"message seqs must be strictly increasing, got {[m.seq for m in msgs]}")


# -- statements, built once: building and cache-keying a Core statement per call costs more than
# SQLite takes to run it. Bind parameter names must differ from column names.

_req, _msg, _file = request_table.c, message_table.c, file_table.c
_rid: sa.BindParameter[str] = sa.bindparam("rid")
_dev: sa.BindParameter[str] = sa.bindparam("dev")
_now: sa.BindParameter[float] = sa.bindparam("now")

_HELD = (_req.id == _rid, _req.status == _RUNNING, _req.device == _dev)  # running under the device
_EXPIRED = (_req.status == _RUNNING, _req.lease_until < _now)

_INSERT_REQUEST = request_table.insert()
_INSERT_MESSAGES = message_table.insert()
_INSERT_FILES = file_table.insert()
_LOCK_QUEUE = sa.select(sa.func.pg_advisory_xact_lock(0x5C_0E0E))  # PostgreSQL only; key arbitrary
_COUNT_QUEUED = sa.select(sa.func.count()).select_from(request_table).where(_req.status == _QUEUED)
_ses, _inp = session_table.c, input_table.c
_GET_REQUEST = (
    sa.select(request_table, _ses.live.label("session_live"), _ses.reason.label("session_reason"),
              _ses.started.label("session_started"), _ses.ended.label("session_ended"),
              _ses.last_read.label("session_read"), _ses.kind.label("session_kind"),
              _ses.owner.label("session_owner"), _ses.last_input.label("session_input"),
              _ses.delivered.label("session_delivered"))
    .select_from(request_table.outerjoin(session_table, _ses.request_id == _req.id))
    .where(_req.id == _rid)
)
_GET_MESSAGES = (
    sa.select(_msg.seq, _msg.message)
    .where(_msg.request_id == _rid, _msg.seq > sa.bindparam("after"))
    .order_by(_msg.seq)
    .limit(sa.bindparam("n"))
)
# three index range scans (requests_created, requests_claim_order twice), not a scan of the table
_TIMINGS = sa.union_all(*(
    sa.select(_req.created, _req.started, _req.finished, _req.status).where(where) for where in (
        _req.created >= sa.bindparam("since"),
        sa.and_(_req.status.in_([_QUEUED, _RUNNING]), _req.created < sa.bindparam("since")),
    )))
_DEVICES = sa.select(device_table).where(device_table.c.seen >= sa.bindparam("since")).order_by(device_table.c.name)
_CLAIM = (
    request_table.update()
    .where(
        _req.id.in_(
            sa.select(_req.id)
            .where(_req.status == _QUEUED)
            .order_by(_req.created, _req.id)
            .limit(sa.bindparam("n"))
            # PostgreSQL: concurrent claimers skip each other's rows instead of waiting. SQLite
            # renders nothing here; its BEGIN IMMEDIATE already makes claims take turns.
            .with_for_update(skip_locked=True)
        ),
        # No outer "status = queued" re-check: the rows are locked (BEGIN IMMEDIATE / FOR UPDATE),
        # and SQLite would answer it by scanning every queued row instead of n key lookups.
    )
    .values(status=_RUNNING, device=_dev, started=_now, lease_until=sa.bindparam("until"))
    .returning(*request_table.c)
)
_RENEW = (
    request_table.update()
    .where(_req.status == _RUNNING, _req.device == _dev, _req.id.in_(sa.bindparam("ids", expanding=True)))
    .values(lease_until=sa.bindparam("until"))
)
_HELD_LAST_SEQ = sa.select(_req.last_seq).where(*_HELD)
_ANY_EXPIRED = sa.select(_req.id).where(*_EXPIRED).limit(1)
_ANY_QUEUED = sa.select(_req.id).where(_req.status == _QUEUED).limit(1)
_EXPIRE = (
    request_table.update()
    .where(*_EXPIRED)
    .values(status=_LOST, finished=_now, last_seq=_req.last_seq + 1)
    .returning(_req.id, _req.message, _req.last_seq)
)
_RELEASE = (
    request_table.update()
    .where(_req.id.in_(sa.bindparam("ids", expanding=True)), _req.status == _RUNNING,
           _req.device == _dev, _req.last_seq == 0)
    .values(status=_QUEUED, device=None, started=None, lease_until=None)
)
_STOP_QUEUED = (
    request_table.update()
    .where(_req.id == _rid, _req.status == _QUEUED)
    .values(status=Status.ABORTED.value, finished=_now, last_seq=sa.bindparam("last"))
)
_GET_STATUS = sa.select(_req.status).where(_req.id == _rid)

_STOPS_FOR = sa.union_all(
    sa.select(_req.id)
    .join(stop_table, stop_table.c.request_id == _req.id)
    .where(_req.status == _RUNNING, _req.device == _dev),
    sa.select(_ses.request_id)
    .join(stop_table, stop_table.c.request_id == _ses.request_id)
    .where(_ses.live.is_(True), _ses.device == _dev),
)
_LIVE_HELD = (_ses.request_id == _rid, _ses.live.is_(True), _ses.device == _dev)
_IS_LIVE = sa.select(_ses.request_id).where(_ses.request_id == _rid, _ses.live.is_(True))
_INSERT_SESSION = session_table.insert()
_NEXT_INPUT = (
    session_table.update()
    .where(_ses.request_id == _rid, _ses.live.is_(True))
    .values(last_input=_ses.last_input + 1)
    .returning(_ses.last_input)
)
_INSERT_INPUT = input_table.insert()
_NEXT_LINKED_INPUT = (
    session_table.update()
    .where(_ses.request_id == _rid, _ses.live.is_(True), _ses.kind == "kernel", _ses.owner == sa.bindparam("who"))
    .values(last_input=_ses.last_input + 1)
    .returning(_ses.last_input, _ses.device)
)
_END_LINKED = (  # the linked cells a session that ends leaves waiting
    request_table.update()
    .where(_req.session_id == sa.bindparam("sid"), _req.status == _RUNNING)
    .values(status=Status.ABORTED.value, finished=_now, last_seq=_req.last_seq + 2)
    .returning(_req.id, _req.message, _req.last_seq)
)
_INPUTS = (
    sa.select(_inp.seq, _inp.message).where(_inp.request_id == _rid, _inp.seq > sa.bindparam("after"))
    .order_by(_inp.seq)
)
_PENDING_INPUTS = (
    sa.select(_inp.request_id, _inp.seq, _inp.message)
    .join(session_table, _ses.request_id == _inp.request_id)
    .where(_ses.live.is_(True), _ses.device == _dev, _inp.seq > _ses.delivered)
    .order_by(_inp.request_id, _inp.seq)
)
_SESSION_GUARD = session_table.update().where(*_LIVE_HELD)  # values added per call
_SESSION_SEQ = (  # a live session's messages: last_seq moves on, checked against the first new seq
    request_table.update()
    .where(_req.id == _rid, _req.last_seq < sa.bindparam("first"))
    .values(last_seq=sa.bindparam("last"))
)
_END_SESSION = (
    session_table.update().where(*_LIVE_HELD)
    .values(live=False, reason=sa.bindparam("why"), ended=_now)
)
_TOUCH_SESSION = (
    session_table.update()
    .where(_ses.request_id == _rid, _ses.live.is_(True), _ses.last_read < sa.bindparam("stale"))
    .values(last_read=_now)
)
_SESSION_READS = sa.select(_ses.request_id, _ses.last_read).where(_ses.live.is_(True), _ses.device == _dev)
_LIVE_OF_CLIENT = (
    sa.select(sa.func.count()).select_from(session_table)
    .where(_ses.live.is_(True), _ses.client == sa.bindparam("who"))
)
_KERNELS = (
    sa.select(session_table).where(_ses.live.is_(True), _ses.owner == sa.bindparam("who"), _ses.kind == "kernel")
    .order_by(_ses.started, _ses.request_id)
)
_cur = cursor_table.c
_CURSOR = sa.select(_cur.seq).where(_cur.request_id == _rid, _cur.reader == sa.bindparam("reader"))
_RENEW_SESSIONS = (
    session_table.update()
    .where(_ses.live.is_(True), _ses.device == _dev, _ses.request_id.in_(sa.bindparam("ids", expanding=True)))
    .values(lease_until=sa.bindparam("until"))
)
_ANY_EXPIRED_SESSION = sa.select(_ses.request_id).where(_ses.live.is_(True), _ses.lease_until < _now).limit(1)
_EXPIRE_SESSIONS = (
    session_table.update()
    .where(_ses.live.is_(True), _ses.lease_until < _now)
    .values(live=False, reason="lost", ended=_now)
    .returning(_ses.request_id)
)
_BUMP_SEQ = (
    request_table.update().where(_req.id == _rid).values(last_seq=_req.last_seq + 1)
    .returning(_req.message, _req.last_seq)
)
_PROGRESS = (
    sa.select(_req.id, _req.status, _req.last_seq, _ses.live)
    .select_from(request_table.outerjoin(session_table, _ses.request_id == _req.id))
    .where(_req.id.in_(sa.bindparam("ids", expanding=True)))
)
_IN_FLIGHT = (  # max_running: a key's cells queued or running (index requests_quota_status)
    sa.select(sa.func.count()).select_from(request_table)
    .where(_req.quota_key == sa.bindparam("key"), _req.status.in_([_QUEUED, _RUNNING]))
)
_pace, _use = pace_table.c, usage_table.c
_PACE = sa.select(_pace.tat).where(_pace.key == sa.bindparam("key"))
_USED = sa.select(_use.cpu).where(_use.key == sa.bindparam("key"), _use.day == sa.bindparam("day"))
_CHARGE = (  # a request's CPU seconds, added (a session's grow), and whose they are
    request_table.update().where(_req.id == _rid)
    .values(cpu=sa.func.coalesce(_req.cpu, 0.0) + sa.bindparam("cpu_"))
    .returning(_req.quota_key)
)
_GET_BATCH = sa.select(batch_table.c.ids).where(batch_table.c.id == sa.bindparam("bid"))
_cb = callback_table.c
# a callback to make now: pending, its time come, its request ended
_DUE = (_cb.state == "pending", _cb.next_try <= _now, _req.status.in_([s.value for s in TERMINAL_STATUSES]))
_CLAIM_CALLBACKS = (
    callback_table.update()
    .where(_cb.request_id.in_(
        sa.select(_cb.request_id)
        .join(request_table, _req.id == _cb.request_id)
        .where(*_DUE)
        .order_by(_cb.next_try)
        .limit(sa.bindparam("n"))
        .with_for_update(skip_locked=True, of=callback_table)
    ))
    .values(attempts=_cb.attempts + 1, next_try=sa.bindparam("until"))
    .returning(*callback_table.c)
)
_ANY_DUE_CALLBACK = (
    sa.select(_cb.request_id).join(request_table, _req.id == _cb.request_id).where(*_DUE).limit(1)
)
_CALLBACKS_OF = sa.select(callback_table).where(_cb.request_id.in_(sa.bindparam("ids", expanding=True)))
_GET_PERMALINK = sa.select(permalink_table).where(permalink_table.c.id == sa.bindparam("pid"))


def _insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT of the connection's dialect, which can say ON CONFLICT (both spell it alike)."""
    return (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(table)


def _insert_new(conn: Connection, table: sa.Table, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless its key exists (another process may insert it at the same time);
    returns whether this call inserted it."""
    return bool(conn.execute(_insert(conn, table).values(row).on_conflict_do_nothing()).rowcount)


def _duplicate(request_id: str) -> DuplicateRequest:
    return DuplicateRequest(f"a request with id {request_id!r} already exists; give each request a new "
                            "header.msg_id.")
_LIST_FILES = sa.select(file_table).where(_file.request_id == _rid).order_by(_file.name)
_GET_FILE = sa.select(file_table).where(_file.request_id == _rid, _file.name == sa.bindparam("fname"))


@functools.cache
def _advance(appending: bool, finishing: bool) -> sa.Update:
    """The UPDATE that checks a request is held and, in the same statement, moves it on.

    ``appending``: messages follow, so ``last_seq`` moves to ``:last`` and must be below ``:first``.
    ``finishing``: ``status`` and ``finished`` are set from ``:status_`` and ``:now``, the CPU
    seconds ``:cpu_`` (NULL: none measured) added, and the request's key returned (its usage is
    charged in the same transaction): one statement, not a second UPDATE.
    """
    guard = (*_HELD, _req.last_seq < sa.bindparam("first")) if appending else _HELD
    values: dict[str, Any] = {"last_seq": sa.bindparam("last")} if appending else {}
    if finishing:
        cpu: sa.BindParameter[float] = sa.bindparam("cpu_", type_=sa.Float)
        values |= {"status": sa.bindparam("status_"), "finished": _now,
                   "cpu": sa.func.coalesce(cpu + sa.func.coalesce(_req.cpu, 0.0), _req.cpu)}
        return request_table.update().where(*guard).values(values).returning(_req.quota_key)
    return request_table.update().where(*guard).values(values)


def _lock_queue(conn: Connection) -> None:
    """Serialize submits, so the queue-length check and the insert cannot interleave.

    SQLite's BEGIN IMMEDIATE already serializes every writer; PostgreSQL at READ COMMITTED does
    not, so there a transaction-scoped advisory lock does.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_QUEUE)


def _insert_files(conn: Connection, request_id: str, files: Sequence[FileRecord]) -> None:
    if files:
        conn.execute(_INSERT_FILES, [
            {"request_id": request_id, "name": f.name, "size": f.size, "content_type": f.content_type,
             "location": f.location}
            for f in files
        ])


def _request_row(request: NewRequest, now: float) -> dict[str, Any]:
    return {
        "id": request.id,
        "message": _dumps(request.message),
        "status": _QUEUED,
        "timeout": request.timeout,
        "inputs": _dumps({k: base64.b64encode(v).decode("ascii") for k, v in request.inputs.items()}),
        "client": request.client,
        "quota_key": request.quota_key,
        "created": now,
        "last_seq": 0,
    }


def _insert_callbacks(conn: Connection, requests: Sequence[NewRequest], now: float) -> None:
    rows = [{"request_id": r.id, "url": r.callback.url, "base_url": r.callback.base_url, "secret": r.callback.secret,
             "state": "pending", "attempts": 0, "next_try": now}
            for r in requests if r.callback is not None]
    if rows:
        conn.execute(callback_table.insert(), rows)


def _charge(conn: Connection, request_id: str, cpu: float | None, now: float) -> None:
    """Record a request's CPU seconds, and add them to its key's usage of today."""
    if cpu is None:
        return
    key = conn.execute(_CHARGE, {"rid": request_id, "cpu_": cpu}).scalar()
    if key:
        _add_usage(conn, key, cpu, now)


@functools.cache
def _usage_upsert(dialect: str) -> Any:
    """Add ``:cpu_`` to the usage of ``(:key_, :day_)``: built once per dialect (building a Core
    statement per call costs more than running it)."""
    insert = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(usage_table).values(
        key=sa.bindparam("key_"), day=sa.bindparam("day_"), cpu=sa.bindparam("cpu_", type_=sa.Float))
    return insert.on_conflict_do_update(index_elements=[_use.key, _use.day],
                                        set_={"cpu": _use.cpu + insert.excluded.cpu})


@functools.cache
def _pace_upsert(dialect: str) -> Any:
    """Set the pace of ``:key_`` to ``:tat_``, built once per dialect."""
    insert = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(pace_table).values(
        key=sa.bindparam("key_"), tat=sa.bindparam("tat_", type_=sa.Float))
    return insert.on_conflict_do_update(index_elements=[_pace.key], set_={"tat": insert.excluded.tat})


def _add_usage(conn: Connection, key: str, cpu: float, now: float) -> None:
    conn.execute(_usage_upsert(conn.dialect.name), {"key_": key, "day_": quotas.day_of(now), "cpu_": cpu})


def _callback_state(row: Row[Any]) -> CallbackState:
    return CallbackState(row.request_id, row.url, row.base_url, row.secret, row.state, row.attempts, row.next_try,
                         row.finished, row.last_error)


def _file_record(row: Row[Any]) -> FileRecord:
    return FileRecord(row.name, row.size, row.content_type, row.location)


class SqlStore(Store):
    """A :class:`Store` on any database ``_ENGINES`` knows, e.g. ``sqlite:////srv/singlecell.db``."""

    def __init__(self, url: str) -> None:
        self._db = Database(url)
        self._engine, self._writer, self._reader = self._db.engine, self._db.writer, self._db.reader

    def create_schema(self) -> None:
        # Inside a write transaction, so processes starting together migrate once.
        with self._writer.begin() as conn:
            migrate(conn)

    def close(self) -> None:
        self._engine.dispose()

    def describe(self) -> str:
        where = self._engine.url.render_as_string(hide_password=True)
        if self._db.dialect == "sqlite":  # a library in this process: nothing to connect to (or make) first
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version} at {where}"
        with self._reader.connect() as conn:
            version = ".".join(str(part) for part in conn.dialect.server_version_info or ())
        return f"PostgreSQL {version} at {where}"

    def _read(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> list[Row[Any]]:
        with self._reader.connect() as conn:
            return list(conn.execute(statement, params))

    # -- the web tier -------------------------------------------------------------------

    def submit(self, request: NewRequest, max_queue: int, quota: Quota | None = None) -> None:
        now = time.time()
        with self._writer.begin() as conn:
            self._admit(conn, 1, max_queue, quota, now)
            try:
                conn.execute(_INSERT_REQUEST, _request_row(request, now))
            except sa.exc.IntegrityError:  # the primary key is the only constraint an insert can break
                raise _duplicate(request.id) from None
            _insert_callbacks(conn, [request], now)

    def submit_batch(self, batch_id: str, requests: Sequence[NewRequest], max_queue: int,
                     quota: Quota | None = None) -> None:
        now = time.time()
        with self._writer.begin() as conn:
            self._admit(conn, len(requests), max_queue, quota, now)
            try:
                conn.execute(batch_table.insert(), {"id": batch_id, "created": now,
                                                    "ids": _dumps([r.id for r in requests])})
                conn.execute(_INSERT_REQUEST, [_request_row(r, now) for r in requests])
            except sa.exc.IntegrityError:
                raise DuplicateRequest(f"batch {batch_id!r} or one of its request ids exists already; give each "
                                       "a new id") from None
            _insert_callbacks(conn, requests, now)

    @staticmethod
    def _admit(conn: Connection, count: int, max_queue: int | None, quota: Quota | None, now: float) -> None:
        """The checks before ``count`` requests are stored, in their transaction (which holds
        the queue's lock: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock), so that no
        other submit can pass a limit between a check and its insert. ``max_queue`` None: the
        requests do not wait in the queue (linked cells)."""
        _lock_queue(conn)
        queued = conn.execute(_COUNT_QUEUED).scalar_one() if max_queue is not None else 0
        if max_queue is not None and queued + count > max_queue:
            raise QueueFull(
                f"{queued} requests are already waiting, and this server queues {max_queue}; "
                "retry in a second.",
                retry_after=1,
            )
        if quota is None or not quota.limited:
            return
        key = {"key": quota.key}
        tat = quotas.admit(quota, count, now, lambda: int(conn.execute(_IN_FLIGHT, key).scalar_one()),
                           lambda: float(conn.execute(_USED, {**key, "day": quotas.day_of(now)}).scalar() or 0.0),
                           lambda: conn.execute(_PACE, key).scalar())
        if tat is not None:
            conn.execute(_pace_upsert(conn.dialect.name), {"key_": quota.key, "tat_": tat})

    def prune_quotas(self, now: float, keep_days: int = 31) -> int:
        with self._writer.begin() as conn:
            paces = conn.execute(pace_table.delete().where(_pace.tat <= now)).rowcount
            days = conn.execute(usage_table.delete().where(_use.day < quotas.day_of(now) - keep_days)).rowcount
        return int(paces) + int(days)

    def get_batch(self, batch_id: str) -> list[str] | None:
        rows = self._read(_GET_BATCH, {"bid": batch_id})
        return list(json.loads(rows[0].ids)) if rows else None

    def cpu_used(self, key: str, day: int) -> float:
        rows = self._read(_USED, {"key": key, "day": day})
        return float(rows[0].cpu) if rows else 0.0

    def get_request(self, request_id: str) -> RequestRecord | None:
        rows = self._read(_GET_REQUEST, {"rid": request_id})
        return _record(rows[0]) if rows else None

    def get_messages(self, request_id: str, after: int = 0, limit: int = 1000) -> list[StoredMessage]:
        # seq is a 32-bit column: PostgreSQL refuses a bigger bound, and none is stored above it
        rows = self._read(_GET_MESSAGES, {"rid": request_id, "after": min(after, _MAX_SEQ), "n": limit})
        return [StoredMessage(row.seq, json.loads(row.message)) for row in rows]

    def progress_of(self, request_ids: Sequence[str]) -> dict[str, Progress]:
        if not request_ids:
            return {}
        rows = self._read(_PROGRESS, {"ids": list(request_ids)})
        return {row.id: (row.status, row.last_seq, bool(row.live)) for row in rows}

    def count_queued(self) -> int:
        return int(self._read(_COUNT_QUEUED)[0][0])

    def request_stop(self, request_id: str, messages: Sequence[JsonDict]) -> Status | None:
        with self._writer.begin() as conn:
            stopped = conn.execute(_STOP_QUEUED, {"rid": request_id, "now": time.time(),
                                                  "last": len(messages)}).rowcount
            if stopped:
                if messages:
                    conn.execute(_INSERT_MESSAGES, [_message_row(request_id, i + 1, m)
                                                    for i, m in enumerate(messages)])
                return Status.ABORTED
            status = conn.execute(_GET_STATUS, {"rid": request_id}).scalar()
            if status == _RUNNING or (status is not None and conn.execute(_IS_LIVE, {"rid": request_id}).first()):
                _insert_new(conn, stop_table, {"request_id": request_id, "requested": time.time()})
        return None if status is None else Status(status)

    # -- permalinks ---------------------------------------------------------------------

    def save_permalink(self, code: str) -> Permalink:
        with self._writer.begin() as conn:
            for permalink_id in permalink_ids(code):
                _insert_new(conn, permalink_table, {"id": permalink_id, "code": code, "created": time.time()})
                row = conn.execute(_GET_PERMALINK, {"pid": permalink_id}).one()
                if row.code == code:  # this code's, whether saved now or before
                    return Permalink(row.id, row.code, row.created)
        raise AssertionError("every id of a sha256 digest is taken by other code")  # pragma: no cover

    def get_permalink(self, permalink_id: str) -> Permalink | None:
        rows = self._read(_GET_PERMALINK, {"pid": permalink_id})
        return Permalink(rows[0].id, rows[0].code, rows[0].created) if rows else None

    # -- a device -----------------------------------------------------------------------

    def stops_for(self, device: str) -> list[str]:
        return [row.id for row in self._read(_STOPS_FOR, {"dev": device})]

    def claim(self, device: str, limit: int, lease_seconds: float) -> list[RequestRecord]:
        if limit <= 0:
            return []
        now = time.time()
        params = {"n": limit, "dev": device, "now": now, "until": now + lease_seconds}
        if self._db.dialect == "postgresql":
            # One statement, atomic by itself (its rows locked FOR UPDATE SKIP LOCKED): one round
            # trip instead of BEGIN, UPDATE and COMMIT, and an empty queue locks nothing.
            with self._reader.connect() as conn:
                records = [_record(row) for row in conn.execute(_CLAIM, params)]
        else:
            # A device calls this on every wake-up, most often with nothing queued: look without
            # the write lock first, so an empty queue costs one read and makes no writer wait.
            if not self._read(_ANY_QUEUED, {}):
                return []
            with self._writer.begin() as conn:
                records = [_record(row) for row in conn.execute(_CLAIM, params)]
        # RETURNING gives rows in no promised order.
        return sorted(records, key=lambda r: (r.created, r.id))

    def renew_lease(self, device: str, lease_seconds: float, request_ids: Sequence[str],
                    session_ids: Sequence[str] = ()) -> int:
        if not request_ids and not session_ids:
            return 0
        params = {"dev": device, "until": time.time() + lease_seconds}
        renewed = 0
        with self._writer.begin() as conn:
            if request_ids:
                renewed += conn.execute(_RENEW, {**params, "ids": list(request_ids)}).rowcount
            if session_ids:
                renewed += conn.execute(_RENEW_SESSIONS, {**params, "ids": list(session_ids)}).rowcount
        return renewed

    def _append(
        self, conn: Connection, request_id: str, device: str, msgs: Sequence[StoredMessage],
        status: Status | None = None, cpu: float | None = None,
    ) -> str | None:
        """Append ``msgs`` (and with ``status``, finish, adding ``cpu``) if the request is held by
        ``device``; its key when it was (``""`` for none), else ``None``.

        The ownership check and the change to the request are one UPDATE, so a concurrent
        expire_leases lands wholly before it (and it changes nothing) or wholly after it.
        """
        held = {"rid": request_id, "dev": device}
        if not msgs and status is None:  # nothing to write: say whether it is still held
            return "" if conn.execute(_HELD_LAST_SEQ, held).first() is not None else None
        params: dict[str, Any] = dict(held)
        if msgs:
            params |= {"first": msgs[0].seq, "last": msgs[-1].seq}
        if status is not None:
            params |= {"status_": status.value, "now": time.time(), "cpu_": cpu}
            changed = conn.execute(_advance(bool(msgs), True), params).first()
            key = None if changed is None else str(changed.quota_key)
        else:
            key = "" if conn.execute(_advance(True, False), params).rowcount else None
        if key is None:
            # Rare path, one more query: tell a caller's seq bug apart from a lost request.
            if msgs and (last := conn.execute(_HELD_LAST_SEQ, held).first()) is not None:
                raise ValueError(f"message seq {msgs[0].seq} is not above last_seq {last[0]}")
            return None
        if msgs:
            conn.execute(_INSERT_MESSAGES, [_message_row(request_id, m.seq, m.message) for m in msgs])
        return key

    def add_messages(self, request_id: str, device: str, messages: Sequence[StoredMessage]) -> bool:
        _check_seqs(messages)
        with self._writer.begin() as conn:
            return self._append(conn, request_id, device, messages) is not None

    def finish(
        self,
        request_id: str,
        device: str,
        status: Status,
        messages: Sequence[StoredMessage] = (),
        files: Sequence[FileRecord] = (),
        session: NewSession | None = None,
        cpu: float | None = None,
    ) -> bool:
        status = Status(status)
        if not status.terminal:
            raise ValueError(f"finish needs a terminal status, not {status.value!r}")
        _check_seqs(messages)
        try:
            with self._writer.begin() as conn:
                key = self._append(conn, request_id, device, messages, status, cpu)
                if key is None:
                    return False
                _insert_files(conn, request_id, files)
                now = time.time()
                if key and cpu is not None:
                    _add_usage(conn, key, cpu, now)
                if session is not None:
                    conn.execute(_INSERT_SESSION, {
                        "request_id": request_id, "device": device, "client": session.client, "live": True,
                        "started": now, "lease_until": now + session.lease_seconds, "last_read": now,
                        "last_input": 0, "delivered": 0, "kind": session.kind, "owner": session.owner})
        except sa.exc.IntegrityError:  # seqs are checked above, so only a file name can repeat
            raise ValueError(f"finish got two files with one name: {sorted(f.name for f in files)}") from None
        return True

    def expire_leases(self, now: float | None = None) -> list[str]:
        params = {"now": time.time() if now is None else now}
        # Every process calls this on a timer and almost always nothing has expired: look
        # without the write lock first, so idle sweeps never make writers wait.
        if not self._read(_ANY_EXPIRED, params) and not self._read(_ANY_EXPIRED_SESSION, params):
            return []
        with self._writer.begin() as conn:
            rows = conn.execute(_EXPIRE, params).all()
            if rows:
                conn.execute(_INSERT_MESSAGES, [  # each answers its own request's header
                    _message_row(r.id, r.last_seq, lost_error_message(json.loads(r.message))) for r in rows
                ])
            ended = [row.request_id for row in conn.execute(_EXPIRE_SESSIONS, params)]
            linked: list[str] = []
            for request_id in ended:  # rare: one at a time
                bumped = conn.execute(_BUMP_SEQ, {"rid": request_id}).one()
                lost = session_end_message(json.loads(bumped.message), "lost", end_text("lost"))
                conn.execute(_INSERT_MESSAGES, [_message_row(request_id, bumped.last_seq, lost)])
                linked += _end_linked(conn, request_id, "lost")
        return [row.id for row in rows] + ended + linked

    def release(self, device: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0
        with self._writer.begin() as conn:
            return conn.execute(_RELEASE, {"ids": list(request_ids), "dev": device}).rowcount

    # -- sessions -----------------------------------------------------------------------

    def add_input(self, request_id: str, message: JsonDict) -> int | None:
        with self._writer.begin() as conn:
            row = conn.execute(_NEXT_INPUT, {"rid": request_id}).first()
            if row is None:
                return None
            conn.execute(_INSERT_INPUT, {"request_id": request_id, "seq": row.last_input, "message": _dumps(message)})
            return int(row.last_input)

    def submit_linked(self, request: NewRequest, session_id: str, owner: str, quota: Quota | None = None) -> int | None:
        now = time.time()
        with self._writer.begin() as conn:
            if quota is not None and quota.limited:
                self._admit(conn, 1, None, quota, now)
            row = conn.execute(_NEXT_LINKED_INPUT, {"rid": session_id, "who": owner}).first()
            if row is None:
                return None
            try:
                conn.execute(_INSERT_REQUEST, {
                    "id": request.id, "message": _dumps(request.message), "status": _RUNNING,
                    "timeout": request.timeout, "inputs": "{}", "client": request.client, "created": now,
                    "started": now, "device": row.device, "lease_until": None, "last_seq": 0,
                    "session_id": session_id, "quota_key": request.quota_key})
            except sa.exc.IntegrityError:  # as in submit
                raise _duplicate(request.id) from None
            _insert_callbacks(conn, [request], now)
            conn.execute(_INSERT_INPUT, {"request_id": session_id, "seq": row.last_input,
                                         "message": _dumps(request.message)})
            return int(row.last_input)

    def inputs(self, request_id: str, after: int) -> list[tuple[int, JsonDict]]:
        rows = self._read(_INPUTS, {"rid": request_id, "after": min(after, _MAX_SEQ)})
        return [(row.seq, json.loads(row.message)) for row in rows]

    def pending_inputs(self, device: str) -> dict[str, list[tuple[int, JsonDict]]]:
        pending: dict[str, list[tuple[int, JsonDict]]] = {}
        for row in self._read(_PENDING_INPUTS, {"dev": device}):
            pending.setdefault(row.request_id, []).append((row.seq, json.loads(row.message)))
        return pending

    def add_session_messages(self, request_id: str, device: str, messages: Sequence[StoredMessage],
                             delivered: int | None = None) -> bool:
        _check_seqs(messages)
        held = {"rid": request_id, "dev": device}
        with self._writer.begin() as conn:
            values = {} if delivered is None else {"delivered": delivered}
            # the guard is an UPDATE even with nothing to change: it takes the row's lock
            if not conn.execute(_SESSION_GUARD.values(values or {"live": True}), held).rowcount:
                return False
            if messages:
                self._append_session(conn, request_id, messages)
        return True

    def _append_session(self, conn: Connection, request_id: str, msgs: Sequence[StoredMessage]) -> None:
        moved = conn.execute(_SESSION_SEQ, {"rid": request_id, "first": msgs[0].seq, "last": msgs[-1].seq}).rowcount
        if not moved:
            raise ValueError(f"message seq {msgs[0].seq} is not above the request's last_seq")
        conn.execute(_INSERT_MESSAGES, [_message_row(request_id, m.seq, m.message) for m in msgs])

    def end_session(self, request_id: str, device: str, reason: str, messages: Sequence[StoredMessage] = (),
                    files: Sequence[FileRecord] = (), cpu: float | None = None) -> bool:
        _check_seqs(messages)
        now = time.time()
        try:
            with self._writer.begin() as conn:
                if not conn.execute(_END_SESSION, {"rid": request_id, "dev": device, "why": reason,
                                                   "now": now}).rowcount:
                    return False
                if messages:
                    self._append_session(conn, request_id, messages)
                _insert_files(conn, request_id, files)
                _charge(conn, request_id, cpu, now)
                _end_linked(conn, request_id, reason)
        except sa.exc.IntegrityError:
            raise ValueError(f"end_session got a file name the request has already: "
                             f"{sorted(f.name for f in files)}") from None
        return True

    def touch_session(self, request_id: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._writer.begin() as conn:
            conn.execute(_TOUCH_SESSION, {"rid": request_id, "now": now, "stale": now - TOUCH_EVERY})

    def session_reads(self, device: str) -> dict[str, float]:
        return {row.request_id: row.last_read for row in self._read(_SESSION_READS, {"dev": device})}

    def live_sessions(self, client: str) -> int:
        return int(self._read(_LIVE_OF_CLIENT, {"who": client})[0][0])

    def kernels(self, owner: str, client: str | None = None) -> list[tuple[str, SessionState]]:
        query = _KERNELS if client is None else _KERNELS.where(_ses.client == sa.bindparam("client"))
        return [(row.request_id, SessionState(True, None, row.started, None, row.last_read, row.kind, row.owner,
                                              row.last_input > row.delivered))
                for row in self._read(query, {"who": owner, "client": client})]

    def save_cursor(self, request_id: str, reader: str, seq: int) -> None:
        with self._writer.begin() as conn:
            insert = _insert(conn, cursor_table).values(request_id=request_id, reader=reader, seq=seq)
            conn.execute(insert.on_conflict_do_update(  # a cursor never moves back
                index_elements=["request_id", "reader"], set_={"seq": insert.excluded.seq},
                where=_cur.seq < insert.excluded.seq))

    def cursor(self, request_id: str, reader: str) -> int | None:
        rows = self._read(_CURSOR, {"rid": request_id, "reader": reader})
        return int(rows[0].seq) if rows else None

    # -- operations ------------------------------------------------------------------------

    def timings(self, since: float) -> list[Timing]:
        return [Timing(row.created, row.started, row.finished, Status(row.status))
                for row in self._read(_TIMINGS, {"since": since})]

    def list_requests(self, status: Status | None = None, since: float | None = None,
                      limit: int = 50) -> list[RequestRecord]:
        query = sa.select(request_table).order_by(_req.created.desc(), _req.id.desc()).limit(max(0, limit))
        if status is not None:
            query = query.where(_req.status == status.value)
        if since is not None:
            query = query.where(_req.created >= since)
        return [_record(row) for row in self._read(query)]

    def report_device(self, report: DeviceReport) -> None:
        values = {"host": report.host, "started": report.started, "seen": report.seen, "kernels": report.kernels,
                  "busy": report.busy, "ready": report.ready,
                  "layers": json.dumps([list(layer) for layer in report.layers])}
        with self._writer.begin() as conn:
            insert = _insert(conn, device_table).values(name=report.name, **values)
            conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=values))

    def devices(self, seen_since: float) -> list[DeviceReport]:
        return [DeviceReport(row.name, row.host, row.started, row.seen, row.kernels, row.busy, row.ready,
                             [(str(n), bool(a), str(d)) for n, a, d in json.loads(row.layers)])
                for row in self._read(_DEVICES, {"since": seen_since})]

    # -- callbacks ----------------------------------------------------------------------

    def claim_callbacks(self, limit: int, lease_seconds: float) -> list[CallbackState]:
        now = time.time()
        params = {"now": now, "n": limit, "until": now + lease_seconds}
        if not self._read(_ANY_DUE_CALLBACK, params):  # every web process asks every second: no write lock for none
            return []
        with self._writer.begin() as conn:
            return [_callback_state(row) for row in conn.execute(_CLAIM_CALLBACKS, params)]

    def callback_tried(self, request_id: str, delivered: bool, error: str | None = None,
                       retry_at: float | None = None) -> None:
        now = time.time()
        values: dict[str, Any] = {"last_error": error}
        if delivered or retry_at is None:
            values |= {"state": "delivered" if delivered else "failed", "finished": now}
        else:
            values["next_try"] = retry_at
        with self._writer.begin() as conn:
            conn.execute(callback_table.update().where(_cb.request_id == request_id, _cb.state == "pending")
                         .values(values))

    def callbacks_of(self, request_ids: Sequence[str]) -> dict[str, CallbackState]:
        if not request_ids:
            return {}
        return {row.request_id: _callback_state(row) for row in self._read(_CALLBACKS_OF, {"ids": list(request_ids)})}

    # -- files --------------------------------------------------------------------------

    def list_files(self, request_id: str) -> list[FileRecord]:
        return [_file_record(row) for row in self._read(_LIST_FILES, {"rid": request_id})]

    def get_file(self, request_id: str, name: str) -> FileRecord | None:
        rows = self._read(_GET_FILE, {"rid": request_id, "fname": name})
        return _file_record(rows[0]) if rows else None
