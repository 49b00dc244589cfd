"""Full-text search of snippets: :func:`search_index` picks the one for a database."""

from __future__ import annotations

from singlecell.errors import UnknownBackend
from singlecell.library.search.base import Document, SearchIndex, words
from singlecell.library.search.postgres import PostgresSearch
from singlecell.library.search.sqlite import Fts5Search

__all__ = ["Document", "SearchIndex", "search_index", "words"]

_INDEXES: dict[str, type[SearchIndex]] = {"sqlite": Fts5Search, "postgresql": PostgresSearch}


def search_index(dialect: str) -> SearchIndex:
    """The index for a SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
    kind = _INDEXES.get(dialect)
    if kind is None:
        raise UnknownBackend(f"no snippet search for {dialect!r} databases; known: {', '.join(sorted(_INDEXES))}")
    return kind()
