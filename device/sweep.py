"""Collecting the files a cell left in its working folder, without trusting the folder.

The kernel (attacker-controlled) may have planted symlinks, hard links to server files, FIFOs,
devices or deep trees there. We walk with folder file descriptors and ``O_NOFOLLOW``, take only
regular files with a single link, and stop at the count and size limits.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

MAX_DEPTH = 8


@dataclass(frozen=True)
class SweptFile:
    name: str  # relative POSIX path
    data: bytes


@dataclass(frozen=True)
class SweepResult:
    files: list[SweptFile]
    skipped: list[str]  # what was left out, in words, for the cell's output


def _read_regular(dir_fd: int, entry: str, max_size: int) -> bytes | str:
    """The file's bytes, or a reason it was skipped."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        return f"cannot open ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_nlink != 1:
            return "a hard link"
        if info.st_size > max_size:
            return f"larger than {max_size} bytes"
        chunks = []
        left = max_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_size:  # it grew while we read
            return f"larger than {max_size} bytes"
        return data
    finally:
        os.close(fd)


def _walk(dir_fd: int, prefix: str, depth: int) -> Iterator[tuple[int, str, str]]:
    """(dir_fd, entry name, relative name) of every non-folder entry, folders first-level first."""
    with contextlib.suppress(OSError):
        names = sorted(os.listdir(dir_fd))
        folders = []
        for name in names:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                folders.append(name)
            else:
                yield dir_fd, name, prefix + name
        if depth >= MAX_DEPTH:
            return
        for name in folders:
            try:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                yield from _walk(sub, f"{prefix}{name}/", depth + 1)
            finally:
                os.close(sub)


def sweep(workdir: str, inputs: Mapping[str, bytes], max_files: int, max_size: int,
          max_total: int = 0) -> SweepResult:
    """Collect the files under ``workdir``; uploaded ``inputs`` left unchanged are not outputs.
    ``max_total`` (0: none) caps the bytes of all of them: sparse files take no room on the
    kernel's disk but would take their full size in the filestore."""
    total = 0
    files: list[SweptFile] = []
    skipped: list[str] = []
    try:
        root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return SweepResult(files, skipped)
    try:
        for dir_fd, entry, name in _walk(root, "", 0):
            if len(files) >= max_files:
                skipped.append(f"files after the first {max_files}")
                break
            data = _read_regular(dir_fd, entry, max_size)
            if isinstance(data, str):
                skipped.append(f"{name}: {data}")
            elif inputs.get(name) != data:
                if max_total and total + len(data) > max_total:
                    skipped.append(f"{name}: past the limit of {max_total} bytes for all files of a cell")
                    continue
                total += len(data)
                files.append(SweptFile(name, data))
    finally:
        os.close(root)
    return SweepResult(files, skipped)


def is_empty(workdir: str) -> bool:
    """True when the folder holds nothing at all: then there is nothing to sweep."""
    try:
        with os.scandir(workdir) as entries:
            return next(entries, None) is None
    except OSError:
        return True
