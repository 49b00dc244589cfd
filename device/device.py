"""The device: claims queued requests from the store and runs each on a fresh kernel.

For every request it owns it sends the ``execute_request`` to a ready kernel, writes what the
kernel sends back to the store in batches (under its own seq numbers and with the request's
header as ``parent_header``: a kernel is never believed about which request it answers),
enforces the wall-clock and output limits, sweeps the files the cell wrote into the filestore,
and gives the request exactly one terminal status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import mimetypes
import os
import signal
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from device.base import KernelLauncher, RunningKernel
from device.inbox import FROM_KERNELS, Inbox
from device.inbox import clean as inbox_clean
from device.kernel import EXIT_CHANNEL_FAILED, EXIT_SANDBOX_FAILED
from device.session import LiveSession
from device.sweep import is_empty, sweep
from filestore.base import FileStore
from singlecell import protocol
from singlecell.config import Config
from singlecell.errors import SingleCellError, StoreUnavailable
from singlecell.limits import BY_KEY, KERNEL_NAMED, Limit, output_backstop
from singlecell.metrics import Metrics
from singlecell.sessions import end_text, session_live_message
from singlecell.store.base import FileRecord, NewSession, RequestRecord, Status, Store, StoredMessage, numbered
from singlecell.wakeup import Wakeups

log = logging.getLogger(__name__)

EXIT_GRACE = 2.0  # seconds a kernel gets to exit after it said idle before it is killed
#: seconds between tries of a terminal status the store refused (it may be restarting): about
#: half a default lease in all, while the request's lease is still renewed
FINISH_RETRIES = (0.1, 0.3, 1.0, 2.0, 4.0)
# Mid-cell output waits this long for more before it is stored: a quick cell's messages then
# go to the store in its one finishing transaction, and a printing loop's in few batches.
COALESCE = 0.010


def file_url(request_id: str, name: str) -> str:
    return f"/files/{request_id}/{urllib.parse.quote(name)}"


@dataclass
class Outcome:
    """How a cell ended, as far as the device saw it."""

    status: Status | None = None  # set when the device decided (limits, crashes, stops)
    reply_status: str | None = None  # the kernel's execute_reply status
    idle: dict[str, Any] | None = None  # the kernel's last message, held back to be written last
    extra: list[dict[str, Any]] = field(default_factory=list)  # messages the device adds
    pending: list[StoredMessage] = field(default_factory=list)  # stored with the finish
    seq: int = 0  # the last seq given out: survives a cancelled or timed-out conversation
    oom_kills: int = 0  # the kernel's control group's count of memory kills when the cell began
    comms: int = 0  # the comms the kernel said were open when the cell ended (widgets: a session)
    output_bytes: int = 0  # what the kernel sent, on the wire
    inbox: Inbox | None = None  # the conversation's receive, handed on to a session
    cpu: float | None = None  # the kernel's CPU seconds when the request was finished


class Device:
    def __init__(self, config: Config, store: Store, filestore: FileStore, pool: KernelLauncher,
                 wakeups: Wakeups | None = None, name: str | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics("device")
        self.store = store
        self.filestore = filestore
        self.pool = pool
        self.wakeups = wakeups
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.running: dict[str, asyncio.Task[None]] = {}
        self.finish_retries = FINISH_RETRIES
        self._wake = asyncio.Event()
        self._stops: dict[str, asyncio.Future[None]] = {}  # resolved when a client asks to stop the request
        self._stops_due = False  # a wake-up said a stop was asked
        self._next_stop_check = 0.0  # loop time by which stop requests are read anyway
        self._stopping = False
        self._background: list[asyncio.Task[None]] = []
        self.sessions: dict[str, LiveSession] = {}  # cells whose widgets stay live, by request id
        self._next_reads = 0.0  # loop time by which the sessions' last reads are read again
        self._claim_failures = 0  # claims failed in a row (the store unreachable)

    # -- the loop ------------------------------------------------------------------------

    async def run(self, burst: bool = False) -> None:
        """Claim and run requests until :meth:`stop`; with ``burst``, return once the queue
        is empty and every claimed request has finished (for tests and one-shot runs)."""
        if self.wakeups is not None:
            self.wakeups.on_queued = self._queued_wake
            self.wakeups.on_stop = self._stop_wake
            self.wakeups.on_input = self._input_wake
        self._background = [asyncio.ensure_future(self._keep_leases())]
        loop = asyncio.get_running_loop()
        polled = False  # the last wait ended by the poll interval, not a wake-up
        try:
            while not self._stopping:
                self._wake.clear()
                # stop requests are read when a wake-up says there is one, and at least once a
                # poll interval (wake-ups can be lost, and a busy loop may never time out)
                if self._stops_due or loop.time() >= self._next_stop_check:
                    self._stops_due = False
                    self._next_stop_check = loop.time() + self.config.poll_interval
                    self._stop_asked()
                    self._watch_sessions()
                try:
                    claimed = self._claim()
                except Exception as exc:  # the store is down or restarting: the cells running go on
                    self._claim_failures += 1
                    if not isinstance(exc, StoreUnavailable):
                        log.exception("claiming queued requests failed; trying again in %.1f s",
                                      self.config.poll_interval)
                    elif self._claim_failures == 1 or self._claim_failures % 100 == 0:  # one line, not a flood
                        log.warning("claiming queued requests failed (%d in a row): %s", self._claim_failures, exc)
                    await asyncio.sleep(self.config.poll_interval)
                    continue
                if self._claim_failures:
                    log.warning("claims work again, after %d failed", self._claim_failures)
                    self._claim_failures = 0
                if polled and claimed:  # work no wake-up told of
                    self.metrics.wakeups.labels("fallback").inc()
                if burst and not claimed and not self.running and not self.sessions:
                    return
                polled = False
                try:
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
                except TimeoutError:
                    polled = True
        finally:
            for task in self._background:
                task.cancel()

    def busy(self) -> int:
        """Kernels in use: running a cell, or kept by a live session."""
        return len(self.running) + len(self.sessions)

    def _claim(self) -> int:
        free = self.config.kernels - len(self.running)
        if free <= 0:
            return 0
        records = self.store.claim(self.name, free, self.config.lease_seconds)
        for record in records:
            task = asyncio.ensure_future(self._execute(record))
            self.running[record.id] = task
            task.add_done_callback(functools.partial(self._done, record.id))
        return len(records)

    def _queued_wake(self) -> None:
        self.metrics.wakeups.labels("wakeup").inc()
        self._wake.set()

    def _stop_wake(self) -> None:
        self._stops_due = True
        self._wake.set()

    def _input_wake(self, request_id: str) -> None:
        session = self.sessions.get(request_id)
        if session is not None:
            session.wake.set()

    def _watch_sessions(self) -> None:
        """The fallback for lost input wake-ups (once a poll interval), and the sessions' last
        reads by a client (every few seconds)."""
        if not self.sessions:
            return
        try:
            for request_id in self.store.pending_inputs(self.name):
                self._input_wake(request_id)
            now = asyncio.get_running_loop().time()
            if now >= self._next_reads:
                self._next_reads = now + min(5.0, self.config.session_unread / 4)
                for request_id, when in self.store.session_reads(self.name).items():
                    session = self.sessions.get(request_id)
                    if session is not None:
                        session.read_at(when)
        except Exception:
            log.exception("reading the sessions' inputs failed; retrying at the next poll")

    def _make_room(self) -> None:
        """At ``--max-sessions``, end the least recently used session (an idle one first)."""
        while len([s for s in self.sessions.values() if s.ending is None]) >= self.config.max_sessions:
            live = [s for s in self.sessions.values() if s.ending is None]
            victim = min(live, key=lambda s: (s.busy, s.last_active))
            victim.end("evicted", end_text("evicted"))

    def _start_session(self, record: RequestRecord, kernel: RunningKernel, outcome: Outcome, seq: int) -> None:
        assert outcome.inbox is not None
        session = LiveSession(self, record, kernel, outcome.inbox, seq, outcome.output_bytes)
        session.charged = outcome.cpu or 0.0
        outcome.inbox = None  # the session's now
        self.sessions[record.id] = session
        session.task = asyncio.ensure_future(session.run())
        session.task.add_done_callback(functools.partial(self._session_done, record.id))
        self.pool.kept(kernel)  # a ready kernel replaces it now: sessions must not starve cells

    def _session_done(self, request_id: str, task: asyncio.Task[None]) -> None:
        self.sessions.pop(request_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s failed inside the device", request_id, exc_info=task.exception())

    def _stop_asked(self) -> None:
        """Stop the running cells a client asked to stop (``POST /stop``): each ends ``aborted``;
        and end the sessions a client asked to stop."""
        if not self.running and not self.sessions:
            return
        try:
            asked = self.store.stops_for(self.name)
        except Exception:
            log.exception("reading stop requests failed; retrying at the next wake-up")
            return
        for request_id in asked:
            stop = self._stops.get(request_id)
            if stop is not None and not stop.done():
                stop.set_result(None)
            session = self.sessions.get(request_id)
            if session is not None:
                session.end("stopped", end_text("stopped"))
            elif stop is None:  # a linked cell, waiting or running in one of our sessions
                for live in self.sessions.values():
                    live.stop_linked(request_id)

    def _done(self, request_id: str, _: object = None) -> None:
        task = self.running.pop(request_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("request %s failed inside the device", request_id, exc_info=task.exception())
        self._wake.set()  # a kernel slot is free

    async def stop(self, grace: float) -> None:
        """Claim nothing more; give running cells ``grace`` seconds, then stop them (they end
        ``aborted``, saying the server stopped)."""
        self._stopping = True
        self._wake.set()
        if self.running:
            log.info("waiting up to %.0f s for %d running cells", grace, len(self.running))
            await asyncio.wait(list(self.running.values()), timeout=grace)
        for task in list(self.running.values()):
            task.cancel()
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=5)
        for session in list(self.sessions.values()):
            session.end("server_stopped", end_text("server_stopped"))
        tasks = [s.task for s in self.sessions.values() if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _keep_leases(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                # only what is still being worked on: a request this device gave up on (its
                # store kept refusing its ending) runs out, and ends lost
                self.store.renew_lease(self.name, self.config.lease_seconds, list(self.running), list(self.sessions))
                lost = self.store.expire_leases()
                if lost:
                    log.warning("declared %d requests of vanished devices lost", len(lost))
                    self.metrics.lost.inc(len(lost))
                    self.announce(lost)
            except Exception:
                log.exception("lease upkeep failed; retrying")

    def announce(self, request_ids: Sequence[str]) -> None:
        if self.wakeups is not None:
            self.wakeups.progressed(request_ids)

    # -- one request ---------------------------------------------------------------------

    async def _execute(self, record: RequestRecord) -> None:
        request = record.message
        outcome = Outcome(seq=record.last_seq)
        limit = min(record.timeout, self.config.time_limit)
        try:
            kernel = await self.pool.acquire()
        except asyncio.CancelledError:
            self.store.release(self.name, [record.id])
            raise
        outcome.oom_kills = self.pool.oom_kills(kernel)
        stop = self._stops[record.id] = asyncio.get_running_loop().create_future()
        retire: RunningKernel | None = kernel
        try:
            try:
                await asyncio.wait_for(self._converse_until_stopped(kernel, record, outcome, stop), limit)
            except _Stopped:
                kernel.kill()
                outcome.status = Status.ABORTED
                outcome.extra.append(protocol.error_message(
                    request, "CellStopped", "the cell was stopped at the client's request"))
            except TimeoutError:
                kernel.kill()
                self._note_limit(outcome, request, BY_KEY["time"], limit)
            except asyncio.CancelledError:
                kernel.kill()
                outcome.status = Status.ABORTED
                outcome.extra.append(protocol.error_message(
                    request, "ServerStopped", "the server was stopped while this cell ran"))
                await self._end(kernel, record, outcome)
                raise
            except _Lost:
                kernel.kill()
                return
            except Exception as exc:  # a bug here, or a message we could not handle: the cell stops
                log.exception("request %s: the device failed while the cell ran", record.id)
                kernel.kill()
                outcome.status = Status.ABORTED
                outcome.extra.append(_server_error(request, exc, "while this cell ran"))
            if request.get("metadata", {}).get("singlecell_kernel") is True and outcome.idle is not None \
                    and outcome.reply_status is None:
                outcome.reply_status = "ok"  # a Jupyter client's kernel that ran no cell: ready is done
            keep = self._may_keep(kernel, record, outcome)
            if keep:
                self._make_room()
            seq = await self._end(kernel, record, outcome, session=keep)
            if keep and seq is not None:
                self._start_session(record, kernel, outcome, seq)
                retire = None
        finally:
            del self._stops[record.id]
            if outcome.inbox is not None:
                outcome.inbox.close()
            if retire is not None:
                self._retire(retire)

    def _may_keep(self, kernel: RunningKernel, record: RequestRecord, outcome: Outcome) -> bool:
        """Whether the cell becomes a session: it ended well or with its own exception, with
        comms (widgets) open, and its client may have one; or it is a Jupyter client's kernel."""
        if self.config.max_sessions <= 0 or outcome.status is not None or outcome.idle is None \
                or not kernel.alive or self._stopping:
            return False
        # the web tier marks the cells that may become sessions (POST /execute, never /eval)
        metadata = record.message.get("metadata", {})
        return metadata.get("singlecell_kernel") is True or (
            metadata.get("singlecell_session") is True and outcome.comms > 0)

    async def _converse_until_stopped(self, kernel: RunningKernel, record: RequestRecord, outcome: Outcome,
                                      stop: asyncio.Future[None]) -> None:
        """:meth:`_converse`, unless ``stop`` resolves first: then raise :class:`_Stopped`."""
        conversation = asyncio.ensure_future(self._converse(kernel, record, outcome))
        try:
            await asyncio.wait({conversation, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled (time limit, shutdown) or stopped: the conversation ends with us
            if not conversation.done():
                conversation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await conversation
        if not conversation.cancelled():
            conversation.result()  # its exception (_Lost, …), if any
            return
        raise _Stopped()

    async def _converse(self, kernel: RunningKernel, record: RequestRecord, outcome: Outcome) -> None:
        """Send the request; store what comes back until the kernel says idle or dies."""
        request = record.message
        names = list(record.inputs)
        metadata = request.get("metadata", {})
        allowed = self.config.max_sessions > 0  # else the kernel must not wait for widgets' inputs
        marks = {mark: allowed and metadata.get(mark) is True for mark in ("singlecell_session", "singlecell_kernel")}
        to_kernel = dict(request, metadata={**metadata, "singlecell_inputs": names, **marks})
        to_kernel["metadata"].pop("singlecell_owner", None)  # whose kernel it is is none of the kernel's business
        sending: asyncio.Future[Any] = asyncio.ensure_future(kernel.send(to_kernel, [record.inputs[n] for n in names]))
        exited: asyncio.Future[Any] = kernel.exited
        # a PAIR socket whose peer died blocks a send forever: race it with the exit
        await asyncio.wait({sending, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not sending.done():
            sending.cancel()
            return
        outcome.inbox = Inbox(kernel)  # closed by _execute, unless a session takes it over
        await self._read_replies(kernel, outcome.inbox, record, outcome)

    async def _read_replies(self, kernel: RunningKernel, inbox: Inbox, record: RequestRecord,
                            outcome: Outcome) -> None:
        """Store what the kernel sends until it says idle, dies, or breaks a rule."""
        request = record.message
        hard_cap = output_backstop(self.config.output_limit)
        loop = asyncio.get_running_loop()
        flush_at = math.inf
        while outcome.idle is None:
            batch = await inbox.next(flush_at - loop.time())
            if batch == []:  # nothing more within the coalescing window: store what we have
                self._store_pending(record, outcome)
                flush_at = math.inf
                continue
            if batch is None:  # it exited, and everything it sent has been read
                return
            if isinstance(batch, ValueError):  # not signed, replayed, too deep: nothing it says can be believed
                self._protocol_error(kernel, outcome, request, str(batch))
                return
            for msg, size in batch:
                outcome.output_bytes += size
                if msg["msg_type"] not in FROM_KERNELS:
                    continue  # extensions (files, limits) are the device's word alone: a cell cannot forge them
                try:
                    clean = inbox_clean(msg, request["header"])
                except ValueError as exc:
                    self._protocol_error(kernel, outcome, request, str(exc))
                    return
                named = self.named_limit(request, clean)
                if named is not None:  # a limit the kernel ran into (it names it): the cell was stopped by it
                    self.metrics.limits.labels(named[0].key).inc()
                    outcome.status = Status(named[0].status)
                    outcome.extra.append(named[1])
                if clean["msg_type"] == "execute_reply":
                    outcome.reply_status = str(clean["content"].get("status", "error"))
                    comms = clean["metadata"].pop("singlecell_comms", 0)
                    outcome.comms = comms if isinstance(comms, int) else 0
                if clean["msg_type"] == "status" and clean["content"].get("execution_state") == "idle":
                    outcome.idle = clean
                    continue
                outcome.seq += 1
                outcome.pending.append(StoredMessage(outcome.seq, clean))
            if outcome.output_bytes > hard_cap:
                kernel.kill()
                output = BY_KEY["output"]
                self._note_limit(outcome, request, output, self.limit_value(output))
                return
            if outcome.pending and flush_at == math.inf:
                flush_at = loop.time() + COALESCE

    def _store_pending(self, record: RequestRecord, outcome: Outcome) -> None:
        """Store (and announce) mid-cell output; the last batch rides in the finish."""
        if not self.store.add_messages(record.id, self.name, outcome.pending):
            raise _Lost()
        outcome.pending = []
        self.announce([record.id])

    def _protocol_error(self, kernel: RunningKernel, outcome: Outcome, request: dict[str, Any], what: str) -> None:
        """The kernel broke the protocol: nothing more it says is believed, and the cell stops."""
        kernel.kill()
        outcome.status = Status.ABORTED
        outcome.extra.append(protocol.error_message(
            request, "KernelProtocolError", f"the kernel sent {what}; the cell was stopped"))

    def limit_value(self, limit: Limit) -> float:
        """The setting of ``limit`` on this device."""
        value: float = getattr(self.config, limit.setting)
        return value

    def _note_limit(self, outcome: Outcome, request: dict[str, Any], limit: Limit, value: float) -> None:
        """The cell was stopped by ``limit``: its error, its extension, and its status."""
        self.metrics.limits.labels(limit.key).inc()
        outcome.status = Status(limit.status)
        outcome.extra += self.limit_messages(request, limit, value)

    @staticmethod
    def limit_messages(parent: dict[str, Any], limit: Limit, value: float) -> list[dict[str, Any]]:
        """What the device says when it stops a cell (or a session) for ``limit``: an ``error``
        whose ename names it and whose evalue says it in words, and the ``limit`` extension."""
        evalue = limit.evalue(value)
        return [protocol.error_message(parent, limit.ename, evalue),
                protocol.limit_message(parent, limit.key, value, limit.ename, evalue)]

    def named_limit(self, parent: dict[str, Any], msg: dict[str, Any]) -> tuple[Limit, dict[str, Any]] | None:
        """For a kernel's ``error`` that names a limit it ran into: the limit, and its ``limit``
        extension (answering ``parent``); None for any other message."""
        ename = msg["content"].get("ename") if msg["msg_type"] == "error" else None
        if ename not in KERNEL_NAMED:
            return None
        named = KERNEL_NAMED[ename]
        return named, protocol.limit_message(parent, named.key, self.limit_value(named), named.ename,
                                             str(msg["content"].get("evalue", "")))

    def death_limit(self, kernel: RunningKernel, wait_status: int, oom_kills_before: int) -> Limit | None:
        """The limit that killed a kernel which died by itself, when one did: its control group's
        OOM killer (memory), or SIGXCPU (CPU seconds)."""
        signalled = os.WTERMSIG(wait_status) if wait_status >= 0 and os.WIFSIGNALED(wait_status) else None
        if signalled == signal.SIGKILL and self.pool.oom_kills(kernel) > oom_kills_before:
            return BY_KEY["memory"]
        if signalled == signal.SIGXCPU:
            return BY_KEY["cpu"]
        return None

    def files_message(self, request: dict[str, Any], request_id: str, files: list[FileRecord]) -> dict[str, Any]:
        """The ``files`` extension that lists what a cell (or a session) wrote."""
        return protocol.extension_message(request, "files", {"files": [
            {"name": f.name, "size": f.size, "content_type": f.content_type, "url": file_url(request_id, f.name)}
            for f in files]})

    async def _end(self, kernel: RunningKernel, record: RequestRecord, outcome: Outcome,
                   session: bool = False) -> int | None:
        """Give the request its one terminal status, whatever it takes.

        First the whole ending: the files, the messages and the status. If making it fails, a
        ``ServerError`` after the output so far instead. A store that refuses is retried
        (:attr:`finish_retries`, seconds apart), then asked for the smallest ending (``ServerError`` alone). If
        even that fails the store is out of reach: the request is left out of this device's
        lease renewals, so once the store is back its lease runs out and any process of the
        deployment ends it ``lost``, readable by its client.

        With ``session``, the cell also becomes a live session (its kernel is kept). Returns the
        request's last seq when this ending was stored as made, else None."""
        try:
            status, messages, files = await self._conclude(kernel, record, outcome, session)
        except Exception as exc:  # a bug, or a filestore that failed: the output so far, and why
            log.exception("request %s: collecting its ending failed; it ends with a ServerError", record.id)
            kernel.kill()
            status, messages, files = Status.ABORTED, self._broken(record, outcome, exc, outcome.pending), []
            session = False
        metadata = record.message.get("metadata", {})
        kind = "kernel" if metadata.get("singlecell_kernel") is True else "widgets"
        new = NewSession(record.client, self.config.lease_seconds, kind, str(metadata.get("singlecell_owner", ""))) \
            if session else None
        outcome.cpu = kernel.cpu_seconds()
        stored = await self._store_finish(record, status, messages, files, new, outcome.cpu)
        ended = messages[-1].seq if stored else None
        if stored:
            self.metrics.ended(status.value, record.created, record.started)
        if stored is None and (status is not Status.ABORTED or outcome.pending or files):
            log.error("request %s: the store refused its ending %d times; ending it with a ServerError alone",
                      record.id, len(self.finish_retries) + 1)
            problem = RuntimeError("the store refused the cell's last output")
            stored = await self._store_finish(record, Status.ABORTED, self._broken(record, outcome, problem, []), [],
                                              cpu=outcome.cpu)
        if stored is None:
            log.error("request %s: the store refused every ending; it is no longer renewed, and ends lost "
                      "once its lease of %.0f s runs out", record.id, self.config.lease_seconds)
        elif not stored:
            log.warning("request %s was declared lost before it finished here", record.id)
        self.announce([record.id])
        return ended

    async def _store_finish(self, record: RequestRecord, status: Status, messages: list[StoredMessage],
                            files: list[FileRecord], session: NewSession | None = None,
                            cpu: float | None = None) -> bool | None:
        """``Store.finish``, tried again while it raises; None when every try raised."""
        for delay in (*self.finish_retries, None):
            try:
                return self.store.finish(record.id, self.name, status, messages, files, session, cpu)
            except Exception as exc:
                if delay is None:
                    log.error("request %s: storing its ending failed (%s: %s); giving up", record.id,
                              type(exc).__name__, exc)
                    return None
                log.error("request %s: storing its ending failed (%s: %s); trying again in %.1f s", record.id,
                          type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
        return None

    async def _conclude(self, kernel: RunningKernel, record: RequestRecord, outcome: Outcome,
                        session: bool = False) -> tuple[Status, list[StoredMessage], list[FileRecord]]:
        """The request's terminal status, its last messages (idle last) and its files."""
        request = record.message
        if outcome.status is None and outcome.idle is None:
            # it died before finishing the cell
            wait_status = await kernel.exited
            outcome.status = Status.ABORTED
            killer = self.death_limit(kernel, wait_status, outcome.oom_kills)
            if killer is not None:
                self._note_limit(outcome, request, killer, self.limit_value(killer))
            else:
                outcome.extra.append(self._death_message(request, wait_status))
        files: list[FileRecord] = []
        if session:
            pass  # its kernel lives on: what it wrote is collected when the session ends
        elif outcome.status is None and not record.inputs and is_empty(str(kernel.workdir)):
            pass  # the common case: nothing to collect, so no need to wait for the exit
        else:
            await self._await_exit(kernel)
            files = self.collect_files(kernel, record, outcome.extra)
        status = outcome.status or (Status.DONE if outcome.reply_status == "ok" else Status.ERROR)
        final = [*outcome.extra]
        if files:
            final.append(self.files_message(request, record.id, files))
        if session:
            final.append(session_live_message(request, self.config.session_idle, self.config.session_lifetime))
        final.append(outcome.idle or protocol.message("status", {"execution_state": "idle"}, request))
        return status, [*outcome.pending, *numbered(outcome.seq, final)], files

    def _broken(self, record: RequestRecord, outcome: Outcome, exc: Exception,
                pending: list[StoredMessage]) -> list[StoredMessage]:
        """The ending of a request the device failed to finish: ``pending``, then a ServerError."""
        # outcome.pending are the messages not yet stored, numbered up to outcome.seq
        seq = outcome.seq - len(outcome.pending) + len(pending)
        final = [_server_error(record.message, exc, "while finishing this cell; its output may be incomplete"),
                 protocol.message("status", {"execution_state": "idle"}, record.message)]
        return [*pending, *numbered(seq, final)]

    async def _await_exit(self, kernel: RunningKernel) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(kernel.exited), EXIT_GRACE)
        except TimeoutError:
            kernel.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(kernel.exited), 5)
        kernel.kill_leftovers()

    def collect_files(self, kernel: RunningKernel, record: RequestRecord,
                      extra: list[dict[str, Any]]) -> list[FileRecord]:
        """Sweep the files the kernel left into the filestore; a note of those skipped goes first
        in ``extra``."""
        result = sweep(str(kernel.workdir), record.inputs, self.config.max_output_files,
                       self.config.max_output_file_size, self.config.disk_limit * 1024 * 1024)
        files = []
        for swept in result.files:
            try:
                location = self.filestore.put(record.id, swept.name, swept.data)
            except (SingleCellError, ValueError, OSError) as exc:  # a name it cannot hold, say
                result.skipped.append(f"{swept.name!r}: {exc}")
                continue
            content_type = mimetypes.guess_type(swept.name)[0] or "application/octet-stream"
            files.append(FileRecord(swept.name, len(swept.data), content_type, location))
        if result.skipped:
            extra.insert(0, protocol.message("stream", {"name": "stderr", "text": (
                "[files not collected: " + "; ".join(result.skipped) + "]\n")}, record.message))
        return files

    def _death_message(self, request: dict[str, Any], status: int) -> dict[str, Any]:
        if status == -1:
            return protocol.error_message(request, "KernelDied", "the kernel was lost with its "
                                          "template process; the cell did not finish")
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_SANDBOX_FAILED:
            return protocol.error_message(request, "SandboxError", "the kernel's sandbox could not be "
                                          "set up, so the cell was not run")
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_CHANNEL_FAILED:
            return protocol.error_message(request, "KernelDied", "the kernel could not reach the device")
        return protocol.error_message(request, "KernelDied", "the kernel running this cell "
                                      f"{protocol.describe_exit(status)} before the cell finished")

    def _retire(self, kernel: RunningKernel) -> None:
        kernel.kill_leftovers() if kernel.exited.done() else kernel.kill()
        self.pool.release(kernel)




def _server_error(request: dict[str, Any], exc: BaseException, when: str) -> dict[str, Any]:
    return protocol.error_message(request, "ServerError", f"the server failed {when} ({type(exc).__name__})")


class _Stopped(Exception):
    """A client asked to stop the request while its cell ran."""


class _Lost(Exception):
    """The store says this device no longer owns the request."""
