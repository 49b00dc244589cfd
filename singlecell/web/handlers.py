"""The HTTP API: JSON in and out, every error as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import hashlib
import json
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import tornado.http1connection
import tornado.httputil
import tornado.web

from filestore.base import FileStore, FileStoreError, check_name
from singlecell import protocol, quotas
from singlecell.accounts import Accounts, User
from singlecell.accounts.base import TokenLimits
from singlecell.callbacks import CallbackSender, GuardedResolver, check_destination, check_url
from singlecell.config import Config
from singlecell.errors import (
    BadRequest,
    Forbidden,
    NotAllowed,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    QuotaExceeded,
    SessionEnded,
    SingleCellError,
    StillRunning,
    StoreUnavailable,
    TooManyRequests,
    TooManySessions,
    Unauthorized,
)
from singlecell.library import Library
from singlecell.library.model import REVISION_ID, SNIPPET_ID
from singlecell.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from singlecell.metrics import Metrics
from singlecell.store.base import (
    TOUCH_EVERY,
    Callback,
    NewRequest,
    Permalink,
    Progress,
    Quota,
    RequestRecord,
    Status,
    Store,
    StoredMessage,
)
from singlecell.summary import as_text, summarize
from singlecell.wakeup import Wakeups

log = logging.getLogger(__name__)

REQUEST_ID = r"[0-9a-f]{32}"
SNIPPET_SPEC = re.compile(rf"{SNIPPET_ID}(@{REVISION_ID})?")
PERMALINK_ID = r"[a-z2-7]{8,52}"
MAX_WAIT = 30.0  # seconds a long-poll may hold
PAGE_SIZE = 500  # messages per /output answer
#: A refused body is read (and thrown away) up to this many bytes past the limit, for at most
#: this long: see BodyHandler. Past either the connection is closed.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 15.0
STOP_BODY_LIMIT = 64 * 1024  # POST /stop takes no body; a small one is tolerated
INPUT_BODY_LIMIT = 64 * 1024  # one input to a session: a widget's update, a button's click
INPUT_TYPES = ("comm_msg", "comm_open", "comm_close")
SESSION_RETRY_AFTER = 30  # seconds a client at its session cap is told to wait
SESSION_COOKIE = "singlecell_session"
ALLOWED_BODY_TYPES = ("application/json", "text/plain")


class Waiters:
    """Long-polls waiting for news of a request, woken by the device's wake-ups.

    Register *before* reading the store, or a wake-up between the read and the wait is missed;
    then say what the read found (:meth:`saw`). The fallback for lost wake-ups is one read of
    every waited-for request a poll interval (:meth:`Services.fallback`), which wakes those whose
    progress differs from what their waiters saw: its cost does not grow with the open pages.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._seen: dict[str, Progress | None] = {}  # the oldest progress a waiter of it saw

    def saw(self, request_id: str, progress: Progress | None) -> None:
        """A waiter of the request read it (after registering) and found ``progress``."""
        if request_id in self._waiting:
            self._seen.setdefault(request_id, progress)

    def waited_for(self) -> list[str]:
        return list(self._waiting)

    def compare(self, progress: dict[str, Progress]) -> int:
        """Wake the waiters of every request whose progress is not what they saw; how many."""
        woken = 0
        for request_id in list(self._waiting):
            now = progress.get(request_id)
            if now is not None and self._seen.get(request_id) != now:
                self.notify(request_id)
                woken += 1
        return woken

    def register(self, request_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request_id, set()).add(future)
        return future

    def register_all(self, request_ids: list[str]) -> asyncio.Future[None]:
        """One waiter woken by news of any of the requests (unregister it with :meth:`unregister_all`)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for request_id in request_ids:
            self._waiting.setdefault(request_id, set()).add(future)
        return future

    def unregister_all(self, request_ids: list[str], future: asyncio.Future[None]) -> None:
        for request_id in request_ids:
            self.unregister(request_id, future)

    def unregister(self, request_id: str, future: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(request_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[request_id]
                self._seen.pop(request_id, None)

    def notify(self, request_id: str) -> None:
        self._seen.pop(request_id, None)
        for future in self._waiting.pop(request_id, ()):
            if not future.done():
                future.set_result(None)


class Services:
    """What every handler needs, passed in by :func:`singlecell.web.app.make_app`."""

    def __init__(self, config: Config, store: Store, filestore: FileStore, wakeups: Wakeups | None,
                 accounts: Accounts | None = None, library: Library | None = None,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics("web")
        self.store = store
        self.filestore = filestore
        self.wakeups = wakeups
        self.accounts = accounts
        self.library = library
        self.tag_cloud: tuple[float, list[tuple[str, int]]] | None = None  # (count again after, tags)
        self.waiters = Waiters()
        self.kernel_sockets: set[Any] = set()  # the kernel WebSockets open on this process (web/kernels.py)
        self._fallback: asyncio.Task[None] | None = None
        self.callback_resolver = GuardedResolver(allowed=config.callback_networks)  # checks URLs as they come
        self.callbacks = CallbackSender(store, config.callback_networks, config.callback_attempts, self.metrics)
        if wakeups is not None:
            wakeups.on_progress = self._woken

    def _woken(self, request_id: str) -> None:
        self.metrics.wakeups.labels("wakeup").inc()
        self.waiters.notify(request_id)

    def start_fallback(self) -> None:
        """Start (once) the fallback for lost wake-ups: every poll interval, one read of every
        request a long-poll waits for."""
        if self._fallback is None or self._fallback.done():
            self._fallback = asyncio.ensure_future(self.fallback())

    async def fallback(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            waited = self.waiters.waited_for()
            if not waited:
                continue
            try:
                found = self.waiters.compare(self.store.progress_of(waited))
                if found:  # news no wake-up brought
                    self.metrics.wakeups.labels("fallback").inc(found)
            except StoreUnavailable as exc:
                log.warning("the fallback read of waited-for requests failed; trying again: %s", exc)
            except Exception:
                log.exception("the fallback read of waited-for requests failed; trying again")

    async def wait_for_news(self, request_id: str, timeout: float, after: int | None = None) -> RequestRecord | None:
        """Wait up to ``timeout`` s for a wake-up about the request (or the fallback's, when
        wake-ups are lost), then read it again.

        ``after``: the last seq the caller has; a request with more (a live session's new
        messages) is news too."""
        self.start_fallback()
        future = self.waiters.register(request_id)
        try:
            # re-read after registering: the news may have come just before
            record = self.store.get_request(request_id)
            if record is not None and ((record.status.terminal and not _live(record))
                                       or (after is not None and record.last_seq > after)):
                return record
            self.waiters.saw(request_id, progress(record))
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                pass
        finally:
            self.waiters.unregister(request_id, future)
        return self.store.get_request(request_id)

    def submit(self, request: NewRequest, wait: bool, quota: Quota | None = None) -> asyncio.Future[None] | None:
        """Store a request (under ``quota``, its caller's limits) and wake a device. With
        ``wait``, first register to be woken about it (its progress seen as queued, so its first
        wake-up needs no read to be trusted): the waiter, for :meth:`wait_until_done`."""
        first = self.waiters.register(request.id) if wait else None
        if first is not None:
            self.waiters.saw(request.id, (Status.QUEUED.value, 0, False))
        try:
            self.store.submit(request, self.config.max_queue, quota)
        except BaseException:
            if first is not None:
                self.waiters.unregister(request.id, first)
            raise
        if self.wakeups is not None:
            self.wakeups.queued()
        return first

    def check_session_cap(self, client: str) -> None:
        """``TooManySessions`` when ``client`` (an address) holds all the live sessions it may."""
        cap = self.config.max_sessions_per_client
        live = self.store.live_sessions(client)
        if live >= cap:
            raise TooManySessions(
                f"your cells and kernels hold {live} live session{'' if live == 1 else 's'} (widgets still open, "
                "or kernels), the most one client may; stop one (POST /stop/<id>, DELETE /api/kernels/<id>) or "
                f"close its page: a session no page reads ends within {self.config.session_unread:g} s",
                retry_after=SESSION_RETRY_AFTER)

    def quota(self, key: str, own: TokenLimits) -> Quota:
        """The limits of ``key``: a token's own where it has them, else the server's settings."""
        config = self.config
        rate, burst = quotas.parse_rate(own.rate if own.rate is not None else config.rate_limit)
        return Quota(key, rate, burst, own.max_running if own.max_running is not None else config.max_running,
                     own.cpu_per_day if own.cpu_per_day is not None else config.cpu_per_day)

    def identify(self, authorization: str, token_argument: str, client: str, cookie: str | None = None) -> Caller:
        """Who sent a request to the compute or kernel APIs: its API token (``Authorization:
        Bearer|token …``, or a ``token`` argument), else (with ``--require-token``) the login
        session ``cookie`` names, else its address. ``Unauthorized`` for a token that is not
        valid, or for none with ``--require-token`` (a login session will do there)."""
        scheme, _, credential = authorization.partition(" ")
        token = credential.strip() if scheme.lower() in ("token", "bearer") else ""
        token = token or token_argument
        if token:
            own = self.accounts.token_limits(token) if self.accounts is not None else None
            if own is None:
                raise Unauthorized("the API token is not valid: mistyped, or revoked; make a new one on your account "
                                   "page, or with `singlecell token create --user NAME`")
            digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
            return Caller("t:" + digest, self.quota("t:" + digest, own), digest)
        login = self.accounts.session(cookie) if cookie and self.accounts and self.config.require_token else None
        user = login.user if login is not None else None
        if user is not None:  # a page of the site, for a logged-in person: their kernels are "u:<id>"
            return Caller(f"u:{user.id}", self.quota(f"u:{user.id}", TokenLimits()), "")
        if self.config.require_token:
            raise Unauthorized("this server needs an API token: send Authorization: Bearer <token> (make one on your "
                               "account page, or with `singlecell token create --user NAME`), or log in")
        return Caller("", self.quota(quotas.key_of("", client), TokenLimits()), "")

    async def wait_until_done(self, request_id: str, wait: float, first: asyncio.Future[None],
                              base_url: str) -> RequestRecord:
        """Wait (up to ``wait`` s: the cell's own limit, plus time to wait in the queue and to be
        collected) for a request submitted after registering ``first``, to reach a terminal status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self.start_fallback()
        future = first
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise StillRunning(f"request {request_id} has not finished yet; read its output at "
                                       f"{base_url}/output/{request_id}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, left)
                # the next waiter before the read, so news after it is not missed: one read per
                # wake-up (a device announces a claimed cell too), not a read on each side of it
                self.waiters.unregister(request_id, future)
                future = self.waiters.register(request_id)
                record = self.store.get_request(request_id)
                if record is not None and record.status.terminal:
                    return record
                self.waiters.saw(request_id, progress(record))
        finally:
            self.waiters.unregister(request_id, future)


@dataclass(frozen=True)
class Caller:
    """Who sent a request to the compute or kernel APIs (:meth:`Services.identify`)."""

    owner: str  # whose kernels it may see and start: "t:<SHA-256 of its API token>", "u:<user id>", or ""
    quota: Quota  # its limits; quota.key is whose its requests are: the owner, "u:<user id>" or "a:<address>"
    secret: str  # the HMAC key of its callbacks (the token's SHA-256, as stored); "" without a token


def progress(record: RequestRecord | None) -> Progress | None:
    """What :meth:`Store.progress_of` says of the request, from its record."""
    if record is None:
        return None
    return record.status.value, record.last_seq, _live(record)


def error_body(code: str, message: str, **more: Any) -> bytes:
    """Every error's JSON: ``{"error": {"code", "message"}}`` (a limit's also names it: ``limit``)."""
    return json.dumps({"error": {"code": code, "message": message, **more}}).encode()


class BaseHandler(tornado.web.RequestHandler):
    services: Services
    by_cookie = False  # the account came from the login session's cookie (writes then need XSRF)

    def initialize(self, services: Services) -> None:
        self.services = services

    def prepare(self) -> None:
        # small answers must not wait for Nagle's algorithm
        if self.request.connection is not None and hasattr(self.request.connection, "stream"):
            self.request.connection.stream.set_nodelay(True)

    def set_default_headers(self) -> None:
        # called by __init__ before initialize(), and again by send_error(): read the app's settings
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        origin = self.request.headers.get("Origin")
        if origin is None:
            return
        allowed = self.application.settings["services"].config.allowed_origins
        if allowed is None:
            self.set_header("Access-Control-Allow-Origin", "*")
        elif origin in allowed:
            self.set_header("Access-Control-Allow-Origin", origin)
        if allowed is not None:
            self.set_header("Vary", "Origin")
        self.set_header("Access-Control-Expose-Headers", "Retry-After, X-Singlecell-Status")

    def check_origin(self) -> None:
        """Refuse a write from a page of an origin the server does not serve: a browser would
        only hide the answer, after the cell had already run."""
        origin = self.request.headers.get("Origin")
        allowed = self.services.config.allowed_origins
        if origin is None or allowed is None or origin in allowed or origin == self.absolute(""):
            return
        raise Forbidden(f"pages from {origin} may not use this server; its operator can add the origin "
                        "to --cors-origins")

    def options(self, *_: str) -> None:
        """The CORS preflight: browsers ask before a cross-origin POST with a JSON body."""
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Accept, Authorization")
        self.set_header("Access-Control-Max-Age", "7200")
        self.set_status(204)
        self.finish()

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        more: dict[str, Any] = {}
        if isinstance(exc, SingleCellError):
            code, message = exc.code, exc.message
            set_retry_after(self, exc)  # here: send_error() clears the headers set before it
            if isinstance(exc, QuotaExceeded):
                more = {"limit": exc.limit, "retry_after": exc.retry_after}
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            code, message = "http", exc.log_message % exc.args if exc.args else exc.log_message
        else:
            code, message = "http", self._reason
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(error_body(code, message, **more))

    # -- who is asking: a login session's cookie, or an API token -------------------------------

    def get_current_user(self) -> User | None:
        """The account of the request (tornado's hook behind ``current_user``): from
        ``Authorization: Bearer <token>``, else the login session's cookie."""
        self.by_cookie = False
        accounts = self.services.accounts
        if accounts is None:
            return None
        authorization = self.request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            user = accounts.token_user(authorization[7:].strip())
            if user is None:
                raise Unauthorized("the API token is not valid: mistyped, or revoked; make a new one with "
                                   "`singlecell token create --user NAME` or on your account page")
            return user
        token = self.get_cookie(SESSION_COOKIE)
        session = accounts.session(token) if token else None
        self.by_cookie = session is not None
        return session.user if session is not None else None

    def require_user(self) -> User:
        """The account, for a write; with a cookie, the write must also carry its XSRF token."""
        user = self.current_user
        if user is None:
            raise Unauthorized("this needs an account: log in, or send Authorization: Bearer <token>")
        if self.by_cookie:
            self.check_xsrf_cookie()
        return user

    def check_xsrf_cookie(self) -> None:
        """Tornado's double-submit check (the ``_xsrf`` cookie against the form's ``_xsrf``
        field or an ``X-XSRFToken`` header), with this project's error."""
        try:
            super().check_xsrf_cookie()
        except tornado.web.HTTPError:
            raise NotAllowed("this form or request is missing its XSRF token (reload the page and try "
                             "again; scripts: send X-XSRFToken with the _xsrf cookie's value, or use a Bearer "
                             "token)") from None

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, QueueFull | TooManyRequests | PayloadTooLarge):
            self.services.metrics.limits.labels(e.limit if isinstance(e, QuotaExceeded) else e.code).inc()
        if isinstance(e, SingleCellError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def record(self, request_id: str) -> RequestRecord:
        record = self.services.store.get_request(request_id)
        if record is None:
            raise NotFound(f"no request has the id {request_id!r}; ids come from POST /execute or /eval")
        return record

    def absolute(self, path: str) -> str:
        return f"{self.request.protocol}://{self.request.host}{path}"

    def caller(self, token_argument: str = "") -> Caller:
        """Who sent this request to the compute or kernel APIs (:meth:`Services.identify`)."""
        return self.services.identify(self.request.headers.get("Authorization", ""), token_argument,
                                      self.request.remote_ip or "", self.get_cookie(SESSION_COOKIE))

    async def callback(self, url: object, caller: Caller) -> Callback:
        """A request's callback to ``url``, refused (400 ``callback_refused``) unless it may be made."""
        checked = check_url(url)
        await check_destination(checked, self.services.callback_resolver)
        return Callback(checked, self.absolute(""), caller.secret)



def set_retry_after(handler: tornado.web.RequestHandler, exc: BaseException | None) -> None:
    """``Retry-After`` on the answer, for an error that says when to retry (a full queue, a rate
    limit, a store that cannot be reached): JSON errors, error pages and refused WebSockets alike."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        handler.set_header("Retry-After", str(retry_after))


def digits(text: str) -> bool:
    """Whether ``text`` is a number int() reads: ASCII digits only (``str.isdigit`` also takes
    "²", which int() refuses)."""
    return text.isascii() and text.isdigit()


@tornado.web.stream_request_body
class BodyHandler(BaseHandler):
    """A route that takes a request body (``POST``), read as it streams in and kept only up to
    :meth:`body_limit` bytes. Subclasses implement :meth:`accept`, which runs once the whole
    body is in :attr:`body`.

    A body past the limit is refused with 413 and its JSON as soon as the server knows (from
    ``Content-Length``, or once that many bytes came), and then still read to its end and thrown
    away: a client that sends its whole body before it reads (urllib, curl without ``Expect:
    100-continue``) would otherwise see the connection reset instead of the answer. Draining
    stops at :data:`DRAIN_BYTES` or :data:`DRAIN_SECONDS`, whichever comes first; then the
    connection is closed. A client that asked ``Expect: 100-continue`` gets the 413 at once and
    sends nothing."""

    def initialize(self, services: Services) -> None:
        super().initialize(services)
        self.chunks: list[bytes] = []
        self.received = 0
        self.refused = False
        self._drain_timer: asyncio.TimerHandle | None = None

    def body_limit(self) -> int:
        """Bytes of body this route reads."""
        return self.services.config.max_body_size

    def too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is {size} bytes; at most {self.body_limit()} are accepted")

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def prepare(self) -> None:
        super().prepare()
        if self.request.method == "POST":
            self.check_origin()
        limit = self.body_limit()
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            # tornado's own cut-off (a bare 400 and a closed connection) lies past our drain
            connection.set_max_body_size(limit + DRAIN_BYTES + (1 << 20))
        length = self.request.headers.get("Content-Length")
        if length is not None and digits(length) and int(length) > limit:
            expects = self.request.headers.get("Expect", "").lower() == "100-continue"
            if expects or int(length) > limit + DRAIN_BYTES:
                raise self.too_large(length)  # answered, and the connection closed: no body comes
            self.refuse(self.too_large(length))

    def refuse(self, error: SingleCellError) -> None:
        """Answer ``error`` now, while the body still comes; the rest of it is thrown away."""
        if isinstance(error, PayloadTooLarge):
            self.services.metrics.limits.labels(error.code).inc()
        self.refused = True
        self.chunks.clear()
        answer = error_body(error.code, error.message)
        self.set_status(error.status)
        # a length, not chunked: the answer is whole before the body ends, for clients that
        # read it while still sending
        self.set_header("Content-Length", str(len(answer)))
        self.write(answer)
        self.flush()
        self._drain_timer = asyncio.get_running_loop().call_later(DRAIN_SECONDS, self.give_up_draining)

    def give_up_draining(self) -> None:
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection) and not self._finished:
            connection.close()

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.refused:
            if self.received > self.body_limit() + DRAIN_BYTES:
                self.give_up_draining()
        elif self.received > self.body_limit():
            self.refuse(self.too_large(f"over {self.body_limit()}"))
        else:
            self.chunks.append(chunk)

    async def post(self, *args: str) -> None:
        if self.refused:  # the answer went out already; the body has now been read to its end
            self.finish()
            return
        await self.accept(*args)

    async def put(self, *args: str) -> None:
        if self.refused:
            self.finish()
            return
        await self.accept_put(*args)

    async def accept(self, *args: str) -> None:
        """Handle a ``POST``, its whole body in :attr:`body` (within the limit)."""
        raise tornado.web.HTTPError(405)

    async def accept_put(self, *args: str) -> None:
        """Handle a ``PUT``, as :meth:`accept` a ``POST``."""
        raise tornado.web.HTTPError(405)

    def check_xsrf_cookie(self) -> None:
        # tornado looks for the form's _xsrf among the request's arguments, which a streamed body
        # never filled in
        content_type = self.request.headers.get("Content-Type", "")
        if self.body and content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            token = self.form().get("_xsrf")
            if token is not None:
                self.request.arguments.setdefault("_xsrf", []).append(token.encode())
        super().check_xsrf_cookie()

    def json_body(self) -> Any:
        """The body as JSON; ``BadRequest`` when it is not."""
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else {}
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise BadRequest("send a JSON object, in UTF-8, with Content-Type: application/json") from None

    def form(self) -> dict[str, str]:
        """The body as an HTML form (``application/x-www-form-urlencoded``): the last value of each field."""
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, Any] = {}
        try:
            tornado.httputil.parse_body_arguments(self.request.headers.get("Content-Type", ""), self.body,
                                                  arguments, files, self.request.headers)
        except tornado.httputil.HTTPInputError as exc:
            raise BadRequest(f"the form could not be read ({exc}); send application/x-www-form-urlencoded, "
                             "or multipart/form-data with its boundary") from None
        try:
            return {name: values[-1].decode("utf-8") for name, values in arguments.items() if values}
        except UnicodeDecodeError:
            raise BadRequest("the form is not UTF-8") from None

    def on_finish(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._drain_timer is not None:
            self._drain_timer.cancel()


class SubmitHandler(BodyHandler):
    """``POST /execute`` queues a cell; ``POST /eval`` (``wait=True``) also waits for it."""

    wait = False

    def initialize(self, services: Services, wait: bool = False) -> None:
        super().initialize(services)
        self.wait = wait

    def too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is {size} bytes; at most {self.body_limit()} are accepted "
                               f"(code up to {self.services.config.max_code_size} bytes)")

    async def accept(self, *args: str) -> None:
        config = self.services.config
        body = self.body
        submission = parse_submission(self.request.headers.get("Content-Type", ""), body, config)
        code, inputs, timeout, plain_body = submission.code, submission.files, submission.timeout, submission.plain
        client = self.request.remote_ip or ""
        caller = self.caller()
        if submission.callback_url is not None and self.wait:
            raise BadRequest("/eval answers with the summary itself, so it takes no \"callback_url\": send the cell "
                             "to /execute (or /batch) with it")
        callback = await self.callback(submission.callback_url, caller) if submission.callback_url is not None else None
        message = protocol.execute_request(code, client=client)
        if submission.session is not None:
            await self.run_linked(submission, message, client, caller, callback)
            return
        if submission.linked:  # the first of a page's linked cells: its kernel stays, as a kernel of the API
            message["metadata"].update(singlecell_kernel=True, singlecell_owner=caller.owner)
            self.services.check_session_cap(client)
        elif not self.wait:  # a queued cell may keep its kernel for its widgets; an /eval never does
            message["metadata"]["singlecell_session"] = True
            self.services.check_session_cap(client)
        if submission.snippet is not None:
            inputs, run_first = snippet_inputs(self.services, submission.snippet, inputs)
            if run_first is not None:
                message["metadata"]["singlecell_run_first"] = run_first
        request_id = protocol.request_id(message)
        # /eval listens before it submits: the first wake-up then needs no read to be trusted
        first = self.services.submit(NewRequest(request_id, message, timeout, inputs, client=client,
                                                quota_key=caller.quota.key, callback=callback),
                                     self.wait, caller.quota)
        await self.answer(request_id, timeout, first, plain_body, request_id if submission.linked else None)

    async def answer(self, request_id: str, timeout: float, first: asyncio.Future[None] | None, plain_body: bool,
                     session: str | None) -> None:
        """``202 {id, output_url}`` for /execute; /eval waits, and answers with what the cell did."""
        extra = {"session": protocol.kernel_id(session)} if session is not None else {}
        output_url = self.absolute(f"/output/{request_id}")
        if first is None:
            self.send_json({"id": request_id, "output_url": output_url, **extra}, status=202)
            return
        record = await self.services.wait_until_done(request_id, timeout + 60.0, first, self.absolute(""))
        messages = [m.message for m in self.services.store.get_messages(request_id, 0, 1_000_000)]
        summary = summarize(request_id, record.status, messages, base_url=self.absolute(""))
        if wants_text(self.request.headers.get("Accept", ""), plain_body):
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("X-Singlecell-Status", summary["status"])
            self.finish(as_text(summary))
        else:
            self.send_json({**summary, **extra})

    async def run_linked(self, submission: Submission, message: dict[str, Any], client: str, caller: Caller,
                         callback: Callback | None) -> None:
        """A linked cell: run in the live kernel ``submission.session`` (its owner's), after the
        inputs before it; a request of its own, read as any other."""
        services = self.services
        assert submission.session is not None
        session_id = protocol.request_id_of_kernel(submission.session) or ""
        owner = caller.owner
        message["metadata"]["singlecell_linked"] = True
        request_id = protocol.request_id(message)
        first = services.waiters.register(request_id) if self.wait else None
        if first is not None:
            services.waiters.saw(request_id, (Status.RUNNING.value, 0, False))
        seq = services.store.submit_linked(NewRequest(request_id, message, submission.timeout, client=client,
                                                      quota_key=caller.quota.key, callback=callback),
                                           session_id, owner, caller.quota)
        if seq is None:
            if first is not None:
                services.waiters.unregister(request_id, first)
            raise SessionEnded(f"the session {submission.session} is not live (it ended, or it is not yours): "
                               "start one with {\"linked\": true} instead of \"session\"")
        if services.wakeups is not None:
            services.wakeups.input_added(session_id)
        await self.answer(request_id, submission.timeout, first, submission.plain, session_id)


@dataclass(frozen=True)
class Submission:
    """A cell as a client submitted it."""

    code: str
    files: dict[str, bytes]  # uploads: name → bytes
    timeout: float
    plain: bool  # the body was the code itself, as text
    snippet: str | None = None  # "<id>" or "<id>@<revision>": its files go in the kernel's folder
    session: str | None = None  # a linked cell: the kernel (session) id it runs in
    linked: bool = False  # the first of linked cells: its kernel stays, for the others
    callback_url: str | None = None  # where to POST its summary once it ends (checked by the handler)


def parse_submission(content_type: str, body: bytes, config: Config) -> Submission:
    """The :class:`Submission` in a request body; ``BadRequest`` saying what to fix."""
    kind = content_type.split(";")[0].strip().lower() or "application/json"
    if kind not in ALLOWED_BODY_TYPES:
        raise BadRequest(f"unsupported Content-Type {kind!r}: send JSON like {{\"code\": \"print(1)\"}} "
                         "with Content-Type: application/json, or the code itself with "
                         "Content-Type: text/plain")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not valid UTF-8 (byte {exc.start}); send UTF-8 text") from None
    files: Any = {}
    timeout: Any = config.time_limit
    snippet: Any = None
    session: Any = None
    linked: Any = False
    callback_url: Any = None
    if kind == "text/plain":
        code: Any = text
    else:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}); send {{\"code\": \"...\"}}") from None
        except RecursionError:
            raise BadRequest("the request body nests JSON too deeply; send {\"code\": \"...\"}") from None
        if not isinstance(payload, dict):
            raise BadRequest("the request body must be a JSON object like {\"code\": \"print(1)\"}")
        unknown = set(payload) - {"code", "files", "timeout", "snippet", "session", "linked", "callback_url"}
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; the fields are code, "
                             "files, timeout, snippet, session, linked and callback_url")
        callback_url = payload.get("callback_url")
        if callback_url is not None:
            check_url(callback_url)
        session = payload.get("session")
        linked = payload.get("linked", False)
        if session is not None and not (isinstance(session, str) and re.fullmatch(r"[0-9a-f-]{32,36}", session)):
            raise BadRequest("\"session\" is the id of a live kernel (from POST /api/kernels, or the \"session\" "
                             "of the first linked cell's answer)")
        if not isinstance(linked, bool):
            raise BadRequest("\"linked\" is true or false")
        if session is not None and (linked or payload.get("files") or payload.get("snippet")):
            raise BadRequest("a cell run in a session (\"session\") takes no files, snippet or \"linked\": its "
                             "kernel has what the cells before it left")
        snippet = payload.get("snippet")
        if snippet is not None and (not isinstance(snippet, str) or not SNIPPET_SPEC.fullmatch(snippet)):
            raise BadRequest("\"snippet\" names a snippet of the library: its id, or id@revision")
        code = payload.get("code")
        files = payload.get("files")
        files = {} if files is None else files
        timeout = payload.get("timeout", config.time_limit)
    if not isinstance(code, str) or not code.strip():
        raise BadRequest("no code: give the Python to run as \"code\" (a non-empty string)")
    check_code_size(code, config)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout:
        raise BadRequest("\"timeout\" must be a positive number of seconds")
    return Submission(code, decode_files(files, config), min(float(timeout), config.time_limit), kind == "text/plain",
                      snippet, session, linked, callback_url)


def snippet_inputs(services: Services, spec: str, uploads: dict[str, bytes]) -> tuple[dict[str, bytes], str | None]:
    """The uploads with a snippet's files added, and the file to run first (a one-file snippet's
    Python file), for ``{"snippet": "<id>[@<revision>]"}``."""
    library = services.library
    if library is None:
        raise NotFound("this server has no snippet library")
    snippet_id, _, revision_id = spec.partition("@")
    snippet = library.snippet(snippet_id, deleted=bool(revision_id))
    if snippet is None:
        raise NotFound(f"no snippet has the id {snippet_id!r}")
    revision = snippet.head if not revision_id else library.revision(revision_id)
    if revision is None or not library.in_history(snippet_id, revision.id):
        raise NotFound(f"snippet {snippet_id} has no revision {revision_id!r}")
    files = {path: text.encode("utf-8") for path, text in library.files(revision).items()}
    clash = sorted(set(files) & set(uploads))
    if clash:
        raise BadRequest(f"the upload(s) {', '.join(map(repr, clash))} have the names of the snippet's files")
    config = services.config
    if len(files) + len(uploads) > config.max_uploads:
        raise BadRequest(f"the snippet's {len(files)} files and {len(uploads)} uploads pass the limit of "
                         f"{config.max_uploads} files")
    total = sum(map(len, files.values())) + sum(map(len, uploads.values()))
    if total > config.max_upload_size:
        raise PayloadTooLarge(f"the snippet's files and the uploads hold {total} bytes; the limit is "
                              f"{config.max_upload_size}")
    (only,) = files if len(files) == 1 else (None,)
    return {**uploads, **files}, only if only is not None and only.endswith(".py") else None


def decode_files(files: Any, config: Config) -> dict[str, bytes]:
    if not isinstance(files, dict):
        raise BadRequest("\"files\" must be an object mapping file names to base64 contents")
    if len(files) > config.max_uploads:
        raise BadRequest(f"{len(files)} files uploaded; at most {config.max_uploads} are accepted")
    decoded: dict[str, bytes] = {}
    total = 0
    for name, data in files.items():
        _check_encodable(name, "an upload name")
        try:
            check_name(name)
        except FileStoreError as exc:
            raise BadRequest(f"bad upload name: {exc}") from None
        for parent in _parents(name):
            if parent in files:
                raise BadRequest(f"the uploads {parent!r} and {name!r} collide: {parent!r} would have to be "
                                 "both a file and a folder")
        if not isinstance(data, str):
            raise BadRequest(f"the content of {name!r} must be a base64 string")
        try:
            decoded[name] = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"the content of {name!r} is not valid base64") from None
        total += len(decoded[name])
    if total > config.max_upload_size:
        raise PayloadTooLarge(f"the uploaded files hold {total} bytes; the limit is "
                              f"{config.max_upload_size} bytes")
    return decoded


def _parents(name: str) -> list[str]:
    """'a/b/c' → ['a', 'a/b']."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def check_code_size(code: str, config: Config) -> None:
    """Code that is text, without NUL, and within ``--max-code-size``: for cells, permalinks
    and SageMathCell's ``/service`` alike (a NUL was a 500 on PostgreSQL, whose text cannot hold one)."""
    if "\x00" in code:
        raise BadRequest("the code contains a NUL character, which Python source cannot hold")
    _check_encodable(code, "the code")
    size = len(code.encode("utf-8"))
    if size > config.max_code_size:
        raise PayloadTooLarge(f"the code is {size} bytes; the limit is {config.max_code_size} bytes")


def _check_encodable(text: str, what: str) -> None:
    """JSON's \\ud800 escapes make strings UTF-8 cannot hold; refuse them here, not with a 500 later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{what} holds an unpaired surrogate ({text[exc.start]!r} at {exc.start}), which is "
                         "not text; send valid Unicode") from None


def wants_text(accept: str, plain_body: bool) -> bool:
    """Plain text when the client asks for it first, or sent plain text and did not ask for JSON."""
    accept = accept.lower()
    if "application/json" in accept:
        return accept.find("text/plain") != -1 and accept.find("text/plain") < accept.find("application/json")
    return "text/plain" in accept or plain_body


class OutputHandler(BaseHandler):
    """``GET /output/<id>?after=N&wait=S``: the messages after seq N, long-polling for the first."""

    async def get(self, request_id: str) -> None:
        after = _number(self.get_argument("after", "0"), "after", int)
        wait = min(_number(self.get_argument("wait", "0"), "wait", float), MAX_WAIT)
        if after < 0 or not wait >= 0:  # "not >=" also refuses nan
            raise BadRequest("after and wait must be numbers that are not negative")
        store = self.services.store
        record = self.record(request_id)
        touch_if_due(store, record)
        messages = store.get_messages(request_id, after, PAGE_SIZE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not messages and (not record.status.terminal or _live(record)) and loop.time() < deadline:
            news = await self.services.wait_for_news(request_id, deadline - loop.time(), after=after)
            record = news or record
            messages = store.get_messages(request_id, after, PAGE_SIZE)
        self.send_json({"id": request_id, **output_page(store, record, messages, after)})


class WatchHandler(BaseHandler):
    """``GET /watch?ids=<id>:<after>,<id>:<after>…&wait=S``: the long-poll of a page with many cells
    (browsers allow six connections per origin). Waits up to S seconds until any of the requests
    has messages after its seq, then answers ``{"requests": {id: <as /output>}}`` for every one
    that has; ``{}`` when none had by then. Unknown ids are listed in ``"missing"``."""

    closed = False

    def on_connection_close(self) -> None:
        self.closed = True  # the page went (or aborted this poll to follow another cell): stop waiting

    async def get(self) -> None:
        wait = min(_number(self.get_argument("wait", "0"), "wait", float), MAX_WAIT)
        if not wait >= 0:
            raise BadRequest("wait must be a number that is not negative")
        wanted = parse_watch(self.get_argument("ids", ""))
        services, store = self.services, self.services.store
        ids = list(wanted)
        records: dict[str, RequestRecord] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        first = True
        while True:
            # registered before reading: news between the read and the wait is not missed
            woken = services.waiters.register_all(ids)
            try:
                for request_id in ids:
                    record = store.get_request(request_id)
                    if record is not None:
                        records[request_id] = record
                        if first:
                            touch_if_due(store, record)
                    services.waiters.saw(request_id, progress(record))
                first = False
                answers = self._news(records, wanted)
                left = deadline - loop.time()
                if answers or not any(_open(r) for r in records.values()) or left <= 0 or self.closed:
                    break
                services.start_fallback()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, left)
            finally:
                services.waiters.unregister_all(ids, woken)
        if not self.closed:
            self.send_json({"requests": answers, "missing": [i for i in ids if i not in records]})

    def _news(self, records: dict[str, RequestRecord], wanted: dict[str, int]) -> dict[str, Any]:
        """The /output answer of every request with messages past what the page has, or over
        (finished, no session live): a page follows only requests it has not seen end, and the
        status it saw may have been read before the last messages were."""
        answers = {}
        for request_id, record in records.items():
            after = wanted[request_id]
            if record.last_seq <= after and _open(record):
                continue
            answers[request_id] = output_page(self.services.store, record,
                                              self.services.store.get_messages(request_id, after, PAGE_SIZE),
                                              after)
        return answers


MAX_WATCHED = 64  # requests one /watch follows


def parse_watch(raw: str) -> dict[str, int]:
    """``id:after,id:after`` → {id: after}; ``BadRequest`` saying what to fix."""
    wanted: dict[str, int] = {}
    for item in filter(None, raw.split(",")):
        request_id, _, after = item.partition(":")
        if not re.fullmatch(REQUEST_ID, request_id) or not digits(after):
            raise BadRequest(f"ids lists request ids with the seq each page has, like ids=<32 hex digits>:0,…; "
                             f"{item[:80]!r} is not one")
        wanted[request_id] = int(after)
    if not wanted:
        raise BadRequest("ids names no request: give ids=<id>:<seq>,… (the seq is the last one the page has)")
    if len(wanted) > MAX_WATCHED:
        raise BadRequest(f"one /watch follows at most {MAX_WATCHED} requests, not {len(wanted)}")
    return wanted


def touch_if_due(store: Store, record: RequestRecord) -> None:
    """Someone reads a live session: record it (not a closed tab), when the last record is old."""
    if record.session is not None and record.session.live and time.time() - record.session.last_read >= TOUCH_EVERY:
        store.touch_session(record.id)


def _open(record: RequestRecord) -> bool:
    """More may come: the cell runs, or its session is live."""
    return not record.status.terminal or _live(record)


def output_page(store: Store, record: RequestRecord, messages: list[StoredMessage], after: int) -> dict[str, Any]:
    """What ``/output`` (and ``/watch``, per request) answers: the messages after ``after``, read
    after ``record``. The status was read before the messages, and a terminal status is written in
    one transaction with the last messages: so "done" never hides a message.

    A cell that ended between the two reads is read once more: its ending is then among the
    messages read, and the page is told it is done now. Without this, a cell whose session lives
    on would never be told: a page that has every message is answered only when more come."""
    last = messages[-1].seq if messages else after
    if messages and not record.status.terminal:
        again = store.get_request(record.id)
        if again is not None and again.status.terminal and again.last_seq <= last:
            record = again
    return {
        "status": record.status.value,
        "done": record.status.terminal and last >= record.last_seq,
        "session": session_json(record),
        "messages": [{"seq": m.seq, "msg": m.message} for m in messages],
        "next": last,
    }


def _live(record: RequestRecord) -> bool:
    return record.session is not None and record.session.live


def session_json(record: RequestRecord) -> dict[str, Any] | None:
    """What ``/output`` says of the request's session: ``null`` when the cell never became one;
    else ``{"state": "live"}`` or ``{"state": "ended", "reason"}`` (the ``session_end`` message
    says it in words). ``done`` speaks of the cell; a live session may still add messages."""
    session = record.session
    if session is None:
        return None
    if session.live:
        return {"state": "live", "started": session.started}
    return {"state": "ended", "reason": session.reason, "started": session.started, "ended": session.ended}


class InputHandler(BodyHandler):
    """``POST /input/<id>``: one Jupyter message (``comm_msg``, ``comm_open`` or ``comm_close``)
    for the cell's live session. It is stored, its seq comes back, and the device delivers the
    inputs in order; what the kernel answers joins the request's messages, with this message's
    header as their ``parent_header``."""

    def body_limit(self) -> int:
        return INPUT_BODY_LIMIT

    async def accept(self, *args: str) -> None:
        (request_id,) = args
        message = parse_input(self.json_body())
        record = self.record(request_id)
        seq = self.services.store.add_input(request_id, message)
        if seq is None:
            ended = record.session is not None and not record.session.live
            raise SessionEnded(f"the cell {request_id} has no live session"
                               f"{' any more' if ended else ''}: run it again to get one")
        if self.services.wakeups is not None:
            self.services.wakeups.input_added(request_id)
        self.send_json({"id": request_id, "seq": seq, "msg_id": message["header"]["msg_id"]}, status=202)


def parse_input(payload: Any) -> dict[str, Any]:
    """The input a client sent, as it is stored: a Jupyter message of one of :data:`INPUT_TYPES`,
    its header completed; ``BadRequest`` saying what to fix."""
    if not isinstance(payload, dict):
        raise BadRequest("send one Jupyter message as a JSON object: {\"msg_type\": \"comm_msg\", "
                         "\"content\": {\"comm_id\": \"…\", \"data\": {…}}}")
    header = payload.get("header") or {}
    msg_type = payload.get("msg_type") or (header.get("msg_type") if isinstance(header, dict) else None)
    if msg_type not in INPUT_TYPES:
        raise BadRequest(f"msg_type must be one of {', '.join(INPUT_TYPES)}, not {msg_type!r}")
    content = payload.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("comm_id"), str) or not content["comm_id"]:
        raise BadRequest("content must be an object with a comm_id (a non-empty string)")
    if not isinstance(content.get("data", {}), dict):
        raise BadRequest("content.data must be an object")
    if msg_type == "comm_open" and not isinstance(content.get("target_name"), str):
        raise BadRequest("a comm_open needs content.target_name (a string)")
    metadata = payload.get("metadata", {})
    if not isinstance(header, dict) or not isinstance(metadata, dict):
        raise BadRequest("header and metadata must be objects")
    msg_id = header.get("msg_id") or protocol.new_id()
    if not isinstance(msg_id, str) or len(msg_id) > 128:
        raise BadRequest("header.msg_id must be a string of at most 128 characters")
    buffers = payload.get("buffers") or []
    if not isinstance(buffers, list) or not all(isinstance(b, str) for b in buffers):
        raise BadRequest("buffers must be a list of base64 strings")
    for item in buffers:
        try:
            base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("a buffer is not valid base64") from None
    made = protocol.header(msg_type)
    clean_header = {**made, **{k: v for k, v in header.items() if k in ("session", "username") and isinstance(v, str)},
                    "msg_id": msg_id, "msg_type": msg_type}
    message = {"header": clean_header, "parent_header": {}, "metadata": metadata, "content": content,
               "msg_type": msg_type}
    if buffers:
        message["buffers"] = buffers
    return message


def _number(raw: str, name: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a {'whole ' if kind is int else ''}number, not {raw!r}") from None


class FileHandler(BaseHandler):
    """``GET /files/<id>/<name>``: a file the cell wrote."""

    def get(self, request_id: str, name: str) -> None:  # tornado has already %-decoded the path
        self.record(request_id)
        record = self.services.store.get_file(request_id, name)
        accel = self.services.config.accel_redirect
        by_nginx = bool(accel) and self.services.filestore.servable_by_path
        data = None if record is None or by_nginx else self.services.filestore.get(request_id, name)
        if record is None or (data is None and not by_nginx):
            raise NotFound(f"request {request_id} has no file named {name!r}")
        self.set_header("Content-Type", record.content_type)
        # the bytes are the cell's: never let them run as a page of this origin
        self.set_header("Content-Security-Policy",
                        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'")
        self.set_header("Content-Disposition",
                        "inline; filename*=UTF-8''" + urllib.parse.quote(name.rsplit("/", 1)[-1]))
        self.set_header("Cache-Control", "private, max-age=3600")
        if by_nginx:  # nginx sends the bytes from the filestore's folder (nginx.conf, /_files/)
            self.set_header("X-Accel-Redirect", accel + urllib.parse.quote(record.location))
            self.finish()
            return
        self.finish(data)


class StopHandler(BodyHandler):
    """``POST /stop/<id>``: stop a request. A queued one ends at once; a running one as soon as
    its device hears (a wake-up, or its next poll). Either way it ends ``aborted``. Any body is
    ignored."""

    def body_limit(self) -> int:
        return STOP_BODY_LIMIT

    async def accept(self, *args: str) -> None:
        (request_id,) = args
        record = self.record(request_id)
        messages = [protocol.error_message(record.message, "CellStopped",
                                           "the cell was stopped at the client's request before it started"),
                    protocol.message("status", {"execution_state": "idle"}, record.message)]
        status = self.services.store.request_stop(request_id, messages)
        if (status is Status.RUNNING or _live(record)) and self.services.wakeups is not None:
            self.services.wakeups.stop_requested()
        elif status is Status.ABORTED:
            self.services.waiters.notify(request_id)
        self.send_json({"id": request_id, "status": (status or record.status).value}, status=202)


class PermalinkHandler(BodyHandler):
    """``POST /permalink {"code"}`` saves code to share (:class:`PermalinkReader` reads it back)."""

    async def accept(self, *args: str) -> None:
        config = self.services.config
        try:
            payload = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise BadRequest("send a JSON object like {\"code\": \"print(1)\"}, in UTF-8") from None
        code = payload.get("code") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or set(payload) - {"code"}:
            raise BadRequest("send a JSON object with one field, code, like {\"code\": \"print(1)\"}")
        if not isinstance(code, str) or not code.strip():
            raise BadRequest("no code: give the Python to share as \"code\" (a non-empty string)")
        check_code_size(code, config)
        self.send_json(_describe_permalink(self, self.services.store.save_permalink(code)), status=201)


class PermalinkReader(BaseHandler):
    """``GET /permalink/<id>``: the shared code, as JSON."""

    def get(self, permalink_id: str) -> None:
        permalink = self.services.store.get_permalink(permalink_id)
        if permalink is None:
            raise NotFound(f"no shared code has the id {permalink_id!r}; ids come from POST /permalink")
        self.send_json(_describe_permalink(self, permalink))


def _describe_permalink(handler: BaseHandler, permalink: Permalink) -> dict[str, Any]:
    return {"id": permalink.id, "url": handler.absolute(f"/c/{permalink.id}"), "code": permalink.code,
            "created": permalink.created}


class HealthHandler(BaseHandler):
    def get(self) -> None:
        queued = self.services.store.count_queued()
        self.send_json({"status": "ok", "queued": queued})


class MetricsHandler(BaseHandler):
    """``GET /metrics``: this web process's metrics, in Prometheus's text format."""

    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.finish(self.services.metrics.exposition())


class PageMixin(tornado.web.RequestHandler):
    """Answers with HTML pages of ``templates/``; errors are pages too."""

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        services = getattr(self, "services", None)
        namespace.update(when=_when, iso=_iso,
                         require_token=isinstance(services, Services) and services.config.require_token)
        return namespace

    def page(self, template: str, **values: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Referrer-Policy", "same-origin")
        self.render(template, **values)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, SingleCellError) else self._reason
        set_retry_after(self, exc)  # here: send_error() clears the headers set before it
        try:  # the page's header shows who is logged in: a token that is not valid is no one
            self.current_user  # noqa: B018 (tornado's lazy property, read for its error)
        except SingleCellError:
            self.current_user = None
        self.page("error.html", status=status_code, message=message)


def _when(timestamp: float) -> str:
    """A moment, for people: "3 minutes ago", or a date (UTC) after a month."""
    seconds = time.time() - timestamp
    if seconds >= 30 * 86400:
        return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%d %b %Y")
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


class PageHandler(PageMixin, BaseHandler):
    """One page of ``templates/``, for GET."""

    def initialize(self, services: Services, template: str = "index.html") -> None:
        super().initialize(services)
        self.template = template

    def get(self, *args: str) -> None:
        self.page(self.template)


class SharedCellHandler(PageHandler):
    """``/c/<id>``: the shared code, ready to run."""

    def get(self, *args: str) -> None:
        (permalink_id,) = args
        permalink = self.services.store.get_permalink(permalink_id)
        if permalink is None:
            raise NotFound(f"no shared code has the id {permalink_id!r}: the link may be mistyped")
        self.page("cell.html", permalink=permalink)


@tornado.web.stream_request_body
class NotFoundHandler(BodyHandler):
    """Any path no route matches: 404, whatever the method. Streamed like a route that takes a
    body, so a body that came with it is never parsed (tornado would answer a malformed form with
    its own 400): the answer is the 404, and the body is read and thrown away."""

    def prepare(self) -> None:
        error = NotFound(f"no such endpoint: {self.request.method} {self.request.path}; see GET / for the API")
        if self.request.method == "HEAD":
            raise error  # a HEAD's answer has no body to write now
        self.refuse(error)

    async def _answered(self, *args: str) -> None:
        self.finish()

    get = post = put = patch = delete = _answered

    def options(self, *_: str) -> None:  # no CORS preflight for what is not here
        self.finish()


def routes(services: Services) -> list[Any]:
    args = {"services": services}
    return [
        (r"/", PageHandler, args),
        (r"/embedding", PageHandler, {**args, "template": "embedding.html"}),
        (rf"/c/({PERMALINK_ID})", SharedCellHandler, args),
        (r"/c/([^/]*)", SharedCellHandler, args),
        (r"/permalink", PermalinkHandler, args),
        (rf"/permalink/({PERMALINK_ID})", PermalinkReader, args),
        (rf"/stop/({REQUEST_ID})", StopHandler, args),
        (r"/execute", SubmitHandler, args),
        (r"/eval", SubmitHandler, {**args, "wait": True}),
        (rf"/output/({REQUEST_ID})", OutputHandler, args),
        (rf"/input/({REQUEST_ID})", InputHandler, args),
        (r"/watch", WatchHandler, args),
        (r"/output/([^/]+)", _UnknownIdHandler, args),
        (rf"/files/({REQUEST_ID})/(.+)", FileHandler, args),
        (r"/health", HealthHandler, args),
        (r"/metrics", MetricsHandler, args),
    ]


class _UnknownIdHandler(BaseHandler):
    def get(self, request_id: str) -> None:
        raise NotFound(f"no request has the id {request_id!r}; ids are 32 hex digits")


__all__ = ["Services", "routes"]
