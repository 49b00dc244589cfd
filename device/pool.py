"""The kernel pool: the device's handle on its template process and the kernels it forks.

It keeps ``ready`` kernels forked, sandboxed and connected ahead of time, so a request only
waits for a message round trip, not for a fork. Every kernel gets its own ZeroMQ socket and
its own HMAC key: whatever arrives on that socket is that kernel's, and nothing else can sign
as it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from device import control
from device.base import KernelLauncher, RunningKernel
from device.cgroup import KernelCgroups
from device.control import KernelSpec
from device.frames import KernelFrames
from device.sandbox.libc import become_subreaper, kill_children
from device.uids import KernelUids
from device.workspace import Workspace
from singlecell.errors import ConfigError, KernelUnavailable
from singlecell.limits import output_backstop

log = logging.getLogger(__name__)

TEMPLATE_START_TIMEOUT = 60.0  # importing IPython, numpy and matplotlib on a cold disk
KERNEL_START_TIMEOUT = 10.0


class Kernel(RunningKernel):
    """One forked kernel, from the device's side."""

    def __init__(self, pool: KernelPool, slot: str) -> None:
        self.slot = slot
        self.pool = pool
        self.key = secrets.token_hex(32)
        self.frames = KernelFrames(self.key.encode("ascii"))
        self.uid = pool.uids.take() if pool.uids is not None else None
        self.uid_held = self.uid is not None  # until the template reports it gone
        try:
            self.workspace = Workspace(pool.work_root / slot, self.uid, pool.disk_mb, pool.own_mounts)
        except BaseException:
            self._free_uid()
            raise
        self.workdir = self.workspace.workdir
        self.endpoint = f"ipc://{self.workspace.socket}"
        self.socket = pool.context.socket(zmq.PAIR)
        self.socket.setsockopt(zmq.LINGER, 0)
        # a kernel that sends one message past this is cut off by ZeroMQ before the message
        # reaches memory here (its cell then ends at its time limit)
        self.socket.setsockopt(zmq.MAXMSGSIZE, pool.max_message)
        self.socket.bind(self.endpoint)
        # the same socket, synchronous: what is already waiting is read without a future each
        self._waiting: zmq.Socket[bytes] = zmq.Socket.shadow(self.socket.underlying)
        self.workspace.own_socket(self.uid)
        self.pid: int | None = None
        self.released = False  # given back to the pool (its uid comes back once it is gone)
        self.cpu_at_exit: float | None = None  # what the template's wait4 measured
        loop = asyncio.get_running_loop()
        self.forked: asyncio.Future[int] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        # its uid is free again only once it and everything it started are gone
        self.exited.add_done_callback(lambda _: self._free_uid())

    def _free_uid(self) -> None:
        if self.uid_held:  # only ever true with a uid from the pool's uids
            assert self.uid is not None and self.pool.uids is not None
            self.pool.uids.give_back(self.uid)
            self.uid_held = False
            self.pool.uid_returned.set()

    async def send(self, msg: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
        await self.socket.send_multipart([*self.frames.serialize(msg), *buffers])

    async def receive(self) -> list[tuple[dict[str, Any], int]]:
        batch = [await self.socket.recv_multipart()]
        while len(batch) < 256 and int(self._waiting.get(zmq.EVENTS)) & zmq.POLLIN:
            try:
                batch.append(self._waiting.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        return [(self.frames.deserialize(frames), sum(len(f) for f in frames)) for frames in batch]

    def kill(self) -> None:
        # its process group: the kernel and what it started in its session (the template
        # kills what left the group once the kernel is gone)
        if self.pid is not None and self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def interrupt(self) -> None:
        if self.pid is not None and self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGINT)

    def kill_leftovers(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def cpu_seconds(self) -> float | None:
        if self.exited.done() or self.pid is None:
            return self.cpu_at_exit
        return process_cpu_seconds(self.pid) if self.alive else self.cpu_at_exit

    def close(self) -> None:
        self.socket.close(linger=0)
        self.workspace.remove()


class KernelPool(KernelLauncher):
    """A kernel template process and the sandboxed kernels it forks, ``ready`` kept waiting."""

    def __init__(self, *, work_root: Path, ready: int, preload: Sequence[str],
                 layers: dict[str, dict[str, Any]], output_limit: int,
                 context: zmq.asyncio.Context | None = None, own_mounts: bool = False) -> None:
        self.work_root = work_root
        identity = layers.get("identity")
        # as root, every live kernel gets a uid of its own
        self.uids = KernelUids(int(identity["first_uid"]), int(identity["last_uid"]),
                               keep=int(identity.get("keep", 0))) \
            if identity is not None and os.geteuid() == 0 else None
        filesystem = layers.get("filesystem")
        self.disk_mb = int(filesystem.get("disk_mb", 0)) if filesystem is not None else 0
        self.own_mounts = own_mounts  # a mount namespace of the device's own: tmpfs homes are safe
        resources = layers.get("resources", {})
        self.cgroups: KernelCgroups | None = None
        self.cgroups_wanted = self.uids is not None and bool(resources.get("memory_mb") or resources.get("processes"))
        self.cgroup_limits = (int(resources.get("memory_mb", 0)) + self.disk_mb if resources.get("memory_mb") else 0,
                              int(resources.get("processes", 0)))
        # the template's control socket: ipc paths are capped near 107 bytes, so a short folder
        # (kernels' sockets live in their workspaces, which check the length themselves)
        self.socket_dir = Path(_short_tempdir("sc-"))
        self.ready_target = ready
        self.preload = list(preload)
        self.layers = layers
        self.output_limit = output_limit
        self.max_message = output_backstop(output_limit)  # no one message may pass the device's backstop
        self.context = context or zmq.asyncio.Context.instance()
        self.layer_report: list[tuple[str, bool, str]] = []
        self._ready: asyncio.Queue[Kernel] = asyncio.Queue()
        self._starting = 0
        self._by_slot: dict[str, Kernel] = {}
        self._by_pid: dict[int, Kernel] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._control: zmq.asyncio.Socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._template_ready: asyncio.Future[control.Ready] | None = None
        self._reader: asyncio.Task[Any] | None = None
        self._closing = False
        self._restarting = False
        self._failures = 0
        self.uid_returned = asyncio.Event()  # a kernel is gone and its uid free again

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        # if the template dies, what its kernels started comes up to us, to be killed
        become_subreaper()
        self.work_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.cgroups_wanted:
            self.cgroups, why = KernelCgroups.create(*self.cgroup_limits)
            log.log(logging.INFO if self.cgroups else logging.WARNING, "kernels' control groups: %s",
                    f"{why}: memory and processes counted per kernel tree" if self.cgroups else
                    f"off ({why}); memory and processes are limited per process and per uid only")
        await self._start_template()
        self.fill()

    async def _start_template(self) -> None:
        endpoint = f"ipc://{self.socket_dir}/template"
        self._control = self.context.socket(zmq.PAIR)
        self._control.setsockopt(zmq.LINGER, 0)
        self._control.bind(endpoint)
        self._template_ready = asyncio.get_running_loop().create_future()
        self._process = await asyncio.create_subprocess_exec(
            # -P: the launch folder must not be on its sys.path (the filesystem layer would show
            # it to cells)
            sys.executable, "-P", "-m", "device.template", endpoint, str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL, env=template_environment(),
        )
        self._reader = self._spawn(self._read_control(self._control))
        self._spawn(self._watch_template(self._process))
        await self._control.send(control.Configure(preload=self.preload, layers=self.layers).to_json())
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._template_ready), TEMPLATE_START_TIMEOUT)
        except TimeoutError:
            raise KernelUnavailable("the kernel template did not start within "
                                    f"{TEMPLATE_START_TIMEOUT:.0f} s") from None
        self.layer_report = list(ready.layers)
        log.info("kernel template %d ready", ready.pid)

    async def close(self) -> None:
        self._closing = True
        for kernel in list(self._by_slot.values()):
            kernel.kill()
        if self._control is not None and self._process is not None and self._process.returncode is None:
            with contextlib.suppress(zmq.ZMQError):
                await self._control.send(control.Exit().to_json())
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        for task in list(self._tasks):
            task.cancel()
        for kernel in list(self._by_slot.values()):
            kernel.close()
        self._by_slot.clear()
        if self.cgroups is not None:
            self.cgroups.close()
        if self.uids is not None:
            self.uids.close()
        if self._control is not None:
            self._control.close(linger=0)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    # -- kernels -------------------------------------------------------------------------

    def ready_count(self) -> int:
        return self._ready.qsize()

    async def acquire(self) -> Kernel:
        # its replacement is forked when it is released: forking now would take CPU from the
        # request that has just begun
        while True:
            self.fill()
            kernel = await self._ready.get()
            if kernel.alive:
                return kernel
            self.release(kernel)

    def release(self, kernel: RunningKernel) -> None:
        assert isinstance(kernel, Kernel)
        kernel.kill()
        kernel.released = True
        if kernel.pid is not None or kernel.exited.done():
            self._by_slot.pop(kernel.slot, None)
        # else the template's "forked" is still unread (the template runs in the idle class, so on
        # a busy host a kernel can finish its cell first): it stays known by slot until then
        if kernel.pid is not None and kernel.exited.done():
            self._by_pid.pop(kernel.pid, None)
        # else it stays known by pid until the template reports it gone: only then is its uid free
        kernel.close()
        self.fill()

    def kept(self, kernel: RunningKernel) -> None:
        self.fill()

    def fill(self) -> None:
        if self._restarting:
            return  # _watch_template fills once the new template is up
        while not self._closing and self._ready.qsize() + self._starting < self.ready_target:
            self._starting += 1
            self._spawn(self._start_kernel())

    async def _start_kernel(self) -> None:
        # every uid kept is some kernel's: wait for one to be gone rather than claim another (on
        # a loaded host kernels exit late, and uids claimed for that would be kept for good)
        while self.uids is not None and not self.uids.can_take():
            self.uid_returned.clear()
            await self.uid_returned.wait()
        try:
            kernel = Kernel(self, secrets.token_hex(6))
        except (KernelUnavailable, OSError, zmq.ZMQError) as exc:
            # no uid free yet, or no folder: try again soon, the pool must not stall
            await self._back_off("cannot prepare a kernel", exc)
            self._starting -= 1
            self.fill()
            return
        self._by_slot[kernel.slot] = kernel
        try:
            assert self._control is not None
            await self._control.send(KernelSpec(
                slot=kernel.slot, endpoint=kernel.endpoint, key=kernel.key, home=str(kernel.workspace.home),
                workdir=str(kernel.workdir), tmpdir=str(kernel.workspace.tmpdir), uid=kernel.uid,
                output_limit=self.output_limit,
                cgroups=tuple(self.cgroups.groups_for(kernel.uid)) if self.cgroups and kernel.uid is not None else (),
            ).to_json())
            hello: asyncio.Future[Any] = asyncio.ensure_future(kernel.receive())
            exited: asyncio.Future[Any] = kernel.exited
            done, _ = await asyncio.wait({hello, exited}, timeout=KERNEL_START_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            if hello not in done:
                hello.cancel()
                raise KernelUnavailable(f"kernel {kernel.slot} did not start")
            self._failures = 0
            self._ready.put_nowait(kernel)
        except (KernelUnavailable, ValueError, zmq.ZMQError) as exc:
            self.release(kernel)
            if self._closing:  # stopped by close(), not a failure
                return
            await self._back_off("a kernel failed to start", exc)
        finally:
            self._starting -= 1
        self.fill()

    async def _back_off(self, what: str, exc: BaseException) -> None:
        """Count a failure in a row and wait longer the more there are (at most 5 s)."""
        self._failures += 1
        log.warning("%s (%s); %d failures in a row", what, exc, self._failures)
        await asyncio.sleep(min(5.0, 0.05 * 2 ** min(self._failures, 7)))

    def oom_kills(self, kernel: RunningKernel) -> int:
        return self.cgroups.oom_kills(kernel.uid) if self.cgroups is not None and kernel.uid is not None else 0

    # -- the template's reports ---------------------------------------------------------

    async def _read_control(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            # recv_multipart, not recv_json: a cancelled recv_json logs a spurious error
            try:
                msg = control.to_device((await socket.recv_multipart())[0])
            except control.BadControlMessage as exc:
                log.error("the kernel template sent a bad control message (%s); ignored", exc)
                continue
            if isinstance(msg, control.Ready):
                assert self._template_ready is not None
                if not self._template_ready.done():
                    self._template_ready.set_result(msg)
            elif isinstance(msg, control.Forked):
                kernel = self._by_slot.get(msg.slot)
                if kernel is None:
                    continue
                kernel.pid = msg.pid
                self._by_pid[kernel.pid] = kernel
                kernel.forked.set_result(kernel.pid)
                if kernel.released:  # released before this was read: now its exit can be told
                    self._by_slot.pop(msg.slot, None)
                    kernel.kill()
            elif isinstance(msg, control.Exited):
                kernel = self._by_pid.pop(msg.pid, None)
                if kernel is not None and not kernel.exited.done():
                    kernel.cpu_at_exit = msg.cpu_ms / 1000
                    kernel.exited.set_result(msg.status)
            elif isinstance(msg, control.ForkFailed):
                kernel = self._by_slot.get(msg.slot)
                if kernel is not None and kernel.released:
                    self._by_slot.pop(msg.slot, None)
                if kernel is not None and not kernel.exited.done():
                    log.warning("fork failed: %s", msg.error)
                    kernel.exited.set_result(-1)
            else:
                log.error("the kernel template refused a control message: %s", msg.error)
                if self._template_ready is not None and not self._template_ready.done():
                    # refused while starting: the settings (--preload, say) cannot work, and a new
                    # device would fail the same way
                    self._template_ready.set_exception(ConfigError(
                        f"the kernel template could not start with these settings: {msg.error}"))

    async def _watch_template(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._closing:
            return
        if self._template_ready is not None and not self._template_ready.done():
            # it died while starting: a broken preload or install, not worth retrying
            self._template_ready.set_exception(KernelUnavailable(
                f"the kernel template exited with code {code} while starting; its error is above"))
            return
        log.error("the kernel template exited (%s); restarting it", code)
        self._restarting = True
        # its kernels died with it (parent-death signal); what they started came up to us (a
        # subreaper): kill it all first, then every waiter learns, and their uids are free again
        dead = {*self._by_slot.values(), *self._by_pid.values()}
        self._by_pid.clear()
        strays = kill_children(keep=set())
        if strays:
            log.warning("killed %d processes the dead template's kernels left behind", strays)
        for kernel in dead:
            if not kernel.exited.done():
                kernel.exited.set_result(-1)
        if self._reader is not None:
            self._reader.cancel()
        if self._control is not None:
            self._control.close(linger=0)
        await asyncio.sleep(0.5)
        if not self._closing:
            await self._start_template()
            self._restarting = False
            self.fill()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._closing:
            log.error("kernel pool task failed", exc_info=task.exception())


#: what of the device's environment the template (and so every kernel) gets: nothing else, so
#: no setting (SINGLECELL_DB and its password), no key and no secret of the operator's reaches a
#: cell, not even through /proc/self/environ (a fork shows the template's starting environment)
TEMPLATE_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONHASHSEED",
                        "MPLBACKEND", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """A live process's CPU seconds, its own and its reaped children's (``/proc/PID/stat``:
    utime, stime, cutime, cstime); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / _TICKS


def template_environment() -> dict[str, str]:
    env = {name: os.environ[name] for name in TEMPLATE_ENVIRONMENT if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def _short_tempdir(prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None)
