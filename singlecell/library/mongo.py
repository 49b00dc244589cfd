"""The snippet library in the Store's MongoDB database, file bytes in the FileStore by SHA-256.

Collections: ``snippets`` (a mutable pointer to its head, with the head's tags and its search
terms), ``revisions`` (immutable, their files' paths and hashes inside), ``history``,
``comments``, ``ratings`` and ``related``. Search needs no text index (which mongomock, the
tests' stand-in, lacks): each snippet keeps its head's words (``terms``, for ``$all``) and each
word's weight (``weights``: a word in the title counts 10, in a tag 6, in the blurb 3, in the
code 1, as the SQL indexes weigh them); a query is its words, all required, ranked by the sum of
their weights.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import Counter
from typing import Any

from filestore.base import FileStore
from filestore.mongodb import MongoBacked
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
from singlecell.library.search.base import MAX_CODE, words
from singlecell.store.documents import locked, reachable

WEIGHTS = (("title", 10), ("tags", 6), ("blurb", 3), ("code", 1))


def _terms(draft: Draft) -> dict[str, int]:
    """Each word of the draft (case-folded) and its weight."""
    code = draft.command + "\n" + "\n".join(f"{path}\n{text}" for path, text in draft.files.items())
    parts = {"title": draft.title, "tags": " ".join(draft.tags), "blurb": draft.blurb, "code": code[:MAX_CODE]}
    weights: Counter[str] = Counter()
    for part, weight in WEIGHTS:
        for word in words(parts[part]):
            weights[word.casefold()] += weight
    return dict(weights)


def _query_terms(query: str) -> list[str]:
    return sorted({word.casefold() for word in words(query)})


def _rating(doc: dict[str, Any]) -> float:
    return round(doc["rating_sum"] / doc["rating_count"], 2) if doc.get("rating_count") else 0.0


@reachable
class MongoLibrary(MongoBacked, Library):
    def __init__(self, url: str, files: FileStore) -> None:
        super().__init__(url)
        self._files = files

    # -- writing --------------------------------------------------------------------------------

    def _store_files(self, draft: Draft) -> dict[str, str]:
        """Put the draft's file bytes the FileStore does not hold yet; path → SHA-256."""
        hashes = draft.file_hashes()
        known = {f["sha256"] for doc in self.db.revisions.find({"files.sha256": {"$in": list(set(hashes.values()))}},
                                                               {"files": 1}) for f in doc["files"]}
        for path, digest in hashes.items():
            if digest not in known:
                self._files.put(BLOB_FOLDER, digest, draft.files[path].encode("utf-8"))
                known.add(digest)
        return hashes

    def _add_revision(self, draft: Draft, hashes: dict[str, str], now: float) -> str:
        from pymongo.errors import DuplicateKeyError

        revision_id = draft.revision_id()
        try:
            self.db.revisions.insert_one({
                "_id": revision_id, "title": draft.title, "blurb": draft.blurb, "tags": list(draft.tags),
                "command": draft.command, "created": now,
                "files": [{"path": path, "sha256": hashes[path], "size": len(text.encode("utf-8"))}
                          for path, text in draft.files.items()]})
        except DuplicateKeyError:  # the same content again: its revision exists
            pass
        return revision_id

    def _point(self, snippet_id: str, revision_id: str, author_id: str, now: float, draft: Draft) -> None:
        """Make ``revision_id`` the snippet's head: history, tags and search terms."""
        from pymongo.errors import DuplicateKeyError

        while True:  # two saves at once: each takes the next n, the unique index says who got it
            last = next(iter(self.db.history.find({"snippet_id": snippet_id}, {"n": 1}).sort("n", -1).limit(1)), None)
            n = (last["n"] if last else 0) + 1
            try:
                self.db.history.insert_one({"_id": f"{snippet_id}:{n}", "snippet_id": snippet_id, "n": n,
                                            "revision_id": revision_id, "author_id": author_id, "created": now})
                break
            except DuplicateKeyError:
                continue
        weights = _terms(draft)
        self.db.snippets.update_one({"_id": snippet_id}, {"$set": {
            "head": revision_id, "title": draft.title, "updated": now, "tags": list(draft.tags),
            "terms": sorted(weights), "weights": weights}})

    def create(self, owner_id: str, draft: Draft, *, example: bool = False,
               forked: tuple[str, str] | None = None) -> Snippet:
        hashes = self._store_files(draft)
        snippet_id = self._insert_snippet(owner_id, draft, hashes, example, forked)
        made = self.snippet(snippet_id)
        assert made is not None
        return made

    def _insert_snippet(self, owner_id: str, draft: Draft, hashes: dict[str, str], example: bool,
                        forked: tuple[str, str] | None) -> str:
        from pymongo.errors import DuplicateKeyError

        now = time.time()
        revision_id = self._add_revision(draft, hashes, now)
        while True:
            snippet_id = new_snippet_id()
            try:
                self.db.snippets.insert_one({
                    "_id": snippet_id, "owner_id": owner_id, "head": revision_id, "title": draft.title,
                    "created": now, "updated": now, "example": example, "deleted": None,
                    "forked_from": forked[0] if forked else None, "forked_revision": forked[1] if forked else None,
                    "thumbnail": None, "rating_sum": 0, "rating_count": 0, "rating": 0.0, "tags": [], "terms": [],
                    "weights": {}})
                break
            except DuplicateKeyError:
                continue
        self._point(snippet_id, revision_id, owner_id, now, draft)
        return snippet_id

    def seed_examples(self, drafts: list[Draft]) -> int:
        from pymongo.errors import DuplicateKeyError

        hashes = [self._store_files(draft) for draft in drafts]
        with locked(self.db, "seed", hold=60.0):
            if self.db.snippets.count_documents({}, limit=1):
                return 0
            found = self.db.users.find_one({"name_key": EXAMPLES_OWNER})
            owner = found["_id"] if found else secrets.token_hex(16)
            if found is None:
                try:  # "!" is no Argon2 hash: no password logs this account in
                    self.db.users.insert_one({"_id": owner, "name": EXAMPLES_OWNER, "name_key": EXAMPLES_OWNER,
                                              "password_hash": "!", "created": time.time()})
                except DuplicateKeyError:
                    owner = self.db.users.find_one({"name_key": EXAMPLES_OWNER})["_id"]
            for draft, files in zip(drafts, hashes, strict=True):
                self._insert_snippet(owner, draft, files, True, None)
                time.sleep(0.001)  # distinct times: the library's newest-first order is the examples' order
        return len(drafts)

    def save(self, snippet_id: str, author_id: str, draft: Draft) -> Snippet:
        current = self._owned(snippet_id, author_id)
        if draft.revision_id() == current.head.id:
            return current
        hashes = self._store_files(draft)
        now = time.time()
        revision_id = self._add_revision(draft, hashes, now)
        self._point(snippet_id, revision_id, author_id, now, draft)
        saved = self.snippet(snippet_id)
        assert saved is not None
        return saved

    def delete(self, snippet_id: str, user_id: str) -> None:
        self._owned(snippet_id, user_id)
        self.db.snippets.update_one({"_id": snippet_id}, {"$set": {"deleted": time.time()}})

    def purge(self, snippet_id: str, user_id: str) -> None:
        snippet = self.snippet(snippet_id, deleted=True)
        if snippet is None:
            raise NotFound(f"no snippet has the id {snippet_id!r}")
        if snippet.owner_id != user_id:
            raise NotAllowed("only a snippet's owner can purge it")
        revisions = {d["revision_id"] for d in self.db.history.find({"snippet_id": snippet_id}, {"revision_id": 1})}
        self.db.snippets.delete_one({"_id": snippet_id})
        for collection in ("history", "comments", "ratings"):
            self.db[collection].delete_many({"snippet_id": snippet_id})
        self.db.related.delete_many({"$or": [{"snippet_id": snippet_id}, {"other_id": snippet_id}]})
        ids = list(revisions)
        shared = {d["revision_id"] for d in self.db.history.find({"revision_id": {"$in": ids}}, {"revision_id": 1})}
        shared |= {d["head"] for d in self.db.snippets.find({"head": {"$in": ids}}, {"head": 1})}
        gone = list(revisions - shared)
        hashes = {f["sha256"] for d in self.db.revisions.find({"_id": {"$in": gone}}, {"files": 1}) for f in d["files"]}
        self.db.revisions.delete_many({"_id": {"$in": gone}})
        kept = {f["sha256"] for d in self.db.revisions.find({"files.sha256": {"$in": list(hashes)}}, {"files": 1})
                for f in d["files"]}
        for digest in hashes - kept:  # bytes no revision names any more
            self._files.delete_file(BLOB_FOLDER, digest)
        if snippet.thumbnail is not None:
            self._drop_thumbnail(snippet.thumbnail.sha256)

    # -- reading --------------------------------------------------------------------------------

    def _names(self, user_ids: set[str]) -> dict[str, str]:
        return {d["_id"]: d["name"] for d in self.db.users.find({"_id": {"$in": list(user_ids)}}, {"name": 1})}

    @staticmethod
    def _revision(doc: dict[str, Any]) -> Revision:
        files = {f["path"]: FileRef(f["sha256"], f["size"]) for f in sorted(doc["files"], key=lambda f: f["path"])}
        return Revision(id=doc["_id"], title=doc["title"], blurb=doc["blurb"], tags=tuple(doc["tags"]),
                        command=doc["command"], files=files, created=doc["created"])

    def snippet(self, snippet_id: str, *, deleted: bool = False) -> Snippet | None:
        doc = self.db.snippets.find_one({"_id": snippet_id}, {"terms": 0, "weights": 0})
        if doc is None or (doc.get("deleted") is not None and not deleted):
            return None
        head = self.revision(doc["head"])
        assert head is not None
        entries = list(self.db.history.find({"snippet_id": snippet_id}, {"author_id": 1, "n": 1}).sort("n", 1))
        names = self._names({e["author_id"] for e in entries} | {doc["owner_id"]})
        contributors = tuple(dict.fromkeys(names[e["author_id"]] for e in entries if e["author_id"] in names))
        return Snippet(id=doc["_id"], owner=names.get(doc["owner_id"], "?"), owner_id=doc["owner_id"], head=head,
                       created=doc["created"], updated=doc["updated"], forked_from=doc.get("forked_from"),
                       forked_revision=doc.get("forked_revision"), example=bool(doc.get("example")),
                       deleted=doc.get("deleted"), rating=_rating(doc), ratings=doc.get("rating_count", 0),
                       thumbnail=Thumbnail.from_json(doc.get("thumbnail")), contributors=contributors)

    def revision(self, revision_id: str) -> Revision | None:
        doc = self.db.revisions.find_one({"_id": revision_id})
        return self._revision(doc) if doc else None

    def in_history(self, snippet_id: str, revision_id: str) -> bool:
        return self.db.history.find_one({"snippet_id": snippet_id, "revision_id": revision_id}, {"_id": 1}) is not None

    def history(self, snippet_id: str) -> list[HistoryEntry]:
        entries = list(self.db.history.find({"snippet_id": snippet_id}).sort("n", -1))
        titles = {d["_id"]: d["title"] for d in self.db.revisions.find(
            {"_id": {"$in": list({e["revision_id"] for e in entries})}}, {"title": 1})}
        names = self._names({e["author_id"] for e in entries})
        return [HistoryEntry(n=e["n"], revision=e["revision_id"], title=titles.get(e["revision_id"], ""),
                             author=names.get(e["author_id"], "?"), created=e["created"]) for e in entries]

    def count(self) -> int:
        return int(self.db.snippets.count_documents({}))

    def _summaries(self, docs: list[dict[str, Any]]) -> list[Summary]:
        names = self._names({d["owner_id"] for d in docs})
        return [Summary(id=d["_id"], title=d["title"], owner=names.get(d["owner_id"], "?"), tags=tuple(d["tags"]),
                        updated=d["updated"], rating=_rating(d), ratings=d.get("rating_count", 0),
                        example=bool(d.get("example")), thumbnail=Thumbnail.from_json(d.get("thumbnail")))
                for d in docs]

    def browse(self, query: str = "", tag: str | None = None, sort: str = "new", offset: int = 0,
               limit: int = 20, owner: str | None = None) -> Page:
        if sort not in SORTS:
            raise BadRequest(f"sort is one of {', '.join(SORTS)}, not {sort!r}")
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)
        filters: dict[str, Any] = {"deleted": None}
        if tag:
            tag = check_tag(tag)
            filters["$or"] = [{"tags": tag}, {"tags": {"$regex": "^" + re.escape(tag + "/")}}]
        if owner:
            found = self.db.users.find_one({"name_key": name_key(owner)}, {"_id": 1})
            if found is None:
                return Page([], 0)
            filters["owner_id"] = found["_id"]
        terms = _query_terms(query) if query else []
        if query and not terms:
            return Page([], 0)  # nothing to search for
        if terms:
            filters["terms"] = {"$all": terms}
        summary_fields = {"title": 1, "owner_id": 1, "tags": 1, "updated": 1, "rating_sum": 1, "rating_count": 1,
                          "example": 1, "thumbnail": 1}
        if terms and sort == "relevance":
            scored = [(sum(d.get("weights", {}).get(t, 0) for t in terms), d["_id"]) for d in self.db.snippets.find(
                filters, {f"weights.{t}": 1 for t in terms})]
            scored.sort(reverse=True)  # the higher score first; of equal scores the higher id
            ids = [i for _, i in scored[offset:offset + limit]]
            by_id = {d["_id"]: d for d in self.db.snippets.find({"_id": {"$in": ids}}, summary_fields)}
            return Page(self._summaries([by_id[i] for i in ids if i in by_id]), len(scored))
        order = [("updated", -1), ("_id", -1)]
        if sort == "rating":
            order = [("rating", -1), ("rating_count", -1), ("updated", -1), ("_id", -1)]
        total = int(self.db.snippets.count_documents(filters))
        docs = list(self.db.snippets.find(filters, summary_fields).sort(order).skip(offset).limit(limit))
        return Page(self._summaries(docs), total)

    def tags(self, prefix: str = "", limit: int = 20) -> list[tuple[str, int]]:
        prefix = prefix.strip().lower()
        counted: Counter[str] = Counter()
        for doc in self.db.snippets.find({"deleted": None, "tags": {"$regex": "^" + re.escape(prefix)}}, {"tags": 1}):
            counted.update(t for t in set(doc["tags"]) if t.startswith(prefix))
        ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:max(1, min(limit, MAX_PAGE))]

    # -- people's words -------------------------------------------------------------------------

    def add_comment(self, snippet_id: str, author_id: str, body: str, revision_id: str | None = None,
                    path: str | None = None, line: int | None = None) -> Comment:
        body = self._check_comment(snippet_id, body, revision_id, path, line)
        comment_id = secrets.token_hex(8)
        now = time.time()
        self.db.comments.insert_one({"_id": comment_id, "snippet_id": snippet_id, "author_id": author_id, "body": body,
                                     "revision_id": revision_id, "path": path, "line": line, "created": now})
        return Comment(comment_id, self._names({author_id}).get(author_id, "?"), body, now, revision_id, path, line)

    def comments(self, snippet_id: str) -> list[Comment]:
        found = list(self.db.comments.find({"snippet_id": snippet_id}).sort([("created", 1), ("_id", 1)]))
        names = self._names({c["author_id"] for c in found})
        return [Comment(c["_id"], names.get(c["author_id"], "?"), c["body"], c["created"], c.get("revision_id"),
                        c.get("path"), c.get("line")) for c in found]

    def rate(self, snippet_id: str, user_id: str, stars: int) -> tuple[float, int]:
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise BadRequest("stars is a whole number from 1 to 5")
        self._live(snippet_id)
        self.db.ratings.replace_one({"_id": f"{snippet_id}:{user_id}"},
                                    {"snippet_id": snippet_id, "user_id": user_id, "stars": stars}, upsert=True)
        stars_given = [d["stars"] for d in self.db.ratings.find({"snippet_id": snippet_id}, {"stars": 1})]
        total, count = sum(stars_given), len(stars_given)
        mean = round(total / count, 2) if count else 0.0
        self.db.snippets.update_one({"_id": snippet_id}, {"$set": {"rating_sum": total, "rating_count": count,
                                                                   "rating": mean}})
        return mean, count

    def relate(self, snippet_id: str, user_id: str, other_id: str, related: bool = True) -> None:
        self._owned(snippet_id, user_id)
        if other_id == snippet_id:
            raise BadRequest("a snippet is not related to itself")
        self._live(other_id)
        if related:
            self.db.related.replace_one({"_id": f"{snippet_id}:{other_id}"},
                                        {"snippet_id": snippet_id, "other_id": other_id}, upsert=True)
        else:
            self.db.related.delete_one({"_id": f"{snippet_id}:{other_id}"})

    def related(self, snippet_id: str) -> list[Summary]:
        others = [d["other_id"] for d in self.db.related.find({"snippet_id": snippet_id}, {"other_id": 1})]
        docs = list(self.db.snippets.find({"_id": {"$in": others}, "deleted": None}, {"terms": 0, "weights": 0})
                    .sort([("title", 1), ("_id", 1)]))
        return self._summaries(docs)

    def set_thumbnail(self, snippet_id: str, user_id: str, image: bytes) -> Thumbnail:
        before = self._owned(snippet_id, user_id).thumbnail
        thumbnail = Thumbnail(hashlib.sha256(image).hexdigest(), image_type(image))
        self._files.put(THUMBNAIL_FOLDER, thumbnail.sha256, image)  # first: a document never names missing bytes
        self.db.snippets.update_one({"_id": snippet_id}, {"$set": {"thumbnail": thumbnail.to_json()}})
        if before is not None and before.sha256 != thumbnail.sha256:
            self._drop_thumbnail(before.sha256)
        return thumbnail

    def _drop_thumbnail(self, sha256: str) -> None:
        """Delete a thumbnail's bytes unless a snippet (a fork, say) still shows them."""
        if self.db.snippets.find_one({"thumbnail": {"$regex": re.escape(sha256)}}, {"_id": 1}) is None:
            self._files.delete_file(THUMBNAIL_FOLDER, sha256)
