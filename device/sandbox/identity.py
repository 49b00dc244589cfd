"""Identity: every kernel slot runs as its own unprivileged uid, so kernels cannot signal,
trace or read one another or the server.

As root, the device gives each live kernel a uid (and the same gid) of its own from
``--kernel-uids`` and the kernel drops to it (no supplementary groups) just before user code.
Not as root, the kernel enters an unprivileged user namespace instead, where the host allows
one: inside it, it may build the network and filesystem layers' namespaces, but outside it
it is still the server's uid (so this mode does not separate kernels from each other)."""

from __future__ import annotations

import os
from typing import Any

from device.sandbox import libc
from device.sandbox.base import KernelPlace, LayerStatus, SandboxLayer
from singlecell.errors import SandboxError


def enter_user_namespace() -> None:
    """Become root of a new user namespace, mapped to our own uid and gid outside."""
    uid, gid = os.getuid(), os.getgid()
    libc.unshare(libc.CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as fh:
        fh.write("deny")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as fh:
        fh.write(f"0 {gid} 1")


class Identity(SandboxLayer):
    name = "identity"

    def __init__(self, first_uid: int, last_uid: int) -> None:
        self.first_uid = first_uid
        self.last_uid = last_uid
        self.as_root = os.geteuid() == 0

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Identity:
        return cls(int(settings.get("first_uid", 200000)), int(settings.get("last_uid", 200999)))

    def check(self) -> LayerStatus:
        if self.as_root:
            return LayerStatus(self.name, True, f"each kernel runs as its own uid from "
                               f"{self.first_uid}–{self.last_uid}, without supplementary groups")
        why = libc.probe(enter_user_namespace)
        if why is None:
            return LayerStatus(self.name, True, "not root: kernels run in an unprivileged user "
                               "namespace (outside it they keep the server's uid; run as root to "
                               "give each kernel a uid of its own)")
        return LayerStatus(self.name, False, f"not root, and no user namespace here ({why}); "
                           "kernels run as the server's own uid")

    def isolate(self, place: KernelPlace) -> None:
        if self.as_root:
            return  # the uid is dropped in apply(): the filesystem layer needs root first
        try:
            enter_user_namespace()
        except OSError as exc:
            raise SandboxError(f"cannot enter a user namespace: {exc}") from exc

    def apply(self, place: KernelPlace) -> None:
        if not self.as_root:
            return
        uid = place.uid
        if uid is None or not self.first_uid <= uid <= self.last_uid:
            raise SandboxError(f"the device gave this kernel no uid from {self.first_uid}–{self.last_uid}")
        parent = os.getppid()
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            libc.set_parent_death_signal(parent=parent)  # a change of uid clears it
            # and makes us undumpable: our /proc entries would stay root's, so hidepid would
            # hide the kernel's own processes from it (and it could not count them)
            libc.set_dumpable(True)
        except OSError as exc:
            raise SandboxError(f"cannot switch to uid {uid}: {exc}") from exc
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
            raise SandboxError(f"switching to uid {uid} did not take")
