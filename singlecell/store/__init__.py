"""Stores, chosen by URL: ``open_store("sqlite:////srv/singlecell/store.db")``,
``open_store("postgresql://singlecell@db.example/singlecell")``,
``open_store("mongodb://db.example/singlecell")``."""

from __future__ import annotations

from collections.abc import Callable

from singlecell.errors import UnknownBackend
from singlecell.store.base import (
    FileRecord,
    NewRequest,
    NewSession,
    Permalink,
    Progress,
    RequestRecord,
    SessionState,
    Status,
    Store,
    StoredMessage,
)
from singlecell.store.mongo import MongoStore
from singlecell.store.sql import SqlStore

__all__ = ["FileRecord", "NewRequest", "NewSession", "Permalink", "Progress", "RequestRecord", "SessionState",
           "Status", "Store", "StoredMessage", "open_store"]

# URL scheme (without any "+driver") → backend.
_BACKENDS: dict[str, Callable[[str], Store]] = {
    "sqlite": SqlStore,
    "postgresql": SqlStore,
    "mongodb": MongoStore,  # mongodb+srv:// too
}


def open_store(url: str) -> Store:
    """The store ``url`` names. Raises :class:`UnknownBackend` for a scheme no backend handles."""
    scheme, colon, _ = url.partition(":")
    scheme = scheme.partition("+")[0].lower()
    backend = _BACKENDS.get(scheme) if colon else None
    if backend is None:
        # Name only the scheme: the rest of the URL may hold a password.
        raise UnknownBackend(
            f"no store backend handles {scheme!r} URLs; known schemes: {', '.join(sorted(_BACKENDS))} "
            "(e.g. sqlite:////srv/singlecell/store.db, postgresql://user@host/db or mongodb://host/db)"
        )
    return backend(url)
