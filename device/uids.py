"""Kernel uids: the unprivileged uids of ``--kernel-uids``, one per live kernel, on the whole host.

Every device on a host, and every standalone Jupyter kernel, hands out uids of a range; several
of them may share a range (the default one, say) and start at the same moment. A uid shared by
two tenants' kernels would let one signal, trace or read the other, so a uid is *claimed* before
it is used: an exclusive ``flock`` on a lock file of its own (:data:`LOCK_DIR`/``<uid>``),
taken without waiting, and kept until the claimer exits (the kernel frees its locks then, even
after a SIGKILL). A uid some process still runs as (a kernel of a claimer that just died) is not
claimed. A claimer reuses the uids it holds, most recently freed first, so a few uids do all the
work and keep their control groups and network namespaces; and it holds at most ``keep`` of them
(``--uid-cache``): when kernels exit more slowly than new ones are wanted (a loaded host), a new
kernel waits for an old one to be gone rather than claim another uid, so what each uid keeps on
the host is bounded however long the device runs.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
from pathlib import Path

from device.sandbox.libc import processes_by_uid
from singlecell.errors import KernelUnavailable

#: where the uid locks live: a folder of root's on a tmpfs, never shown to kernels (the
#: filesystem layer hides /run)
LOCK_DIR = Path("/run/singlecell/kernel-uids")


class KernelUids:
    """The uids of one range, claimed for this process as it needs them.

    :meth:`take` gives a uid no live kernel on this host has; :meth:`give_back` returns it once
    its kernel and everything it started are gone. ``from_top`` claims from the end of the range
    (the standalone Jupyter kernel does, so that it rarely meets a device, which claims from the
    start). ``keep`` bounds the uids claimed at once (0: the whole range); :meth:`can_take` says
    whether :meth:`take` would find one without claiming past it."""

    def __init__(self, first: int, last: int, lock_dir: Path = LOCK_DIR, from_top: bool = False,
                 keep: int = 0) -> None:
        self.first, self.last = first, last
        self.keep = keep
        self.lock_dir = lock_dir
        self.free: collections.deque[int] = collections.deque()  # claimed, no kernel has it now
        self.held: dict[int, int] = {}  # uid → the descriptor holding its lock
        self._order = range(last, first - 1, -1) if from_top else range(first, last + 1)
        self._next = 0  # index into _order of the next uid to try to claim

    def take(self) -> int:
        """A uid for a new kernel. Raises :class:`KernelUnavailable` when every uid of the range
        is in use on this host."""
        if self.free:
            return self.free.popleft()
        if not self.can_take():
            raise KernelUnavailable(f"all {self.keep} kernel uids this process keeps (--uid-cache) are in use")
        return self._claim()

    def can_take(self) -> bool:
        return bool(self.free) or not self.keep or len(self.held) < self.keep

    def give_back(self, uid: int) -> None:
        # to the front: the few uids in use keep their control groups and network namespaces
        # (safe: a uid comes back only once its kernel and everything it started are gone)
        self.free.appendleft(uid)

    def close(self) -> None:
        """Give up every claim (the process's exit does the same)."""
        for fd in self.held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.held.clear()
        self.free.clear()

    def _claim(self) -> int:
        self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        running: dict[int, str] | None = None
        for _ in range(len(self._order)):
            uid = self._order[self._next]
            self._next = (self._next + 1) % len(self._order)
            if uid in self.held:
                continue
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another device's, or a Jupyter kernel's
                os.close(fd)
                continue
            running = processes_by_uid() if running is None else running  # one look a claim
            if uid in running:  # a kernel of a claimer that just died, still going
                os.close(fd)
                continue
            self.held[uid] = fd
            return uid
        raise KernelUnavailable(f"every kernel uid of {self.first}–{self.last} is in use on this host (by "
                                "this device's kernels or another's); widen --kernel-uids")
