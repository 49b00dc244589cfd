"""A session: the kernel of a cell whose widgets are still open, kept alive for its inputs.

When a cell finishes with comms open (``ipywidgets``), its request still ends ``done`` and the
device keeps the kernel (:meth:`device.device.Device._start_session`). Clients then send comm
messages to ``POST /input/<id>``; the store keeps them in order and the web tier wakes the
device, whose :class:`LiveSession` delivers each to the kernel and stores what comes back
(``status`` busy, ``comm_msg``, ``stream``, ``display_data``, errors, ``status`` idle) as more
messages of the same request, each with the input that caused it as its ``parent_header``.

A session ends at the first of: no input for ``--session-idle`` seconds, no client reading its
output for ``--session-unread``, ``--session-lifetime`` in all, its kernel's CPU seconds
(``--cpu-limit`` counts the whole session: it is one process), one input running past
``--time-limit``, its output passing ``--output-limit`` (counted over the whole session), a
memory kill, ``POST /stop``, eviction at ``--max-sessions``, its widgets all closed, or the
device stopping. Every end is one ``session_end`` extension message, with the reason in words
(:mod:`singlecell.sessions`), stored with :meth:`Store.end_session`. A device that dies leaves
its sessions' leases to run out: any process then ends them ``lost``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from device.base import RunningKernel
from device.inbox import FROM_JUPYTER_KERNELS, FROM_KERNELS, Inbox, clean
from device.sweep import sweep
from singlecell import protocol
from singlecell.limits import BY_KEY, Limit, output_backstop
from singlecell.sessions import duration, end_text, session_end_message
from singlecell.store.base import RequestRecord, Status, StoredMessage, numbered

if TYPE_CHECKING:
    from device.device import Device

log = logging.getLogger(__name__)

COALESCE = 0.010  # seconds a long turn's output waits for more before it is stored (as a cell's)
STORE_RETRIES = (0.1, 0.5, 2.0)  # seconds between tries of a session's ending the store refused
START_TIMEOUT = 30.0  # seconds a restarted kernel may take to say it is ready
#: a Jupyter client's inputs that do not wait their turn: the answer to the running cell's input(),
#: an interrupt, a shutdown or restart (the device handles the last two itself)
URGENT = frozenset({"input_reply", "interrupt_request", "shutdown_request"})


@dataclass
class _Linked:
    """A linked cell being answered: a request of its own, whose messages are its own."""

    id: str
    seq: int = 0  # its last stored seq
    reply: str | None = None  # its execute_reply's status
    stopped: bool = False  # a client asked to stop it: it was interrupted


class _Gone(Exception):
    """The store says the session is no longer this device's (its lease ran out): drop it."""


class LiveSession:
    """One session, run by :meth:`run` in a task of its device."""

    def __init__(self, device: Device, record: RequestRecord, kernel: RunningKernel, inbox: Inbox, seq: int,
                 output_bytes: int) -> None:
        self.device = device
        self.config = device.config
        self.record = record
        self.kernel = kernel
        self.inbox = inbox
        self.seq = seq  # the request's last stored seq
        self.output_bytes = output_bytes  # on the wire, the cell's included: the backstop counts the session
        self.read_upto = 0  # the last input read from the store
        self.queue: deque[tuple[int, dict[str, Any]]] = deque()  # read, waiting for their turn
        #: a Jupyter client's kernel (POST /api/kernels), not a cell's widgets
        self.jupyter = record.message.get("metadata", {}).get("singlecell_kernel") is True
        self.stdin_since: float | None = None  # loop time the running input asked its client for input()
        self.asked: dict[str, Any] | None = None  # a shutdown_request (or restart) to act on
        self.reply_failed = False  # the last turn was an execute_request whose reply said error
        self.stdin_waited = 0.0  # seconds the running input has waited for input() replies
        self.linked: _Linked | None = None  # the linked cell being answered, if one is
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.last_active = self.started  # the last input's arrival, for --session-idle
        self.last_read = time.time()  # a client's last read of its output (wall clock, from the store)
        self.busy = False
        self.parent: dict[str, Any] = record.message  # the message being answered
        self.wake = asyncio.Event()  # set when an input may be waiting, or the session must end
        self.ending: tuple[str, str] | None = None  # (reason, words), once something asked it to end
        self.task: asyncio.Task[None] | None = None
        self.oom_kills = device.pool.oom_kills(kernel)
        self.charged = 0.0  # the kernel's CPU seconds already added to the request (when its cell finished)

    # -- asked from outside ----------------------------------------------------------------

    def end(self, reason: str, text: str) -> None:
        """End the session soon (a stop, an eviction, the device stopping); the first reason wins."""
        if self.ending is None:
            self.ending = (reason, text)
        self.wake.set()

    def read_at(self, when: float) -> None:
        """A client read the output at ``when`` (the store's record of the last read)."""
        self.last_read = max(self.last_read, when)
        self.wake.set()  # the deadline may have moved either way: look again

    def stop_linked(self, request_id: str) -> None:
        """A client asked to stop a linked cell of this session: interrupt it if it runs, drop it
        (``aborted``) if it waits."""
        if self.linked is not None and self.linked.id == request_id:
            self.linked.stopped = True
            self.kernel.interrupt()
            return
        for seq, message in list(self.queue):
            if message["header"].get("msg_id") == request_id and _is_linked(message):
                self.queue.remove((seq, message))
                ended = numbered(0, [protocol.error_message(message, "CellStopped",
                                                            "the cell was stopped at the client's request"),
                                     protocol.message("status", {"execution_state": "idle"}, message)])
                self.device.store.finish(request_id, self.device.name, Status.ABORTED, ended)
                self.device.announce([request_id])

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        extra: list[dict[str, Any]] = []
        try:
            reason, text = await self._serve(extra)
        except _Gone:
            log.warning("session %s was ended elsewhere (its lease ran out)", self.record.id)
            self._release()
            return
        except asyncio.CancelledError:
            await self._close("server_stopped", end_text("server_stopped"), extra)
            raise
        except Exception as exc:
            log.exception("session %s: the device failed while it ran", self.record.id)
            extra.append(protocol.error_message(self.parent, "ServerError",
                                                f"the server failed while the session ran ({type(exc).__name__})"))
            reason, text = "error", end_text("error", "the server failed")
        await self._close(reason, text, extra)

    async def _serve(self, extra: list[dict[str, Any]]) -> tuple[str, str]:
        """Deliver inputs and store answers until a reason to end comes; returns it."""
        loop = asyncio.get_running_loop()
        while True:
            if self.ending is not None:
                return self.ending
            expired = self._expired(loop.time())
            if expired is not None:
                return expired
            self.wake.clear()
            await self._read_inputs(extra)
            while self.queue and self.asked is None and self.ending is None:
                seq, message = self.queue.popleft()
                why = await self._turn(seq, message, extra)
                if why is not None:
                    return why
                if self.reply_failed and message.get("content", {}).get("stop_on_error", True) is not False:
                    await self._read_inputs(extra)
                    self._abort_queued()
            if self.asked is not None:
                why = await self._act(extra)
                if why is not None:
                    return why
                continue
            if self.wake.is_set() or self.ending is not None:
                continue
            why = await self._wait(self._next_deadline(loop.time()) - loop.time(), extra)
            if why is not None:
                return why

    async def _read_inputs(self, extra: list[dict[str, Any]]) -> None:
        """Read the inputs that came since the last read: queue them, except a Jupyter client's
        urgent ones, which are handled at once."""
        for seq, message in self.device.store.inputs(self.record.id, self.read_upto):
            if seq <= self.read_upto:
                continue
            self.read_upto = seq
            self.last_active = asyncio.get_running_loop().time()
            if self.jupyter and message.get("msg_type") in URGENT:
                await self._urgent(message)
            else:
                self.queue.append((seq, message))

    async def _urgent(self, message: dict[str, Any]) -> None:
        msg_type = message["msg_type"]
        if msg_type == "input_reply":
            if self.stdin_since is None:
                return  # no input() waits for it: nothing to answer
            loop = asyncio.get_running_loop()
            self.stdin_waited += loop.time() - self.stdin_since
            self.stdin_since = None
            await self._send(message)
        elif msg_type == "interrupt_request":
            self.kernel.interrupt()
            self._say([_on_channel(protocol.message("interrupt_reply", {"status": "ok"}, message), message)])
        elif self.asked is None:  # shutdown_request
            self.asked = message

    def _abort_queued(self) -> None:
        """After a cell failed, the cells waiting behind it are not run (as ipykernel does with
        ``stop_on_error``): each gets an ``execute_reply`` that says ``aborted``."""
        kept: deque[tuple[int, dict[str, Any]]] = deque()
        answers: list[dict[str, Any]] = []
        for seq, message in self.queue:
            if message.get("msg_type") != "execute_request" or _is_linked(message):  # a page's cells run on
                kept.append((seq, message))
                continue
            answers += [protocol.message("status", {"execution_state": "busy"}, message),
                        protocol.message("execute_reply", {"status": "aborted"}, message, {"status": "aborted"}),
                        protocol.message("status", {"execution_state": "idle"}, message)]
        self.queue = kept
        self._say(answers)

    async def _act(self, extra: list[dict[str, Any]]) -> tuple[str, str] | None:
        """A client's ``shutdown_request``: end the session, or (``restart``) give it a new kernel."""
        request, self.asked = self.asked, None
        assert request is not None
        restart = bool(request.get("content", {}).get("restart", False))
        reply = _on_channel(protocol.message("shutdown_reply", {"status": "ok", "restart": restart}, request),
                            request)
        if not restart:
            extra.append(reply)
            return "shutdown", end_text("shutdown")
        return await self._restart(request, reply, extra)

    def _expired(self, now: float) -> tuple[str, str] | None:
        config = self.config
        if now - self.last_active >= config.session_idle:
            return "idle", end_text("idle", duration(config.session_idle))
        if now - self.started >= config.session_lifetime:
            return "lifetime", end_text("lifetime", duration(config.session_lifetime))
        if time.time() - self.last_read >= config.session_unread:
            return "unread", end_text("unread", duration(config.session_unread))
        return None

    def _next_deadline(self, now: float) -> float:
        config = self.config
        unread_at = now + (self.last_read + config.session_unread - time.time())
        return min(self.last_active + config.session_idle, self.started + config.session_lifetime, unread_at)

    async def _wait(self, timeout: float, extra: list[dict[str, Any]]) -> tuple[str, str] | None:
        """Between inputs: wait for a wake-up, a deadline, or the kernel (a thread of the cell
        may still send, and the kernel may die)."""
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            batch = await self.inbox.next_or(woken, max(timeout, 0.0))
        finally:
            woken.cancel()
        if batch is None:
            return await self._death(extra)
        if isinstance(batch, ValueError):
            return self._protocol_error(extra, str(batch))
        if batch:  # unasked output: stored as the answer to the last message
            pending: list[StoredMessage] = []
            why = self._take(batch, pending, extra, None)
            self._store(pending)
            return why
        return None

    # -- one input -------------------------------------------------------------------------

    async def _restart(self, request: dict[str, Any], reply: dict[str, Any],
                       extra: list[dict[str, Any]]) -> tuple[str, str] | None:
        """A new kernel from the pool for the same session (its id, its inputs, its lifetime). The
        files the old one wrote are carried over into the new one's folder, as a restarted Jupyter
        kernel finds its files; what the sweep leaves out is said in a ``stream`` note."""
        if self.linked is not None:  # a linked cell was running: it ends, saying why
            self._finish_linked([], [protocol.error_message(self.parent, "KernelRestarted",
                                                            "the kernel was restarted while this cell ran")],
                                Status.ABORTED)
        self.parent = request
        old = self.kernel
        self.inbox.close()
        old.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(old.exited), 5)
        old.kill_leftovers()
        carried = sweep(str(old.workdir), {}, self.config.max_output_files, self.config.max_output_file_size,
                        self.config.disk_limit * 1024 * 1024)
        self.device.pool.release(old)
        kernel = await self.device.pool.acquire()
        self.kernel, self.inbox = kernel, Inbox(kernel)
        self.oom_kills, self.output_bytes = self.device.pool.oom_kills(kernel), 0
        self.device.pool.kept(kernel)
        start = protocol.message("execute_request", {"code": "", "silent": True}, request,
                                 {"singlecell_kernel": True, "singlecell_inputs": [f.name for f in carried.files]})
        start["header"] = dict(request["header"])  # its answers are the restart's
        start["buffers"] = [base64.b64encode(f.data).decode("ascii") for f in carried.files]
        if not await self._send(start):
            return await self._death(extra)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            batch = await self.inbox.next(deadline - loop.time())
            if batch is None:
                return await self._death(extra)
            if isinstance(batch, ValueError):
                return self._protocol_error(extra, str(batch))
            if batch == [] and loop.time() >= deadline:
                self.kernel.kill()
                return "died", end_text("died", f"did not restart within {duration(START_TIMEOUT)}")
            if any(m["msg_type"] == "status" and m["content"].get("execution_state") == "idle" for m, _ in batch):
                break
        said: list[dict[str, Any]] = []
        if carried.skipped:
            said.append(protocol.message("stream", {"name": "stderr", "text": (
                "[files not carried over to the restarted kernel: " + "; ".join(carried.skipped) + "]\n")}, request))
        said += [reply, protocol.message("status", {"execution_state": "starting"}, request)]
        self._say(said)
        log.info("session %s: kernel restarted", self.record.id)
        return None

    async def _send(self, message: dict[str, Any]) -> bool:
        """Send an input to the kernel; False when it died instead (a PAIR socket whose peer died
        blocks a send for ever)."""
        to_kernel = {key: message.get(key, {}) for key in ("header", "parent_header", "metadata", "content")}
        to_kernel["msg_type"] = message["msg_type"]
        sending: asyncio.Future[Any] = asyncio.ensure_future(self.kernel.send(to_kernel, _buffers(message)))
        await asyncio.wait({sending, self.kernel.exited}, return_when=asyncio.FIRST_COMPLETED)
        if not sending.done():
            sending.cancel()
            return False
        return True

    async def _turn(self, seq: int, message: dict[str, Any], extra: list[dict[str, Any]]) -> tuple[str, str] | None:
        """Send one input to the kernel; store what it answers up to its ``idle``."""
        self.last_active = asyncio.get_running_loop().time()
        self.parent = message
        self.reply_failed = False
        self.linked = _Linked(str(message["header"]["msg_id"])) if _is_linked(message) else None
        if not await self._send(message):
            return await self._death(extra)
        self.busy = True
        try:
            return await self._answers(seq, extra)
        finally:
            self.busy = False
            self.stdin_since = None
            self.last_active = asyncio.get_running_loop().time()

    async def _answers(self, seq: int, extra: list[dict[str, Any]]) -> tuple[str, str] | None:
        """Store what the kernel answers, in 10 ms batches, up to its ``idle``. A Jupyter client's
        urgent inputs are handled meanwhile; the time limit does not count a wait for input()."""
        loop = asyncio.get_running_loop()
        pending: list[StoredMessage] = []
        flush_at = math.inf
        started = loop.time()
        self.stdin_waited = 0.0
        while True:
            deadline = math.inf if self.stdin_since is not None else \
                started + self.stdin_waited + self.config.time_limit
            timeout = max(min(flush_at, deadline) - loop.time(), 0.0)
            if self.jupyter:
                woken = asyncio.ensure_future(self.wake.wait())
                try:
                    batch = await self.inbox.next_or(woken, timeout)
                finally:
                    woken.cancel()
            else:
                batch = await self.inbox.next(timeout)
            if batch == []:
                if self.wake.is_set():
                    self.wake.clear()
                    await self._read_inputs(extra)
                    if self.asked is not None or self.ending is not None:  # a restart, a shutdown, a stop
                        self._store(pending)
                        return None
                now = loop.time()
                if self.stdin_since is None and now >= started + self.stdin_waited + self.config.time_limit:
                    self._store(pending)
                    self.kernel.kill()
                    return self._limit(extra, BY_KEY["time"])
                if now >= flush_at:
                    self._store(pending)
                    flush_at = math.inf
                continue
            if batch is None:
                self._store(pending)
                return await self._death(extra)
            if isinstance(batch, ValueError):
                self._store(pending)
                return self._protocol_error(extra, str(batch))
            idle: list[bool] = []
            why = self._take(batch, pending, extra, idle)
            if why is not None or idle:
                if why is None and self.linked is not None:
                    self._finish_linked(pending, [])
                else:
                    self._store(pending)
                if why is not None:
                    return why
                return None if idle[0] or self.jupyter else ("closed", end_text("closed"))
            if pending and flush_at == math.inf:
                flush_at = loop.time() + COALESCE

    def _take(self, batch: list[tuple[dict[str, Any], int]], pending: list[StoredMessage],
              extra: list[dict[str, Any]], idle: list[bool] | None) -> tuple[str, str] | None:
        """Keep what the kernel sent in ``pending`` (numbered, parented to the input being
        answered). At the input's ``idle``, appends to ``idle`` whether comms are still open.
        Returns a reason to end the session, if the kernel gave one."""
        for msg, size in batch:
            self.output_bytes += size
            if msg["msg_type"] not in (FROM_JUPYTER_KERNELS if self.jupyter else FROM_KERNELS):
                continue
            try:
                kept = clean(msg, self.parent["header"])
            except ValueError as exc:
                return self._protocol_error(extra, str(exc))
            is_idle = kept["msg_type"] == "status" and kept["content"].get("execution_state") == "idle"
            if is_idle:
                comms = kept["metadata"].pop("singlecell_comms", 1)
            elif kept["msg_type"] == "input_request":
                self.stdin_since = asyncio.get_running_loop().time()
            elif kept["msg_type"] == "execute_reply":
                self.reply_failed = kept["content"].get("status") == "error"
                if self.linked is not None:
                    self.linked.reply = str(kept["content"].get("status"))
            if kept["msg_type"].endswith("_reply"):
                _on_channel(kept, self.parent)
            pending.append(StoredMessage(self._next_seq(), kept))
            named = self.device.named_limit(self.parent, kept)
            if named is not None:
                extra.append(named[1])
                self.kernel.kill()
                return named[0].key, self._limit_words(named[0])
            if is_idle and idle is not None:
                idle.append(isinstance(comms, int) and comms > 0)
                return None
        if self.output_bytes > output_backstop(self.config.output_limit):  # the kernel's cut failed
            self.kernel.kill()
            return self._limit(extra, BY_KEY["output"])
        return None

    def _next_seq(self) -> int:
        """The seq of the next message stored: the linked cell's own, or the session's."""
        if self.linked is not None:
            self.linked.seq += 1
            return self.linked.seq
        self.seq += 1
        return self.seq

    def _finish_linked(self, pending: list[StoredMessage], extra: list[dict[str, Any]],
                       status: Status | None = None) -> None:
        """The linked cell is over: its last messages and its status, then its input delivered."""
        linked = self.linked
        assert linked is not None
        self.linked = None
        if status is None:
            status = Status.ABORTED if linked.stopped else Status.DONE if linked.reply == "ok" else Status.ERROR
        ending = list(pending) + numbered(pending[-1].seq if pending else linked.seq, extra)
        if not ending or ending[-1].message["msg_type"] != "status":
            ending += numbered(ending[-1].seq if ending else linked.seq,
                               [protocol.message("status", {"execution_state": "idle"}, self.parent)])
        if not self.device.store.finish(linked.id, self.device.name, status, ending):
            log.warning("linked cell %s had already ended", linked.id)
        pending.clear()
        self.device.announce([linked.id])
        self._store_session([])  # its input is delivered

    def _store(self, pending: list[StoredMessage]) -> None:
        """Store the kernel's answers so far: a linked cell's as its own request's, else the session's."""
        if not pending:
            return
        if self.linked is None:
            self._store_session(pending)
            return
        if not self.device.store.add_messages(self.linked.id, self.device.name, pending):
            log.warning("linked cell %s had already ended", self.linked.id)
        pending.clear()
        self.device.announce([self.linked.id])

    def _say(self, messages: list[dict[str, Any]]) -> None:
        """Store what the device says itself in the session's own stream (numbered after its last
        message), even while a linked cell runs."""
        if messages:
            pending = numbered(self.seq, messages)
            self.seq = pending[-1].seq
            self._store_session(pending)

    def _store_session(self, pending: list[StoredMessage]) -> None:
        """Append to the session's own messages; the inputs handled by then are marked delivered
        (all read but those still queued)."""
        delivered = self.queue[0][0] - 1 if self.queue else self.read_upto
        if not self.device.store.add_session_messages(self.record.id, self.device.name, pending, delivered):
            self.kernel.kill()
            raise _Gone()
        if pending:  # news for the session's readers
            pending.clear()
            self.device.announce([self.record.id])

    # -- how it ends -----------------------------------------------------------------------

    def _limit_words(self, limit: Limit) -> str:
        value = self.device.limit_value(limit)
        if limit.key in ("cpu", "time"):
            return end_text(limit.key, duration(value))
        return end_text(limit.key, int(value) if float(value).is_integer() else value)  # not 1e+06

    def _limit(self, extra: list[dict[str, Any]], limit: Limit) -> tuple[str, str]:
        """The device stopped the session for ``limit``: its error and its extension, as for a cell."""
        extra += self.device.limit_messages(self.parent, limit, self.device.limit_value(limit))
        return limit.key, self._limit_words(limit)

    def _protocol_error(self, extra: list[dict[str, Any]], what: str) -> tuple[str, str]:
        self.kernel.kill()
        extra.append(protocol.error_message(self.parent, "KernelProtocolError",
                                            f"the kernel sent {what}; the session was ended"))
        return "error", end_text("error", "its kernel broke the protocol")

    async def _death(self, extra: list[dict[str, Any]]) -> tuple[str, str]:
        """The kernel exited by itself: why, in the words of the limit that killed it if one did."""
        status = await self.kernel.exited
        killer = self.device.death_limit(self.kernel, status, self.oom_kills)
        if killer is not None:
            return self._limit(extra, killer)
        how = "was lost with its template process" if status == -1 else protocol.describe_exit(status)
        extra.append(protocol.error_message(self.parent, "KernelDied", f"the session's kernel {how}"))
        return "died", end_text("died", how)

    async def _close(self, reason: str, text: str, extra: list[dict[str, Any]]) -> None:
        """Kill the kernel, collect what it wrote, and store the end. A linked cell it was
        answering ends with it, saying why (the limit's error is its own)."""
        self.inbox.close()
        self.kernel.kill()
        if self.linked is not None:
            said, extra[:] = list(extra), []
            if not said:
                said.append(protocol.error_message(self.parent, "SessionEnded", f"{text} (the cell did not finish)"))
            try:
                self._finish_linked([], said, Status.TIMEOUT if reason == "time" else Status.ABORTED)
            except Exception:
                log.exception("session %s: ending its linked cell failed", self.record.id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.kernel.exited), 5)
        files = []
        try:
            self.kernel.kill_leftovers()
            files = self.device.collect_files(self.kernel, self.record, extra)
        except Exception:
            log.exception("session %s: collecting its files failed", self.record.id)
        request = self.record.message
        final = list(extra)
        if files:
            final.append(self.device.files_message(request, self.record.id, files))
        final.append(session_end_message(request, reason, text))
        messages = numbered(self.seq, final)
        used = self.kernel.cpu_seconds()
        cpu = max(0.0, used - self.charged) if used is not None else None
        for delay in (*STORE_RETRIES, None):
            try:
                if not self.device.store.end_session(self.record.id, self.device.name, reason, messages, files, cpu):
                    log.warning("session %s had already ended elsewhere", self.record.id)
                break
            except Exception as exc:
                if delay is None:
                    log.error("session %s: storing its end failed (%s); its lease will run out", self.record.id, exc)
                    break
                await asyncio.sleep(delay)
        log.info("session %s ended: %s", self.record.id, reason)
        self._release()
        self.device.announce([self.record.id])

    def _release(self) -> None:
        self.inbox.close()
        self.kernel.kill()
        self.device.pool.release(self.kernel)


def _is_linked(message: dict[str, Any]) -> bool:
    return message.get("msg_type") == "execute_request" and message.get("metadata", {}).get("singlecell_linked") is True


def _on_channel(reply: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A reply goes back on the channel its request came on: ``control`` is marked (a client's
    WebSocket tells the channels apart; shell is the default)."""
    if request.get("channel") == "control":
        reply["channel"] = "control"
    return reply


def _buffers(message: dict[str, Any]) -> list[bytes]:
    """An input's binary buffers, sent base64-encoded (checked by the web tier)."""
    out = []
    for item in message.get("buffers") or ():
        with contextlib.suppress(binascii.Error, ValueError, TypeError):
            out.append(base64.b64decode(item))
    return out
