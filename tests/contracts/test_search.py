"""The SearchIndex contract (singlecell/library/search/base.py), on SQLite (FTS5) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from singlecell.library.search import Document, SearchIndex, search_index
from singlecell.store.database import Database
from singlecell.store.schema import revision_table, snippet_table, user_table


@pytest.fixture
def database(schema_url: str) -> Iterator[Database]:
    if schema_url.startswith("mongodb:"):
        pytest.skip("the SQL databases' search indexes; the MongoDB library searches its snippets' own word "
                    "lists, tested by tests/contracts/test_library.py")
    db = Database(schema_url)
    yield db
    db.close()


DOCUMENTS = [
    Document("tangent", "Tangent lines", "calculus plotting/2d", "Draw the tangent line of a curve.",
             "main.py\ndef tangent_line(f, x0):\n    return f(x0)\n"),
    Document("prose", "A line and a tangent", "geometry", "Some words about a line that is a tangent.", "x = 1"),
    Document("plot3d", "Surfaces", "plotting/3d", "A surface plot with matplotlib.",
             "import matplotlib.pyplot as plt\nax = plt.figure().add_subplot(projection='3d')"),
    Document("numbers", "Primes", "math", "The primes below a hundred, with numpy.", "import numpy as np"),
]


def add_snippets(conn: Connection, ids: list[str]) -> None:
    """Rows of ``snippets`` for the documents: an index indexes snippets."""
    conn.execute(user_table.insert().values(id="u", name="u", name_key="u", password_hash="!", created=0.0))
    conn.execute(revision_table.insert().values(id="r", title="", blurb="", tags="[]", command="", created=0.0))
    conn.execute(snippet_table.insert(), [{"id": i, "owner_id": "u", "head": "r", "title": "", "created": 0.0,
                                           "updated": 0.0} for i in ids])


@pytest.fixture
def index(database: Database) -> Iterator[tuple[SearchIndex, Connection]]:
    made = search_index(database.dialect)
    with database.writer.begin() as conn:
        add_snippets(conn, [d.snippet_id for d in DOCUMENTS])
        for document in DOCUMENTS:
            made.write(conn, document)
    with database.reader.connect() as conn:
        yield made, conn


def test_a_word_finds_the_documents_that_hold_it(index: tuple[SearchIndex, Connection]) -> None:
    search, conn = index
    assert set(search.search(conn, "numpy")) == {"numbers"}
    assert set(search.search(conn, "plot")) >= {"plot3d"}
    assert set(search.search(conn, "surface matplotlib")) == {"plot3d"}  # every word


def test_a_title_word_ranks_above_a_code_word(index: tuple[SearchIndex, Connection]) -> None:
    search, conn = index
    assert search.search(conn, "tangent")[0] in {"tangent", "prose"}
    assert search.search(conn, "surfaces")[:1] == ["plot3d"]


def test_an_identifier_is_kept_whole(index: tuple[SearchIndex, Connection]) -> None:
    search, conn = index
    assert search.search(conn, "tangent_line") == ["tangent"]  # not the prose about a line and a tangent


HOSTILE_QUERIES = ["", "   ", '"', "'", "(", ")", "*", "-", "OR", "AND NOT", "NEAR(", "a:b", "title:x",
                   '"unterminated', "x' OR '1'='1", "\\", "%_", "<script>", "😀", "\x00", "tangent\x00line",
                   "\ud800", "a\ud800b", "a" * 10_000, "^", "{}[]", "&|!<->", "tangent -line", "-- ;"]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_any_input_is_a_valid_query(index: tuple[SearchIndex, Connection], query: str) -> None:
    search, conn = index
    found = search.search(conn, query)
    assert isinstance(found, list)
    assert set(found) <= {d.snippet_id for d in DOCUMENTS}


def test_a_query_without_words_matches_nothing(index: tuple[SearchIndex, Connection]) -> None:
    search, conn = index
    assert search.matching("  -- ( ) ") is None and search.ranked("") is None and search.search(conn, "!!!") == []


def test_rewriting_and_deleting_documents(database: Database, index: tuple[SearchIndex, Connection]) -> None:
    search, _ = index
    with database.writer.begin() as writer:
        search.write(writer, Document("numbers", "Fibonacci", "math", "Rabbits.", "a, b = b, a + b"))
        search.delete(writer, "plot3d")
    with database.reader.connect() as reader:
        assert search.search(reader, "primes") == [] and search.search(reader, "fibonacci") == ["numbers"]
        assert search.search(reader, "surface") == []


@pytest.mark.parametrize("query", ["plot", "tangent", "numpy surface", "tangent_line", "nothing-here"])
def test_the_condition_and_the_ranking_find_the_same_snippets(index: tuple[SearchIndex, Connection],
                                                             query: str) -> None:
    search, conn = index
    condition = search.matching(query)
    assert condition is not None
    counted = set(conn.execute(sa.select(snippet_table.c.id).where(condition)).scalars())
    assert counted == set(search.search(conn, query, limit=100))


@pytest.mark.parametrize("query", ["plot", "tangent", "line", "numpy surface", "nothing-here"])
def test_the_best_page_is_the_ranking_cut_with_its_total(index: tuple[SearchIndex, Connection], query: str) -> None:
    search, conn = index
    ranked = search.ranked(query)
    assert ranked is not None
    scores, on = ranked
    whole = [row.id for row in conn.execute(
        sa.select(snippet_table.c.id).select_from(snippet_table.join(scores, on))
        .order_by(scores.c.score.desc(), scores.c.key.desc()))]
    pages = []
    for offset in (0, 1, 2, 3, 10):
        best = search.best(query, offset, 1)
        assert best is not None
        page, joined = best
        rows = conn.execute(sa.select(snippet_table.c.id, page.c.total).select_from(snippet_table.join(page, joined))
                            .order_by(page.c.score.desc(), page.c.key.desc())).all()
        assert all(row.total == len(whole) for row in rows), (offset, rows)
        pages += [row.id for row in rows]
    assert pages == whole[:4]
    assert search.best("  !!! ", 0, 10) is None
