"""Wake-ups between the web tier and the devices, so neither polls the store on a timer.

The web tier tells devices "a request is queued", "a client asked to stop a request" or "a
session has a new input"; a device
tells web processes "request X has new messages or a new status". A wake-up carries no data that
matters: the store stays the truth, a lost wake-up only costs one fallback poll
(``poll_interval``), and a process may receive wake-ups meant for others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# what a relayed wake-up is for: the devices' work, or the web processes' progress
WORK, PROGRESS = "singlecell_work", "singlecell_progress"


class Wakeups(ABC):
    """One process's end of the wake-up channel. Call :meth:`start` on the running loop."""

    def __init__(self) -> None:
        self.on_queued: Callable[[], None] | None = None
        self.on_stop: Callable[[], None] | None = None
        self.on_input: Callable[[str], None] | None = None
        self.on_progress: Callable[[str], None] | None = None

    role: str  # "device" or "web": which end this is

    def _dispatch(self, payload: str) -> None:
        """Call the callbacks for one wake-up as every kind carries it: to a device ``q`` (queued),
        ``s`` (stop asked) or ``i`` and request ids (inputs for those sessions); to a web process
        request ids, space-separated."""
        if self.role == "device":
            if payload.startswith("i"):
                if self.on_input is not None:
                    for request_id in payload[1:].split():
                        self.on_input(request_id)
                return
            callback = self.on_stop if payload == "s" else self.on_queued
            if callback is not None:
                callback()
        elif self.on_progress is not None:
            for request_id in payload.split():
                self.on_progress(request_id)

    @abstractmethod
    async def start(self) -> None:
        """Connect; afterwards the callbacks are called on the loop as wake-ups arrive."""

    @abstractmethod
    def close(self) -> None: ...

    def queued(self) -> None:
        """Tell the devices that a request was queued (after its transaction committed)."""
        if self.role == "web":
            self._send_work("q")

    def stop_requested(self) -> None:
        """Tell the devices that a client asked to stop a running request (after it was stored)."""
        if self.role == "web":
            self._send_work("s")

    def input_added(self, request_id: str) -> None:
        """Tell the devices that the request's session has a new input (after it was stored)."""
        if self.role == "web":
            self._send_work("i" + request_id)

    def progressed(self, request_ids: Iterable[str]) -> None:
        """Tell the web processes these requests have new messages or a new status."""
        if self.role == "device":
            ids = " ".join(request_ids)
            if ids:
                self._send_progress(ids)

    @abstractmethod
    def _send_work(self, payload: str) -> None:
        """Send ``payload`` (as :meth:`_dispatch` reads it) to the devices, without blocking."""

    @abstractmethod
    def _send_progress(self, ids: str) -> None:
        """Send space-separated request ids to the web processes, without blocking."""


class HostWakeups(Wakeups):
    """Processes sharing one data dir, on one host: ZeroMQ over abstract Unix sockets named
    after the data dir. The device binds (one per data dir); web processes connect, before or
    after it starts — ZeroMQ reconnects by itself.

    Abstract sockets live in the network namespace, so a kernel in a namespace of its own
    cannot reach them.
    """

    def __init__(self, data_dir: str, role: str, context: zmq.asyncio.Context | None = None) -> None:
        super().__init__()
        if role not in ("device", "web"):
            raise ValueError(f"role must be 'device' or 'web', not {role!r}")
        tag = hashlib.sha256(data_dir.encode()).hexdigest()[:20]
        self.queued_address = f"ipc://@singlecell-{tag}-queued"
        self.progress_address = f"ipc://@singlecell-{tag}-progress"
        self.role = role
        self.context = context or zmq.asyncio.Context.instance()
        self._sockets: list[zmq.asyncio.Socket] = []
        self._task: asyncio.Task[None] | None = None
        self._send: zmq.asyncio.Socket | None = None

    async def start(self) -> None:
        if self.role == "device":
            receive = self._socket(zmq.PULL)
            self._send = self._socket(zmq.PUB)
            try:
                receive.bind(self.queued_address)
                self._send.bind(self.progress_address)
            except zmq.ZMQError as exc:
                # another device already serves this data dir: we still work, by polling
                log.warning("wake-ups unavailable (%s); falling back to polling the store", exc)
                return
        else:
            receive = self._socket(zmq.SUB)
            receive.setsockopt(zmq.SUBSCRIBE, b"")
            receive.connect(self.progress_address)
            self._send = self._socket(zmq.PUSH)
            self._send.setsockopt(zmq.SNDHWM, 100)
            self._send.connect(self.queued_address)
        self._task = asyncio.ensure_future(self._receive(receive))

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self._sockets.append(sock)
        return sock

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            self._dispatch(frames[0].decode("ascii", "replace"))

    def _post(self, payload: bytes) -> None:
        if self._send is None:
            return
        with contextlib.suppress(zmq.Again, zmq.ZMQError):  # no peer yet: the poll covers it
            self._send.send(payload, flags=zmq.NOBLOCK)

    def _send_work(self, payload: str) -> None:
        self._post(payload.encode("ascii"))

    def _send_progress(self, ids: str) -> None:
        self._post(ids.encode("ascii"))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets.clear()


class PostgresWakeups(Wakeups):
    """Processes sharing a PostgreSQL store, on any number of hosts: LISTEN/NOTIFY.

    Devices listen on ``singlecell_work`` (payload ``q``: a request was queued; ``s``: a stop
    was asked; ``i`` and a request id: a session has an input); web processes on
    ``singlecell_progress`` (payload: request ids, space-separated). One connection listens;
    sends are queued and go out through a second one, coalesced (one ``q`` for any number of
    queued requests, ids packed up to PostgreSQL's payload limit). A dropped connection is made
    again with back-off; meanwhile the fallback poll covers.
    """

    WORK, PROGRESS = WORK, PROGRESS
    MAX_PAYLOAD = 7900  # bytes; PostgreSQL's limit is 8000

    def __init__(self, url: str, role: str) -> None:
        super().__init__()
        if role not in ("device", "web"):
            raise ValueError(f"role must be 'device' or 'web', not {role!r}")
        import sqlalchemy as sa

        # libpq's own URL form: no SQLAlchemy driver name
        self.conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.role = role
        self._outbox: list[tuple[str, str]] = []
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()  # set while the LISTEN connection is up (for tests)

    async def start(self) -> None:
        listen = self.WORK if self.role == "device" else self.PROGRESS
        self._tasks = [asyncio.ensure_future(self._listen(listen)), asyncio.ensure_future(self._send())]

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg  # only a PostgreSQL deployment needs it

        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)

    async def _listen(self, channel: str) -> None:
        import psycopg

        backoff = 0.25
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    backoff = 0.25
                    async for notice in conn.notifies():
                        self._dispatch(notice.payload)
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("wake-ups: listening lost (%s); polling until it is back", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _send(self) -> None:
        import psycopg

        conn: psycopg.AsyncConnection[Any] | None = None
        while True:
            await self._pending.wait()
            self._pending.clear()
            batch, self._outbox = self._outbox, []
            try:
                if conn is None:
                    conn = await self._connect()
                for channel, payload in _coalesce(batch, self.MAX_PAYLOAD):
                    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
            except (psycopg.Error, OSError) as exc:
                log.warning("wake-ups: sending failed (%s); the others will poll", exc)
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await conn.close()
                conn = None
                await asyncio.sleep(0.5)

    def _post(self, channel: str, payload: str) -> None:
        self._outbox.append((channel, payload))
        self._pending.set()

    def _send_work(self, payload: str) -> None:
        self._post(self.WORK, payload)

    def _send_progress(self, ids: str) -> None:
        self._post(self.PROGRESS, ids)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []


class MongoWakeups(HostWakeups):
    """Processes sharing a MongoDB store.

    Where the server is a replica set or a sharded cluster, processes on any number of hosts:
    each wake-up is a small document inserted into ``wakeups`` (a TTL index drops it after a
    minute), and every process follows that collection's change stream, filtered to its role,
    in a thread of its own (pymongo's calls block). Sends are queued and inserted coalesced, as
    :class:`PostgresWakeups` does. A lost stream is opened again with back-off; meanwhile the
    fallback poll covers.

    A standalone server has no change streams: there it is :class:`HostWakeups`, ZeroMQ between
    the processes of this host, and processes on other hosts poll. :attr:`streaming` says which,
    once :meth:`start` has asked the server.
    """

    COLLECTION = "wakeups"
    MAX_PAYLOAD = 60_000  # characters of ids per document; far below MongoDB's 16 MB
    AWAIT_MS = 500  # how long one read of the stream waits on the server; bounds close()'s delay

    def __init__(self, url: str, data_dir: str, role: str) -> None:
        super().__init__(data_dir, role)
        self.url = url
        self.streaming: bool | None = None
        self.listening = threading.Event()  # set while the change stream is open (for tests)
        self._closed = threading.Event()
        self._outbox: list[tuple[str, str]] = []
        self._pending = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from filestore.mongodb import database_for

        db = database_for(self.url)
        missing = await asyncio.to_thread(change_streams_missing, db)
        if missing:
            log.info("wake-ups: %s; ZeroMQ between this host's processes, the others poll the store", missing)
            self.streaming = False
            await super().start()
            return
        self.streaming = True
        collection = db[self.COLLECTION]
        threading.Thread(target=self._follow, args=(collection, asyncio.get_running_loop()),
                         name="singlecell-wakeups", daemon=True).start()
        self._flusher = asyncio.ensure_future(self._flush(collection))

    def _follow(self, collection: Any, loop: asyncio.AbstractEventLoop) -> None:
        from pymongo.errors import PyMongoError

        match = [{"$match": {"operationType": "insert", "fullDocument.to": self.role}},
                 {"$project": {"fullDocument.p": 1}}]
        backoff = 0.25
        while not self._closed.is_set():
            try:
                with collection.watch(match, max_await_time_ms=self.AWAIT_MS) as stream:
                    self.listening.set()
                    backoff = 0.25
                    while not self._closed.is_set():
                        change = stream.try_next()
                        if change is not None:
                            with contextlib.suppress(RuntimeError):  # the loop closed: we are stopping
                                loop.call_soon_threadsafe(self._dispatch, change["fullDocument"]["p"])
            except PyMongoError as exc:
                self.listening.clear()
                if not self._closed.is_set():
                    log.warning("wake-ups: the change stream was lost (%s); polling until it is back", exc)
                    self._closed.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
        self.listening.clear()

    async def _flush(self, collection: Any) -> None:
        from pymongo.errors import PyMongoError

        while True:
            await self._pending.wait()
            self._pending.clear()
            batch, self._outbox = self._outbox, []
            now = datetime.now(UTC)
            docs = [{"to": "device" if channel == WORK else "web", "p": payload, "at": now}
                    for channel, payload in _coalesce(batch, self.MAX_PAYLOAD)]
            try:
                await asyncio.to_thread(collection.insert_many, docs, ordered=False)
            except PyMongoError as exc:
                log.warning("wake-ups: sending failed (%s); the others will poll", exc)
                await asyncio.sleep(0.5)

    def _send_work(self, payload: str) -> None:
        if self.streaming:
            self._relay(WORK, payload)
        else:
            super()._send_work(payload)

    def _send_progress(self, ids: str) -> None:
        if self.streaming:
            self._relay(PROGRESS, ids)
        else:
            super()._send_progress(ids)

    def _relay(self, channel: str, payload: str) -> None:
        self._outbox.append((channel, payload))
        self._pending.set()

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.cancel()
        super().close()


def change_streams_missing(db: Any) -> str:
    """Why the server of ``db`` has no change streams ("" when it has them: a replica set or a
    sharded cluster's router)."""
    from pymongo.errors import PyMongoError

    try:
        hello = db.command("hello")
    except (PyMongoError, NotImplementedError) as exc:  # servers before 4.4.2 know only isMaster
        try:
            hello = db.command("isMaster")
        except (PyMongoError, NotImplementedError):
            return f"the server did not say whether it is a replica set ({exc})"
    if "setName" in hello or hello.get("msg") == "isdbgrid":
        return ""
    return "the MongoDB server is a standalone one, without change streams"


def _coalesce(batch: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """Fewest notifications saying the same: one per distinct work payload, ids packed by size."""
    out: list[tuple[str, str]] = []
    work = dict.fromkeys(p for c, p in batch if c == WORK)
    out += [(WORK, p) for p in work]
    packed = ""
    for request_id in dict.fromkeys(i for c, p in batch if c == PROGRESS for i in p.split()):
        if packed and len(packed) + 1 + len(request_id) > limit:
            out.append((PROGRESS, packed))
            packed = ""
        packed = f"{packed} {request_id}" if packed else request_id
    if packed:
        out.append((PROGRESS, packed))
    return out


def describe_wakeups(store_url: str, poll_interval: float) -> str:
    """How processes sharing ``store_url`` wake each other, as :func:`open_wakeups` would choose
    (asking a MongoDB server whether it has change streams)."""
    if store_url.startswith("postgresql"):
        return "LISTEN/NOTIFY through PostgreSQL: processes on any host"
    here = "ZeroMQ between this host's processes"
    if store_url.startswith(("mongodb://", "mongodb+srv://")):
        from filestore.mongodb import database_for

        missing = change_streams_missing(database_for(store_url))
        if not missing:
            return "MongoDB change streams: processes on any host"
        return f"{here}; processes on other hosts poll every {poll_interval:g} s ({missing})"
    return here


def open_wakeups(store_url: str, data_dir: str, role: str) -> Wakeups:
    """LISTEN/NOTIFY for a PostgreSQL store and change streams for a MongoDB replica set
    (processes on any hosts); ZeroMQ on this host otherwise (SQLite, a standalone MongoDB server)."""
    if store_url.startswith("postgresql"):
        return PostgresWakeups(store_url, role)
    if store_url.startswith(("mongodb://", "mongodb+srv://")):
        return MongoWakeups(store_url, data_dir, role)
    return HostWakeups(data_dir, role)
