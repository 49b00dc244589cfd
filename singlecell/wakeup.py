"""Wake-ups between the web tier and the devices, so neither polls the store on a timer.

The web tier tells devices "a request is queued" or "a client asked to stop a request"; a device
tells web processes "request X has new messages or a new status". A wake-up carries no data that
matters: the store stays the truth, a lost wake-up only costs one fallback poll
(``poll_interval``), and a process may receive wake-ups meant for others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import zmq
import zmq.asyncio

log = logging.getLogger(__name__)


class Wakeups(ABC):
    """One process's end of the wake-up channel. Call :meth:`start` on the running loop."""

    def __init__(self) -> None:
        self.on_queued: Callable[[], None] | None = None
        self.on_stop: Callable[[], None] | None = None
        self.on_progress: Callable[[str], None] | None = None

    @abstractmethod
    async def start(self) -> None:
        """Connect; afterwards the callbacks are called on the loop as wake-ups arrive."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def queued(self) -> None:
        """Tell the devices that a request was queued (after its transaction committed)."""

    @abstractmethod
    def stop_requested(self) -> None:
        """Tell the devices that a client asked to stop a running request (after it was stored)."""

    @abstractmethod
    def progressed(self, request_ids: Iterable[str]) -> None:
        """Tell the web processes these requests have new messages or a new status."""


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
            if self.role == "device":
                callback = self.on_stop if frames[0] == b"s" else self.on_queued
                if callback is not None:
                    callback()
            elif self.on_progress is not None:
                for request_id in frames[0].decode("ascii", "replace").split():
                    self.on_progress(request_id)

    def _post(self, payload: bytes) -> None:
        if self._send is None:
            return
        with contextlib.suppress(zmq.Again, zmq.ZMQError):  # no peer yet: the poll covers it
            self._send.send(payload, flags=zmq.NOBLOCK)

    def queued(self) -> None:
        if self.role == "web":
            self._post(b"q")

    def stop_requested(self) -> None:
        if self.role == "web":
            self._post(b"s")

    def progressed(self, request_ids: Iterable[str]) -> None:
        if self.role == "device":
            ids = " ".join(request_ids)
            if ids:
                self._post(ids.encode("ascii"))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets.clear()
