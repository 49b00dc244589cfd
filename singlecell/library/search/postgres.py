"""Search on PostgreSQL: a weighted ``tsvector`` with a GIN index, queried with
``websearch_to_tsquery`` (quoted phrases, ``or``, ``-word`` work as on a search engine).

The 'simple' configuration: code is not English, and stemming would make ``plot`` find
``plotting``'s stem but lose identifiers. ``_`` inside a word becomes ``-`` in both the document
and the query, so ``tangent_line`` is indexed as the compound ``tangent-line`` (and its parts)
and only a text holding that identifier matches it.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection

from singlecell.library.search.base import MAX_CODE, Document, SearchIndex, clean, words
from singlecell.store.schema import snippet_table

_search = sa.table("snippet_search", sa.column("snippet_id"), sa.column("document", TSVECTOR))
_JOINED = re.compile(r"(?<=\w)_+(?=\w)")


def _hyphenate(text: str) -> str:
    return _JOINED.sub("-", text)


_SIMPLE: sa.ColumnClause[object] = sa.literal_column("'simple'::regconfig")


def _weighted(text: str, weight: str) -> sa.ColumnElement[object]:
    assert weight in "ABCD"  # a constant of ours, never input: safe in the SQL text
    return sa.func.setweight(sa.func.to_tsvector(_SIMPLE, sa.literal(_hyphenate(text), sa.Text)),
                             sa.literal_column(f"'{weight}'"))


class PostgresSearch(SearchIndex):
    def write(self, conn: Connection, document: Document) -> None:
        vector = (_weighted(document.title, "A").op("||")(_weighted(document.tags, "B"))
                  .op("||")(_weighted(document.blurb, "C")).op("||")(_weighted(document.code[:MAX_CODE], "D")))
        insert = postgresql_insert(_search).values(snippet_id=document.snippet_id, document=vector)
        conn.execute(insert.on_conflict_do_update(index_elements=["snippet_id"],
                                                  set_={"document": insert.excluded.document}))

    def delete(self, conn: Connection, snippet_id: str) -> None:
        conn.execute(_search.delete().where(_search.c.snippet_id == snippet_id))

    def _tsquery(self, query: str) -> sa.ColumnElement[object] | None:
        if not words(query):
            return None
        return sa.func.websearch_to_tsquery(_SIMPLE, sa.literal(_hyphenate(clean(query)), sa.Text))

    def matching(self, query: str) -> sa.ColumnElement[bool] | None:
        tsquery = self._tsquery(query)
        if tsquery is None:
            return None
        return snippet_table.c.id.in_(sa.select(_search.c.snippet_id).where(_search.c.document.op("@@")(tsquery)))

    def ranked(self, query: str) -> tuple[sa.Subquery, sa.ColumnElement[bool]] | None:
        tsquery = self._tsquery(query)
        if tsquery is None:
            return None
        score = sa.func.ts_rank(_search.c.document, tsquery).label("score")
        scores = (sa.select(_search.c.snippet_id.label("key"), score)
                  .where(_search.c.document.op("@@")(tsquery)).subquery("matches"))
        return scores, scores.c.key == snippet_table.c.id
