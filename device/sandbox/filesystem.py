"""Filesystem: the kernel sees a root of its own, built from nothing.

In a private mount namespace the kernel's root becomes a small read-only tmpfs into which are
bound, read-only: the system folders (``/usr``, ``/etc``, ``/lib*``, …), the Python the kernel
runs on (its prefixes and ``sys.path``), a few device nodes, ``/sys``; a fresh ``/proc`` that
shows only the kernel's own processes; and, writable, the kernel's own working folder (at its
``/cell``) and its private ``/tmp``; its socket to the device at ``/.singlecell/socket``.
Everything else — the server's data dir (DB, filestore), its config file, other kernels'
folders and sockets, ``/root``, ``/home``, ``/run`` (and the database sockets there), ``/var`` —
simply is not there, and paths the operator names are hidden even inside exposed folders.

As root the device also gives every kernel its folder on a tmpfs of its own, sized by
``--disk-limit``, so a cell cannot fill the server's disk.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from typing import Any

from device.sandbox import libc
from device.sandbox.base import KernelPlace, LayerStatus, SandboxLayer
from device.sandbox.identity import enter_user_namespace
from singlecell.errors import SandboxError

#: where the kernel finds its own places inside its root: fixed, so no host path shows through
WORKDIR = "/cell"
SOCKET = "/.singlecell/socket"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_ST_NOATIME, _ST_NODIRATIME, _ST_RELATIME = 1024, 2048, 4096
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21


def python_paths() -> list[str]:
    """Every folder the kernel's Python may import from, as real paths: its prefixes, its
    ``sys.path`` (never the launch folder: the template starts with ``python -P``), and the
    folders of this project's own packages (an editable install finds them outside sys.path)."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    paths += [p for p in sys.path if p and os.path.isdir(p)]
    for package in ("device", "singlecell", "filestore"):
        spec = importlib.util.find_spec(package)
        paths += list(spec.submodule_search_locations or []) if spec is not None else []
    return [p for p in _outermost(os.path.realpath(p) for p in paths) if p != "/"]


def _outermost(paths: Any) -> list[str]:
    """The paths, without any that lies inside another, sorted."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == o or path.startswith(o.rstrip("/") + "/") for o in out):
            out.append(path)
    return out


def _readonly_flags(path: str) -> int:
    """Flags to remount a bind mount read-only without dropping flags the kernel locked on it
    (in a user namespace, a remount that clears nosuid/nodev/noexec/atime flags is refused)."""
    f = os.statvfs(path).f_flag
    flags = libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV
    flags |= f & libc.MS_NOEXEC
    flags |= (_MS_NOATIME if f & _ST_NOATIME else 0) | (_MS_NODIRATIME if f & _ST_NODIRATIME else 0)
    flags |= _MS_RELATIME if f & _ST_RELATIME else 0
    return flags


class Filesystem(SandboxLayer):
    name = "filesystem"

    def __init__(self, hide: list[str], expose: list[str], disk_mb: int) -> None:
        self.hide = [os.path.realpath(p) for p in hide if p]
        self.expose = _outermost([*python_paths(), *(os.path.realpath(p) for p in expose if p)])
        self.disk_mb = disk_mb

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Filesystem:
        return cls(list(settings.get("hide", [])), list(settings.get("expose", [])), int(settings.get("disk_mb", 0)))

    def check(self) -> LayerStatus:
        def attempt() -> None:
            if os.geteuid() != 0:
                enter_user_namespace()
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
            libc.mount("tmpfs", "/tmp", "tmpfs", 0, "size=64k")

        why = libc.probe(attempt)
        if why is not None:
            return LayerStatus(self.name, False, f"cannot make a mount namespace here ({why}); "
                               "kernels see the host's files, limited only by their uid")
        quota = (f"its folder on a tmpfs of {self.disk_mb} MB" if os.geteuid() == 0 and self.disk_mb
                 else "no disk quota (needs root)" if self.disk_mb else "no disk quota")
        return LayerStatus(self.name, True, "a root (and IPC namespace) of its own: system and Python folders "
                           f"read-only, its own folder and /tmp writable, the server's files absent; {quota}")

    def isolate(self, place: KernelPlace) -> KernelPlace:
        try:
            self._build(place)
        except OSError as exc:
            raise SandboxError(f"cannot build the kernel's filesystem: {exc}") from exc
        return KernelPlace(home="/", workdir=WORKDIR, tmpdir="/tmp", socket=SOCKET if place.socket else "",
                           uid=place.uid)

    def _build(self, place: KernelPlace) -> None:
        as_root = os.geteuid() == 0
        if not as_root:
            enter_user_namespace()
        # and an IPC namespace of its own: SysV and POSIX IPC objects are like files, and would
        # otherwise outlive the request and be shared with every other kernel and the host
        libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWIPC)
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)  # nothing propagates back out
        root = os.path.join(place.home, "root")
        libc.mount("tmpfs", root, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")

        def inside(path: str) -> str:
            return root + path

        def bind(source: str, target: str, writable: bool = False) -> None:
            dest = inside(target)
            if os.path.isdir(source):
                os.makedirs(dest, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "a"):
                    pass
            libc.mount(source, dest, None, libc.MS_BIND | libc.MS_REC)
            if not writable:
                libc.mount(None, dest, None, _readonly_flags(dest))

        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                os.symlink(os.readlink(path), inside(path))
            elif os.path.isdir(path):
                bind(path, path)
        # the private /tmp first: Python may live under /tmp (a checkout there), and its folders
        # are then bound on top, inside it
        bind(place.tmpdir, "/tmp", writable=True)
        for path in self.expose:
            if not any(path == s or path.startswith(s + "/") for s in SYSTEM_DIRS):
                bind(path, path)
        os.makedirs(inside("/dev"))
        for name in DEVICES:
            if os.path.exists(f"/dev/{name}"):
                bind(f"/dev/{name}", f"/dev/{name}", writable=True)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, inside(f"/dev/{name}"))
        os.makedirs(inside("/dev/shm"))
        libc.mount("tmpfs", inside("/dev/shm"), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                   f"size={max(1, self.disk_mb // 4 or 16)}m,mode=1777")
        os.makedirs(inside("/proc"))
        try:  # a procfs of our own that shows only processes of our own uid
            libc.mount("proc", inside("/proc"), "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
                       "hidepid=invisible")
        except OSError:
            libc.mount("/proc", inside("/proc"), None, libc.MS_BIND | libc.MS_REC)
        if os.path.isdir("/sys"):
            os.makedirs(inside("/sys"))
            try:  # a sysfs of our own network namespace: the host's interfaces do not show
                libc.mount("sysfs", inside("/sys"), "sysfs",
                           libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
            except OSError:
                bind("/sys", "/sys")
        hidden = []
        for path in self.hide:  # inside exposed folders: a data dir in the checkout, say
            dest = inside(path)
            if os.path.isdir(dest) and not os.path.islink(dest):
                libc.mount("tmpfs", dest, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
                           "size=4k,nr_inodes=64,mode=0755")
                hidden.append(dest)
            elif os.path.isfile(dest):
                libc.mount("/dev/null", dest, None, libc.MS_BIND)
        # the kernel's own places last: they may lie inside a hidden folder (the work root)
        os.makedirs(inside("/var"), exist_ok=True)
        if not os.path.lexists(inside("/var/tmp")):
            os.symlink("/tmp", inside("/var/tmp"))
        bind(place.workdir, WORKDIR, writable=True)
        if place.socket:
            bind(place.socket, SOCKET, writable=True)
        for dest in hidden:
            libc.mount(None, dest, None, libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV
                       | libc.MS_NOEXEC)
        libc.mount(None, root, None, libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV)
        os.chdir(root)
        libc.pivot_root(".", ".")  # the old root ends up stacked under the new one ...
        libc.umount(".", libc.MNT_DETACH)  # ... and is detached here
        os.chdir(WORKDIR)
        os.environ.update({"HOME": WORKDIR, "PWD": WORKDIR, "TMPDIR": "/tmp"})
        with contextlib.suppress(ImportError):
            import tempfile

            tempfile.tempdir = None  # computed again, as /tmp, on next use

    def apply(self, place: KernelPlace) -> None:
        pass  # all done in isolate(), while the kernel was single-threaded and privileged
