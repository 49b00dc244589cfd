"""Network: a kernel gets a network namespace of its own, with only a loopback interface of its
own, so it reaches nothing — not the server's port, not the database, not other hosts, not the
abstract Unix sockets the server's processes use to wake each other. Operators who want cells
on the network turn the layer off (``--allow-network``)."""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import os
import signal
import socket
import struct
from typing import Any

from device.sandbox import libc
from device.sandbox.base import KernelPlace, LayerStatus, SandboxLayer
from device.sandbox.identity import enter_user_namespace
from singlecell.errors import SandboxError

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_loopback_up() -> None:
    """So a cell can still talk to itself over 127.0.0.1 inside its namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _isolate() -> None:
    libc.unshare(libc.CLONE_NEWNET)
    bring_loopback_up()


def _make_namespace() -> int:
    """A new network namespace with its loopback up, held open by the returned descriptor."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper child
        code = 1
        try:
            os.close(ready_r)
            _isolate()
            os.write(ready_w, b"1")
            code = 0
            signal.pause()  # until the template has opened our namespace and kills us
        finally:
            os._exit(code)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"1":
            raise SandboxError("could not make a network namespace for a kernel uid")
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


class Network(SandboxLayer):
    name = "network"

    def __init__(self, enabled: bool, keep: int = 0) -> None:
        self.enabled = enabled
        self.keep = keep  # namespaces kept for reuse, least recently used closed first (0: no bound)
        # uid → an open network namespace, in the template, least recently used first
        self.namespaces: collections.OrderedDict[int, int] = collections.OrderedDict()

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Network:
        return cls(bool(settings.get("enabled", True)), int(settings.get("keep", 0)))

    def check(self) -> LayerStatus:
        if not self.enabled:
            return LayerStatus(self.name, False, "turned off by the operator (--allow-network): "
                               "cells can reach the network")
        def attempt() -> None:
            if os.geteuid() != 0:
                enter_user_namespace()
            _isolate()

        why = libc.probe(attempt)
        if why is None:
            return LayerStatus(self.name, True, "no network: a namespace of its own with only "
                               "its own loopback")
        return LayerStatus(self.name, False, f"cannot make a network namespace here ({why})")

    def before_fork(self, place: KernelPlace) -> KernelPlace:
        """As root, one namespace per kernel uid, made the first time and entered by every later
        kernel of that uid: making and tearing one down costs about a millisecond of CPU, and a
        uid is only reused once everything of its last kernel is gone (nothing lives on in a
        namespace without processes that an unprivileged kernel could have changed).

        At most ``keep`` are kept, the least recently used closed first (the device keeps as
        many uids, so this only bounds what a mismatch would leave). A closed one lives on while
        a kernel is in it; the next kernel of its uid gets a new one. The child enters its own
        inherited copy of the descriptor, so what the template closes or opens meanwhile (the
        same number, for another uid) cannot change which namespace it enters."""
        if place.uid is None or os.geteuid() != 0:
            return place
        fd = self.namespaces.get(place.uid)
        if fd is None:
            fd = self.namespaces[place.uid] = _make_namespace()
        self.namespaces.move_to_end(place.uid)
        while self.keep and len(self.namespaces) > self.keep:
            os.close(self.namespaces.popitem(last=False)[1])
        return dataclasses.replace(place, netns_fd=fd)

    def isolate(self, place: KernelPlace) -> None:
        try:
            if place.netns_fd is not None:
                try:
                    libc.setns(place.netns_fd, libc.CLONE_NEWNET)
                finally:
                    os.close(place.netns_fd)  # the kernel keeps no handle on any namespace
                return
            if os.geteuid() != 0:  # not root, and the identity layer did not make us root of a namespace
                enter_user_namespace()
            _isolate()
        except OSError as exc:
            raise SandboxError(f"cannot cut the kernel off the network: {exc}") from exc

    def apply(self, place: KernelPlace) -> None:
        pass  # all done in isolate(), before any thread exists
