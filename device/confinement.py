"""The order in which a kernel confines itself before user code runs: the sandbox, written once.

Every kind of kernel starts through :func:`confine`: the one-shot kernels the template forks
(:func:`device.template.run_forked_kernel`) and the standalone Jupyter kernel
(:mod:`device.jupyter_kernel`). So a fix to the sandbox's order cannot land in one and miss the
other. The steps, in order:

1. its working folder, environment (``HOME``, ``TMPDIR``, ``PWD``; no bytecode written, so
   importing an upload leaves no ``__pycache__`` to collect) and an empty stdin, while the
   process is still privileged and has one thread;
2. every layer's ``isolate``: namespaces and mounts (they need a single-threaded process);
3. its channel (ZeroMQ starts threads here), opened by the caller;
4. the kernel: fds 1 and 2 captured as ``stream`` output, ``sys.stdout``/``stderr``/``stdin``
   replaced, and the cell's own folder first on ``sys.path`` (uploads and files a cell writes
   import as they would in Jupyter);
5. every layer's ``apply``: the uid, resource limits, and the system-call filter last.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from collections.abc import Callable

from IPython.core.interactiveshell import InteractiveShell

from device.control import KernelSpec
from device.kernel import EXIT_CHANNEL_FAILED, EXIT_SANDBOX_FAILED, Channel, Kernel, Limits, set_current_kernel
from device.sandbox.base import KernelPlace, SandboxLayer


class ConfinementFailed(Exception):
    """The kernel could not be confined, so no user code may run: exit with ``exit_code``."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


def _nothing(*_: object) -> None:
    pass


def confine(shell: InteractiveShell, spec: KernelSpec, layers: list[SandboxLayer], place: KernelPlace, *,
            open_channel: Callable[[KernelSpec], Channel], stdin: io.TextIOBase,
            before_isolate: Callable[[], None] = _nothing,
            before_apply: Callable[[Kernel], None] = _nothing) -> Kernel:
    """Confine this process as the kernel of ``spec`` and return the :class:`Kernel` that runs
    its cells. ``place`` is where it lives (as the layers prepared it before a fork, if they
    did); ``open_channel`` makes its channel from the spec as the kernel sees it once isolated;
    ``before_isolate`` runs while the process still has one thread (warm-up), ``before_apply``
    once the kernel exists (threads of its own that the limits should count). Raises
    :class:`ConfinementFailed`; the caller exits with its code before any user code runs."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(place.workdir)
    # no __pycache__ beside an uploaded module: it would come back as a file the cell wrote
    os.environ.update({"HOME": place.workdir, "TMPDIR": place.tmpdir, "PWD": place.workdir,
                       "PYTHONDONTWRITEBYTECODE": "1"})
    sys.dont_write_bytecode = True
    before_isolate()
    place = _phase(layers, place, "isolate")  # namespaces: while we have one thread
    # where it lives as it sees it now: the filesystem layer moves its folders and socket
    seen = dataclasses.replace(spec, home=place.home, workdir=place.workdir, tmpdir=place.tmpdir, uid=place.uid,
                               endpoint=f"ipc://{place.socket}" if place.socket else spec.endpoint)
    try:
        channel = open_channel(seen)
    except Exception as exc:
        raise ConfinementFailed(EXIT_CHANNEL_FAILED, f"cannot open the kernel's channel: {exc}") from exc
    kernel = Kernel(shell, seen, channel, Limits.of(layers, seen))
    set_current_kernel(kernel)  # what the shell's display hooks publish through
    kernel.capture_fds()  # subprocess and C output arrive as stream messages too
    sys.stdout, sys.stderr, sys.stdin = kernel.stdout, kernel.stderr, stdin
    sys.path.insert(0, seen.workdir)
    before_apply(kernel)
    _phase(layers, place, "apply")  # the uid, limits, and the system-call filter last
    return kernel


def _phase(layers: list[SandboxLayer], place: KernelPlace, phase: str) -> KernelPlace:
    """Run one phase of every layer; returns the kernel's places as the layers left them."""
    for layer in layers:
        try:
            moved = layer.isolate(place) if phase == "isolate" else layer.apply(place)
        except Exception as exc:
            raise ConfinementFailed(EXIT_SANDBOX_FAILED, f"sandbox layer {layer.name} failed ({phase}): "
                                                         f"{exc}") from exc
        place = moved or place
    return place
