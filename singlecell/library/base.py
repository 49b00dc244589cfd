"""The snippet library's Store-side interface: snippets, their revisions, tags, search, comments,
ratings and related snippets (the records are in :mod:`singlecell.library.model`).

One ``Library`` is shared by every web process of a deployment; its metadata lives in the
Store's database and its file bytes in the FileStore. Calls are synchronous and short (a
transaction, plus FileStore writes for new file contents). Who may do what is checked here, so
every caller (the API, the pages, the CLI) keeps the same rules: only a snippet's owner changes,
deletes or links it; anyone with an account forks, comments and rates. Errors: ``NotFound`` for
an unknown (or deleted) snippet, ``NotAllowed`` for someone else's, ``BadRequest`` for content
the rules refuse.
"""

from __future__ import annotations

import base64
import re
import secrets
from abc import ABC, abstractmethod

from filestore.base import FileStore
from singlecell.errors import BadRequest, NotAllowed, NotFound
from singlecell.library.model import (
    BLOB_FOLDER,
    THUMBNAIL_FOLDER,
    Comment,
    Draft,
    HistoryEntry,
    Page,
    Revision,
    Snippet,
    Summary,
    Thumbnail,
    check_comment,
)

SORTS = ("new", "rating", "relevance")
MAX_PAGE = 100  # snippets a page of browse() holds at most
EXAMPLES_OWNER = "examples"  # the account the shipped examples belong to


def new_snippet_id() -> str:
    """Ten base32 characters (50 random bits): short enough for a URL, never guessed."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:10]


class Library(ABC):
    """The contract; the methods at the end, which follow from the others, are written once here."""

    _files: FileStore  # where a backend keeps file bytes by SHA-256 (BLOB_FOLDER) and thumbnails

    def close(self) -> None:
        """Release the connections."""

    # -- snippets and revisions -----------------------------------------------------------------

    @abstractmethod
    def create(self, owner_id: str, draft: Draft, *, example: bool = False,
               forked: tuple[str, str] | None = None) -> Snippet:
        """A new snippet of ``owner_id`` whose first revision is ``draft``; ``forked``: the
        (snippet, revision) it copies, credited (:meth:`fork` passes it)."""

    @abstractmethod
    def save(self, snippet_id: str, author_id: str, draft: Draft) -> Snippet:
        """A new head revision, by the owner. Content equal to the head's changes nothing."""


    @abstractmethod
    def snippet(self, snippet_id: str, *, deleted: bool = False) -> Snippet | None:
        """A snippet with its head; ``None`` when unknown, or deleted unless ``deleted``."""

    @abstractmethod
    def revision(self, revision_id: str) -> Revision | None:
        """A revision, whichever snippets have it (a deleted snippet's too, until purged)."""

    @abstractmethod
    def in_history(self, snippet_id: str, revision_id: str) -> bool:
        """Whether the snippet (deleted or not) has had that revision."""

    @abstractmethod
    def history(self, snippet_id: str) -> list[HistoryEntry]:
        """The snippet's revisions, newest first."""


    @abstractmethod
    def delete(self, snippet_id: str, user_id: str) -> None:
        """Take the owner's snippet out of the library; its revisions stay reachable by id."""

    @abstractmethod
    def purge(self, snippet_id: str, user_id: str) -> None:
        """Delete the owner's snippet and every revision and file no other snippet shares."""

    # -- finding --------------------------------------------------------------------------------

    @abstractmethod
    def browse(self, query: str = "", tag: str | None = None, sort: str = "new", offset: int = 0,
               limit: int = 20, owner: str | None = None) -> Page:
        """Live snippets matching ``query`` (full text: title, tags, blurb, code), under ``tag``
        (``plotting`` includes ``plotting/3d``), of ``owner`` (a user name); sorted ``new``,
        ``rating`` or ``relevance`` (best match first; ``new`` without a query)."""

    @abstractmethod
    def tags(self, prefix: str = "", limit: int = 20) -> list[tuple[str, int]]:
        """Tags of live snippets starting with ``prefix``, each with how many snippets have it,
        most used first."""

    @abstractmethod
    def seed_examples(self, drafts: list[Draft]) -> int:
        """If the library has never held a snippet, add ``drafts`` as examples (marked so), owned by
        the account ``examples``, which no password logs in; returns how many it added. Processes
        that start together add them once."""

    @abstractmethod
    def count(self) -> int:
        """How many snippets there are, deleted ones included (an empty library gets the examples)."""

    # -- people's words -------------------------------------------------------------------------

    @abstractmethod
    def add_comment(self, snippet_id: str, author_id: str, body: str, revision_id: str | None = None,
                    path: str | None = None, line: int | None = None) -> Comment:
        """A comment on the snippet, or on one line (1-based) of one file of one revision of its
        history."""

    @abstractmethod
    def comments(self, snippet_id: str) -> list[Comment]:
        """Its comments, oldest first."""

    @abstractmethod
    def rate(self, snippet_id: str, user_id: str, stars: int) -> tuple[float, int]:
        """Rate 1 to 5 stars, once per person (rating again replaces it); the new (mean, count)."""

    @abstractmethod
    def relate(self, snippet_id: str, user_id: str, other_id: str, related: bool = True) -> None:
        """The owner links (or unlinks) a related snippet."""

    @abstractmethod
    def related(self, snippet_id: str) -> list[Summary]:
        """The live snippets the owner linked."""

    @abstractmethod
    def set_thumbnail(self, snippet_id: str, user_id: str, image: bytes) -> Thumbnail:
        """The owner makes ``image`` (PNG, JPEG or GIF, at most ``MAX_THUMBNAIL`` bytes; else
        :class:`BadRequest`) the snippet's thumbnail. Its bytes are kept once, by their hash; a
        thumbnail no snippet shows any more is deleted."""

    # -- what follows from the above, the same for every backend -----------------------------

    def fork(self, snippet_id: str, user_id: str, revision_id: str | None = None) -> Snippet:
        """A copy owned by ``user_id`` of the snippet's head (or of a revision of its history),
        crediting the original. Shares every revision and file with it: it costs no bytes."""
        source = self._live(snippet_id)
        revision = source.head if revision_id is None else self.revision(revision_id)
        if revision is None or not self.in_history(snippet_id, revision.id):
            raise NotFound(f"snippet {snippet_id} has no revision {revision_id!r}")
        draft = Draft(title=revision.title, blurb=revision.blurb, tags=revision.tags,
                      files=self.files(revision), command=revision.command)
        return self.create(user_id, draft, forked=(snippet_id, revision.id))

    def file(self, revision: Revision, path: str) -> str | None:
        """The text of one file of a revision; ``None`` when it has no such file."""
        ref = revision.files.get(path)
        if ref is None:
            return None
        data = self._files.get(BLOB_FOLDER, ref.sha256)
        if data is None:
            raise RuntimeError(f"the bytes of {path!r} (sha256 {ref.sha256}) are missing from the filestore")
        return data.decode("utf-8")

    def files(self, revision: Revision) -> dict[str, str]:
        """Every file of a revision: path → text, in path order."""
        return {path: self.file(revision, path) or "" for path in revision.files}

    def thumbnail_image(self, sha256: str) -> bytes | None:
        """A thumbnail's bytes, by their hash; ``None`` when no snippet has that thumbnail."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        return self._files.get(THUMBNAIL_FOLDER, sha256)

    def _live(self, snippet_id: str) -> Snippet:
        snippet = self.snippet(snippet_id)
        if snippet is None:
            raise NotFound(f"no snippet has the id {snippet_id!r}")
        return snippet

    def _owned(self, snippet_id: str, user_id: str) -> Snippet:
        snippet = self._live(snippet_id)
        if snippet.owner_id != user_id:
            raise NotAllowed(f"snippet {snippet_id} is {snippet.owner}'s: only its owner can change it; fork it "
                             "to make a copy of your own")
        return snippet

    def _check_comment(self, snippet_id: str, body: str, revision_id: str | None, path: str | None,
                       line: int | None) -> str:
        """The comment's body, checked, on a live snippet; a line comment's revision (of the
        snippet's history), file and line checked too. ``BadRequest`` saying what is wrong."""
        self._live(snippet_id)
        body = check_comment(body)
        if (revision_id, path, line) != (None, None, None):
            revision = self.revision(revision_id) if isinstance(revision_id, str) else None
            if revision is None or not self.in_history(snippet_id, revision.id):
                raise BadRequest(f"a line comment names a revision of snippet {snippet_id}; {revision_id!r} is not one")
            if not isinstance(path, str) or path not in revision.files:
                raise BadRequest(f"revision {revision.id} has no file {path!r}")
            lines = (self.file(revision, path) or "").count("\n") + 1
            if isinstance(line, bool) or not isinstance(line, int) or not 1 <= line <= lines:
                raise BadRequest(f"{path} has lines 1 to {lines}; a line comment names one of them")
        return body
