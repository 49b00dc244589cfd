"""The Jupyter kernel API, as Jupyter Kernel Gateway serves it: REST ``/api/kernels…`` and the
WebSocket ``/api/kernels/<id>/channels``, for JupyterLab and Notebook (``--gateway-url``), Thebe
and ``@jupyterlab/services``.

A kernel is a session (``device/session.py``) started without a cell: ``POST /api/kernels``
stores a request marked ``singlecell_kernel``, a device runs it on a ready sandboxed kernel and
keeps that kernel, and the answer comes once it is live. Every message a client sends on the
WebSocket is stored as the session's next input (the device delivers them in order; an
``input_reply``, an interrupt and a shutdown do not wait their turn), and every message the
kernel sends is one of the request's messages: the WebSocket follows them by seq, so a
reconnecting client (the same ``session_id``, to any web process) resumes where it was.

Whose a kernel is: the API token that started it (``Authorization: token …`` or ``Bearer``, or
``?token=`` on the WebSocket, as Jupyter clients send it); another token, or none, gets 404.
Without ``--require-token`` a client without a token may start kernels, which are then those of
every client without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import Any

import tornado.websocket

import singlecell
from singlecell import protocol, wire
from singlecell.errors import BadRequest, KernelUnavailable, NotFound, PayloadTooLarge, SingleCellError
from singlecell.store.base import NewRequest, RequestRecord, SessionState
from singlecell.web.handlers import (
    SESSION_COOKIE,
    BaseHandler,
    BodyHandler,
    Caller,
    Services,
    digits,
    error_body,
    set_retry_after,
    touch_if_due,
)

log = logging.getLogger(__name__)

KERNEL_NAME = "python3"
DISPLAY_NAME = "Python 3 (singlecell sandbox)"
PAGE_SIZE = 500  # messages read from the store at a time
CURSOR_EVERY = 1.0  # seconds between two records of how far a WebSocket's reader has read
MAX_WAIT = 30.0  # seconds one wait for news lasts before the loop looks again (and records a read)
STOP_WAIT = 10.0  # seconds DELETE waits for the device to end the kernel
RESTART_WAIT = 30.0  # seconds a restart waits for the new kernel
#: what a client may send on each channel; anything else is dropped, as a kernel would
ACCEPTED = {
    "shell": frozenset({"execute_request", "kernel_info_request", "complete_request", "inspect_request",
                        "is_complete_request", "history_request", "comm_info_request", "comm_open", "comm_msg",
                        "comm_close", "shutdown_request"}),
    "control": frozenset({"kernel_info_request", "interrupt_request", "shutdown_request"}),
    "stdin": frozenset({"input_reply"}),
}


def kernelspec() -> dict[str, Any]:
    """The one kernel spec, as ``/api/kernelspecs`` lists it."""
    return {"name": KERNEL_NAME, "resources": {}, "spec": {
        "argv": [], "display_name": DISPLAY_NAME, "language": "python", "interrupt_mode": "signal",
        "env": {}, "metadata": {"singlecell": {"sandboxed": True}}}}


def _iso(timestamp: float) -> str:
    """As Jupyter Server writes times: microseconds and ``Z`` (its gateway client parses exactly that)."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat().replace("+00:00", "Z")


def kernel_model(request_id: str, state: SessionState, connections: int = 0) -> dict[str, Any]:
    """A kernel as Jupyter Server describes one."""
    return {"id": protocol.kernel_id(request_id), "name": KERNEL_NAME,
            "last_activity": _iso(max(state.started, state.last_read)),
            "execution_state": "busy" if state.busy else "idle", "connections": connections}


class KernelAccess:
    """Who asks (the owner key of their API token) and which kernels they see; mixed into the
    handlers of this module."""

    services: Services
    request: Any
    get_argument: Any  # tornado's, from the handler
    get_cookie: Any

    def owner(self) -> str:
        """The owner key of the request (:meth:`singlecell.web.handlers.Services.identify`)."""
        return self.who().owner

    def who(self) -> Caller:
        """Who sent the request: its API token (a header, or a ``token`` argument, as Jupyter
        clients send it on a WebSocket), else a login session (with ``--require-token``), else none."""
        return self.services.identify(str(self.request.headers.get("Authorization", "")),
                                      str(self.get_argument("token", "")), str(self.request.remote_ip or ""),
                                      self.get_cookie(SESSION_COOKIE))

    def listed(self) -> list[tuple[str, SessionState]]:
        """The caller's kernels: its token's; without a token, those started from its address
        (an id is all it takes to use a kernel without a token, so lists do not hand them out)."""
        owner = self.owner()
        return self.services.store.kernels(owner, None if owner else self.request.remote_ip or "")

    def kernel(self, kernel_id: str, owner: str) -> RequestRecord:
        """The live kernel ``kernel_id`` of ``owner``; ``NotFound`` for anything else."""
        request_id = protocol.request_id_of_kernel(kernel_id)
        record = self.services.store.get_request(request_id) if request_id is not None else None
        session = record.session if record is not None else None
        if record is None or session is None or session.kind != "kernel" or not session.live or session.owner != owner:
            raise NotFound(f"no kernel has the id {kernel_id!r} (kernels that ended, and those of other tokens, "
                           "are not listed); start one with POST /api/kernels")
        return record


def connections(services: Services, kernel_id: str) -> int:
    return sum(1 for c in services.kernel_sockets if c.kernel_id == kernel_id)


class ApiHandler(BaseHandler):
    """``GET /api``: the version, as Jupyter Server answers."""

    def get(self) -> None:
        self.send_json({"version": singlecell.__version__, "singlecell": singlecell.__version__})


class KernelSpecsHandler(BaseHandler):
    """``GET /api/kernelspecs`` and ``/api/kernelspecs/python3``."""

    def get(self, name: str | None = None) -> None:
        if name is None:
            self.send_json({"default": KERNEL_NAME, "kernelspecs": {KERNEL_NAME: kernelspec()}})
        elif name == KERNEL_NAME:
            self.send_json(kernelspec())
        else:
            raise NotFound(f"no kernel spec is named {name!r}; this server has one: {KERNEL_NAME}")


class KernelsHandler(KernelAccess, BodyHandler):
    """``GET /api/kernels`` (the caller's) and ``POST /api/kernels {name?}`` (start one)."""

    def get(self) -> None:
        self.send_json([kernel_model(kid, state, connections(self.services, kid)) for kid, state in self.listed()])

    async def accept(self, *args: str) -> None:
        body = self.json_body() if self.body.strip() else {}
        if not isinstance(body, dict):
            raise BadRequest('send a JSON object, like {"name": "python3"}, or nothing')
        name = body.get("name") or KERNEL_NAME
        if name != KERNEL_NAME:
            raise NotFound(f"no kernel spec is named {name!r}; this server has one: {KERNEL_NAME}")
        record = await start_kernel(self.services, self.who(), self.request.remote_ip or "", self.absolute(""))
        assert record.session is not None
        self.set_header("Location", f"/api/kernels/{protocol.kernel_id(record.id)}")
        self.send_json(kernel_model(record.id, record.session), status=201)


async def start_kernel(services: Services, caller: Caller, client: str, base_url: str,
                       extra: dict[str, Any] | None = None) -> RequestRecord:
    """Start a kernel for ``caller`` (under its limits) and wait until it is live; ``extra`` joins the request's
    metadata (a Jupyter session's path and name). ``KernelUnavailable`` when it did not start."""
    config = services.config
    if config.max_sessions <= 0:
        raise KernelUnavailable("this server keeps no sessions (--max-sessions 0), so it starts no kernels")
    services.check_session_cap(client)
    message = protocol.execute_request("", client=client)
    message["content"]["silent"] = True
    message["metadata"].update(extra or {}, singlecell_kernel=True, singlecell_owner=caller.owner)
    request_id = protocol.request_id(message)
    first = services.submit(NewRequest(request_id, message, config.time_limit, client=client,
                                       quota_key=caller.quota.key), wait=True, quota=caller.quota)
    assert first is not None
    record = await services.wait_until_done(request_id, config.time_limit + 60.0, first, base_url)
    if record.session is None or not record.session.live:
        said = [m.message for m in services.store.get_messages(request_id, 0, PAGE_SIZE)]
        errors = [f"{m['content'].get('ename')}: {m['content'].get('evalue')}"
                  for m in said if m["msg_type"] == "error"]
        raise KernelUnavailable("the kernel did not start" + (f" ({'; '.join(errors)})" if errors else
                                                              f" (its request ended {record.status.value})"))
    return record


class KernelHandler(KernelAccess, BaseHandler):
    """``GET``/``DELETE /api/kernels/<id>``."""

    def get(self, kernel_id: str) -> None:
        record = self.kernel(kernel_id, self.owner())
        assert record.session is not None
        self.send_json(kernel_model(record.id, record.session, connections(self.services, record.id)))

    async def delete(self, kernel_id: str) -> None:
        record = self.kernel(kernel_id, self.owner())
        await shut_down(self.services, record)
        self.set_status(204)
        self.finish()


class KernelActionHandler(KernelAccess, BodyHandler):
    """``POST /api/kernels/<id>/interrupt`` and ``…/restart``."""

    async def accept(self, *args: str) -> None:
        kernel_id, action = args
        record = self.kernel(kernel_id, self.owner())
        services, request_id = self.services, record.id
        message = protocol.message("interrupt_request" if action == "interrupt" else "shutdown_request",
                                   {} if action == "interrupt" else {"restart": True})
        message["channel"] = "control"
        if services.store.add_input(request_id, message) is None:
            raise NotFound(f"the kernel {kernel_id} has ended")
        if services.wakeups is not None:
            services.wakeups.input_added(request_id)
        if action == "interrupt":
            self.set_status(204)
            self.finish()
            return
        # the answer comes once the new kernel is ready: its "starting" status answers the restart
        answered = await wait_for_answer(services, request_id, record.last_seq, message["header"]["msg_id"],
                                         "status", RESTART_WAIT)
        now = self.kernel(kernel_id, self.owner())  # 404 if the restart ended it
        if not answered:
            raise KernelUnavailable("the kernel is restarting and is not ready yet; try GET /api/kernels/<id>")
        assert now.session is not None
        self.send_json(kernel_model(request_id, now.session, connections(services, request_id)))


async def shut_down(services: Services, record: RequestRecord) -> None:
    """End a kernel's session (``stopped``) and wait, briefly, until its device did."""
    services.store.request_stop(record.id, [])
    if services.wakeups is not None:
        services.wakeups.stop_requested()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_WAIT
    while loop.time() < deadline:
        now = await services.wait_for_news(record.id, deadline - loop.time(), after=record.last_seq)
        if now is None or now.session is None or not now.session.live:
            return
        record = now


async def wait_for_answer(services: Services, kernel_id: str, after: int, msg_id: str, msg_type: str,
                          wait: float) -> bool:
    """Wait until the kernel's messages after seq ``after`` hold one of ``msg_type`` answering
    ``msg_id``; False when the session ended or the wait ran out first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    seq = after
    while True:
        for stored in services.store.get_messages(kernel_id, seq, PAGE_SIZE):
            seq = stored.seq
            message = stored.message
            if message["msg_type"] == msg_type and message.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        left = deadline - loop.time()
        if left <= 0:
            return False
        record = await services.wait_for_news(kernel_id, left, after=seq)
        if record is None or record.session is None or (not record.session.live and record.last_seq <= seq):
            return False


def parse_kernel_input(message: dict[str, Any], max_code: int) -> dict[str, Any] | None:
    """A client's message as it is stored for the kernel: its channel and type accepted, its
    header completed; None for one a kernel would ignore. ``BadRequest`` for one that is wrong."""
    header = message.get("header")
    if not isinstance(header, dict):
        raise BadRequest("a message needs a header object")
    msg_type = header.get("msg_type") or message.get("msg_type")
    channel = message.get("channel") or "shell"
    if channel not in ACCEPTED or msg_type not in ACCEPTED[channel]:
        return None
    content = message.get("content")
    metadata = message.get("metadata") or {}
    parent = message.get("parent_header") or {}
    if not isinstance(content, dict) or not isinstance(metadata, dict) or not isinstance(parent, dict):
        raise BadRequest("a message's content, metadata and parent_header must be objects")
    if msg_type == "execute_request" and len(str(content.get("code", "")).encode("utf-8")) > max_code:
        raise PayloadTooLarge(f"the cell's code is over {max_code} bytes, the most this server runs")
    msg_id = header.get("msg_id") or protocol.new_id()
    if not isinstance(msg_id, str) or len(msg_id) > 128:
        raise BadRequest("header.msg_id must be a string of at most 128 characters")
    made = protocol.header(str(msg_type))
    kept = {key: header[key] for key in ("session", "username", "date", "version")
            if isinstance(header.get(key), str) and len(header[key]) <= 128}
    stored: dict[str, Any] = {"header": {**made, **kept, "msg_id": msg_id, "msg_type": msg_type},
                              "parent_header": parent, "metadata": metadata, "content": content,
                              "msg_type": msg_type, "channel": channel}
    buffers = message.get("buffers")
    if buffers:
        if not isinstance(buffers, list) or not all(isinstance(b, str) for b in buffers):
            raise BadRequest("buffers must be binary parts of the frame")
        stored["buffers"] = buffers
    return stored


class KernelChannels(KernelAccess, tornado.websocket.WebSocketHandler):
    """``WS /api/kernels/<id>/channels``: the kernel's four channels over one WebSocket."""

    kernel_id = ""
    reader = ""
    v1 = False
    pump: asyncio.Task[None] | None = None

    def initialize(self, services: Services) -> None:
        self.services = services
        self.seq = 0
        self.saved_seq = 0
        self.saved_at = 0.0
        self.closed = False

    def check_origin(self, origin: str) -> bool:
        allowed = self.services.config.allowed_origins
        return allowed is None or origin in allowed or origin == f"{self.request.protocol}://{self.request.host}"

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        self.v1 = wire.V1_PROTOCOL in subprotocols
        return wire.V1_PROTOCOL if self.v1 else None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        (kernel_id,) = args
        try:
            record = self.kernel(kernel_id, self.owner())
            self.kernel_id = kernel_id = record.id  # the request's id, as the store knows it
            self.reader = self.get_argument("session_id", "")[:128]
            after = self.get_argument("after", "")
            if digits(after):
                self.seq = int(after)
            else:
                saved = self.services.store.cursor(kernel_id, self.reader) if self.reader else None
                self.seq = record.last_seq if saved is None else saved
        except SingleCellError as exc:  # before the upgrade: an HTTP answer that says why
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            set_retry_after(self, exc)
            self.finish(error_body(exc.code, exc.message))
            return
        self.saved_seq = self.seq
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        stream = getattr(self.ws_connection, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)  # small messages must not wait for Nagle
        self.services.kernel_sockets.add(self)
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        """Send the kernel's messages as the store gets them, in order, until the session ends."""
        services, store = self.services, self.services.store
        try:
            while not self.closed:
                messages = store.get_messages(self.kernel_id, self.seq, PAGE_SIZE)
                for stored in messages:
                    frame = wire.encode(stored.message, self.v1)
                    await self.write_message(frame, binary=isinstance(frame, bytes))
                    self.seq = stored.seq
                self._save_cursor()
                if messages:
                    continue
                record = await services.wait_for_news(self.kernel_id, MAX_WAIT, after=self.seq)
                if record is None or record.session is None:
                    break
                if not record.session.live and record.last_seq <= self.seq:  # over, and all of it sent
                    await self._say_dead()
                    break
                touch_if_due(store, record)
        except tornado.websocket.WebSocketClosedError:
            pass
        except Exception:
            log.exception("the WebSocket of kernel %s failed", self.kernel_id)
        self.close()

    async def _say_dead(self) -> None:
        dead = protocol.message("status", {"execution_state": "dead"})
        frame = wire.encode(dead, self.v1)
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            await self.write_message(frame, binary=isinstance(frame, bytes))

    def _save_cursor(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.reader or self.seq <= self.saved_seq or (not force and now - self.saved_at < CURSOR_EVERY):
            return
        try:
            self.services.store.save_cursor(self.kernel_id, self.reader, self.seq)
            self.saved_seq, self.saved_at = self.seq, now
        except Exception:
            log.exception("recording the cursor of a reader of kernel %s failed", self.kernel_id)

    def on_message(self, frame: str | bytes) -> None:
        config = self.services.config
        if len(frame) > config.max_code_size + 1024 * 1024:
            self.close(1009, "message too big")
            return
        try:
            message = parse_kernel_input(wire.decode(frame, self.v1), config.max_code_size)
        except (wire.WireError, SingleCellError) as exc:
            log.info("kernel %s: a client's message was refused: %s", self.kernel_id, exc)
            return
        if message is None:
            return
        if self.services.store.add_input(self.kernel_id, message) is None:
            return  # the session ended: the pump says so and closes
        if self.services.wakeups is not None:
            self.services.wakeups.input_added(self.kernel_id)

    def on_close(self) -> None:
        self.closed = True
        self.services.kernel_sockets.discard(self)
        self._save_cursor(force=True)
        if self.pump is not None and not self.pump.done():
            self.pump.cancel()


class SessionsHandler(KernelAccess, BodyHandler):
    """``GET``/``POST /api/sessions``: Jupyter Server's sessions, one per kernel (its id is the
    kernel's), for clients that start kernels that way."""

    def get(self) -> None:
        models = []
        for request_id, _ in self.listed():
            record = self.services.store.get_request(request_id)
            if record is not None and record.session is not None:
                models.append(session_model(self.services, record))
        self.send_json(models)

    async def accept(self, *args: str) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest('send {"path": "…", "name": "…", "type": "notebook", "kernel": {"name": "python3"}}')
        kernel = body.get("kernel") or {}
        name = kernel.get("name") if isinstance(kernel, dict) else None
        if (name or KERNEL_NAME) != KERNEL_NAME:
            raise NotFound(f"no kernel spec is named {name!r}; this server has one: {KERNEL_NAME}")
        about = {key: str(body.get(key, ""))[:1024] for key in ("path", "name", "type")}
        record = await start_kernel(self.services, self.who(), self.request.remote_ip or "", self.absolute(""),
                                    {"singlecell_jupyter_session": about})
        self.send_json(session_model(self.services, record), status=201)


class SessionHandler(KernelAccess, BaseHandler):
    """``GET``/``DELETE /api/sessions/<id>`` (renaming one, ``PATCH``, is not supported: 405)."""

    def get(self, session_id: str) -> None:
        self.send_json(session_model(self.services, self.kernel(session_id, self.owner())))

    async def delete(self, session_id: str) -> None:
        await shut_down(self.services, self.kernel(session_id, self.owner()))
        self.set_status(204)
        self.finish()


def session_model(services: Services, record: RequestRecord) -> dict[str, Any]:
    assert record.session is not None
    about = record.message.get("metadata", {}).get("singlecell_jupyter_session") or {}
    return {"id": protocol.kernel_id(record.id), "path": about.get("path", ""), "name": about.get("name", ""),
            "type": about.get("type", "") or "notebook",
            "kernel": kernel_model(record.id, record.session, connections(services, record.id))}


def kernel_routes(services: Services) -> list[Any]:
    args = {"services": services}
    return [
        (r"/api/?", ApiHandler, args),
        (r"/api/kernelspecs/?", KernelSpecsHandler, args),
        (r"/api/kernelspecs/([^/]+)/?", KernelSpecsHandler, args),
        (r"/api/kernels/?", KernelsHandler, args),
        (r"/api/kernels/([^/]+)/channels", KernelChannels, args),
        (r"/api/kernels/([^/]+)/?", KernelHandler, args),
        (r"/api/kernels/([^/]+)/(interrupt|restart)/?", KernelActionHandler, args),
        (r"/api/sessions/?", SessionsHandler, args),
        (r"/api/sessions/([^/]+)/?", SessionHandler, args),
    ]


__all__ = ["kernel_routes"]
