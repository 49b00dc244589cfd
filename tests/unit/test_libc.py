"""The process helpers of ``device.sandbox.libc`` that the template kills its kernels with."""

from __future__ import annotations

import os
import signal
import time

from device.sandbox.libc import kill_group


def _fork(body_setsid: bool) -> tuple[int, int]:
    """A child that sleeps, in a session of its own or still in ours; with setsid it also
    starts a grandchild in its group. Returns the child's pid and a pipe end that reads the
    grandchild's pid (or nothing)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            if body_setsid:
                os.setsid()
                grandchild = os.fork()
                if grandchild == 0:
                    os.close(write_end)
                    time.sleep(60)
                    os._exit(0)
                os.write(write_end, str(grandchild).encode())
            os.close(write_end)
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _reaped_by_sigkill(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def test_a_kernel_that_has_not_made_its_group_yet_is_killed_all_the_same() -> None:
    # a ready kernel forked a moment before the template shuts down: killpg alone finds no group
    pid, read_end = _fork(body_setsid=False)
    os.close(read_end)
    kill_group(pid)
    assert _reaped_by_sigkill(pid)


def test_a_kernel_and_what_it_started_in_its_group_are_killed() -> None:
    pid, read_end = _fork(body_setsid=True)
    with os.fdopen(read_end) as pipe:
        grandchild = int(pipe.read())
    kill_group(pid)
    assert _reaped_by_sigkill(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(grandchild):
        time.sleep(0.01)
    assert not _running(grandchild)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
