"""The server's sandboxed IPython kernel as a standard, persistent Jupyter kernel.

``python -m device.jupyter_kernel -f CONNECTION_FILE`` is what the ``singlecell-python``
kernelspec (:mod:`singlecell.kernelspec`) starts, so ``jupyter console --kernel
singlecell-python``, a notebook or any other Jupyter client can use it. Unlike the server's
kernels it runs many cells, which share one namespace, until it is told to shut down.

It speaks the Jupyter messaging protocol 5.3 on the five standard channels of the connection
file — shell, control and stdin (ROUTER), iopub (PUB), heartbeat (REP, echoed by a thread of its
own) — through :class:`jupyter_client.session.Session`, signed with the file's key. Cells run on
the machinery of :mod:`device.kernel`: the shell from :func:`~device.kernel.make_shell`, and a
:class:`~device.kernel.Kernel` whose streams, displays, results and errors go to iopub with the
current request as their parent. Replies go back on the socket the request came from. Control
requests (``shutdown_request``, ``interrupt_request``, ``kernel_info_request``) are answered by a
thread of their own, so they are answered while a cell runs.

Before it serves, the kernel confines itself with the same sandbox layers as the server's kernels
(:func:`device.sandbox.registry.build_layers` on the settings of :func:`singlecell.config.load`,
that is the ``SINGLECELL_*`` environment and defaults), in fresh private working and temporary
folders that are removed when it exits. The limits hold for the kernel's whole life, not for each
cell: a CPU limit (``SINGLECELL_CPU_LIMIT``, 0 for none) counts every cell of the session, and
the memory limit is what all cells together may add to the kernel's own size. The output limit
is per cell.

There is no standard input: ``input()`` raises an error that says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import zmq
from IPython.core.interactiveshell import InteractiveShell
from jupyter_client.session import Session

from device.confinement import ConfinementFailed, confine
from device.control import KernelSpec
from device.interrupts import Interrupts
from device.kernel import (
    EXIT_SANDBOX_FAILED,
    Channel,
    Kernel,
    OutputBudget,
    make_shell,
)
from device.replies import ANSWERED, Replies
from device.sandbox.base import KernelPlace, LayerStatus, SandboxLayer
from device.sandbox.identity import Identity
from device.sandbox.libc import set_process_name
from device.sandbox.registry import build_layers, layer_settings, report, require
from device.uids import KernelUids
from device.workspace import Workspace, enter_private_mounts
from singlecell import config as settings
from singlecell.errors import KernelUnavailable, SandboxError, SingleCellError

EXIT_CONFIG_FAILED = 2

log = logging.getLogger("singlecell.jupyter_kernel")

Handler = Callable[["zmq.Socket[bytes]", list[bytes], dict[str, Any]], None]


@dataclass(frozen=True)
class ConnectionInfo:
    """Where the five channels listen and how messages are signed: the connection file."""

    transport: str
    ip: str
    shell_port: int
    iopub_port: int
    stdin_port: int
    control_port: int
    hb_port: int
    key: bytes
    signature_scheme: str

    @classmethod
    def read(cls, path: str) -> ConnectionInfo:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
        transport, ip = str(info.get("transport", "tcp")), str(info.get("ip", "127.0.0.1"))
        return cls(
            transport=transport,
            ip=ip if transport != "ipc" else os.path.abspath(ip),  # the kernel changes its folder
            shell_port=int(info["shell_port"]),
            iopub_port=int(info["iopub_port"]),
            stdin_port=int(info["stdin_port"]),
            control_port=int(info["control_port"]),
            hb_port=int(info["hb_port"]),
            key=str(info.get("key", "")).encode("ascii"),
            signature_scheme=str(info.get("signature_scheme", "hmac-sha256")),
        )

    def port(self, channel: str) -> int:
        port: int = getattr(self, f"{channel}_port")
        return port

    def url(self, port: int) -> str:
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        return f"{self.transport}://{self.ip}:{port}"


class IOPubChannel(Channel):
    """:class:`device.kernel.Channel` on the iopub PUB socket instead of a PAIR to a device.

    Every send of the kernel goes through :attr:`lock` (the cell, the output pump thread and the
    control thread all publish, and share one Session), so messages never interleave."""

    def __init__(self, socket: zmq.Socket[bytes], session: Session, interrupts: Interrupts) -> None:
        # not Channel.__init__: the socket is bound by the kernel, not connected to a device
        self.context = socket.context
        self.socket = socket
        self.session = session
        self.lock = threading.Lock()
        self.parent = {}
        self.interrupts = interrupts

    def send(self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any] | None = None,
             buffers: Sequence[bytes] | None = None) -> None:
        self.publish(msg_type, content, self.parent, metadata, buffers)

    def publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any],
                metadata: dict[str, Any] | None = None, buffers: Sequence[bytes] | None = None) -> None:
        self.reply(self.socket, [], msg_type, content, parent, metadata, buffers)

    def reply(self, socket: zmq.Socket[bytes], idents: list[bytes], msg_type: str, content: dict[str, Any],
              parent: dict[str, Any], metadata: dict[str, Any] | None = None,
              buffers: Sequence[bytes] | None = None) -> None:
        """Send one message on ``socket`` (shell or iopub) with this channel's Session."""
        with self.sending():
            if socket.closed:  # the kernel is shutting down: what the control thread still says is moot
                return
            self.session.send(socket, msg_type, content, parent=parent, ident=idents or None,
                              metadata=metadata, buffers=list(buffers) if buffers else None)

    def close(self) -> None:
        with self.lock:
            if not self.socket.closed:
                self.socket.close()  # LINGER lets the last messages out; the kernel terms the context


class NoStdin(io.TextIOBase):
    """``sys.stdin`` of the kernel: stdin requests are not supported, and this says so."""

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        raise EOFError("this kernel has no standard input: input() and stdin reads are not supported")

    def read(self, size: int | None = -1) -> str:
        return self.readline(size)


class JupyterKernel:
    """Serves one shell (one namespace) to Jupyter clients until a shutdown request."""

    def __init__(self, shell: InteractiveShell, kernel: Kernel, iopub: IOPubChannel, sockets: dict[str, Any],
                 control_session: Session, interrupts: Interrupts, output_limit: int,
                 layers: list[LayerStatus]) -> None:
        self.shell = shell
        self.kernel = kernel
        self.iopub = iopub
        self.shell_socket: zmq.Socket[bytes] = sockets["shell"]
        self.control_socket: zmq.Socket[bytes] = sockets["control"]
        self.hb_socket: zmq.Socket[bytes] = sockets["hb"]
        self.control_session = control_session
        self.interrupts = interrupts
        self.output_limit = output_limit
        self.replies = Replies(shell, "; ".join(f"{s.name}: {s.detail}" if s.active else f"{s.name}: off ({s.detail})"
                                               for s in layers) or "no layers")
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.threads: list[threading.Thread] = []
        self.shell_handlers: dict[str, Handler] = {
            "execute_request": self.execute,
            **dict.fromkeys(ANSWERED, self.answer),
            "shutdown_request": self.shutdown,
        }
        self.control_handlers: dict[str, Handler] = {
            "kernel_info_request": self.answer,
            "interrupt_request": self.interrupt,
            "shutdown_request": self.shutdown,
        }

    # -- the loops ------------------------------------------------------------------------

    def start_threads(self) -> None:
        """The heartbeat and control threads. Started before the sandbox's last phase, so that
        limits on threads and memory count them as the kernel's own, not as the cells'."""
        self.threads = [threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True),
                        threading.Thread(target=self._serve_control, name="control", daemon=True)]
        for thread in self.threads:
            thread.start()

    def serve(self) -> None:
        """Answer requests until a shutdown request (or SIGTERM)."""
        self.iopub.publish("status", {"execution_state": "starting"}, {})
        poller = zmq.Poller()
        poller.register(self.shell_socket, zmq.POLLIN)
        poller.register(self.wake_r, zmq.POLLIN)
        while not self.stopping:
            poller.poll()
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 4096):
                    pass
            while not self.stopping:
                idents, msg = self._receive(self.shell_socket, self.iopub.session, zmq.NOBLOCK)
                if msg is None:
                    break
                self.dispatch(self.shell_socket, self.shell_handlers, idents, msg)

    def _receive(self, socket: zmq.Socket[bytes], session: Session,
                 mode: int) -> tuple[list[bytes], dict[str, Any] | None]:
        try:
            idents, msg = session.recv(socket, mode=mode)
        except (ValueError, KeyError, TypeError) as exc:  # bad signature, not a message
            log.warning("dropped a malformed message: %s", exc)
            return [], {}
        return idents or [], msg

    def dispatch(self, socket: zmq.Socket[bytes], handlers: dict[str, Handler], idents: list[bytes],
                 msg: dict[str, Any]) -> None:
        msg_type = msg.get("header", {}).get("msg_type", "")
        handler = handlers.get(msg_type)
        if handler is None:
            if msg:
                log.warning("unsupported message type %r", msg_type)
            return
        parent = msg["header"]
        if socket is self.shell_socket:
            self.iopub.parent = parent  # the output of what runs now belongs to this request
        self.iopub.publish("status", {"execution_state": "busy"}, parent)
        try:
            handler(socket, idents, msg)
        except Exception as exc:  # a bug of ours: answer, so the client does not wait forever
            log.exception("%s failed", msg_type)
            self.reply(socket, idents, msg, msg_type.replace("_request", "_reply"),
                       {"status": "error", "ename": type(exc).__name__, "evalue": str(exc),
                        "traceback": traceback.format_exception(exc)})
        finally:
            self.iopub.publish("status", {"execution_state": "idle"}, parent)

    def _serve_control(self) -> None:
        """The control channel, in a thread: it is answered while a cell runs."""
        try:
            while True:
                idents, msg = self._receive(self.control_socket, self.control_session, 0)
                if msg:
                    self.dispatch(self.control_socket, self.control_handlers, idents, msg)
        except zmq.ContextTerminated:
            pass
        finally:
            self.control_socket.close()

    def _heartbeat(self) -> None:
        try:
            while True:
                self.hb_socket.send_multipart(self.hb_socket.recv_multipart())
        except zmq.ContextTerminated:
            pass
        finally:
            self.hb_socket.close(linger=0)

    def reply(self, socket: zmq.Socket[bytes], idents: list[bytes], request: dict[str, Any], msg_type: str,
              content: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        if socket is self.control_socket:  # the control thread: its own Session, its own socket
            self.control_session.send(socket, msg_type, content, parent=request["header"], ident=idents,
                                      metadata=metadata)
        else:
            self.iopub.reply(socket, idents, msg_type, content, request["header"], metadata)

    def stop(self) -> None:
        """Leave the shell loop after the current request (from any thread or a signal handler)."""
        self.stopping = True
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    # -- shell requests -------------------------------------------------------------------

    def answer(self, socket: zmq.Socket[bytes], idents: list[bytes], msg: dict[str, Any]) -> None:
        """kernel_info, is_complete, complete, inspect, history and comm_info (:mod:`device.replies`)."""
        answered = self.replies.answer(msg["header"]["msg_type"], msg["content"])
        assert answered is not None
        self.reply(socket, idents, msg, *answered)

    def execute(self, socket: zmq.Socket[bytes], idents: list[bytes], msg: dict[str, Any]) -> None:
        self.kernel.budget = OutputBudget(self.output_limit)  # the output limit is per cell
        self.kernel.truncation_noted = False
        reply = self.replies.execute(self.kernel, msg["content"], self.interrupts)
        # the cells already waiting are taken before the reply goes out: a client that sends its
        # next cell once it has the reply must see that cell run, however slow this kernel is
        failed = reply["status"] != "ok" and msg["content"].get("stop_on_error", True)
        queued = self.take_queued() if failed else []
        self.reply(socket, idents, msg, "execute_reply", reply, metadata={"status": reply["status"]})
        self.abort_queued_executions(queued)

    def take_queued(self) -> list[tuple[list[bytes], dict[str, Any]]]:
        """The shell requests that have arrived and wait, in order."""
        queued: list[tuple[list[bytes], dict[str, Any]]] = []
        while True:
            idents, msg = self._receive(self.shell_socket, self.iopub.session, zmq.NOBLOCK)
            if msg is None:
                return queued
            queued.append((idents, msg))

    def abort_queued_executions(self, queued: list[tuple[list[bytes], dict[str, Any]]]) -> None:
        """After a failed cell, the cells that were waiting behind it are aborted, not run; other
        requests among them are answered as usual."""
        for idents, msg in queued:
            if msg.get("header", {}).get("msg_type") != "execute_request":
                self.dispatch(self.shell_socket, self.shell_handlers, idents, msg)
                continue
            self.iopub.publish("status", {"execution_state": "busy"}, msg["header"])
            self.reply(self.shell_socket, idents, msg, "execute_reply", {"status": "aborted"},
                       metadata={"status": "aborted"})
            self.iopub.publish("status", {"execution_state": "idle"}, msg["header"])

    # -- control requests (shutdown also comes on shell) ------------------------------------

    def interrupt(self, socket: zmq.Socket[bytes], idents: list[bytes], msg: dict[str, Any]) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # as interrupt_mode "signal" does: see Interrupts
        self.reply(socket, idents, msg, "interrupt_reply", {"status": "ok"})

    def shutdown(self, socket: zmq.Socket[bytes], idents: list[bytes], msg: dict[str, Any]) -> None:
        content = {"status": "ok", "restart": bool(msg["content"].get("restart", False))}
        self.reply(socket, idents, msg, "shutdown_reply", content)
        self.iopub.publish("shutdown_reply", content, msg["header"])  # tells every other client
        self.stop()
        if self.interrupts.executing:
            os.kill(os.getpid(), signal.SIGINT)  # the running cell ends, then the kernel


# -- start-up ---------------------------------------------------------------------------

CHANNELS = (("shell", zmq.ROUTER), ("control", zmq.ROUTER), ("stdin", zmq.ROUTER), ("iopub", zmq.PUB),
            ("hb", zmq.REP))


def listen_early(connection: ConnectionInfo) -> dict[str, int]:
    """The five channels' listening sockets, made with plain system calls (no threads).

    They are made before the sandbox's isolate phase, which needs a single-threaded process and
    may take the kernel out of the client's network and filesystem, and handed to ZeroMQ after it
    (``ZMQ_USE_FD``): sockets made in the old namespaces stay reachable from there."""
    fds: dict[str, int] = {}
    try:
        for name, _ in CHANNELS:
            port = connection.port(name)
            if connection.transport == "ipc":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                path = f"{connection.ip}-{port}"
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)  # left by an earlier kernel on this connection file
                sock.bind(path)
            else:
                family = socket.AF_INET6 if ":" in connection.ip else socket.AF_INET
                host = connection.ip if connection.ip != "*" else ("::" if family == socket.AF_INET6 else "0.0.0.0")
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
            fds[name] = sock.detach()
    except OSError:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def zmq_sockets(context: zmq.Context[zmq.Socket[bytes]], connection: ConnectionInfo,
                fds: dict[str, int]) -> dict[str, zmq.Socket[bytes]]:
    """ZeroMQ sockets on the listening sockets of :func:`listen_early`."""
    sockets: dict[str, zmq.Socket[bytes]] = {}
    for name, kind in CHANNELS:
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 1000)  # the last replies still go out when the kernel closes
        sock.setsockopt(zmq.USE_FD, fds.pop(name))
        sock.bind(connection.url(connection.port(name)))
        sockets[name] = sock
    return sockets


def make_workspace(config: settings.Config, uid: int | None) -> Workspace:
    """The kernel's own folder, as the device makes one per kernel (:class:`device.workspace.
    Workspace`): a fresh private ``home`` under ``--work-dir`` (or the temporary folder) holding
    its working folder, its /tmp and the filesystem layer's root; as root with a disk quota, a
    tmpfs of its own, mounted in a mount namespace of this process's own."""
    parent = Path(config.work_dir).absolute() if config.work_dir else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    own_mount = bool(config.disk_limit) and enter_private_mounts()
    while True:
        try:
            return Workspace(parent / f"singlecell-jupyter-{secrets.token_hex(6)}", uid, config.disk_limit, own_mount)
        except FileExistsError:
            continue


def kernel_uid(layers: list[SandboxLayer]) -> int | None:
    """The uid this kernel drops to when the identity layer gives it one (as root): claimed from
    the top of the layer's range (a device claims from the bottom), and held until we exit."""
    identity = next((layer for layer in layers if isinstance(layer, Identity)), None)
    if identity is None or os.geteuid() != 0:
        return None
    try:
        return KernelUids(identity.first_uid, identity.last_uid, from_top=True).take()
    except KernelUnavailable as exc:
        raise SandboxError(exc.message) from None


def start_cleaner(workspace: Workspace) -> int:
    """Fork a small process that removes the workspace once this kernel has exited, however it ends
    (a SIGKILL too). It stays outside the sandbox, where the kernel, in a mount namespace of its
    own or as another uid, may no longer see or remove its folders; and outside the kernel's
    process group, which its client interrupts and kills."""
    read_end, write_end = os.pipe()  # close-on-exec: a cell's subprocesses do not hold it
    pid = os.fork()
    if pid:
        os.close(read_end)
        return write_end  # stays open, unused, until this process is gone
    try:  # the cleaner; never returns
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        set_process_name(b"sc-kernel-clean")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, read_end)  # write_end too: the pipe ends when the kernel's copy closes
        os.closerange(read_end + 1, os.sysconf("SC_OPEN_MAX"))
        while os.read(read_end, 4096):  # returns b"" when the kernel is gone
            pass
        workspace.remove()
    finally:
        os._exit(0)


def forget_launch_folder() -> None:
    """``python -m`` put the folder the client started us in (a notebook's folder, a home) first
    on sys.path, and the filesystem layer shows cells every folder on sys.path. Drop it, unless
    this package is imported from there (a source checkout that is not installed)."""
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == os.path.realpath(os.getcwd()):
        if os.path.realpath(sys.path[0]) != os.path.dirname(os.path.dirname(os.path.realpath(__file__))):
            del sys.path[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.jupyter_kernel", description=__doc__.split("\n")[0])
    parser.add_argument("-f", "--connection-file", required=True, metavar="CONNECTION_FILE",
                        help="the JSON connection file the Jupyter client wrote")
    # clients may pass more (`jupyter run FILE` passes the file): like ipykernel, ignore it
    args, _ = parser.parse_known_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt while starting must not kill us
    forget_launch_folder()
    set_process_name(b"sc-jupyter")
    # the client's terminal or log: restored at exit; meanwhile fds 1 and 2 are the cells' output
    saved_fds = (os.dup(1), os.dup(2))
    log_stream = open(os.dup(saved_fds[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    logging.basicConfig(stream=log_stream, level=logging.INFO,
                        format="singlecell-kernel[%(process)d] %(levelname)s: %(message)s")
    try:
        config = settings.load()
        connection = ConnectionInfo.read(args.connection_file)
        # the connection file holds the key, and the config file maybe secrets: cells do not see them
        layers = build_layers(layer_settings(config, work_root=config.work_dir,
                                             hidden=[os.path.abspath(args.connection_file)]))
    except (SingleCellError, OSError, KeyError, ValueError) as exc:
        log.error("cannot start: %s", getattr(exc, "message", exc))
        return EXIT_CONFIG_FAILED

    # imports and warm-up first, with the real HOME (matplotlib's font cache lives there)
    shell = make_shell(config.preload_modules)
    statuses = [layer.check() for layer in layers]
    for status in report(config, statuses):
        log.info("sandbox layer %s: %s%s", status.name, "" if status.active else "off: ", status.detail)
    active = [layer for layer, status in zip(layers, statuses, strict=True) if status.active]
    try:
        require(config, statuses)
        uid = kernel_uid(active)
        workspace = make_workspace(config, uid)
    except (SingleCellError, OSError) as exc:
        log.error("the kernel does not start: %s", getattr(exc, "message", exc))
        return EXIT_SANDBOX_FAILED
    _cleaner = start_cleaner(workspace)  # open until we exit: the cleaner waits for that
    place = KernelPlace(home=str(workspace.home), workdir=str(workspace.workdir), tmpdir=str(workspace.tmpdir),
                        uid=uid)
    context: zmq.Context[zmq.Socket[bytes]] | None = None
    sockets: dict[str, zmq.Socket[bytes]] = {}
    server: JupyterKernel | None = None
    iopub: IOPubChannel | None = None
    control_session: Session | None = None
    interrupts = Interrupts()
    try:
        fds: dict[str, int] = {}

        def before_isolate() -> None:
            # plain listening sockets, made before the isolate phase takes the kernel out of the
            # client's network and filesystem (ZeroMQ adopts them after it)
            try:
                fds.update(listen_early(connection))
            except OSError as exc:
                raise ConfinementFailed(EXIT_CONFIG_FAILED, f"cannot listen on the connection file's ports: "
                                                            f"{exc}") from exc

        def open_channel(seen: KernelSpec) -> IOPubChannel:
            nonlocal context, iopub, control_session
            context = zmq.Context()
            sockets.update(zmq_sockets(context, connection, fds))
            session = Session(key=connection.key, signature_scheme=connection.signature_scheme, username="kernel")
            control_session = Session(key=connection.key, signature_scheme=connection.signature_scheme,
                                      username="kernel", session=session.session)
            iopub = IOPubChannel(sockets["iopub"], session, interrupts)
            return iopub

        def before_apply(kernel: Kernel) -> None:
            # its heartbeat and control threads start before the limits, which then count them
            # as the kernel's own, not as the cells'
            nonlocal server
            assert iopub is not None and control_session is not None
            server = JupyterKernel(shell, kernel, iopub, sockets, control_session, interrupts, config.output_limit,
                                   report(config, statuses))
            server.start_threads()

        spec = KernelSpec(slot="jupyter", endpoint=connection.url(connection.iopub_port),
                          key=connection.key.decode("ascii"), home=place.home, workdir=place.workdir,
                          tmpdir=place.tmpdir, output_limit=config.output_limit, uid=uid)
        try:
            kernel = confine(shell, spec, active, place, open_channel=open_channel, stdin=NoStdin(),
                             before_isolate=before_isolate, before_apply=before_apply)
        except ConfinementFailed as exc:
            log.error("%s, so the kernel does not start", exc.message)
            return exc.exit_code
        assert server is not None

        def terminate(signum: int, frame: FrameType | None) -> None:
            assert server is not None
            server.stop()
            interrupts.handle(signum, frame)

        signal.signal(signal.SIGINT, interrupts.handle)
        signal.signal(signal.SIGTERM, terminate)
        server.serve()
        interrupts.executing = False
        kernel.flush_streams()
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout, sys.stderr, sys.stdin = sys.__stdout__, sys.__stderr__, sys.__stdin__
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        if iopub is not None:
            iopub.close()  # under its lock: the output pump thread may still be sending
        # the heartbeat and control threads close their own sockets when the context ends
        owned_by_threads = {"hb", "control"} if server is not None and server.threads else set()
        for name, sock in sockets.items():
            if name not in owned_by_threads and not sock.closed:
                sock.close()
        if context is not None:
            context.term()


if __name__ == "__main__":
    sys.exit(main())
