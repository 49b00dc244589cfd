"""A kernel's own folder on the device's side: ``HOME/work`` (its working folder, swept for
the files the cell wrote), ``HOME/tmp`` (its /tmp), ``HOME/root`` (where the filesystem layer
builds its root) and ``HOME/s`` (its socket to the device).

As root with a disk quota, HOME is a tmpfs of its own, so a cell cannot fill the server's
disk; the device runs in a mount namespace of its own (:func:`enter_private_mounts`), so those
mounts vanish with it however it dies. Owned by root and closed to others (0711); ``work``
and ``tmp`` belong to the kernel's uid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from device.sandbox import libc

SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, with the NUL


def enter_private_mounts() -> bool:
    """Give the calling (single-threaded, root) process a mount namespace of its own whose
    mounts do not propagate to the host. False when that is not possible here."""
    if os.geteuid() != 0:
        return False
    try:
        libc.unshare(libc.CLONE_NEWNS)
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    except OSError:
        return False
    return True


class Workspace:
    def __init__(self, home: Path, uid: int | None, disk_mb: int, own_mount: bool) -> None:
        self.home = home
        self.workdir = home / "work"
        self.tmpdir = home / "tmp"
        self.socket = home / "s"
        self.mounted = False
        if len(str(self.socket)) > SOCKET_PATH_MAX:
            raise OSError(f"the kernels' folder {home.parent} is too deep for a Unix socket path "
                          f"(at most {SOCKET_PATH_MAX - 15} characters); choose a shorter --work-dir")
        os.mkdir(home, 0o711)
        try:
            if own_mount and disk_mb:
                libc.mount("tmpfs", str(home), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                           f"size={disk_mb}m,nr_inodes={max(1024, disk_mb * 64)},mode=0711")
                self.mounted = True
            for path in (self.workdir, self.tmpdir):
                os.mkdir(path, 0o700)
                if uid is not None:
                    os.chown(path, uid, uid)
            os.mkdir(home / "root", 0o700)
        except OSError:
            self.remove()
            raise

    def own_socket(self, uid: int | None) -> None:
        """After the device bound the socket: only the kernel's uid may connect to it."""
        if uid is not None:
            os.chown(self.socket, uid, uid)
        os.chmod(self.socket, 0o600)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        if self.mounted:
            with contextlib.suppress(OSError):
                libc.umount(str(self.home))  # lazily: a kernel still dying keeps it until it is gone
            self.mounted = False
        try:  # the common case, a cell that left nothing: rmdirs, not a tree walk
            for path in (self.workdir, self.tmpdir, self.home / "root", self.home):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(path)
        except OSError:
            shutil.rmtree(self.home, ignore_errors=True)
