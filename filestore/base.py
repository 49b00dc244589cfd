"""The FileStore: where the bytes of the files a cell wrote are kept.

The device puts each file a cell left behind; the web tier gets it back for
``GET /files/<request id>/<name>``. Which file belongs to which request, its size and its
content type are the Store's records; a FileStore only keeps bytes under
``(request_id, name)`` and hands back a ``location`` string for them.

Names are relative POSIX paths (``plot.png``, ``out/data.csv``) already checked by the caller
with :func:`check_name`; backends call it (and :func:`check_request_id`) again, in every method,
so a bad name can never reach a disk or a DB. A name and a folder of the same path cannot both
exist (``a`` and ``a/b``), as on the cell's own disk.
Calls are synchronous and short; any number of processes may use one store at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

MAX_NAME_BYTES = 1024
MAX_PART_BYTES = 255  # one path component: what filesystems allow
MAX_REQUEST_ID_BYTES = 255  # a request id is one path component in the directory backend


class FileStoreError(Exception):
    """Base of the filestore's own errors (it imports nothing of the project)."""


class InvalidFileName(FileStoreError, ValueError):
    pass


class UnknownFileStore(FileStoreError, ValueError):
    """A filestore URL whose scheme no backend handles."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe relative path, else raise :class:`InvalidFileName`.

    Safe means: non-empty, at most ``MAX_NAME_BYTES`` in UTF-8, no NUL or backslash, not
    absolute, and no empty, ``.`` or ``..`` component.
    """
    if not isinstance(name, str) or not name:
        raise InvalidFileName("a file name must be a non-empty string")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFileName(f"file name {name!r} is not valid UTF-8") from exc
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidFileName(f"file name is longer than {MAX_NAME_BYTES} bytes")
    if "\x00" in name or "\\" in name:
        raise InvalidFileName(f"file name {name!r} contains a NUL or a backslash")
    if name.startswith("/"):
        raise InvalidFileName(f"file name {name!r} is absolute")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidFileName(f"file name {name!r} has an empty, '.' or '..' component")
    if any(len(part.encode("utf-8")) > MAX_PART_BYTES for part in parts):
        raise InvalidFileName(f"a component of file name {name!r} is longer than {MAX_PART_BYTES} bytes")
    return name


def check_request_id(request_id: str) -> str:
    """Return ``request_id`` if it can name a folder: one safe path component."""
    try:
        size = len(request_id.encode("utf-8"))
    except (AttributeError, UnicodeEncodeError):
        size = MAX_REQUEST_ID_BYTES + 1  # not a str, or not encodable: rejected below
    if not request_id or request_id in (".", "..") or size > MAX_REQUEST_ID_BYTES \
            or "/" in request_id or "\\" in request_id or "\x00" in request_id:
        raise InvalidFileName(f"request id {request_id!r} must be one path component of at most "
                              f"{MAX_REQUEST_ID_BYTES} bytes")
    return request_id


class FileStore(ABC):
    """The contract every filestore backend keeps."""

    #: True when the bytes live where a front-end web server (nginx) can serve them itself.
    servable_by_path: bool = False

    @abstractmethod
    def put(self, request_id: str, name: str, data: bytes) -> str:
        """Keep ``data`` under ``(request_id, name)``, replacing what was there.

        Returns the location (backend-specific, opaque to callers). Raises
        :class:`InvalidFileName` for a bad name or request id.
        """

    @abstractmethod
    def get(self, request_id: str, name: str) -> bytes | None:
        """The bytes kept under ``(request_id, name)``, or ``None`` when there are none.
        Raises :class:`InvalidFileName` for a bad name or request id."""

    @abstractmethod
    def delete_file(self, request_id: str, name: str) -> bool:
        """Remove the one file kept under ``(request_id, name)``; ``False`` when there was none.
        Raises :class:`InvalidFileName` for a bad name or request id."""

    @abstractmethod
    def delete(self, request_id: str) -> int:
        """Remove every file of ``request_id``; returns how many were removed. Raises
        :class:`InvalidFileName` for a bad request id."""

    def create(self) -> None:
        """Prepare the backing storage (tables, folders). Idempotent; every process must call
        it once before any other method."""

    def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        """What the filestore is, for people (``singlecell doctor``): where the bytes are, and the
        server's version when there is one; never a password. May ask the server."""
        return type(self).__name__
