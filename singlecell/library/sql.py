"""The snippet library in the Store's SQL database (tables in singlecell/store/schema.py), file
bytes in the FileStore by SHA-256, search through :mod:`singlecell.library.search`."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from filestore.base import FileStore
from singlecell.accounts.base import name_key
from singlecell.errors import BadRequest, NotAllowed, NotFound
from singlecell.library.base import EXAMPLES_OWNER, MAX_PAGE, SORTS, Library, new_snippet_id
from singlecell.library.model import (
    BLOB_FOLDER,
    THUMBNAIL_FOLDER,
    Comment,
    Draft,
    FileRef,
    HistoryEntry,
    Page,
    Revision,
    Snippet,
    Summary,
    Thumbnail,
    check_tag,
    image_type,
)
from singlecell.library.search import Document, search_index
from singlecell.library.search.base import best_first
from singlecell.store.database import Database
from singlecell.store.schema import (
    comment_table,
    history_table,
    rating_table,
    related_table,
    revision_file_table,
    revision_table,
    snippet_table,
    tag_table,
    user_table,
)

_s, _r, _f, _h = snippet_table.c, revision_table.c, revision_file_table.c, history_table.c
_t, _c, _u = tag_table.c, comment_table.c, user_table.c
SEED_LOCK_KEY = 0x5C_5EED  # PostgreSQL advisory lock: processes starting together seed once


def _rating(row: Any) -> float:
    return round(row.rating_sum / row.rating_count, 2) if row.rating_count else 0.0


def _summary(row: Any) -> Summary:
    return Summary(id=row.id, title=row.title, owner=row.owner, tags=tuple(json.loads(row.tags)), updated=row.updated,
                   rating=_rating(row), ratings=row.rating_count, example=bool(row.example),
                   thumbnail=Thumbnail.from_json(row.thumbnail))


_SUMMARY_COLUMNS = (_s.id, _s.title, _s.updated, _s.rating_sum, _s.rating_count, _s.example, _s.thumbnail,
                    _r.tags, _u.name.label("owner"))


def _summaries() -> sa.Select[Any]:
    return (sa.select(*_SUMMARY_COLUMNS)
            .select_from(snippet_table.join(revision_table, _r.id == _s.head).join(user_table, _u.id == _s.owner_id)))


class SqlLibrary(Library):
    def __init__(self, url: str, files: FileStore) -> None:
        self._db = Database(url)
        self._files = files
        self._search = search_index(self._db.dialect)
        self._insert = postgresql_insert if self._db.dialect == "postgresql" else sqlite_insert

    def close(self) -> None:
        self._db.close()

    # -- writing --------------------------------------------------------------------------------

    def _store_files(self, draft: Draft) -> dict[str, str]:
        """Put the draft's file bytes the FileStore does not hold yet; path → SHA-256."""
        hashes = draft.file_hashes()
        with self._db.reader.connect() as conn:
            known = set(conn.execute(sa.select(_f.sha256).where(_f.sha256.in_(set(hashes.values())))).scalars())
        for path, digest in hashes.items():
            if digest not in known:
                self._files.put(BLOB_FOLDER, digest, draft.files[path].encode("utf-8"))
                known.add(digest)
        return hashes

    def _add_revision(self, conn: Connection, draft: Draft, hashes: dict[str, str], now: float) -> str:
        revision_id = draft.revision_id()
        inserted = conn.execute(self._insert(revision_table).values(
            id=revision_id, title=draft.title, blurb=draft.blurb, tags=json.dumps(list(draft.tags)),
            command=draft.command, created=now).on_conflict_do_nothing().returning(_r.id)).first()
        if inserted is not None:  # new content: its files' rows too
            conn.execute(revision_file_table.insert(), [
                {"revision_id": revision_id, "path": path, "sha256": hashes[path],
                 "size": len(text.encode("utf-8"))} for path, text in draft.files.items()])
        return revision_id

    def _point(self, conn: Connection, snippet_id: str, revision_id: str, author_id: str, now: float,
               draft: Draft) -> None:
        """Make ``revision_id`` the snippet's head: history, tags and the search document."""
        n = conn.execute(sa.select(sa.func.coalesce(sa.func.max(_h.n), 0)).where(_h.snippet_id == snippet_id)).scalar()
        conn.execute(history_table.insert().values(snippet_id=snippet_id, n=int(n or 0) + 1, revision_id=revision_id,
                                                   author_id=author_id, created=now))
        conn.execute(snippet_table.update().where(_s.id == snippet_id)
                     .values(head=revision_id, title=draft.title, updated=now))
        conn.execute(tag_table.delete().where(_t.snippet_id == snippet_id))
        if draft.tags:
            conn.execute(tag_table.insert(), [{"snippet_id": snippet_id, "tag": tag} for tag in draft.tags])
        code = "\n".join(f"{path}\n{text}" for path, text in draft.files.items())
        self._search.write(conn, Document(snippet_id, draft.title, " ".join(draft.tags), draft.blurb,
                                          draft.command + "\n" + code))

    def create(self, owner_id: str, draft: Draft, *, example: bool = False,
               forked: tuple[str, str] | None = None) -> Snippet:
        hashes = self._store_files(draft)
        with self._db.writer.begin() as conn:
            snippet_id = self._insert_snippet(conn, owner_id, draft, hashes, example, forked)
        made = self.snippet(snippet_id)
        assert made is not None
        return made

    def _insert_snippet(self, conn: Connection, owner_id: str, draft: Draft, hashes: dict[str, str], example: bool,
                        forked: tuple[str, str] | None) -> str:
        now = time.time()
        revision_id = self._add_revision(conn, draft, hashes, now)
        while True:
            snippet_id = new_snippet_id()
            if conn.execute(sa.select(_s.id).where(_s.id == snippet_id)).first() is None:
                break
        conn.execute(snippet_table.insert().values(
            id=snippet_id, owner_id=owner_id, head=revision_id, title=draft.title, created=now, updated=now,
            example=example, forked_from=forked[0] if forked else None, forked_revision=forked[1] if forked else None))
        self._point(conn, snippet_id, revision_id, owner_id, now, draft)
        return snippet_id

    def seed_examples(self, drafts: list[Draft]) -> int:
        hashes = [self._store_files(draft) for draft in drafts]
        with self._db.writer.begin() as conn:
            if self._db.dialect == "postgresql":  # SQLite's BEGIN IMMEDIATE already makes seeders take turns
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SEED_LOCK_KEY)))
            if conn.execute(sa.select(sa.func.count()).select_from(snippet_table)).scalar_one():
                return 0
            owner = conn.execute(sa.select(_u.id).where(_u.name_key == EXAMPLES_OWNER)).scalar()
            if owner is None:
                owner = secrets.token_hex(16)
                # "!" is no Argon2 hash: no password logs this account in
                conn.execute(user_table.insert().values(id=owner, name=EXAMPLES_OWNER, name_key=EXAMPLES_OWNER,
                                                        password_hash="!", created=time.time()))
            for draft, files in zip(drafts, hashes, strict=True):
                self._insert_snippet(conn, owner, draft, files, True, None)
                time.sleep(0.001)  # distinct times: the library's newest-first order is the examples' order
        return len(drafts)

    def save(self, snippet_id: str, author_id: str, draft: Draft) -> Snippet:
        current = self._owned(snippet_id, author_id)
        if draft.revision_id() == current.head.id:
            return current
        hashes = self._store_files(draft)
        now = time.time()
        with self._db.writer.begin() as conn:
            revision_id = self._add_revision(conn, draft, hashes, now)
            self._point(conn, snippet_id, revision_id, author_id, now, draft)
        saved = self.snippet(snippet_id)
        assert saved is not None
        return saved

    def delete(self, snippet_id: str, user_id: str) -> None:
        self._owned(snippet_id, user_id)
        with self._db.writer.begin() as conn:
            conn.execute(snippet_table.update().where(_s.id == snippet_id).values(deleted=time.time()))
            conn.execute(tag_table.delete().where(_t.snippet_id == snippet_id))  # tags list live snippets
            self._search.delete(conn, snippet_id)

    def purge(self, snippet_id: str, user_id: str) -> None:
        snippet = self.snippet(snippet_id, deleted=True)
        if snippet is None:
            raise NotFound(f"no snippet has the id {snippet_id!r}")
        if snippet.owner_id != user_id:
            raise NotAllowed("only a snippet's owner can purge it")
        with self._db.writer.begin() as conn:
            revisions = set(conn.execute(sa.select(_h.revision_id).where(_h.snippet_id == snippet_id)).scalars())
            self._search.delete(conn, snippet_id)
            conn.execute(snippet_table.delete().where(_s.id == snippet_id))  # history, tags, … cascade
            shared = set(conn.execute(sa.select(_h.revision_id).where(_h.revision_id.in_(revisions))).scalars())
            shared |= set(conn.execute(sa.select(_s.head).where(_s.head.in_(revisions))).scalars())
            gone = revisions - shared
            hashes = set(conn.execute(sa.select(_f.sha256).where(_f.revision_id.in_(gone))).scalars())
            conn.execute(revision_table.delete().where(_r.id.in_(gone)))  # its files' rows cascade
            kept = set(conn.execute(sa.select(_f.sha256).where(_f.sha256.in_(hashes))).scalars())
        for digest in hashes - kept:  # bytes no revision names any more
            self._files.delete_file(BLOB_FOLDER, digest)
        if snippet.thumbnail is not None:
            self._drop_thumbnail(snippet.thumbnail.sha256)

    # -- reading --------------------------------------------------------------------------------

    def _revisions(self, conn: Connection, ids: Iterable[str]) -> dict[str, Revision]:
        ids = set(ids)
        rows = conn.execute(sa.select(revision_table).where(_r.id.in_(ids))).all()
        files: dict[str, dict[str, FileRef]] = {i: {} for i in ids}
        for f in conn.execute(sa.select(revision_file_table).where(_f.revision_id.in_(ids)).order_by(_f.path)):
            files[f.revision_id][f.path] = FileRef(f.sha256, f.size)
        return {row.id: Revision(id=row.id, title=row.title, blurb=row.blurb, tags=tuple(json.loads(row.tags)),
                                 command=row.command, files=files[row.id], created=row.created) for row in rows}

    def snippet(self, snippet_id: str, *, deleted: bool = False) -> Snippet | None:
        query = (sa.select(snippet_table, _u.name.label("owner"))
                 .join(user_table, _u.id == _s.owner_id).where(_s.id == snippet_id))
        with self._db.reader.connect() as conn:
            row = conn.execute(query).first()
            if row is None or (row.deleted is not None and not deleted):
                return None
            head = self._revisions(conn, [row.head])[row.head]
            contributors = conn.execute(
                sa.select(_u.name).select_from(history_table.join(user_table, _u.id == _h.author_id))
                .where(_h.snippet_id == snippet_id).group_by(_u.name).order_by(sa.func.min(_h.n))).scalars().all()
        return Snippet(id=row.id, owner=row.owner, owner_id=row.owner_id, head=head, created=row.created,
                       updated=row.updated, forked_from=row.forked_from, forked_revision=row.forked_revision,
                       example=bool(row.example), deleted=row.deleted, rating=_rating(row), ratings=row.rating_count,
                       thumbnail=Thumbnail.from_json(row.thumbnail),
                       contributors=tuple(contributors))

    def revision(self, revision_id: str) -> Revision | None:
        with self._db.reader.connect() as conn:
            return self._revisions(conn, [revision_id]).get(revision_id)

    def in_history(self, snippet_id: str, revision_id: str) -> bool:
        query = sa.select(_h.n).where(_h.snippet_id == snippet_id, _h.revision_id == revision_id).limit(1)
        with self._db.reader.connect() as conn:
            return conn.execute(query).first() is not None

    def history(self, snippet_id: str) -> list[HistoryEntry]:
        query = (sa.select(_h.n, _h.revision_id, _h.created, _r.title, _u.name)
                 .select_from(history_table.join(revision_table, _r.id == _h.revision_id)
                              .join(user_table, _u.id == _h.author_id))
                 .where(_h.snippet_id == snippet_id).order_by(_h.n.desc()))
        with self._db.reader.connect() as conn:
            return [HistoryEntry(n=r.n, revision=r.revision_id, title=r.title, author=r.name, created=r.created)
                    for r in conn.execute(query)]

    def count(self) -> int:
        with self._db.reader.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(snippet_table)).scalar_one())

    def browse(self, query: str = "", tag: str | None = None, sort: str = "new", offset: int = 0,
               limit: int = 20, owner: str | None = None) -> Page:
        if sort not in SORTS:
            raise BadRequest(f"sort is one of {', '.join(SORTS)}, not {sort!r}")
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)
        filters: list[Any] = [_s.deleted.is_(None)]
        if tag:
            tag = check_tag(tag)
            # the tag and those below it: a range, which the tag index answers ('0' follows '/')
            tagged = sa.or_(_t.tag == tag, sa.and_(_t.tag > tag + "/", _t.tag < tag + "0"))
            under = sa.select(_t.snippet_id).where(tagged)
            filters.append(_s.id.in_(under))
        if owner:
            filters.append(_s.owner_id.in_(sa.select(_u.id).where(_u.name_key == name_key(owner))))
        relevance = sort == "relevance" and bool(query)
        # nothing but the search to filter by: the index's own page (and total), joined for ids
        best = self._search.best(query, offset, limit) if relevance and not tag and not owner else None
        matching = self._search.matching(query) if query and best is None else None
        if query and best is None and matching is None:
            return Page([], 0)  # nothing to search for
        # first the page's ids, from snippets alone; then the page's rows with their owners and
        # tags: joining those for every match before the sort would cost more than the sort
        skip = offset
        if best is not None:
            page_of, on = best
            picked = (sa.select(_s.id, page_of.c.total).select_from(snippet_table.join(page_of, on))
                      .order_by(*best_first(page_of.c)))
            skip = 0  # the index's page is the page
        elif relevance and (ranked := self._search.ranked(query)) is not None:
            scores, on = ranked  # scores are worked out only here, for the page; counting needs none
            # the total in the same pass over the matches as the ranking (a window count); ties
            # as the index's page breaks them
            picked = sa.select(_s.id, sa.func.count().over().label("total")).select_from(snippet_table.join(scores, on))
            picked = picked.where(*filters).order_by(*best_first(scores.c))
        else:
            order: list[Any] = [_s.updated.desc()]
            if sort == "rating":
                order = [sa.case((_s.rating_count == 0, 0.0),
                                 else_=sa.cast(_s.rating_sum, sa.Float) / _s.rating_count).desc(),
                         _s.rating_count.desc(), _s.updated.desc()]
            # id last, descending as updated: the index (deleted, updated, id) then gives the order
            picked = (sa.select(_s.id, sa.literal(None).label("total"))
                      .where(*filters, *([matching] if matching is not None else [])).order_by(*order, _s.id.desc()))

        def count() -> sa.Select[Any]:  # for a page that does not carry its total
            if tag and not query and not owner:  # snippet_tags lists live snippets only: count there
                return sa.select(sa.func.count(sa.distinct(_t.snippet_id))).where(tagged)
            found = matching if matching is not None else self._search.matching(query) if query else None
            return sa.select(sa.func.count()).select_from(snippet_table).where(*filters,
                                                                               *([found] if found is not None else []))

        with self._db.reader.connect() as conn:
            page = conn.execute(picked.offset(skip).limit(limit)).all()
            if page and page[0].total is not None:
                total = int(page[0].total)
            elif page or offset:
                total = int(conn.execute(count()).scalar_one())
            else:
                total = 0
            ids = [row.id for row in page]
            rows = {row.id: row for row in conn.execute(_summaries().where(_s.id.in_(ids)))} if ids else {}
        return Page([_summary(rows[i]) for i in ids if i in rows], total)

    def tags(self, prefix: str = "", limit: int = 20) -> list[tuple[str, int]]:
        prefix = prefix.strip().lower()
        used = sa.func.count().label("used")
        # snippet_tags holds live snippets' tags only (delete drops them): no join needed
        query = (sa.select(_t.tag, used).where(_t.tag.startswith(prefix, autoescape=True))
                 .group_by(_t.tag).order_by(used.desc(), _t.tag).limit(max(1, min(limit, MAX_PAGE))))
        with self._db.reader.connect() as conn:
            return [(row.tag, int(row.used)) for row in conn.execute(query)]

    # -- people's words -------------------------------------------------------------------------

    def add_comment(self, snippet_id: str, author_id: str, body: str, revision_id: str | None = None,
                    path: str | None = None, line: int | None = None) -> Comment:
        body = self._check_comment(snippet_id, body, revision_id, path, line)
        comment_id = secrets.token_hex(8)
        now = time.time()
        with self._db.writer.begin() as conn:
            conn.execute(comment_table.insert().values(id=comment_id, snippet_id=snippet_id, author_id=author_id,
                                                       body=body, revision_id=revision_id, path=path, line=line,
                                                       created=now))
            author = conn.execute(sa.select(_u.name).where(_u.id == author_id)).scalar_one()
        return Comment(comment_id, author, body, now, revision_id, path, line)

    def comments(self, snippet_id: str) -> list[Comment]:
        query = (sa.select(comment_table, _u.name.label("author")).join(user_table, _u.id == _c.author_id)
                 .where(_c.snippet_id == snippet_id).order_by(_c.created, _c.id))
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [Comment(r.id, r.author, r.body, r.created, r.revision_id, r.path, r.line) for r in rows]

    def rate(self, snippet_id: str, user_id: str, stars: int) -> tuple[float, int]:
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise BadRequest("stars is a whole number from 1 to 5")
        self._live(snippet_id)
        insert = self._insert(rating_table).values(snippet_id=snippet_id, user_id=user_id, stars=stars)
        with self._db.writer.begin() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["snippet_id", "user_id"],
                                                      set_={"stars": insert.excluded.stars}))
            total, count = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(rating_table.c.stars), 0),
                                                  sa.func.count()).where(rating_table.c.snippet_id == snippet_id)).one()
            conn.execute(snippet_table.update().where(_s.id == snippet_id)
                         .values(rating_sum=int(total), rating_count=int(count)))
        return (round(int(total) / int(count), 2) if count else 0.0), int(count)

    def relate(self, snippet_id: str, user_id: str, other_id: str, related: bool = True) -> None:
        self._owned(snippet_id, user_id)
        if other_id == snippet_id:
            raise BadRequest("a snippet is not related to itself")
        self._live(other_id)
        with self._db.writer.begin() as conn:
            conn.execute(related_table.delete().where(related_table.c.snippet_id == snippet_id,
                                                      related_table.c.other_id == other_id))
            if related:
                conn.execute(related_table.insert().values(snippet_id=snippet_id, other_id=other_id))

    def related(self, snippet_id: str) -> list[Summary]:
        others = sa.select(related_table.c.other_id).where(related_table.c.snippet_id == snippet_id)
        query = _summaries().where(_s.id.in_(others), _s.deleted.is_(None)).order_by(_s.title, _s.id)
        with self._db.reader.connect() as conn:
            return [_summary(row) for row in conn.execute(query)]

    def set_thumbnail(self, snippet_id: str, user_id: str, image: bytes) -> Thumbnail:
        before = self._owned(snippet_id, user_id).thumbnail
        thumbnail = Thumbnail(hashlib.sha256(image).hexdigest(), image_type(image))
        self._files.put(THUMBNAIL_FOLDER, thumbnail.sha256, image)  # first: a row never names missing bytes
        with self._db.writer.begin() as conn:
            conn.execute(snippet_table.update().where(_s.id == snippet_id).values(thumbnail=thumbnail.to_json()))
        if before is not None and before.sha256 != thumbnail.sha256:
            self._drop_thumbnail(before.sha256)
        return thumbnail

    def _drop_thumbnail(self, sha256: str) -> None:
        """Delete a thumbnail's bytes unless a snippet (a fork, say) still shows them."""
        with self._db.reader.connect() as conn:
            shown = conn.execute(sa.select(_s.id).where(_s.thumbnail.contains(sha256)).limit(1)).first()
        if shown is None:
            self._files.delete_file(THUMBNAIL_FOLDER, sha256)
