"""Search on SQLite: an FTS5 table whose tokenizer keeps ``_`` inside words, ranked by BM25.

A query is its words, each a quoted prefix (``"tang"*`` finds ``tangent_line``), all required:
none of FTS5's own syntax from a person's query reaches its parser.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from singlecell.library.search.base import MAX_CODE, Document, SearchIndex, words

_search = sa.table("snippet_search", sa.column("snippet_id"), sa.column("title"), sa.column("tags"),
                   sa.column("blurb"), sa.column("code"))
# the columns' weights: a word in the title counts most, in the code least
_SCORE = sa.literal_column("-bm25(snippet_search, 0, 10.0, 6.0, 3.0, 1.0)", sa.Float)


class Fts5Search(SearchIndex):
    def write(self, conn: Connection, document: Document) -> None:
        self.delete(conn, document.snippet_id)
        conn.execute(_search.insert().values(snippet_id=document.snippet_id, title=document.title,
                                             tags=document.tags, blurb=document.blurb,
                                             code=document.code[:MAX_CODE]))

    def delete(self, conn: Connection, snippet_id: str) -> None:
        conn.execute(_search.delete().where(_search.c.snippet_id == snippet_id))

    def matches(self, query: str) -> sa.Subquery | None:
        terms = words(query)
        if not terms:
            return None
        expression = " ".join('"' + term.replace('"', '""') + '"*' for term in terms)
        return (sa.select(_search.c.snippet_id, _SCORE.label("score"))
                .select_from(_search)
                .where(sa.text("snippet_search MATCH :fts_query").bindparams(fts_query=expression))
                .subquery("matches"))
