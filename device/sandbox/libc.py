"""The few Linux calls the layers need that :mod:`os` lacks (mount, umount2), and a probe that
tries a confinement in a throw-away child process."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import signal
import traceback
from collections.abc import Callable

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _checked(result: int, what: str) -> None:
    """Raise OSError, naming ``what``, if a libc call returned non-zero."""
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises OSError with the errno and the target."""
    _checked(_lib().mount(_encode(source), _encode(target), _encode(fstype), ctypes.c_ulong(flags), _encode(data)),
             f"mount {fstype or 'bind'} on {target}")


CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWTIME = 0x00000080


_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # glibc has no wrapper for it


def unshare(flags: int) -> None:
    """unshare(2) (``os.unshare`` arrived only in Python 3.12)."""
    _checked(_lib().unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _checked(_lib().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown system call number on {platform.machine()}")
    _checked(_lib().syscall(number, new_root.encode(), put_old.encode()), f"pivot_root {new_root}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _checked(_lib().umount2(target.encode(), flags), f"umount {target}")


PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38


def set_process_name(name: bytes) -> None:
    """What ``ps`` and ``top`` show for the process: kernels are told apart from the server."""
    _lib().prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def set_no_new_privs() -> None:
    """No program this process runs (a set-uid one, say) gains privileges it does not have."""
    _checked(_lib().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def syscall(number: int, *args: object) -> tuple[int, int]:
    """A raw system call: (its result, errno)."""
    return _lib().syscall(number, *args), ctypes.get_errno()


def set_dumpable(dumpable: bool) -> None:
    _lib().prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)


def set_parent_death_signal(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Die with the parent: a kernel never outlives its template, nor a template its device.
    The kernel clears this setting when it changes uid, so the identity layer sets it again
    and passes ``parent``: if that parent is already gone, we exit now."""
    _lib().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants are reparented to us instead of init, so none escapes our tree."""
    _lib().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def children() -> list[int]:
    """Our child processes (their own children are not included)."""
    pid = os.getpid()
    try:
        with open(f"/proc/self/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:  # no CONFIG_PROC_CHILDREN: process groups are all we have
        return []


def processes_by_uid() -> dict[int, str]:
    """The uid of every process we can see, each with one of its pids."""
    users: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                users.setdefault(entry.stat().st_uid, entry.name)
    return users


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group a kernel leads, and the kernel itself: a kernel forked a moment
    ago may not have called setsid yet, and then ``killpg`` alone finds no such group. Only
    for the kernel's parent, before it reaps it: then ``pid`` cannot have been reused."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, sig)


def kill_children(keep: set[int]) -> int:
    """SIGKILL and reap every child of ours not in ``keep``, and theirs as they come up to us
    (a subreaper); how many were killed."""
    killed = 0
    for _ in range(100):
        strays = [pid for pid in children() if pid not in keep]
        if not strays:
            break
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        killed += len(strays)
    return killed


def probe(attempt: Callable[[], None]) -> str | None:
    """Run ``attempt`` in a forked child; None if it returned, else why it failed (the
    exception's last line). The caller is untouched. Only for single-threaded callers."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_end)
            attempt()
        except BaseException as exc:  # every failure is the answer
            code = 1
            with contextlib.suppress(OSError):
                os.write(write_end, (traceback.format_exception_only(exc)[-1].strip() or repr(exc)).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        message = fh.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    return message or f"the probe process ended with status {status}"
