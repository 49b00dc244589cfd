"""The kernel launcher: what the device needs of a pool of kernels, and of one kernel.

:class:`device.device.Device` runs every request on a :class:`RunningKernel` it gets from a
:class:`KernelLauncher`. The real ones are :class:`device.pool.KernelPool` and its
:class:`device.pool.Kernel` (a template process forking sandboxed kernels, one ZeroMQ socket
each); :class:`device.scripted.ScriptedLauncher` replays scripted kernel messages in the same
process, so the device's promises are tested without starting a process (as huey's
``MemoryHuey`` and rq's ``SimpleWorker`` do for their workers).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class RunningKernel(ABC):
    """One kernel, ready for one request, from the device's side.

    Whatever :meth:`receive` returns came from this kernel and no other (the device attributes
    messages by the kernel, never by what a message says about itself)."""

    #: the kernel's working folder: the device sweeps the files a cell wrote from here
    workdir: Path
    #: the unprivileged uid it runs as, or None (not root)
    uid: int | None
    #: resolves to the kernel's raw wait status once it has exited and everything it started is
    #: gone; -1 when it was lost with its template (or never forked)
    exited: asyncio.Future[int]

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @abstractmethod
    async def send(self, msg: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
        """Send the kernel a message (the ``execute_request``, the uploads as buffers). May never
        complete when the kernel died: the device races it with :attr:`exited`."""

    @abstractmethod
    async def receive(self) -> list[tuple[dict[str, Any], int]]:
        """Wait for the kernel's next message; return it with every other one already waiting,
        each with its size in bytes on the wire. Each message's parts hold only JSON values,
        nested at most ``protocol.MAX_NESTING`` deep. Raises ``ValueError``, whose words say
        why, for a message that is not signed with the kernel's key, is not made of objects or
        is nested too deep: nothing it says after that can be believed."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL the kernel and what it started; :attr:`exited` resolves once all is gone."""

    @abstractmethod
    def interrupt(self) -> None:
        """SIGINT the kernel's process group (a Jupyter client's interrupt): a kernel that takes
        interrupts raises ``KeyboardInterrupt`` in the running cell, and its subprocesses stop."""

    @abstractmethod
    def kill_leftovers(self) -> None:
        """After the kernel exited: kill what it left running."""

    @abstractmethod
    def cpu_seconds(self) -> float | None:
        """CPU seconds the kernel has used so far (user and system, its own and its reaped
        children's), read from outside it: a cell cannot make it smaller. Once it exited, what
        its reaping measured; ``None`` when neither can be read (it was lost with its template)."""


class KernelLauncher(ABC):
    """Hands out ready kernels, one per request, and takes them back."""

    @abstractmethod
    async def acquire(self) -> RunningKernel:
        """A ready kernel, waiting until there is one. Cancelling the wait takes none."""

    @abstractmethod
    def release(self, kernel: RunningKernel) -> None:
        """The device is done with ``kernel`` (it was killed if it was still alive): free what
        it holds. Called exactly once per kernel :meth:`acquire` gave out."""

    def kept(self, kernel: RunningKernel) -> None:
        """The device keeps ``kernel`` beyond its request, as a session (it is released
        when the session ends): a launcher that keeps kernels ready starts its replacement now, so
        sessions never take ready kernels from the cells waiting for them."""

    def ready_count(self) -> int:
        """Kernels started ahead and waiting for a request (0 for a launcher that starts none
        ahead): the ``ready`` kernels of the device's metrics."""
        return 0

    def oom_kills(self, kernel: RunningKernel) -> int:
        """How many processes the memory limit of ``kernel``'s control group has killed so far
        (0 where there are no control groups): the device compares the count before and after a
        cell to tell a memory kill from any other SIGKILL."""
        return 0
