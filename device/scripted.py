"""Kernels that replay a script, in the device's own process: the device's test seam.

:class:`ScriptedLauncher` hands the device one :class:`ScriptedKernel` per request, each playing
the next :class:`Script`: the messages a kernel would send once it has the request, pauses, a
file written, a death, a forged signature, or silence. So everything the device promises (one
terminal status, idle last, seqs rising, forged messages dropped, each limit named, stops,
leases) is tested in milliseconds, with a real store and filestore and no process started, as
rq's ``SimpleWorker`` and huey's ``MemoryHuey`` let a worker's logic be tested without forking.

    launcher = ScriptedLauncher([Script.cell(Say.stream("stdout", "hi\\n"))])
    device = Device(config, store, files, launcher)
    await device.run(burst=True)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.base import KernelLauncher, RunningKernel
from device.frames import NOT_SIGNED
from singlecell import protocol


@dataclass(frozen=True)
class Say:
    """The kernel sends one message (any type, even one it may not send)."""

    msg_type: str
    content: dict[str, Any]
    parent_header: dict[str, Any] = field(default_factory=dict)  # what a forging kernel claims
    size: int = 0  # its size on the wire; 0: about its JSON's

    @classmethod
    def stream(cls, name: str, text: str) -> Say:
        return cls("stream", {"name": name, "text": text})

    @classmethod
    def status(cls, state: str) -> Say:
        return cls("status", {"execution_state": state})

    @classmethod
    def error(cls, ename: str, evalue: str) -> Say:
        return cls("error", {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]})

    @classmethod
    def reply(cls, status: str = "ok") -> Say:
        return cls("execute_reply", {"status": status, "execution_count": 1})

    def message(self) -> dict[str, Any]:
        return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": self.msg_type, "session": "scripted",
                           "username": "kernel", "version": "5.3", "date": ""},
                "parent_header": dict(self.parent_header), "metadata": {}, "content": dict(self.content),
                "msg_type": self.msg_type}


@dataclass(frozen=True)
class Pause:
    """The kernel is busy for this long (a cell computing)."""

    seconds: float


@dataclass(frozen=True)
class Write:
    """The cell writes a file into its folder."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Die:
    """The kernel exits with this raw wait status (``Die.signal(9)``, ``Die.code(71)``);
    ``oom``: killed by its control group's memory limit (the OOM killer)."""

    status: int
    oom: bool = False

    @classmethod
    def signal(cls, number: int) -> Die:
        return cls(number)  # a raw wait status of a death by a signal is the signal's number

    @classmethod
    def code(cls, code: int) -> Die:
        return cls(code << 8)

    @classmethod
    def out_of_memory(cls) -> Die:
        return cls(signal.SIGKILL, oom=True)


@dataclass(frozen=True)
class Forge:
    """A message not signed with the kernel's key: ``receive`` raises ``ValueError``."""


@dataclass(frozen=True)
class Hang:
    """The kernel says nothing more and never exits on its own."""


@dataclass(frozen=True)
class Await:
    """The kernel waits until the device sends it a message of ``msg_type`` (a session's input),
    or, for ``"SIGINT"``, interrupts it."""

    msg_type: str


Step = Say | Pause | Write | Die | Forge | Hang | Await


@dataclass
class Script:
    """What one kernel does once it has its request; after the last step it exits with 0.
    ``cpu``: the CPU seconds it says it used (:meth:`RunningKernel.cpu_seconds`)."""

    steps: list[Step]
    cpu: float | None = None

    @classmethod
    def cell(cls, *output: Step, status: str = "ok") -> Script:
        """A cell as a kernel runs it: busy, execute_input, ``output``, execute_reply, idle."""
        return cls([Say.status("busy"), Say("execute_input", {"code": "", "execution_count": 1}), *output,
                    Say.reply(status), Say.status("idle")])


class ScriptedKernel(RunningKernel):
    """One kernel replaying :class:`Script` once the device sent it a request."""

    def __init__(self, launcher: ScriptedLauncher, script: Script) -> None:
        self.launcher = launcher
        self.script = script
        self.workdir = Path(tempfile.mkdtemp(prefix="scripted-kernel-", dir=launcher.folder))
        self.uid = None
        self.exited = asyncio.get_running_loop().create_future()
        self.received: list[tuple[dict[str, Any], list[bytes]]] = []  # what the device sent
        self.killed = False
        self.interrupts = 0  # how many times the device interrupted it
        self._awaited = 1  # the messages received that an Await has looked at (the request: the first)
        self._news = asyncio.Event()  # set when the device sends or interrupts
        self._interrupts_taken = 0  # the interrupts an Await has taken
        self.oom_kills = 0
        # as a ZeroMQ socket does: a message handed to a waiting receive is gone from the socket,
        # even if that receive is then cancelled before it returns
        self._outbox: deque[tuple[dict[str, Any], int] | Forge] = deque()
        self._waiter: asyncio.Future[tuple[dict[str, Any], int] | Forge] | None = None
        self._player: asyncio.Task[None] | None = None

    async def send(self, msg: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
        self.received.append((msg, list(buffers)))
        self._news.set()
        if self._player is None:
            self._player = asyncio.ensure_future(self._play())

    async def _play(self) -> None:
        for step in self.script.steps:
            if isinstance(step, Say):
                msg = step.message()
                self._deliver((msg, step.size or _wire_size(msg)))
                await asyncio.sleep(0)
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Write):
                path = self.workdir / step.name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(step.data)
            elif isinstance(step, Die):
                self.oom_kills += step.oom
                self._exit(step.status)
                return
            elif isinstance(step, Forge):
                self._deliver(step)
            elif isinstance(step, Await):
                await self._await(step.msg_type)
            else:  # Hang
                return
        self._exit(0)

    def _deliver(self, item: tuple[dict[str, Any], int] | Forge) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(item)
            self._waiter = None
        else:
            self._outbox.append(item)

    async def receive(self) -> list[tuple[dict[str, Any], int]]:
        if self._outbox:
            first = self._outbox.popleft()
        else:
            self._waiter = asyncio.get_running_loop().create_future()
            first = await self._waiter
        batch = [first]
        while self._outbox:
            batch.append(self._outbox.popleft())
        if any(isinstance(item, Forge) for item in batch):
            raise ValueError(NOT_SIGNED)
        messages = [item for item in batch if not isinstance(item, Forge)]
        for msg, _ in messages:  # as the wire's reader does (device.frames): JSON values, not too deep
            for key in ("header", "parent_header", "metadata", "content"):
                protocol.json_safe(msg.get(key, {}))
        return messages

    def kill(self) -> None:
        if self.alive:
            self.killed = True
            self._exit(signal.SIGKILL)

    def interrupt(self) -> None:
        self.interrupts += 1
        self._news.set()

    async def _await(self, msg_type: str) -> None:
        while True:
            if msg_type == "SIGINT" and self.interrupts > self._interrupts_taken:
                self._interrupts_taken += 1
                return
            for index in range(self._awaited, len(self.received)):
                if self.received[index][0].get("msg_type") == msg_type:
                    self._awaited = index + 1
                    return
            self._news.clear()
            await self._news.wait()

    def kill_leftovers(self) -> None:
        pass  # a scripted kernel starts nothing

    def cpu_seconds(self) -> float | None:
        return self.script.cpu

    def _exit(self, status: int) -> None:
        if self._player is not None and self._player is not asyncio.current_task():
            self._player.cancel()
        if not self.exited.done():
            self.exited.set_result(status)


def _wire_size(msg: dict[str, Any]) -> int:
    try:
        return len(json.dumps(msg))
    except (RecursionError, ValueError, TypeError):  # a message no kernel could have serialised either
        return 1


class ScriptedLauncher(KernelLauncher):
    """Gives out a :class:`ScriptedKernel` per request, playing ``scripts`` in turn; once they
    run out, every further kernel plays ``default``."""

    def __init__(self, scripts: Iterable[Script] = (), default: Script | None = None,
                 folder: str | None = None) -> None:
        self.scripts = deque(scripts)
        self.default = default or Script.cell()
        self.folder = folder
        self.given: list[ScriptedKernel] = []
        self.released: list[ScriptedKernel] = []

    async def acquire(self) -> ScriptedKernel:
        kernel = ScriptedKernel(self, self.scripts.popleft() if self.scripts else self.default)
        self.given.append(kernel)
        return kernel

    def release(self, kernel: RunningKernel) -> None:
        assert isinstance(kernel, ScriptedKernel)
        kernel.kill()
        self.released.append(kernel)
        shutil.rmtree(kernel.workdir, ignore_errors=True)

    def oom_kills(self, kernel: RunningKernel) -> int:
        assert isinstance(kernel, ScriptedKernel)
        return kernel.oom_kills
