"""MongoDB connections: one ``MongoClient`` per URL per process, shared by every part that uses
that server (the store, the accounts, the library, the filestore), as pymongo asks: a client is
a pool, safe across threads, and must not cross a ``fork()``.

The database is the URL's path (``mongodb://host/singlecell``), ``singlecell`` when it has none.
:func:`register` puts a client of the caller's for a URL (tests hand in a mongomock client, the
stand-in where no MongoDB server can run; see tests/mongo.py).
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit

DEFAULT_DATABASE = "singlecell"
SERVER_TIMEOUT_MS = 10_000  # how long a call waits for a server to answer before it fails

_clients: dict[str, tuple[int, Any]] = {}  # url → (the pid that made it, the client)
_lock = threading.Lock()


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/").split("/")[0]
    return name or DEFAULT_DATABASE


def client_for(url: str) -> Any:
    """The process's client for ``url``, made on first use (connecting lazily: nothing is sent
    until a call needs the server)."""
    with _lock:
        made = _clients.get(url)
        if made is not None and made[0] == os.getpid():
            return made[1]
        import pymongo  # only for a MongoDB URL: SQLite and PostgreSQL deployments never load it

        client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=SERVER_TIMEOUT_MS, connect=False,
                                     tz_aware=False, uuidRepresentation="standard")
        _clients[url] = (os.getpid(), client)
        return client


def database_for(url: str) -> Any:
    """The database ``url`` names, on the process's client for it."""
    return client_for(url)[database_name(url)]


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def describe_server(url: str) -> str:
    """``MongoDB 7.0.4 at mongodb://host/db``: the server's version, asked of it."""
    version = client_for(url).server_info().get("version", "?")
    return f"MongoDB {version} at {redacted(url)}"


class MongoBacked:
    """A backend on the MongoDB database its URL names, through the process's shared client,
    fetched on first use: opening one touches nothing."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db: Any = None

    @property
    def db(self) -> Any:
        if self._db is None:
            self._db = database_for(self.url)
        return self._db

    def close(self) -> None:
        self._db = None  # the client is the process's, shared with its other MongoDB parts


def register(url: str, client: Any) -> None:
    """Use ``client`` for ``url`` in this process from now on."""
    with _lock:
        _clients[url] = (os.getpid(), client)


def forget(url: str) -> None:
    with _lock:
        _clients.pop(url, None)
