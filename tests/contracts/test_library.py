"""The Library contract (singlecell/library/base.py), on SQLite, PostgreSQL and MongoDB, with a
real FileStore (the same database's)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from filestore import FileStore, open_filestore
from singlecell.accounts import Accounts, User, open_accounts
from singlecell.errors import BadRequest, NotAllowed, NotFound, PayloadTooLarge
from singlecell.library import Library, open_library
from singlecell.library.model import BLOB_FOLDER, MAX_THUMBNAIL, Draft, Limits, check_draft

LIMITS = Limits(max_files=10, max_bytes=4 * 1024 * 1024, max_command=65536)


@dataclass
class World:
    library: Library
    accounts: Accounts
    files: FileStore
    ada: User
    grace: User
    url: str

    def blobs(self) -> int:
        """How many file contents the FileStore holds."""
        if self.url.startswith("mongodb:"):
            from filestore.grid import BUCKET
            from filestore.mongodb import database_for

            return int(database_for(self.url)[f"{BUCKET}.files"].count_documents({}))
        engine = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            count = int(conn.execute(sa.text("SELECT count(*) FROM blobs")).scalar_one())
        engine.dispose()
        return count


@pytest.fixture
def world(schema_url: str) -> Iterator[World]:
    files = open_filestore(schema_url)  # the same database's: GridFS on MongoDB
    files.create()
    accounts = open_accounts(schema_url)
    library = open_library(schema_url, files)
    yield World(library, accounts, files, accounts.create_user("ada", "a fine password"),
                accounts.create_user("grace", "a fine password"), schema_url)
    library.close()
    accounts.close()
    files.close()


def draft(title: str = "Tangent lines", files: dict[str, str] | None = None, tags: tuple[str, ...] = ("calculus",),
          blurb: str = "Draw **tangents**.", command: str = "tangent(1)") -> Draft:
    return Draft(title=title, blurb=blurb, tags=tags, files=files or {"main.py": "def tangent(x):\n    return x\n"},
                 command=command)


def test_a_snippet_is_created_and_read_back(world: World) -> None:
    made = world.library.create(world.ada.id, draft(files={"main.py": "import helper\n", "helper.py": "X = 1\n"}))
    got = world.library.snippet(made.id)
    assert got == made
    assert got.owner == "ada" and got.head.title == "Tangent lines" and got.head.tags == ("calculus",)
    assert list(got.head.files) == ["helper.py", "main.py"]
    assert world.library.files(got.head) == {"helper.py": "X = 1\n", "main.py": "import helper\n"}
    assert world.library.file(got.head, "missing.py") is None
    assert world.library.snippet("aaaaaaaaaa") is None


def test_a_revision_is_named_by_its_content(world: World) -> None:
    a = world.library.create(world.ada.id, draft())
    b = world.library.create(world.grace.id, draft())
    assert a.id != b.id and a.head.id == b.head.id  # the same content is the same revision
    changed = world.library.create(world.ada.id, draft(files={"main.py": "print(2)\n"}))
    assert changed.head.id != a.head.id and len(a.head.id) == 20


def test_each_save_is_a_new_revision_and_the_history_keeps_them(world: World) -> None:
    s = world.library.create(world.ada.id, draft())
    first = s.head.id
    s2 = world.library.save(s.id, world.ada.id, draft(title="Tangent lines, faster"))
    assert s2.head.id != first and s2.head.title == "Tangent lines, faster"
    assert world.library.save(s.id, world.ada.id, draft(title="Tangent lines, faster")).head.id == s2.head.id
    history = world.library.history(s.id)
    assert [(h.n, h.revision, h.author) for h in history] == [(2, s2.head.id, "ada"), (1, first, "ada")]
    assert world.library.revision(first) is not None and world.library.in_history(s.id, first)


def test_only_the_owner_changes_a_snippet(world: World) -> None:
    s = world.library.create(world.ada.id, draft())
    with pytest.raises(NotAllowed):
        world.library.save(s.id, world.grace.id, draft(title="mine now"))
    with pytest.raises(NotAllowed):
        world.library.delete(s.id, world.grace.id)
    with pytest.raises(NotAllowed):
        world.library.relate(s.id, world.grace.id, s.id)
    with pytest.raises(NotFound):
        world.library.save("aaaaaaaaaa", world.ada.id, draft())


def test_a_fork_is_the_forkers_copy_and_costs_no_bytes(world: World) -> None:
    s = world.library.create(world.ada.id, draft(files={"main.py": "x = 1\n" * 1000}))
    blobs_before = world.blobs()
    fork = world.library.fork(s.id, world.grace.id)
    assert fork.owner == "grace" and fork.forked_from == s.id and fork.forked_revision == s.head.id
    assert fork.head.id == s.head.id  # the same revision: nothing copied
    edited = world.library.save(fork.id, world.grace.id, draft(title="Grace's tangents", files={"main.py": "x = 2\n"}))
    assert world.library.snippet(s.id).head.title == "Tangent lines"  # type: ignore[union-attr]
    assert edited.contributors == ("grace",)
    assert world.blobs() == blobs_before + 1  # the fork added nothing; its edit, one new file
    older = world.library.fork(s.id, world.grace.id, s.head.id)
    assert older.head.id == s.head.id
    with pytest.raises(NotFound):
        world.library.fork(s.id, world.grace.id, edited.head.id)  # not a revision of that snippet


def test_a_deleted_snippet_leaves_lists_but_its_revisions_stay_until_purged(world: World) -> None:
    s = world.library.create(world.ada.id, draft(files={"only.py": "unique = 'purge me'\n"}))
    world.library.delete(s.id, world.ada.id)
    assert world.library.snippet(s.id) is None and world.library.snippet(s.id, deleted=True) is not None
    assert world.library.browse().total == 0 and world.library.browse("unique").total == 0
    assert world.library.revision(s.head.id) is not None
    assert world.library.file(s.head, "only.py") == "unique = 'purge me'\n"
    with pytest.raises(NotAllowed):
        world.library.purge(s.id, world.grace.id)
    world.library.purge(s.id, world.ada.id)
    assert world.library.revision(s.head.id) is None and world.library.snippet(s.id, deleted=True) is None
    digest = next(iter(s.head.files.values())).sha256
    assert world.files.get(BLOB_FOLDER, digest) is None  # its bytes too


def test_purging_keeps_what_a_fork_shares(world: World) -> None:
    s = world.library.create(world.ada.id, draft())
    fork = world.library.fork(s.id, world.grace.id)
    world.library.purge(s.id, world.ada.id)
    kept = world.library.snippet(fork.id)
    assert kept is not None and world.library.files(kept.head) == {"main.py": "def tangent(x):\n    return x\n"}


def test_browse_newest_by_rating_by_tag_and_by_owner(world: World) -> None:
    lib = world.library
    a = lib.create(world.ada.id, draft(title="Surface", tags=("plotting/3d", "numpy")))
    b = lib.create(world.ada.id, draft(title="Line plot", tags=("plotting",)))
    c = lib.create(world.grace.id, draft(title="Primes", tags=("math",)))
    assert [x.id for x in lib.browse().items] == [c.id, b.id, a.id]
    assert {x.id for x in lib.browse(tag="plotting").items} == {a.id, b.id}  # the hierarchy
    assert [x.id for x in lib.browse(tag="plotting/3d").items] == [a.id]
    assert [x.id for x in lib.browse(owner="grace").items] == [c.id]
    lib.rate(a.id, world.grace.id, 5)
    lib.rate(b.id, world.grace.id, 3)
    lib.rate(b.id, world.ada.id, 4)
    assert [x.id for x in lib.browse(sort="rating").items] == [a.id, b.id, c.id]
    page = lib.browse(limit=2, offset=2)
    assert page.total == 3 and [x.id for x in page.items] == [a.id]
    with pytest.raises(BadRequest):
        lib.browse(sort="sideways")


def test_search_finds_title_blurb_tags_and_code(world: World) -> None:
    lib = world.library
    t = lib.create(world.ada.id, draft(files={"calc.py": "def tangent_line(f, x0):\n    pass\n"}))
    p = lib.create(world.ada.id, draft(title="A line and a tangent", blurb="prose", files={"p.py": "x = 1\n"},
                                       tags=("geometry",)))
    assert [x.id for x in lib.browse("tangent_line").items] == [t.id]
    assert {x.id for x in lib.browse("tangent").items} == {t.id, p.id}
    assert [x.id for x in lib.browse("geometry", sort="relevance").items] == [p.id]
    assert lib.browse("  !!! ").total == 0
    assert lib.browse("tangent", tag="geometry").total == 1
    saved = lib.save(p.id, world.ada.id, draft(title="Circles", files={"p.py": "y = 2\n"}, tags=("geometry",),
                                            command="circle()", blurb="Round things."))
    assert lib.browse("circles").items[0].id == saved.id and lib.browse("tangent").total == 1


def test_pages_of_the_best_matches_are_the_whole_ranking_cut_in_pieces(world: World) -> None:
    """Relevance pages with and without a tag (the library ranks these two ways) agree, the
    better matches come first, and a deleted snippet is not counted."""
    lib = world.library
    made = [lib.create(world.ada.id, draft(title="orbit " * (n % 3 + 1) + str(n), files={"o.py": f"orbit = {n}\n"},
                                           tags=("physics",)))
            for n in range(7)]
    lib.create(world.ada.id, draft(title="unrelated", tags=("physics",)))
    lib.delete(made[6].id, world.ada.id)
    whole = lib.browse("orbit", sort="relevance", limit=50)
    assert whole.total == 6 and {x.id for x in whole.items} == {m.id for m in made[:6]}
    titles = [x.title for x in whole.items]
    assert [t.count("orbit") for t in titles] == sorted((t.count("orbit") for t in titles), reverse=True)
    for tag in (None, "physics"):
        pages = [lib.browse("orbit", tag=tag, sort="relevance", offset=o, limit=4) for o in (0, 4, 8)]
        assert [p.total for p in pages] == [6, 6, 6], tag
        assert [x.id for p in pages for x in p.items] == [x.id for x in whole.items], tag


def test_tags_autocomplete_by_prefix_most_used_first(world: World) -> None:
    for tags in (("plotting/3d",), ("plotting",), ("plotting",), ("physics",)):
        world.library.create(world.ada.id, draft(tags=tags))
    assert world.library.tags("pl") == [("plotting", 2), ("plotting/3d", 1)]
    assert world.library.tags("")[0] == ("plotting", 2)
    assert world.library.tags("%") == []  # a LIKE wildcard is only a character


def test_comments_on_the_snippet_and_on_a_line_of_a_revision(world: World) -> None:
    s = world.library.create(world.ada.id, draft(files={"main.py": "a = 1\nb = 2\n"}))
    world.library.add_comment(s.id, world.grace.id, "Nice!")
    line = world.library.add_comment(s.id, world.grace.id, "why 2?", s.head.id, "main.py", 2)
    assert [(c.author, c.body, c.line) for c in world.library.comments(s.id)] == [("grace", "Nice!", None),
                                                                                   ("grace", "why 2?", 2)]
    assert line.revision == s.head.id and line.path == "main.py"
    for bad in ((s.head.id, "main.py", 9), (s.head.id, "other.py", 1), ("x" * 20, "main.py", 1),
                (s.head.id, "main.py", 0), (s.head.id, None, 1)):
        with pytest.raises(BadRequest):
            world.library.add_comment(s.id, world.grace.id, "bad", *bad)
    with pytest.raises(BadRequest):
        world.library.add_comment(s.id, world.grace.id, "   ")


def test_ratings_are_once_per_person(world: World) -> None:
    s = world.library.create(world.ada.id, draft())
    assert world.library.rate(s.id, world.grace.id, 5) == (5.0, 1)
    assert world.library.rate(s.id, world.grace.id, 2) == (2.0, 1)  # again: replaced
    assert world.library.rate(s.id, world.ada.id, 5) == (3.5, 2)
    for stars in (0, 6, True, 2.5):
        with pytest.raises(BadRequest):
            world.library.rate(s.id, world.ada.id, stars)  # type: ignore[arg-type]


def test_related_snippets_and_thumbnail(world: World) -> None:
    a = world.library.create(world.ada.id, draft(title="A"))
    b = world.library.create(world.grace.id, draft(title="B"))
    world.library.relate(a.id, world.ada.id, b.id)
    assert [x.id for x in world.library.related(a.id)] == [b.id]
    world.library.relate(a.id, world.ada.id, b.id, related=False)
    assert world.library.related(a.id) == []
    assert world.library.count() == 2


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
GIF = b"GIF89a" + b"\x00" * 40


def test_a_thumbnail_is_an_image_kept_by_its_hash_until_no_snippet_shows_it(world: World) -> None:
    a = world.library.create(world.ada.id, draft(title="A"))
    b = world.library.create(world.ada.id, draft(title="B"))
    with pytest.raises(NotAllowed):
        world.library.set_thumbnail(a.id, world.grace.id, PNG)
    for not_an_image in (b"<svg onload=alert(1)>", b"", b"GIF"):
        with pytest.raises(BadRequest, match="PNG, JPEG or GIF"):
            world.library.set_thumbnail(a.id, world.ada.id, not_an_image)
    with pytest.raises(PayloadTooLarge, match="at most 2 MB"):
        world.library.set_thumbnail(a.id, world.ada.id, PNG + bytes(MAX_THUMBNAIL))
    png = world.library.set_thumbnail(a.id, world.ada.id, PNG)
    assert (png.sha256, png.content_type) == (hashlib.sha256(PNG).hexdigest(), "image/png")
    assert world.library.snippet(a.id).thumbnail == png  # type: ignore[union-attr]
    assert [s.thumbnail for s in world.library.browse().items if s.id == a.id] == [png]
    assert world.library.thumbnail_image(png.sha256) == PNG
    assert world.library.set_thumbnail(b.id, world.ada.id, PNG) == png  # the same bytes, kept once
    gif = world.library.set_thumbnail(a.id, world.ada.id, GIF)
    assert gif.content_type == "image/gif"
    assert world.library.thumbnail_image(png.sha256) == PNG  # b still shows it
    world.library.set_thumbnail(b.id, world.ada.id, GIF)
    assert world.library.thumbnail_image(png.sha256) is None  # nobody shows it: gone
    world.library.delete(a.id, world.ada.id)
    world.library.purge(a.id, world.ada.id)
    assert world.library.thumbnail_image(gif.sha256) == GIF  # b still shows it
    world.library.delete(b.id, world.ada.id)
    world.library.purge(b.id, world.ada.id)
    assert world.library.thumbnail_image(gif.sha256) is None
    assert world.library.thumbnail_image("../" + "0" * 61) is None


@pytest.mark.parametrize(("files", "words"), [
    ({"../x.py": "1"}, "bad file name"), ({"/abs.py": "1"}, "bad file name"), ({"a\x00.py": "1"}, "NUL"),
    ({"A.py": "1", "a.py": "2"}, "differ only by case"), ({"é.py": "1", "e\u0301.py": "2"}, "Unicode form"),
    ({"a\u202e.py": "1"}, "control or invisible"), ({"d": "1", "d/x.py": "2"}, "both a file and the folder"),
    ({}, "at least one file"), ({f"f{i}.py": "" for i in range(11)}, "at most 10"),
])
def test_file_names_that_could_leave_the_snippet_are_refused(files: dict[str, str], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        check_draft({"title": "t", "files": files}, LIMITS)


def test_a_snippet_that_could_not_run_is_refused_at_save() -> None:
    with pytest.raises(PayloadTooLarge):
        check_draft({"title": "t", "files": {"big.txt": "x" * (LIMITS.max_bytes + 1)}}, LIMITS)
    with pytest.raises(BadRequest, match="tag"):
        check_draft({"title": "t", "files": {"a.py": ""}, "tags": ["<script>"]}, LIMITS)
    assert check_draft({"title": "  two\nlines ", "files": {"a.py": ""}, "tags": "Plotting/3D, numpy"},
                       LIMITS).tags == ("plotting/3d", "numpy")


def test_any_query_or_tag_a_person_types_is_answered_not_refused_or_run(world: World) -> None:
    from tests.contracts.test_search import HOSTILE_QUERIES

    made = world.library.create(world.ada.id, draft(tags=("a.b", "x+y")))
    for query in HOSTILE_QUERIES:
        for sort in ("new", "relevance"):
            page = world.library.browse(query, sort=sort)
            assert page.total == len(page.items) <= 1, (query, page)
    assert [x.id for x in world.library.browse(tag="a.b").items] == [made.id]
    assert world.library.browse(tag="a").total == 0  # "." is a character of the tag, not a pattern
    assert world.library.browse(tag="x+y").total == 1 and world.library.tags("x+") == [("x+y", 1)]
    assert world.library.tags(".*") == [] and world.library.tags("(") == []
