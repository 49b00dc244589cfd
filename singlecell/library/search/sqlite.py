"""Search on SQLite: an FTS5 table whose tokenizer keeps ``_`` inside words, ranked by BM25.

Its rowid is the rowid of the snippet's row in ``snippets``: a match is then a rowid from the
full-text index alone, with no read of the document (reading 7,000 documents' ids cost 30 ms in
a library of 10,000). A query is its words, each quoted (``"tangent_line"``), all required: none
of FTS5's own syntax from a person's query reaches its parser.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from singlecell.library.search.base import MAX_CODE, Document, SearchIndex, words
from singlecell.store.schema import snippet_table

_search = sa.table("snippet_search", sa.column("rowid"), sa.column("title"), sa.column("tags"), sa.column("blurb"),
                   sa.column("code"))
_snippet_rowid: sa.ColumnClause[int] = sa.literal_column("snippets.rowid", sa.Integer)
# the columns' weights: a word in the title counts most, in the code least
_SCORE = sa.literal_column("-bm25(snippet_search, 10.0, 6.0, 3.0, 1.0)", sa.Float)


def _rowid_of(snippet_id: str) -> sa.ScalarSelect[int]:
    rowid = sa.select(_snippet_rowid).select_from(snippet_table).where(snippet_table.c.id == snippet_id)
    return rowid.scalar_subquery()


class Fts5Search(SearchIndex):
    @property
    def snippet_key(self) -> sa.ColumnElement[Any]:
        return _snippet_rowid

    def write(self, conn: Connection, document: Document) -> None:
        self.delete(conn, document.snippet_id)
        conn.execute(_search.insert().values(rowid=_rowid_of(document.snippet_id), title=document.title,
                                             tags=document.tags, blurb=document.blurb,
                                             code=document.code[:MAX_CODE]))

    def delete(self, conn: Connection, snippet_id: str) -> None:
        conn.execute(_search.delete().where(_search.c.rowid == _rowid_of(snippet_id)))

    def _expression(self, query: str) -> str | None:
        terms = words(query)
        # whole words, as PostgreSQL matches them: a prefix query ("plot"*) costs twice as long
        return " ".join('"' + term.replace('"', '""') + '"' for term in terms) if terms else None

    def _match(self, expression: str) -> sa.TextClause:
        return sa.text("snippet_search MATCH :fts_query").bindparams(fts_query=expression)

    def matching(self, query: str) -> sa.ColumnElement[bool] | None:
        expression = self._expression(query)
        if expression is None:
            return None
        return _snippet_rowid.in_(sa.select(_search.c.rowid).select_from(_search).where(self._match(expression)))

    def ranked(self, query: str) -> tuple[sa.Subquery, sa.ColumnElement[bool]] | None:
        expression = self._expression(query)
        if expression is None:
            return None
        scores = (sa.select(_search.c.rowid.label("key"), _SCORE.label("score")).select_from(_search)
                  .where(self._match(expression)).subquery("matches"))
        return scores, scores.c.key == self.snippet_key

    def best(self, query: str, offset: int, limit: int) -> tuple[sa.Subquery, sa.ColumnElement[bool]] | None:
        expression = self._expression(query)
        if expression is None:
            return None
        # FTS5 counts its matches without reading them: a second look costs less than keeping them
        total = sa.select(sa.func.count()).select_from(_search).where(self._match(expression)).scalar_subquery()
        scored = (sa.select(_search.c.rowid.label("key"), _SCORE.label("score"), total.label("total"))
                  .select_from(_search).where(self._match(expression)))
        return self._page(scored, offset, limit)
