"""Full-text search of snippets: one interface, one implementation per database.

The snippet library keeps one document per live snippet: its head revision's title, tags, blurb
and code (every file, with its path). Writing and deleting happen inside the library's own
transactions; a search is a condition on the ``snippets`` table (to count and filter) or a
ranked subquery joined to it (to sort by relevance), which the library combines with tags,
owners, sorting and pages; or, with nothing else to filter by, the page of best matches itself.

Every string a person types is a valid query: it never raises, and a query with nothing to
search for matches nothing. Identifiers like ``tangent_line`` are kept whole, so they find that
identifier, not every text with "tangent" and "line" in it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from singlecell.store.schema import snippet_table

WORD = re.compile(r"\w+")
MAX_QUERY = 500  # characters of a query looked at
MAX_CODE = 256 * 1024  # characters of a snippet's code indexed (PostgreSQL's tsvector caps at 1 MB)


@dataclass(frozen=True)
class Document:
    snippet_id: str  # a row of ``snippets``
    title: str
    tags: str  # space-separated
    blurb: str
    code: str  # every file, each after its path


class SearchIndex(ABC):
    """Who calls: :class:`singlecell.library.sql.SqlLibrary`, in its write transactions and its
    queries. The index's table is made by the Store's schema (singlecell/store/schema.py)."""

    @property
    @abstractmethod
    def snippet_key(self) -> sa.ColumnElement[Any]:
        """The column of ``snippets`` that the index's ``key`` columns hold (its id, or its rowid)."""

    @abstractmethod
    def write(self, conn: Connection, document: Document) -> None:
        """Put (or replace) a snippet's document, in the caller's transaction. The snippet's row
        exists already."""

    @abstractmethod
    def delete(self, conn: Connection, snippet_id: str) -> None:
        """Forget a snippet's document (deleted or about to be purged), in the caller's transaction."""

    @abstractmethod
    def matching(self, query: str) -> sa.ColumnElement[bool] | None:
        """A condition on ``snippets``, true for the snippets whose document matches ``query``;
        ``None`` when the query has nothing to search for. Cheap: it scores nothing."""

    @abstractmethod
    def ranked(self, query: str) -> tuple[sa.Subquery, sa.ColumnElement[bool]] | None:
        """A subquery with a ``score`` column (higher is better) for the matching documents, and
        the condition that joins it to ``snippets``; ``None`` as :meth:`matching`."""

    def best(self, query: str, offset: int, limit: int) -> tuple[sa.Subquery, sa.ColumnElement[bool]] | None:
        """One page of the matches, best first (equal scores: the higher ``key`` first), as a
        subquery with ``key``, ``score`` and ``total`` (how many match) columns, and the condition
        that joins it to ``snippets``; ``None`` as :meth:`matching`. For a search with nothing else
        to filter by: the index holds live snippets only, so no match needs joining to be counted
        or sorted. This default keeps the matches' keys and scores once, for the sort and the count."""
        found = self.ranked(query)
        if found is None:
            return None
        scores, _ = found
        matches = sa.select(scores.c.key, scores.c.score).cte("scored").prefix_with("MATERIALIZED")
        total = sa.select(sa.func.count()).select_from(matches).scalar_subquery()
        return self._page(sa.select(matches.c.key, matches.c.score, total.label("total")), offset, limit)

    def _page(self, scored: sa.Select[Any], offset: int, limit: int) -> tuple[sa.Subquery, sa.ColumnElement[bool]]:
        """``scored`` (with ``key``, ``score`` and ``total`` columns) best first, cut to one page,
        and the condition that joins it to ``snippets``."""
        page = scored.order_by(*best_first(scored.selected_columns)).offset(offset).limit(limit).subquery("best")
        return page, page.c.key == self.snippet_key

    def search(self, conn: Connection, query: str, limit: int = 20) -> list[str]:
        """The ids matching ``query``, best first (for tests and tools; the library joins instead)."""
        found = self.ranked(query)
        if found is None:
            return []
        scores, on = found
        rows = conn.execute(sa.select(snippet_table.c.id).select_from(snippet_table.join(scores, on))
                            .order_by(scores.c.score.desc(), snippet_table.c.id).limit(limit))
        return [row.id for row in rows]


def best_first(columns: Any) -> tuple[sa.ColumnElement[Any], ...]:
    """The order of a ranking, for columns ``score`` and ``key``: the higher score first, and of
    equal scores the higher key, so every page of one ranking cuts the same order."""
    return columns.score.desc(), columns.key.desc()


def clean(query: str) -> str:
    """The part of a query an index looks at: its first characters, without what no database
    text can hold (NUL, unpaired surrogates)."""
    return query[:MAX_QUERY].encode("utf-8", "ignore").decode("utf-8").replace("\x00", " ")


def words(query: str) -> list[str]:
    """The words of a query, as the indexes see them: ``tangent_line`` is one word."""
    return WORD.findall(clean(query))
