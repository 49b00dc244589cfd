"""Full-text search of snippets: one interface, one implementation per database.

The snippet library keeps one document per live snippet: its head revision's title, tags, blurb
and code (every file, with its path). Writing and deleting happen inside the library's own
transactions; a search is a subquery the library joins to, for tags, sorting and pages.

Every string a person types is a valid query: it never raises, and a query with nothing to
search for matches nothing. Identifiers like ``tangent_line`` are kept whole, so they find that
identifier, not every text with "tangent" and "line" in it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

WORD = re.compile(r"\w+")
MAX_QUERY = 500  # characters of a query looked at
MAX_CODE = 256 * 1024  # characters of a snippet's code indexed (PostgreSQL's tsvector caps at 1 MB)


@dataclass(frozen=True)
class Document:
    snippet_id: str
    title: str
    tags: str  # space-separated
    blurb: str
    code: str  # every file, each after its path


class SearchIndex(ABC):
    """Who calls: :class:`singlecell.library.sql.SqlLibrary`, in its write transactions and its
    queries. The index's table is made by the Store's schema (singlecell/store/schema.py)."""

    @abstractmethod
    def write(self, conn: Connection, document: Document) -> None:
        """Put (or replace) a snippet's document, in the caller's transaction."""

    @abstractmethod
    def delete(self, conn: Connection, snippet_id: str) -> None:
        """Forget a snippet (deleted or purged), in the caller's transaction."""

    @abstractmethod
    def matches(self, query: str) -> sa.Subquery | None:
        """A subquery of ``(snippet_id, score)`` for every document matching ``query``, a higher
        score a better match; ``None`` when the query has nothing to search for."""

    def search(self, conn: Connection, query: str, limit: int = 20) -> list[str]:
        """The ids matching ``query``, best first (for tests and tools; the library joins instead)."""
        found = self.matches(query)
        if found is None:
            return []
        rows = conn.execute(sa.select(found.c.snippet_id).order_by(found.c.score.desc(), found.c.snippet_id)
                            .limit(limit))
        return [row.snippet_id for row in rows]


def clean(query: str) -> str:
    """The part of a query an index looks at: its first characters, without what no database
    text can hold (NUL, unpaired surrogates)."""
    return query[:MAX_QUERY].encode("utf-8", "ignore").decode("utf-8").replace("\x00", " ")


def words(query: str) -> list[str]:
    """The words of a query, as the indexes see them: ``tangent_line`` is one word."""
    return WORD.findall(clean(query))
