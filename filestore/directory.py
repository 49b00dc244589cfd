"""A FileStore keeping each file at ``root/<request_id>/<name>``, where nginx can serve it.

Every step below root goes through directory file descriptors opened with ``O_NOFOLLOW``, so a
symlink planted anywhere in the tree (as a request folder, a subfolder or a file) is never
followed: it can neither redirect a write nor leak a read outside root. Root itself may be a
symlink; that is the operator's choice.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from filestore.base import FileStore, FileStoreError, check_name, check_request_id

FILE_MODE = 0o644  # readable by the web server's user, whatever the umask
DIR_MODE = 0o755

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What a missing file looks like from get: absent, a symlink (ELOOP), a file where a folder
# should be (ENOTDIR), or a socket (ENXIO).
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENXIO})


def _remove_contents(dir_fd: int) -> int:
    """Empty the folder open at ``dir_fd`` without following links; returns the files removed."""
    removed = 0
    for entry in os.scandir(dir_fd):
        if entry.is_dir(follow_symlinks=False):
            sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                removed += _remove_contents(sub)
            finally:
                os.close(sub)
            os.rmdir(entry.name, dir_fd=dir_fd)
        else:
            removed += entry.is_file(follow_symlinks=False)
            os.unlink(entry.name, dir_fd=dir_fd)  # a symlink goes, never its target
    return removed


class DirectoryFileStore(FileStore):
    """Files under ``root``; the location is the path relative to root."""

    servable_by_path = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()  # a later chdir must not move the store

    def describe(self) -> str:
        return f"a folder, {self.root}"

    def create(self) -> None:
        try:
            self.root.mkdir(parents=True)
        except FileExistsError:
            return  # an existing root keeps the modes its operator gave it
        self.root.chmod(DIR_MODE)

    def _open_folder(self, parts: list[str], make: bool) -> int:
        """An fd for ``root/<parts…>``, making missing folders when ``make``; never follows links."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                made = False
                if make:
                    with contextlib.suppress(FileExistsError):  # mkdir does not follow a link either
                        os.mkdir(part, DIR_MODE, dir_fd=fd)
                        made = True
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = sub
                if made:
                    os.fchmod(fd, DIR_MODE)  # the umask must not hide it from the web server
        except BaseException:
            os.close(fd)
            raise
        return fd

    def put(self, request_id: str, name: str, data: bytes) -> str:
        parts = [check_request_id(request_id), *check_name(name).split("/")]
        try:
            dir_fd = self._open_folder(parts[:-1], make=True)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise FileStoreError(f"{'/'.join(parts)}: a folder on the way is a link or a file") from exc
        try:
            # Write aside, then rename over the name: readers see the old bytes or the new ones,
            # and the rename replaces a planted symlink itself rather than writing through it.
            # No fsync: like the SQLite store's synchronous=NORMAL, this survives a process
            # crash, not a power cut.
            tmp = f".tmp-{secrets.token_hex(8)}"
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
                dir_fd=dir_fd,
            )
            try:
                with open(fd, "wb") as f:
                    os.fchmod(fd, FILE_MODE)
                    f.write(data)
                os.replace(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
        finally:
            os.close(dir_fd)
        return "/".join(parts)

    def get(self, request_id: str, name: str) -> bytes | None:
        parts = [check_request_id(request_id), *check_name(name).split("/")]
        try:
            dir_fd = self._open_folder(parts[:-1], make=False)
            try:
                # O_NONBLOCK: opening a planted FIFO must not hang; it is refused below anyway.
                fd = os.open(
                    parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
                )
            finally:
                os.close(dir_fd)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with open(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def delete_file(self, request_id: str, name: str) -> bool:
        parts = [check_request_id(request_id), *check_name(name).split("/")]
        try:
            dir_fd = self._open_folder(parts[:-1], make=False)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return False
            raise
        try:
            os.unlink(parts[-1], dir_fd=dir_fd)  # never follows a link: it removes the entry itself
            return True
        except OSError as exc:
            if exc.errno in (*_ABSENT, errno.EISDIR, errno.EPERM):
                return False
            raise
        finally:
            os.close(dir_fd)

    def delete(self, request_id: str) -> int:
        check_request_id(request_id)
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            try:
                fd = os.open(request_id, _DIR_FLAGS, dir_fd=root_fd)
            except FileNotFoundError:
                return 0
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                os.unlink(request_id, dir_fd=root_fd)  # a planted link or stray file: drop the entry only
                return 0
            try:
                removed = _remove_contents(fd)
            finally:
                os.close(fd)
            os.rmdir(request_id, dir_fd=root_fd)
            return removed
        finally:
            os.close(root_fd)
