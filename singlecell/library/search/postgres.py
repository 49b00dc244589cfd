"""Search on PostgreSQL: a weighted ``tsvector`` with a GIN index, queried with
``websearch_to_tsquery`` (quoted phrases, ``or``, ``-word`` work as on a search engine).

The 'simple' configuration: code is not English, and stemming would make ``plot`` find
``plotting``'s stem but lose identifiers. An identifier with ``_`` (``tangent_line``) is indexed
as its parts, as PostgreSQL splits it, and also whole, its ``_`` taken out (``tangentline``); a
query's identifiers are looked up whole, so only a text holding that identifier matches.

The code is indexed without positions (``strip``): it is most of a document, and a ranking that
reads positions of thousands of large documents took twice as long. Quoted phrases therefore
match in titles, tags and blurbs only.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection

from singlecell.library.search.base import MAX_CODE, Document, SearchIndex, clean, words
from singlecell.store.schema import snippet_table

_search = sa.table("snippet_search", sa.column("snippet_id"), sa.column("document", TSVECTOR))
_IDENTIFIER = re.compile(r"\w+_\w+")  # \w includes _: whole identifiers with at least one _ inside


def _with_identifiers(text: str) -> str:
    """The text, then each of its ``_`` identifiers again as one word (``_`` taken out)."""
    joined = {name.replace("_", "") for name in _IDENTIFIER.findall(text) if name.strip("_")}
    return text + ("\n" + " ".join(sorted(joined)) if joined else "")


def _joined(query: str) -> str:
    return _IDENTIFIER.sub(lambda m: m.group(0).replace("_", "") if m.group(0).strip("_") else m.group(0), query)


_SIMPLE: sa.ColumnClause[object] = sa.literal_column("'simple'::regconfig")


def _vector(text: str) -> sa.ColumnElement[object]:
    return sa.func.to_tsvector(_SIMPLE, sa.literal(_with_identifiers(text), sa.Text))


def _weighted(text: str, weight: str) -> sa.ColumnElement[object]:
    assert weight in "ABCD"  # a constant of ours, never input: safe in the SQL text
    return sa.func.setweight(_vector(text), sa.literal_column(f"'{weight}'"))


class PostgresSearch(SearchIndex):
    @property
    def snippet_key(self) -> sa.ColumnElement[Any]:
        return snippet_table.c.id

    def write(self, conn: Connection, document: Document) -> None:
        vector = (_weighted(document.title, "A").op("||")(_weighted(document.tags, "B"))
                  .op("||")(_weighted(document.blurb, "C")).op("||")(sa.func.strip(_vector(document.code[:MAX_CODE]))))
        insert = postgresql_insert(_search).values(snippet_id=document.snippet_id, document=vector)
        conn.execute(insert.on_conflict_do_update(index_elements=["snippet_id"],
                                                  set_={"document": insert.excluded.document}))

    def delete(self, conn: Connection, snippet_id: str) -> None:
        conn.execute(_search.delete().where(_search.c.snippet_id == snippet_id))

    def _tsquery(self, query: str) -> sa.ColumnElement[object] | None:
        if not words(query):
            return None
        return sa.func.websearch_to_tsquery(_SIMPLE, sa.literal(_joined(clean(query)), sa.Text))

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
        # OFFSET 0 keeps the subquery whole: the rank is worked out as each document is read,
        # instead of the documents being carried through the join first
        scores = (sa.select(_search.c.snippet_id.label("key"), score)
                  .where(_search.c.document.op("@@")(tsquery)).offset(0).subquery("matches"))
        return scores, scores.c.key == self.snippet_key
