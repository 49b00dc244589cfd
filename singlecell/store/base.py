"""The Store: where requests, their reply messages and their file records live.

One Store is shared by every web process and every device of a deployment. The web tier
submits requests and reads messages; a device claims queued requests, appends the messages
its kernels produce and finishes each request with exactly one terminal status.

Calls are synchronous and short (one DB round trip or one small transaction): callers run
them directly on their event loop. Under write contention a call may wait for the DB's lock
(SQLite: up to its busy timeout); that is the price of an embedded DB, and the reason a
deployment with many writers moves to PostgreSQL. Every method is safe to call from several
processes at once; atomicity is the backend's job, never the caller's. A process opens its
own store after any ``fork()``: pooled connections must not cross one.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


class Status(enum.StrEnum):
    """A request's life: queued → running → one terminal status."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # the cell ran to its end without an exception
    ERROR = "error"  # the cell raised
    TIMEOUT = "timeout"  # the wall-clock limit stopped it
    ABORTED = "aborted"  # its kernel died, a limit killed it, or it was stopped
    LOST = "lost"  # its device vanished (lease expired) before finishing it

    @property
    def terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


TERMINAL_STATUSES = frozenset(s for s in Status if s.terminal)


@dataclass(frozen=True)
class NewRequest:
    """What the web tier submits.

    ``message`` is the whole ``execute_request`` (JSON-safe dict); ``message["header"]["msg_id"]``
    is the request id. ``inputs`` maps an uploaded file's name to its bytes.
    """

    id: str
    message: JsonDict
    timeout: float
    inputs: dict[str, bytes] = field(default_factory=dict)
    client: str = ""
    quota_key: str = ""  # whose it is, for its limits and CPU usage (singlecell/quotas.py)
    callback: Callback | None = None  # where to POST its summary once it ends


@dataclass(frozen=True)
class Quota:
    """The limits of one key (an API token's, or a client address's) that :meth:`Store.submit`
    checks, in the transaction that stores the requests. 0 means no limit."""

    key: str
    rate: float = 0.0  # requests per second, sustained
    burst: int = 1  # requests that may come at once before the rate's pace applies
    max_running: int = 0  # cells queued or running at once
    cpu_per_day: float = 0.0  # CPU seconds the key's cells may use per UTC day

    @property
    def limited(self) -> bool:
        return bool(self.rate or self.max_running or self.cpu_per_day)


@dataclass(frozen=True)
class Callback:
    """A request's callback: once the request ends, its ``/eval`` summary is POSTed to ``url``
    (output and file URLs under ``base_url``), signed with HMAC-SHA256 under ``secret`` (the
    SHA-256 of the client's API token, hex, as stored; "" for none: unsigned)."""

    url: str
    base_url: str
    secret: str = ""


@dataclass(frozen=True)
class CallbackState:
    """A callback as stored: ``state`` is ``pending`` (until the request ends and a POST
    succeeds), ``delivered`` or ``failed`` (every attempt failed, or the address was refused)."""

    request_id: str
    url: str
    base_url: str
    secret: str
    state: str
    attempts: int
    next_try: float
    finished: float | None
    last_error: str | None


@dataclass(frozen=True)
class SessionState:
    """The session a finished cell became (its kernel kept for open widgets), as stored."""

    live: bool
    reason: str | None  # why it ended (a key of singlecell.sessions.SESSION_ENDS); None while live
    started: float
    ended: float | None
    last_read: float = 0.0  # when a client last read its output, as recorded by touch_session
    kind: str = "widgets"  # a cell's open widgets; "kernel": a Jupyter client's kernel (POST /api/kernels)
    owner: str = ""  # whose kernel it is: the key of the API token that started it, or "" (no token)
    busy: bool = False  # inputs wait that its device has not answered yet


#: seconds between two records of a session's reads (touch_session): its readers poll far more often
TOUCH_EVERY = 2.0

#: what :meth:`Store.progress_of` says of a request: its status, last seq, and whether its session is live
Progress = tuple[str, int, bool]


@dataclass(frozen=True)
class NewSession:
    """What :meth:`Store.finish` needs to open a session: whose it is, and its first lease."""

    client: str
    lease_seconds: float
    kind: str = "widgets"  # see SessionState
    owner: str = ""


@dataclass(frozen=True)
class RequestRecord:
    """A request as stored. Timestamps are seconds since the epoch (``time.time()``)."""

    id: str
    message: JsonDict
    status: Status
    timeout: float
    inputs: dict[str, bytes]
    client: str
    device: str | None
    lease_until: float | None
    created: float
    started: float | None
    finished: float | None
    last_seq: int  # the highest message seq stored for it; 0 when none
    session: SessionState | None = None  # set by get_request when the cell became a session
    linked_to: str | None = None  # a linked cell: the request id of the session it runs in
    quota_key: str = ""  # whose it is (NewRequest.quota_key)
    cpu: float | None = None  # CPU seconds its kernel used, once it ended (a session's grow until it ends)


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    message: JsonDict


def numbered(after: int, messages: Sequence[JsonDict]) -> list[StoredMessage]:
    """``messages`` as stored, their seqs following ``after``."""
    return [StoredMessage(after + i + 1, m) for i, m in enumerate(messages)]


@dataclass(frozen=True)
class FileRecord:
    """A file a cell wrote. ``location`` is the FileStore's own reference to the bytes."""

    name: str
    size: int
    content_type: str
    location: str


@dataclass(frozen=True)
class Permalink:
    """Code saved to be shared: ``/c/<id>`` shows it, ready to run."""

    id: str
    code: str
    created: float


@dataclass(frozen=True)
class Timing:
    """When a request was submitted, claimed and ended (None while it has not), and its status:
    what the status page and ``singlecell stats`` count."""

    created: float
    started: float | None
    finished: float | None
    status: Status


@dataclass(frozen=True)
class DeviceReport:
    """What a device last said of itself (``report_device``): who and where it is, its kernels,
    and its sandbox layers as ``singlecell doctor`` prints them (name, active, detail)."""

    name: str
    host: str
    started: float
    seen: float
    kernels: int  # cells it runs at once
    busy: int  # kernels running a cell or kept by a live session
    ready: int  # kernels started ahead and waiting
    layers: list[tuple[str, bool, str]]


PERMALINK_ID_LENGTH = 8  # base32 characters: 40 bits, grown only when two codes collide


def permalink_ids(code: str) -> Iterator[str]:
    """The ids ``code`` may be saved under, in the order a store tries them: the same code gets
    the same short id on any store, and a longer one only if that id holds other code."""
    digest = base64.b32encode(hashlib.sha256(code.encode("utf-8")).digest()).decode("ascii").lower().rstrip("=")
    for length in range(PERMALINK_ID_LENGTH, len(digest) + 1, 2):
        yield digest[:length]


class Store(ABC):
    """The contract every store backend keeps. See the module docstring for who calls what."""

    @abstractmethod
    def create_schema(self) -> None:
        """Create the tables if they are missing. Idempotent; called by every process at start."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Call nothing else afterwards."""

    @abstractmethod
    def describe(self) -> str:
        """What the store is, for people (``singlecell doctor``): its database, its server's
        version and where it is, never a password. Asks the server: ``StoreUnavailable`` when it
        cannot be reached."""

    # -- the web tier -------------------------------------------------------------------

    @abstractmethod
    def submit(self, request: NewRequest, max_queue: int, quota: Quota | None = None) -> None:
        """Store ``request`` as ``queued``, in one transaction with the queue-length check, and
        with the check of ``quota`` (the limits of ``request.quota_key``) when given.

        Raises :class:`singlecell.errors.QueueFull` (and stores nothing) when ``max_queue``
        requests are already queued, and :class:`singlecell.errors.DuplicateRequest` when a
        request with this id exists. Past a limit of ``quota`` it raises
        :class:`singlecell.errors.QuotaExceeded` naming it, with the seconds until a retry can
        pass, and stores nothing (a refused request does not use up the rate):

        - ``rate``: more requests than ``burst`` at once, or faster than ``rate`` per second
          after it (GCRA, the token bucket as one timestamp);
        - ``max_running``: the key's requests ``queued`` or ``running`` would pass it;
        - ``cpu_per_day``: the key's CPU seconds of this UTC day (see :meth:`finish`) reached it.

        However many processes submit at once, no limit is passed.
        """

    @abstractmethod
    def submit_batch(self, batch_id: str, requests: Sequence[NewRequest], max_queue: int,
                     quota: Quota | None = None) -> None:
        """Store ``requests`` (one key's) as ``queued`` and as the batch ``batch_id``, all or none,
        under the checks of :meth:`submit`: the queue and ``max_running`` count every request,
        the rate counts the batch once. ``DuplicateRequest`` when the batch or a request id exists."""

    @abstractmethod
    def prune_quotas(self, now: float, keep_days: int = 31) -> int:
        """Forget what no limit needs any more: rate states whose pace has caught up with ``now``
        (the same as none), and CPU usage of days more than ``keep_days`` before ``now``'s.
        Returns how many records went. Any process may call it, any time."""

    @abstractmethod
    def get_batch(self, batch_id: str) -> list[str] | None:
        """The ids of the batch's requests, in the order submitted; ``None`` for an unknown batch."""

    @abstractmethod
    def cpu_used(self, key: str, day: int) -> float:
        """CPU seconds the requests of ``key`` used on ``day`` (days since 1970-01-01, UTC)."""

    @abstractmethod
    def get_request(self, request_id: str) -> RequestRecord | None:
        """The request, or ``None`` when no request has this id."""

    @abstractmethod
    def get_messages(self, request_id: str, after: int = 0, limit: int = 1000) -> list[StoredMessage]:
        """The request's messages with ``seq > after`` (any whole number ``after >= 0``), in seq
        order, at most ``limit`` of them.

        An unknown id gives ``[]``; callers tell "unknown" apart with :meth:`get_request`.
        """

    @abstractmethod
    def progress_of(self, request_ids: Sequence[str]) -> dict[str, Progress]:
        """For each known request of ``request_ids``: (status, last_seq, session live), in one
        read. The web tier's fallback for lost wake-ups compares it with what its long-polls saw."""

    @abstractmethod
    def count_queued(self) -> int:
        """How many requests are ``queued``."""

    @abstractmethod
    def request_stop(self, request_id: str, messages: Sequence[JsonDict]) -> Status | None:
        """Ask for a request to be stopped; returns its status afterwards, ``None`` for an unknown id.

        A ``queued`` request ends ``aborted`` at once, in one transaction with ``messages``
        (stored as seqs 1, 2, …): it never reaches a kernel. A ``running`` one, or a finished one
        whose session is live, is marked, and its device, which reads the marks with
        :meth:`stops_for`, stops it. Any other finished request is left as it was. Asking again
        changes nothing more.
        """

    # -- permalinks ---------------------------------------------------------------------

    @abstractmethod
    def save_permalink(self, code: str) -> Permalink:
        """Save ``code`` under the first id of :func:`permalink_ids` that is free or already
        holds this code. Saving the same code again returns the same permalink."""

    @abstractmethod
    def get_permalink(self, permalink_id: str) -> Permalink | None:
        """The permalink, or ``None`` when no code has this id."""

    # -- a device -----------------------------------------------------------------------

    @abstractmethod
    def stops_for(self, device: str) -> list[str]:
        """The ids of requests ``running`` under ``device``, and of live sessions it holds, that
        a client asked to stop (:meth:`request_stop`). The device stops each and finishes it
        (or ends the session) as usual."""

    @abstractmethod
    def claim(self, device: str, limit: int, lease_seconds: float) -> list[RequestRecord]:
        """Atomically move up to ``limit`` of the oldest ``queued`` requests to ``running``.

        Sets ``device``, ``started`` and ``lease_until = now + lease_seconds`` on each. However
        many devices call this at once, each request is returned to exactly one of them.
        The records returned show the new state, oldest first.
        """

    @abstractmethod
    def renew_lease(self, device: str, lease_seconds: float, request_ids: Sequence[str],
                    session_ids: Sequence[str] = ()) -> int:
        """Extend the lease of the requests of ``request_ids`` that ``device`` holds ``running``,
        and of the live sessions of ``session_ids`` it holds; returns how many of both. A lease
        that ran out but was not yet declared lost is revived: its device is alive. A request or
        session the device holds but leaves out runs out: the device gave up on it, and it will
        end ``lost``."""

    @abstractmethod
    def add_messages(self, request_id: str, device: str, messages: Sequence[StoredMessage]) -> bool:
        """Append messages (one transaction) to a request ``device`` holds ``running``.

        Seqs are the caller's, strictly increasing and above the request's ``last_seq``.
        Returns ``False`` and stores nothing when the request is no longer ``running`` under
        ``device`` (its lease expired and it was declared lost): the caller must stop it.
        Raises ``ValueError`` (storing nothing) for seqs that are not increasing or not above
        ``last_seq``. With no messages it only answers whether the request is still held.
        """

    @abstractmethod
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
        """Give a request ``device`` holds ``running`` its terminal ``status``, in one
        transaction with its last ``messages`` and its ``files``; with ``session``, the cell
        also becomes a live session held by ``device`` (its lease ``session.lease_seconds``, its
        last read now), in the same transaction. ``cpu``, the CPU seconds its kernel used, is
        recorded on it and added to its ``quota_key``'s usage of today (UTC).

        Returns ``False`` and changes nothing when the request is not ``running`` under
        ``device``. Raises ``ValueError`` (changing nothing) for a status that is not terminal,
        for bad seqs as :meth:`add_messages`, and for two files of the same name.
        """

    @abstractmethod
    def expire_leases(self, now: float | None = None) -> list[str]:
        """Turn every ``running`` request whose lease ended before ``now`` into ``lost``, and
        end every live session whose lease ended, reason ``lost``.

        Each request gets one last message appended (seq ``last_seq + 1``): a Jupyter
        ``error`` message, built by :func:`singlecell.protocol.lost_error_message`, that says
        its device stopped answering; ``finished`` becomes ``now``. Each session gets its
        ``session_end`` message (:func:`singlecell.sessions.session_end_message`, reason
        ``lost``) the same way, and ``ended`` becomes ``now``. Returns the ids it changed.
        Any process may call this.
        """

    @abstractmethod
    def release(self, device: str, request_ids: Sequence[str]) -> int:
        """Put requests ``device`` claimed but never started on a kernel back to ``queued``.

        Only requests that are ``running`` under ``device`` with ``last_seq == 0`` move; their
        device, start and lease are cleared and they keep their place (``created``) in the
        queue. Returns how many moved. A device calls this with claims it cannot run.
        """

    # -- sessions -----------------------------------------------------------------------
    # A cell that finished with widgets open keeps its kernel: ``finish(..., session=…)`` opens
    # the session. Clients send it inputs (comm messages); its device delivers them in order and
    # appends what the kernel answers to the request's messages, until it ends the session.

    @abstractmethod
    def add_input(self, request_id: str, message: JsonDict) -> int | None:
        """Store ``message`` as the next input of the request's live session; returns its seq
        (1, 2, … per session). ``None``, storing nothing, when the request has no live session."""

    @abstractmethod
    def submit_linked(self, request: NewRequest, session_id: str, owner: str, quota: Quota | None = None) -> int | None:
        """Store a linked cell: ``request`` (an ``execute_request`` marked ``singlecell_linked``)
        as a request of its own, ``running`` on the session's device from now (it is never
        claimed), and as the next input of the live kernel session ``session_id`` that ``owner``
        holds, in one transaction; returns the input's seq. ``None``, storing nothing, when there
        is no such live session. ``quota``: checked as :meth:`submit` checks it (it is
        ``running`` at once, so ``max_running`` counts it). The device finishes the request when
        the kernel answered it; when the session ends first, the store ends it ``aborted`` with the
        session (:meth:`end_session`, :meth:`expire_leases`), an error saying so its last message but one."""

    @abstractmethod
    def inputs(self, request_id: str, after: int) -> list[tuple[int, JsonDict]]:
        """The session's inputs with ``seq > after``, as (seq, message), in order."""

    @abstractmethod
    def pending_inputs(self, device: str) -> dict[str, list[tuple[int, JsonDict]]]:
        """For each live session ``device`` holds, the inputs not yet marked delivered (see
        :meth:`add_session_messages`), in order: the device's fallback when a wake-up is lost."""

    @abstractmethod
    def add_session_messages(self, request_id: str, device: str, messages: Sequence[StoredMessage],
                             delivered: int | None = None) -> bool:
        """Append messages (one transaction) to a request whose live session ``device`` holds;
        with ``delivered``, also mark the session's inputs up to that seq as delivered.

        Seqs follow the rules of :meth:`add_messages`. Returns ``False``, storing nothing, when
        the session is not live under ``device`` (it ended, or its lease ran out)."""

    @abstractmethod
    def end_session(self, request_id: str, device: str, reason: str, messages: Sequence[StoredMessage] = (),
                    files: Sequence[FileRecord] = (), cpu: float | None = None) -> bool:
        """End the live session ``device`` holds, for ``reason``, in one transaction with its
        last ``messages`` (the ``session_end`` among them), the files its kernel left, and the end
        (``aborted``) of the linked cells still waiting in it. ``cpu``: the CPU seconds its kernel
        used since :meth:`finish` recorded some, added to the request's and to its key's usage.
        Returns ``False``, changing nothing, when it is not live under ``device``."""

    @abstractmethod
    def touch_session(self, request_id: str, now: float | None = None) -> None:
        """A client read the session's output (the web tier, on a read of a live one whose last
        recorded read is :data:`TOUCH_EVERY` seconds old or more). May skip the write when the
        last read is under :data:`TOUCH_EVERY` seconds old."""

    @abstractmethod
    def session_reads(self, device: str) -> dict[str, float]:
        """When a client last read each live session ``device`` holds: request id → time."""

    @abstractmethod
    def live_sessions(self, client: str) -> int:
        """How many live sessions the cells of ``client`` (a request's ``client``) hold."""

    @abstractmethod
    def kernels(self, owner: str, client: str | None = None) -> list[tuple[str, SessionState]]:
        """The live sessions of kind ``"kernel"`` that ``owner`` holds (and, given ``client``,
        that were started from that client address), as (request id, state), oldest first."""

    @abstractmethod
    def save_cursor(self, request_id: str, reader: str, seq: int) -> None:
        """Record that ``reader`` (a client's own name for itself, such as a WebSocket's
        ``session_id``) has the session's messages up to ``seq``: a reader that comes back, to
        any web process, resumes after it. A cursor never moves back."""

    @abstractmethod
    def cursor(self, request_id: str, reader: str) -> int | None:
        """Where ``reader`` has read the request's messages to, or None if it never said."""

    # -- operations: what the deployment did, for the status page and ``singlecell stats`` --

    @abstractmethod
    def timings(self, since: float) -> list[Timing]:
        """Every request submitted at ``since`` or later, and every one not ended yet (whenever
        it was submitted), in no promised order. (One submitted before ``since`` that ended after
        it is not here: a window's first moments undercount the cells that ended in them.)"""

    @abstractmethod
    def list_requests(self, status: Status | None = None, since: float | None = None,
                      limit: int = 50) -> list[RequestRecord]:
        """The newest ``limit`` requests (``status`` ones only, and submitted at ``since`` or
        later, when given), newest first: what ``singlecell requests list`` prints."""

    @abstractmethod
    def report_device(self, report: DeviceReport) -> None:
        """Record what a device says of itself, replacing what it said before (by name)."""

    @abstractmethod
    def devices(self, seen_since: float) -> list[DeviceReport]:
        """The devices that reported at ``seen_since`` or later, by name."""

    # -- callbacks: a request's summary POSTed where its client asked (singlecell/callbacks.py) --
    # A request submitted with a callback has one, ``pending``; once the request ends, any web
    # process may claim it, POST, and say how that went.

    @abstractmethod
    def claim_callbacks(self, limit: int, lease_seconds: float) -> list[CallbackState]:
        """Up to ``limit`` pending callbacks whose request has ended and whose ``next_try`` has
        come, each counted as one more attempt and held for ``lease_seconds`` (its ``next_try``
        moves on by that much: a sender that dies leaves it to be claimed again). However many
        processes claim at once, each is returned to one of them."""

    @abstractmethod
    def callback_tried(self, request_id: str, delivered: bool, error: str | None = None,
                       retry_at: float | None = None) -> None:
        """How an attempt went: ``delivered``; else ``error``, and ``retry_at`` the moment to try
        again, or ``None`` for no more attempts (``failed``)."""

    @abstractmethod
    def callbacks_of(self, request_ids: Sequence[str]) -> dict[str, CallbackState]:
        """The callbacks of those of ``request_ids`` that have one."""

    # -- files --------------------------------------------------------------------------

    @abstractmethod
    def list_files(self, request_id: str) -> list[FileRecord]:
        """The files recorded for a request, by name."""

    @abstractmethod
    def get_file(self, request_id: str, name: str) -> FileRecord | None:
        """One file record, or ``None``."""
