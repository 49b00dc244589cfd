"""The kernel: a child forked from the template that runs one cell with IPython and exits.

Everything the cell produces goes to the device as signed Jupyter messages over the kernel's
own ZeroMQ socket: ``status`` busy, ``execute_input``, ``stream`` (flushed while the cell
runs), ``display_data``, ``execute_result``, ``error``, ``execute_reply``, ``status`` idle.
The device decides which request they belong to; the parent header set here is a courtesy.

The shell is built once in the template (:func:`make_shell`), so a child only wires it to its
channel: forking copies a ready IPython.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import errno
import gc
import importlib
import io
import os
import pkgutil
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import zmq
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config as TraitletsConfig

from device import comms
from device.control import KernelSpec
from device.frames import Signer
from device.interrupts import Interrupts
from device.replies import ANSWERED, Replies
from device.sandbox.base import SandboxLayer
from singlecell.limits import BY_KEY

#: what a Jupyter client's kernel answers, besides comm messages (stdin's input_reply comes to read_stdin)
JUPYTER_REQUESTS = frozenset({"execute_request", *ANSWERED})
FLUSH_INTERVAL = 0.05  # seconds a stream write may wait before it is sent: coalesces print loops
EXIT_SANDBOX_FAILED = 71  # the device reads this exit code as "the sandbox could not be applied"
EXIT_CHANNEL_FAILED = 72  # … as "the kernel could not open its channel to the device"
EXIT_KERNEL_FAILED = 70  # … as "the kernel failed" (its traceback is in the device's log)


def set_background(background: bool) -> None:
    """Run the calling thread in the idle scheduling class, or back in the normal one.

    The template forks, and kernels warm up and exit, in the idle class: that work is off the
    request's path, and on two cores it would otherwise delay the web tier and the device
    while they answer. Coming back needs root or RLIMIT_NICE >= 20 (see
    :func:`can_return_from_background`); without either we stay normal."""
    policy = os.SCHED_IDLE if background else os.SCHED_OTHER
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


def can_return_from_background() -> bool:
    """Whether a process in the idle class may move back to the normal one."""
    if os.geteuid() == 0:
        return True
    _, hard = resource.getrlimit(resource.RLIMIT_NICE)
    if hard != resource.RLIM_INFINITY and hard < 20:
        return False
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NICE, (20, hard))
        return True
    return False


@dataclass(frozen=True)
class Limits:
    """The limits this kernel runs under, to name the one a cell ran into."""

    memory_mb: int = 0
    file_size: int = 0
    processes: int = 0
    open_files: int = 0
    disk_mb: int = 0
    output: int = 0

    @classmethod
    def of(cls, layers: list[SandboxLayer], spec: KernelSpec) -> Limits:
        from device.sandbox.filesystem import Filesystem
        from device.sandbox.resources import ResourceLimits

        # with a uid of its own (as root), RLIMIT_NPROC counts the kernel's processes alone and
        # its folder is a tmpfs of --disk-limit MB
        own_uid = spec.uid is not None
        found: dict[str, int] = {"output": spec.output_limit}
        for layer in layers:
            if isinstance(layer, ResourceLimits):
                found.update(memory_mb=layer.memory_mb, file_size=layer.file_size,
                             processes=layer.processes if own_uid else 0, open_files=layer.open_files)
            elif isinstance(layer, Filesystem) and own_uid:
                found.update(disk_mb=layer.disk_mb)
        return cls(**found)

    def name(self, error: BaseException) -> tuple[str, str] | None:
        """(ename, evalue) of the limit behind ``error``, or None if it is not a limit's."""
        key, value = self._behind(error)
        if key is None:
            return None
        limit = BY_KEY[key]
        return limit.ename, limit.evalue(value)

    def _behind(self, error: BaseException) -> tuple[str | None, int]:
        """The key of the limit ``error`` comes from, and its value."""
        code = getattr(error, "errno", None)
        if isinstance(error, OutputLimitExceeded):
            return "output", self.output
        if isinstance(error, MemoryError) and self.memory_mb:
            return "memory", self.memory_mb
        if code == errno.EFBIG and self.file_size:
            return "file_size", self.file_size
        if code == errno.ENOSPC and self.disk_mb:
            return "disk", self.disk_mb
        if code == errno.EMFILE and self.open_files:
            return "open_files", self.open_files
        if self.processes and (
            (isinstance(error, RuntimeError) and "can't start new thread" in str(error))
            or (code == errno.EAGAIN and _tasks_of_my_uid() >= self.processes)
        ):
            return "processes", self.processes
        return None, 0


def _tasks_of_my_uid() -> int:
    """Processes and threads of this uid (the kernel's own, with a uid per kernel)."""
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


class OutputLimitExceeded(Exception):
    """Raised in the cell by a write past its output limit: the cell stops there."""


class OutputBudget:
    """Bytes of output the cell may still produce; shared by its streams and displays."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.exhausted = False

    def take(self, size: int) -> int:
        """How many of ``size`` bytes may go out; marks the budget exhausted when cut."""
        allowed = min(size, self.left)
        self.left -= allowed
        if allowed < size:
            self.exhausted = True
        return allowed


class Channel:
    """The kernel's socket to its device; thread-safe, since the flusher thread sends too."""

    def __init__(self, spec: KernelSpec, signer: Signer) -> None:
        self.context = zmq.Context(1)
        self.socket = self.context.socket(zmq.PAIR)
        self.socket.setsockopt(zmq.LINGER, 5000)
        self.socket.connect(spec.endpoint)
        self.signer = signer
        self.lock = threading.Lock()
        self.parent: dict[str, Any] = {}
        self.interrupts: Interrupts | None = None  # set once the kernel takes interrupts (a Jupyter client's)

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Held around every send: the channel's lock, and on the main thread an interrupt waits
        until the message is out (see :class:`device.interrupts.Interrupts`)."""
        interrupts = self.interrupts
        guard = interrupts.deferring() if interrupts is not None and \
            threading.current_thread() is threading.main_thread() else contextlib.nullcontext()
        with guard, self.lock:
            yield

    def send(self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any] | None = None,
             buffers: Sequence[bytes] | None = None) -> None:
        with self.sending():
            frames = self.signer.serialize(msg_type, content, self.parent, metadata)
            self.socket.send_multipart([*frames, *buffers] if buffers else frames)

    def receive(self) -> dict[str, Any]:
        return self.signer.deserialize(self.socket.recv_multipart())

    def close(self) -> None:
        with self.lock:
            if not self.socket.closed:
                self.socket.close()  # LINGER lets queued messages reach the device first
                self.context.term()


class OutStream(io.TextIOBase):
    """sys.stdout / sys.stderr of the cell: text goes to the kernel's ordered output buffer."""

    def __init__(self, name: str, kernel: Kernel) -> None:
        super().__init__()
        self.name = name
        self.kernel = kernel

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self.kernel.queue_output(self.name, text)
        return len(text)

    def flush(self) -> None:
        self.kernel.flush_streams()


class KernelDisplayPublisher(DisplayPublisher):
    """``display()`` → ``display_data`` (or ``update_display_data``) and ``clear_output``."""

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, source: Any = None,
                *, transient: dict[str, Any] | None = None, update: bool = False, **kwargs: Any) -> None:
        kernel = current_kernel()
        kernel.flush_streams()
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        kernel.send_display("update_display_data" if update else "display_data", content)
        if kernel.budget.exhausted:
            raise kernel.output_exceeded()

    def clear_output(self, wait: bool = False) -> None:
        kernel = current_kernel()
        kernel.flush_streams()
        kernel.channel_send("clear_output", {"wait": wait})


class KernelDisplayHook(DisplayHook):
    """The value of the cell's last expression → ``execute_result``."""

    def start_displayhook(self) -> None:
        current_kernel().flush_streams()

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None) -> None:
        current_kernel().send_display(
            "execute_result",
            {"execution_count": self.prompt_count, "data": format_dict, "metadata": md_dict or {}},
        )

    def finish_displayhook(self) -> None:
        pass


class KernelShell(InteractiveShell):
    display_pub_class = KernelDisplayPublisher
    displayhook_class = KernelDisplayHook
    #: the kernel, as ipykernel's shell has it: ipywidgets' Output reads ``kernel.get_parent()``
    kernel: Any = None

    def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
        current_kernel().report_error(etype, evalue, stb)

    def init_io(self) -> None:
        pass  # the child sets sys.stdout/stderr itself

    def init_virtualenv(self) -> None:
        pass

    def enable_gui(self, gui: Any = None) -> None:
        pass  # no event loop to hook: "inline" figures are sent as display_data


class PreloadError(ImportError):
    """A module of ``--preload`` did not import: the template refuses to start (every cell would
    fail otherwise)."""


def preload_names(preload: Sequence[str]) -> list[str]:
    """The modules to import for ``--preload``'s entries: a module's name as it is, and for a
    folder (an absolute path), every module and package in it, by name, the folder put first on
    ``sys.path`` (the kernels, forked from the template, keep it)."""
    names: list[str] = []
    for entry in preload:
        if not os.path.isabs(entry):
            names.append(entry)
            continue
        if not os.path.isdir(entry):
            raise PreloadError(f"--preload: {entry!r} is not a folder; give a module's name, or a folder of modules")
        if entry not in sys.path:
            sys.path.insert(0, entry)
        found = sorted(m.name for m in pkgutil.iter_modules([entry]))
        if not found:
            raise PreloadError(f"--preload: the folder {entry!r} holds no module (*.py, or a package)")
        names.extend(found)
    return names


def make_shell(preload: list[str]) -> InteractiveShell:
    """Import the preload modules and build the shell, once, in the template."""
    os.environ.setdefault("MPLBACKEND", "agg")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        # BLAS thread pools do not survive fork; one thread per kernel also keeps a cell to
        # the CPU the device gave it
        os.environ.setdefault(name, "1")
    comms.install()  # before the preload: ipywidgets reads its settings when imported
    for name in preload_names(preload):
        try:
            __import__(name)
        except BaseException as exc:  # whatever the operator's module raises: say which, and stop
            raise PreloadError(f"--preload: importing {name!r} in the kernel template failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    config = TraitletsConfig()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "LightBG"  # tracebacks are shown on light pages (static/), mostly
    config.InteractiveShell.xmode = "Context"
    shell = KernelShell.instance(config=config)
    comms.register_widget_targets()
    if "matplotlib" in preload:
        # inline: plt.show() and figures left open become image/png display_data
        shell.enable_matplotlib("inline")
    warm_up(shell, WARM_UP_CELLS + ((WARM_UP_PLOT,) if "matplotlib" in preload else ()))
    gc.collect()
    gc.freeze()  # keeps the collector from touching (and so copying) the template's objects
    return shell


class _NullKernel:
    """Swallows what the warm-up cells publish."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


WARM_UP_CELLS = ("1 + 1", "print(1)", "1 / 0")
# In a ready kernel, waiting for its request: takes the copy-on-write faults of the common path
# (~4 ms) before the request arrives. Not the traceback: that would cost every kernel ~10 ms.
CHILD_WARM_UP_CELLS = ("1 + 1", "print(1)")
WARM_UP_PLOT = "import matplotlib.pyplot as _plt\n_plt.plot([1, 2]); _plt.show(); _plt.close('all')"


def warm_up(shell: InteractiveShell, cells: tuple[str, ...]) -> None:
    """Run a few cells of our own in the template, so what IPython builds lazily (formatters,
    the traceback machinery, matplotlib's fonts and PNG writer) is built once, before forking,
    instead of in every kernel. The namespace is put back as it was afterwards."""
    global _kernel
    names = dict(shell.user_ns)
    real_stdout = sys.stdout
    _kernel = _NullKernel()  # type: ignore[assignment]
    try:
        sys.stdout = io.StringIO()
        for cell in cells:
            shell.run_cell(cell, store_history=False)
    finally:
        sys.stdout = real_stdout
        _kernel = None
    for name in set(shell.user_ns) - set(names):
        del shell.user_ns[name]
    shell.user_ns.update(names)
    for cache in ("_oh", "Out"):
        if isinstance(shell.user_ns.get(cache), dict):
            shell.user_ns[cache].clear()
    shell.execution_count = 1


_kernel: Kernel | None = None


def current_kernel() -> Kernel:
    assert _kernel is not None, "display hooks ran outside a forked kernel"
    return _kernel


def set_current_kernel(kernel: Kernel) -> None:
    """The kernel the shell's display hooks publish through (one per process)."""
    global _kernel
    _kernel = kernel


class Kernel:
    """The state of the one cell this process runs."""

    def __init__(self, shell: InteractiveShell, spec: KernelSpec, channel: Channel,
                 limits: Limits | None = None) -> None:
        self.shell = shell
        self.spec = spec
        self.channel = channel
        self.budget = OutputBudget(spec.output_limit)
        self.truncation_noted = False
        self.stdout = OutStream("stdout", self)
        self.stderr = OutStream("stderr", self)
        self.pending: list[tuple[str, list[str]]] = []
        self.pending_chars = 0
        self.limits = limits or Limits(output=spec.output_limit)
        self.output_raised = False  # the cell was told (OutputLimitExceeded) its output is over
        self.buffer_lock = threading.Lock()
        self.out_lock = threading.RLock()
        self.error_content: dict[str, Any] | None = None
        self.signaled = False  # a wake-up for the pump is already pending
        self.running = False  # between the request's arrival and its execute_reply
        self.fd_pipes: list[tuple[int, OutStream]] = []
        self.replies: Replies | None = None  # a Jupyter client's kernel: what it answers (start_jupyter)
        self.interrupts = Interrupts()
        self.allow_stdin = False  # the request being answered lets input() ask its client

    # -- sending -------------------------------------------------------------------------

    def channel_send(self, msg_type: str, content: dict[str, Any]) -> None:
        self.channel.send(msg_type, content)

    def flush_streams(self) -> None:
        """Send the buffered output as ``stream`` messages, stdout and stderr in their order."""
        with self.out_lock:  # one flusher at a time, or two threads could reorder chunks
            self.drain_fds()
            with self.buffer_lock:
                pending, self.pending = self.pending, []
                self.pending_chars = 0
            for name, parts in pending:
                self.send_stream(name, "".join(parts))

    def send_stream(self, name: str, text: str) -> None:
        with self.out_lock:
            data = text.encode("utf-8", "replace")
            allowed = self.budget.take(len(data))
            if allowed:
                self.channel.send("stream", {"name": name, "text": data[:allowed].decode("utf-8", "ignore")})
            if allowed < len(data):
                self.note_truncation()

    def send_display(self, msg_type: str, content: dict[str, Any]) -> None:
        with self.out_lock:
            size = sum(len(str(v)) for v in content.get("data", {}).values())
            if self.budget.take(size) < size:
                self.note_truncation()
                return
            self.channel.send(msg_type, content)

    def send_comm(self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any],
                  buffers: list[bytes]) -> None:
        """A comm message of the cell's (a widget's state, an update): after the output before
        it, and counted against the output limit like a display."""
        self.flush_streams()
        with self.out_lock:
            size = len(str(content.get("data", ""))) + sum(map(len, buffers))
            if self.budget.take(size) < size:
                self.note_truncation()
                raise self.output_exceeded()
            self.channel.send(msg_type, content, metadata, buffers)

    def get_parent(self) -> dict[str, Any]:
        """The message being answered (the request, or a session's input), as ipykernel's
        ``Kernel.get_parent``: ipywidgets' Output widget captures output by its msg_id."""
        return {"header": self.channel.parent}

    def note_truncation(self) -> None:
        if not self.truncation_noted:
            self.truncation_noted = True
            self.channel.send("stream", {"name": "stderr", "text": (
                f"\n[output truncated: this cell's output passed the limit of {self.budget.limit} bytes]\n")})

    def report_error(self, etype: Any, evalue: Any, stb: Any) -> None:
        self.flush_streams()
        ename, text = getattr(etype, "__name__", str(etype)), str(evalue)
        limit = self.limits.name(evalue) if isinstance(evalue, BaseException) else None
        if limit is not None:  # the device turns these into the request's status and a limit message
            ename, text = limit
        content = {"ename": ename, "evalue": text, "traceback": list(stb)}
        self.error_content = content
        self.channel.send("error", content)

    # -- background: one pump thread for flushing and fd capture ---------------------------

    def _append(self, name: str, text: str) -> None:
        """Add to the ordered output buffer; the caller holds ``buffer_lock``."""
        if self.pending and self.pending[-1][0] == name:
            self.pending[-1][1].append(text)
        else:
            self.pending.append((name, [text]))

    def queue_output(self, name: str, text: str) -> None:
        if self.budget.exhausted:
            raise self.output_exceeded()
        # what subprocesses wrote to fds 1 and 2 before this write goes out before it
        self.drain_fds()
        with self.buffer_lock:
            self._append(name, text)
            self.pending_chars += len(text)
            over = self.pending_chars > self.budget.left
            wake = not self.signaled
            self.signaled = True
        if over:  # send now: a print loop must not pile up output the limit will drop anyway
            self.flush_streams()
            if self.budget.exhausted:
                raise self.output_exceeded()
        elif wake:
            os.write(self.wake_w, b"x")

    def output_exceeded(self) -> OutputLimitExceeded:
        self.output_raised = True
        return OutputLimitExceeded(BY_KEY["output"].evalue(self.budget.limit))

    def capture_fds(self) -> None:
        """Send what subprocesses and C code write to fds 1 and 2 as stream output too, and
        start the pump thread that forwards it and flushes buffered output."""
        for fd, stream in ((1, self.stdout), (2, self.stderr)):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.dup2(write_end, fd)
            os.close(write_end)
            self.fd_pipes.append((read_end, stream))
        self.decoders = {r: codecs.getincrementaldecoder("utf-8")("replace") for r, _ in self.fd_pipes}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        threading.Thread(target=self._pump, name="output-pump", daemon=True).start()

    def _pump(self) -> None:
        fds = [self.wake_r, *(r for r, _ in self.fd_pipes)]
        while True:
            select.select(fds, [], [], None)
            time.sleep(FLUSH_INTERVAL)  # let a burst of writes collect into one message
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            with self.buffer_lock:
                self.signaled = False
            if self.running:
                self.flush_streams()
                if self.budget.exhausted and not self.output_raised:
                    self._stop_for_output()
            else:
                self.drain_fds()  # before the cell starts, keep it for the cell's output

    def _stop_for_output(self) -> None:
        """Output past the limit that no Python write carried (a subprocess, C code, os.write):
        the cell cannot be told by an exception, so it is stopped here, saying why."""
        time.sleep(0.2)  # a Python write may yet raise OutputLimitExceeded, with a traceback
        if self.output_raised or not self.running:
            return
        exc = self.output_exceeded()
        with contextlib.suppress(Exception):
            self.channel.send("error", {"ename": "OutputLimitExceeded", "evalue": str(exc), "traceback": []})
            self.channel.close()  # waits until the error is delivered
        os.killpg(0, signal.SIGKILL)

    def drain_fds(self) -> None:
        with self.out_lock:
            self._drain_fds()

    def _drain_fds(self) -> None:
        for read_end, stream in self.fd_pipes:
            while True:
                try:
                    chunk = os.read(read_end, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                text = self.decoders[read_end].decode(chunk)
                if text:
                    with self.buffer_lock:
                        self._append(stream.name, text)

    # -- the cell ------------------------------------------------------------------------

    def run(self, request: dict[str, Any]) -> None:
        self.channel.parent = request["header"]
        content = request["content"]
        code = str(content.get("code", ""))
        self.channel.send("status", {"execution_state": "busy"})
        self.channel.send("execute_input", {"code": code, "execution_count": 1})
        self.write_inputs(request)
        self.running = True
        first = request.get("metadata", {}).get("singlecell_run_first")
        failure: BaseException | None = None
        if isinstance(first, str) and first:
            failure = self.run_file(first)  # a one-file snippet: its file, then the cell, in one namespace
        if failure is None:
            result = self.shell.run_cell(code, store_history=True, silent=False)
            failure = None if result.success else (result.error_in_exec or result.error_before_exec)
        _flush_c_stdio()
        self.flush_streams()
        if failure is None:
            reply: dict[str, Any] = {"status": "ok", "execution_count": 1, "user_expressions": {},
                                     "payload": []}
        else:
            err = self.error_content or {"ename": type(failure).__name__, "evalue": str(failure), "traceback": []}
            reply = {"status": "error", "execution_count": 1, **err}
        self.running = False
        # the open comms tell the device whether the cell may become a session
        self.channel.send("execute_reply", reply, metadata={"status": reply["status"],
                                                            "singlecell_comms": comms.open_comms()})
        self.channel.send("status", {"execution_state": "idle"})

    # -- a session: the cell's widgets stay live -------------------------------------------

    def serve_session(self) -> None:
        """Answer the session's inputs, one at a time, until the device ends the session (it kills
        this process): the front end's comm messages, and a Jupyter client's requests."""
        while True:
            msg = self.channel.receive()
            msg_type = msg.get("msg_type")
            if msg_type in comms.FROM_FRONT_END or (self.replies is not None and msg_type in JUPYTER_REQUESTS):
                self.handle_input(msg)

    def start_jupyter(self, sandbox: str, ready: bool = True) -> None:
        """Become a Jupyter client's kernel (``POST /api/kernels``): it answers every request of
        :data:`JUPYTER_REQUESTS`, SIGINT interrupts the running cell, and ``input()`` asks the
        client (``input_request`` on stdin). Says ``idle`` (unless ``ready`` is false: a cell it ran
        said it): the device then keeps it as a session."""
        self.replies = Replies(self.shell, sandbox)
        self.channel.interrupts = self.interrupts
        signal.signal(signal.SIGINT, self.interrupts.handle)
        import builtins
        import getpass

        builtins.input = self.read_stdin  # as ipykernel does, for the kernel's whole life
        getpass.getpass = lambda prompt="Password: ", stream=None: self.read_stdin(prompt, password=True)
        if ready:
            self.channel.send("status", {"execution_state": "idle"}, metadata={"singlecell_comms": 0})

    def read_stdin(self, prompt: object = "", password: bool = False) -> str:
        """``input()``: ask the client that sent the running cell (``input_request``), wait for its
        ``input_reply``. The device sends nothing else while a request is being answered."""
        if not self.allow_stdin:
            from IPython.core.error import StdinNotImplementedError

            raise StdinNotImplementedError("input() was called, but the client that ran this cell does not "
                                           "support input requests")
        self.flush_streams()
        self.channel.send("input_request", {"prompt": str(prompt), "password": password})
        while True:
            msg = self.channel.receive()
            if msg.get("msg_type") == "input_reply":
                break
        value = msg.get("content", {}).get("value", "")
        if value == "\x04":  # Ctrl-D in a console client, as ipykernel reads it
            raise EOFError("EOF when reading a line")
        return str(value)

    def handle_input(self, msg: dict[str, Any]) -> None:
        """One input: ``busy``, its answer (what its handlers print, display and send, or a
        request's reply), then ``idle`` (which says how many comms are still open: for widgets,
        none left ends the session)."""
        self.channel.parent = msg.get("header", {})
        self.error_content = None
        self.channel.send("status", {"execution_state": "busy"})
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        if self.replies is not None and msg_type == "execute_request":
            self.allow_stdin = bool(content.get("allow_stdin", False))
            reply = self.replies.execute(self, content, self.interrupts)
            self.allow_stdin = False
            self.channel.send("execute_reply", reply, metadata={"status": reply["status"]})
        elif self.replies is not None and msg_type in ANSWERED:
            try:
                answered = self.replies.answer(msg_type, content)
            except Exception as exc:  # a bug, or a request it could not take: answer, or the client waits
                answered = (ANSWERED[msg_type], {"status": "error", "ename": type(exc).__name__,
                                                 "evalue": str(exc), "traceback": []})
            assert answered is not None
            self.channel.send(*answered)
        else:
            self._comm_input(msg)
        said: dict[str, Any] = self.error_content or {}
        if self.budget.exhausted and said.get("ename") != "OutputLimitExceeded":
            # the device ends the session for it; a handler may have swallowed the exception
            self.channel.send("error", {"ename": "OutputLimitExceeded", "evalue": str(self.output_exceeded()),
                                        "traceback": []})
        self.channel.send("status", {"execution_state": "idle"}, metadata={"singlecell_comms": comms.open_comms()})

    def _comm_input(self, msg: dict[str, Any]) -> None:
        self.running = True
        self.interrupts.executing = self.replies is not None  # a Jupyter client may interrupt a handler
        try:
            comms.dispatch(msg)  # a handler's exception is logged to stderr by the comm manager
        except Exception:  # what the manager itself raised, or an output limit while it logged
            with contextlib.suppress(Exception):
                self.shell.showtraceback()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                self.report_error(KeyboardInterrupt, "", ["KeyboardInterrupt"])
        finally:
            self.interrupts.executing = False
        _flush_c_stdio()
        with contextlib.suppress(OutputLimitExceeded):
            self.flush_streams()
        self.running = False

    def run_file(self, name: str) -> BaseException | None:
        """Run an uploaded file in the cell's namespace, as ``%run`` would (``__name__`` is
        ``"__main__"``); the exception it raised, after its traceback went out, else None."""
        try:
            with open(os.path.join(self.spec.workdir, name), encoding="utf-8") as fh:
                source = fh.read()
            exec(compile(source, name, "exec"), self.shell.user_ns)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the cell must not run
            self.shell.showtraceback(tb_offset=1)  # not this frame: the traceback starts in the file
            return exc
        return None

    def write_inputs(self, request: dict[str, Any]) -> None:
        """The uploaded files arrive as buffers, named in the request's metadata."""
        names = request.get("metadata", {}).get("singlecell_inputs", [])
        for name, buffer in zip(names, request.get("buffers", []), strict=False):
            path = os.path.join(self.spec.workdir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(bytes(buffer))
        if names:
            importlib.invalidate_caches()  # an uploaded module imports even if its folder was looked in


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def exit_after_delivery(kernel: Kernel, pid: int,
                         real_exit: Callable[[int], NoReturn]) -> Callable[[int], NoReturn]:
    """``os._exit`` for the cell: what it printed first still reaches the device. ZeroMQ sends
    from a thread of its own, and only a closing socket waits for it; a send cannot."""

    def _exit(code: int) -> NoReturn:
        if os.getpid() == pid:  # a forked subprocess must not touch the copied ZeroMQ context
            with contextlib.suppress(Exception):
                kernel.flush_streams()
                kernel.channel.close()
        real_exit(code)

    return _exit
