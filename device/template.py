"""The kernel template: a warm process that imports IPython and the preload modules once and
forks one kernel per request.

It is started by the device (``python -P -m device.template ENDPOINT PARENT_PID``) and speaks
the control messages of :mod:`device.control` with it over a ZeroMQ PAIR socket. A message it
cannot take is answered (``fork_failed`` or ``refused``), never a reason to exit: the template
holds every ready kernel.

It is single-threaded and never runs user code itself, so every fork copies a clean shell.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import traceback
import uuid
from typing import Any, NoReturn

import zmq
from IPython.core.interactiveshell import InteractiveShell

from device import comms, control
from device.confinement import ConfinementFailed, confine
from device.control import BadControlMessage, KernelSpec
from device.frames import Signer
from device.kernel import (
    CHILD_WARM_UP_CELLS,
    EXIT_KERNEL_FAILED,
    Channel,
    can_return_from_background,
    exit_after_delivery,
    make_shell,
    set_background,
    warm_up,
)
from device.sandbox.base import KernelPlace, SandboxLayer
from device.sandbox.libc import become_subreaper, kill_children, kill_group, set_parent_death_signal, set_process_name
from device.sandbox.registry import build_layers
from singlecell.errors import SingleCellError


def _close_fds_above_stdio(keep: int | None = None) -> None:
    """Close every descriptor but stdio and ``keep``."""
    if keep is None:
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        return
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


class Template:
    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context(1)
        self.control = self.context.socket(zmq.PAIR)
        self.control.setsockopt(zmq.LINGER, 1000)
        self.control.connect(endpoint)
        self.kernels: set[int] = set()
        self.layers: list[SandboxLayer] = []
        self.shell: Any = None
        self.terminating = False

    def _terminate(self, *_: Any) -> None:
        self.terminating = True

    def send(self, message: control.ToDevice) -> None:
        self.control.send(message.to_json())

    def configure(self, msg: control.Configure) -> None:
        if self.shell is not None:
            raise BadControlMessage("the template is configured already")
        self.shell = make_shell(msg.preload)
        layers = build_layers(msg.layers)
        statuses = [layer.check() for layer in layers]
        # as the layer contract says: one that cannot work here is reported, not applied
        self.layers = [layer for layer, status in zip(layers, statuses, strict=True) if status.active]
        self.send(control.Ready(pid=os.getpid(), layers=[(s.name, s.active, s.detail) for s in statuses]))

    def fork(self, spec: KernelSpec) -> None:
        if self.shell is None:
            raise BadControlMessage("a fork before the template was configured", spec.slot)
        try:
            place = spec.place
            for layer in self.layers:
                place = layer.before_fork(place)
            pid = os.fork()
        except (OSError, SingleCellError) as exc:
            self.send(control.ForkFailed(slot=spec.slot, error=str(exc)))
            return
        if pid == 0:
            run_forked_kernel(self.shell, spec, self.layers, place)  # never returns
        self.kernels.add(pid)
        self.send(control.Forked(slot=spec.slot, pid=pid))

    def handle(self, raw: bytes) -> bool:
        """Carry out one message from the device; False once told to exit. A message that
        cannot be carried out is answered, saying why, and the template goes on."""
        try:
            msg = control.to_template(raw)
            if isinstance(msg, control.Exit):
                return False
            if isinstance(msg, control.Configure):
                self.configure(msg)
            else:
                self.fork(msg)
        except Exception as exc:  # a bad message, or a bug: either way not worth every ready kernel
            slot = exc.slot if isinstance(exc, BadControlMessage) else None
            error = str(exc) if isinstance(exc, BadControlMessage) else f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(OSError):
                os.write(2, f"kernel template: refused a control message: {error}\n".encode())
            self.send(control.ForkFailed(slot=slot, error=error) if slot is not None else control.Refused(error=error))
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.kernels:
                self.kernels.discard(pid)
                self.kill_orphans()  # first: "exited" promises the device that all of it is gone
                cpu_ms = round((usage.ru_utime + usage.ru_stime) * 1000)
                self.send(control.Exited(pid=pid, status=status, cpu_ms=cpu_ms))
            # anything else was an orphan of a finished kernel, killed by kill_orphans

    def kill_orphans(self) -> None:
        """Kill what a finished kernel left running, however it detached (setsid, double fork).

        Every kernel is a child subreaper, so while it lives its orphans stay in its tree; when
        it dies they come up to us (a subreaper too). So any child of ours that is not a kernel
        belongs to a finished cell. Their own children come up in turn, and go the same way."""
        kill_children(keep=self.kernels)

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # SIGTERM, also our parent-death signal: if the device dies, even by SIGKILL, we live
        # long enough to take every kernel and everything they started with us
        signal.signal(signal.SIGTERM, self._terminate)
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        while True:
            events = dict(poller.poll())
            if wake_r in events:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            while self.control.poll(0):
                if not self.handle(self.control.recv()):
                    self.shutdown()
                    return
            if self.terminating:
                self.shutdown()
                return

    def shutdown(self) -> None:
        """Kill every kernel with its process group, then whatever they detached."""
        for pid in list(self.kernels):
            kill_group(pid)
        for pid in list(self.kernels):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.kernels.clear()
        self.kill_orphans()


def run_forked_kernel(shell: InteractiveShell, spec: KernelSpec, layers: list[SandboxLayer],
                      place: KernelPlace) -> NoReturn:
    """The whole life of a one-shot kernel, in the child the template just forked (``place``:
    as the layers prepared it before the fork): confine itself, say it is ready, run the one
    request it is sent, exit."""
    code = 0
    log_fd = 2
    try:
        os.setsid()  # its own session and process group: the device kills the group
        set_process_name(b"sc-kernel")
        set_parent_death_signal()
        become_subreaper()  # what the cell detaches stays ours, and so the template's after us
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # nothing of the template's (its control socket) stays reachable; its uid's network
        # namespace, this process's own copy, stays until the network layer has entered it
        _close_fds_above_stdio(keep=place.netns_fd)
        log_fd = os.dup(2)  # the device's log, for our own failures; closed before user code runs
        os.set_inheritable(log_fd, False)
        signer = Signer(spec.key_bytes, uuid.uuid4().hex)

        def before_isolate() -> None:
            # Take the copy-on-write faults of the common path (~800 pages) now, while the
            # request is not yet waiting, and before ZeroMQ and the pump start threads: in a
            # process with threads on other CPUs every such fault also costs a TLB shoot-down.
            warm_up(shell, CHILD_WARM_UP_CELLS)
            signer.deserialize(signer.serialize("status", {}, {}))

        def open_channel(seen: KernelSpec) -> Channel:
            set_background(False)  # forked in the idle class; ZeroMQ's threads inherit this
            return Channel(seen, signer)

        try:
            kernel = confine(shell, spec, layers, place, open_channel=open_channel, stdin=io.StringIO(""),
                             before_isolate=before_isolate)
        except ConfinementFailed as exc:
            with contextlib.suppress(OSError):
                os.write(log_fd, f"kernel {spec.slot}: {exc.message}\n".encode())
            os._exit(exc.exit_code)
        kernel.channel.send("status", {"execution_state": "starting"})  # "ready", to the device
        request = kernel.channel.receive()
        # the server's log is no place for a cell to write into: from here on our own failures
        # go to the cell's stderr
        os.close(log_fd)
        log_fd = 2
        # for the cell's code; replacing a module function is the point here
        os._exit = exit_after_delivery(kernel, os.getpid(), os._exit)  # type: ignore[assignment]
        shell.kernel = kernel  # type: ignore[attr-defined]
        metadata = request.get("metadata", {})
        if metadata.get("singlecell_kernel") is True:  # a Jupyter client's kernel, or a page's linked cells
            kernel.channel.parent = request["header"]
            sandbox = ", ".join(layer.name for layer in layers) or "no layers"
            if request.get("content", {}).get("code"):
                kernel.run(request)  # the first linked cell, then the kernel stays
                kernel.start_jupyter(sandbox, ready=False)
            else:
                kernel.write_inputs(request)  # a restart carries the files of the kernel before
                kernel.start_jupyter(sandbox)
            kernel.serve_session()
        kernel.run(request)
        if metadata.get("singlecell_session") is True and comms.open_comms():
            kernel.serve_session()  # its widgets stay live until the device ends the session
        set_background(True)  # the answer is out: tearing down can wait for a free core
        kernel.channel.close()
    except BaseException:
        code = EXIT_KERNEL_FAILED
        with contextlib.suppress(Exception):  # fd 2 may be gone: best effort, for the device's log
            os.write(log_fd, f"kernel {spec.slot} failed:\n{traceback.format_exc()}".encode())
    finally:
        os._exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    set_parent_death_signal(signal.SIGTERM)  # handled: see Template.serve
    set_process_name(b"sc-template")
    if can_return_from_background():
        set_background(True)  # forking for the ready pool is background work
    if len(argv) != 2:
        sys.exit("usage: python -m device.template CONTROL_ENDPOINT PARENT_PID")
    if os.getppid() != int(argv[1]):
        sys.exit("device.template: the device exited before the template started")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the device's to handle
    become_subreaper()  # orphans of finished kernels come to us, to be killed and reaped
    Template(argv[0]).serve()


if __name__ == "__main__":
    main()
