"""Where the files a cell wrote are kept; :func:`open_filestore` picks the backend from a URL."""

from __future__ import annotations

from collections.abc import Callable

from filestore.base import (
    FileStore,
    FileStoreError,
    InvalidFileName,
    UnknownFileStore,
    check_name,
    check_request_id,
)
from filestore.directory import DirectoryFileStore
from filestore.grid import GridFileStore
from filestore.sql import SqlFileStore

__all__ = [
    "DirectoryFileStore",
    "FileStore",
    "FileStoreError",
    "GridFileStore",
    "InvalidFileName",
    "SqlFileStore",
    "UnknownFileStore",
    "check_name",
    "check_request_id",
    "open_filestore",
]


def _directory(url: str) -> FileStore:
    path = url.removeprefix("dir:")
    if not path:
        raise FileStoreError("a dir: filestore needs a folder, e.g. dir:/srv/singlecell/files")
    return DirectoryFileStore(path)


# Keyed by the URL's scheme without its driver: ``sqlite+pysqlite:///…`` is ``sqlite``.
_BACKENDS: dict[str, Callable[[str], FileStore]] = {
    "dir": _directory,
    "sqlite": SqlFileStore,
    "postgresql": SqlFileStore,
    "mongodb": GridFileStore,  # mongodb+srv:// too
}


def open_filestore(url: str) -> FileStore:
    """The backend for ``url``: ``dir:/path`` (or ``dir:relative/path``), ``sqlite:///path``,
    ``postgresql://…``, ``mongodb://host/database`` (GridFS). Nothing is touched until the store's
    ``create()`` or first call."""
    scheme = url.partition(":")[0].partition("+")[0] if ":" in url else ""
    try:
        factory = _BACKENDS[scheme]
    except KeyError:
        # Name the scheme only: the rest of the URL may hold a password.
        raise UnknownFileStore(
            f"unknown filestore scheme {scheme!r}; known: {', '.join(f'{s}:' for s in sorted(_BACKENDS))}"
        ) from None
    return factory(url)
