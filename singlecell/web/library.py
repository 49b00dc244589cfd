"""The snippet library on the web: its JSON API (``/api/snippets``, ``/api/tags``), the raw files
and zips (``/s/<id>/raw/…``, ``/s/<id>.zip``) and its pages (``/library``, ``/s/<id>``, …).

The API and the pages take a login session's cookie (writes then carry the XSRF token) or a
Bearer token. Who may do what is the library's own rule (singlecell/library/base.py).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import time
import urllib.parse
import zipfile
from typing import Any

import tornado.web

from singlecell.accounts import User
from singlecell.errors import BadRequest, NotAllowed, NotFound, TooManyRequests
from singlecell.library import Library
from singlecell.library.model import (
    REVISION_ID,
    SNIPPET_ID,
    Draft,
    Limits,
    Revision,
    Snippet,
    Summary,
    Thumbnail,
    check_draft,
    image_type,
)
from singlecell.library.render import diff, highlight, markdown
from singlecell.web.handlers import BodyHandler, PageMixin, digits

PAGE_SIZE = 20
TAG_CLOUD_SECONDS = 10.0  # the browse page's tag list is read again at most this often, per process
COMMENTS_PER_MINUTE = 10
RAW_SECURITY = "sandbox; default-src 'none'"  # a raw file is text: nothing in it may run as this site


class LibraryHandler(BodyHandler):
    """What every handler of the library needs."""

    @property
    def library(self) -> Library:
        if self.services.library is None:
            raise NotFound("this server has no snippet library")
        return self.services.library

    @property
    def limits(self) -> Limits:
        config = self.services.config
        return Limits(max_files=config.max_uploads, max_bytes=config.max_upload_size, max_command=config.max_code_size)

    def snippet_or_404(self, snippet_id: str) -> Snippet:
        snippet = self.library.snippet(snippet_id)
        if snippet is None:
            raise NotFound(f"no snippet has the id {snippet_id!r} (or its owner deleted it)")
        return snippet

    def revision_or_404(self, snippet_id: str, revision_id: str) -> tuple[Snippet, Revision]:
        """A revision of a snippet's history; a deleted snippet's revisions stay reachable."""
        snippet = self.library.snippet(snippet_id, deleted=True)
        revision = self.library.revision(revision_id) if snippet is not None else None
        if snippet is None or revision is None or not self.library.in_history(snippet_id, revision_id):
            raise NotFound(f"snippet {snippet_id!r} has no revision {revision_id!r}")
        return snippet, revision

    def page_number(self) -> int:
        raw = self.get_argument("page", "1")
        if not digits(raw) or not 1 <= int(raw) <= 10_000:
            raise BadRequest("page is a whole number from 1")
        return int(raw)

    def throttle_comments(self, user: User) -> None:
        accounts = self.services.accounts
        wait = accounts.throttle(f"comment:{user.id}", COMMENTS_PER_MINUTE, 60) if accounts else 0
        if wait:
            raise TooManyRequests(f"at most {COMMENTS_PER_MINUTE} comments a minute; try again in {wait} s", wait)

    def snippet_json(self, snippet: Snippet, revision: Revision | None = None) -> dict[str, Any]:
        revision = revision or snippet.head
        return {
            "id": snippet.id, "revision": revision.id, "url": self.absolute(f"/s/{snippet.id}"),
            "title": revision.title, "blurb": revision.blurb, "tags": list(revision.tags), "command": revision.command,
            "files": self.library.files(revision), "owner": snippet.owner, "contributors": list(snippet.contributors),
            "forked_from": snippet.forked_from, "forked_revision": snippet.forked_revision,
            "rating": snippet.rating, "ratings": snippet.ratings, "example": snippet.example,
            "thumbnail": self.thumbnail_url(snippet.thumbnail), "created": snippet.created, "updated": snippet.updated,
        }

    def thumbnail_url(self, thumbnail: Thumbnail | None) -> str | None:
        return f"/thumbnails/{thumbnail.sha256}" if thumbnail is not None else None

    def summary_json(self, summary: Summary) -> dict[str, Any]:
        return {"id": summary.id, "title": summary.title, "owner": summary.owner, "tags": list(summary.tags),
                "updated": summary.updated, "rating": summary.rating, "ratings": summary.ratings,
                "example": summary.example, "thumbnail": self.thumbnail_url(summary.thumbnail),
                "url": self.absolute(f"/s/{summary.id}")}

    def browse_arguments(self) -> dict[str, Any]:
        sort = self.get_argument("sort", "")
        query = self.get_argument("q", "")
        return {"query": query, "tag": self.get_argument("tag", "") or None, "owner": self.get_argument("owner", "")
                or None, "sort": sort or ("relevance" if query else "new")}


# -- the JSON API ---------------------------------------------------------------------------------

class SnippetsApi(LibraryHandler):
    """``GET /api/snippets?q=&tag=&sort=&page=&owner=`` browses and searches; ``POST`` creates."""

    def get(self) -> None:
        number = self.page_number()
        found = self.library.browse(**self.browse_arguments(), offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        self.send_json({"items": [self.summary_json(s) for s in found.items], "total": found.total, "page": number,
                        "pages": max(1, math.ceil(found.total / PAGE_SIZE))})

    async def accept(self, *args: str) -> None:
        user = self.require_user()
        snippet = self.library.create(user.id, check_draft(self.json_body(), self.limits))
        self.send_json({"id": snippet.id, "revision": snippet.head.id, "url": self.absolute(f"/s/{snippet.id}")}, 201)


class SnippetApi(LibraryHandler):
    """``GET /api/snippets/<id>``: the head revision; ``DELETE``: the owner deletes it."""

    def get(self, snippet_id: str) -> None:
        self.send_json(self.snippet_json(self.snippet_or_404(snippet_id)))

    def delete(self, snippet_id: str) -> None:
        user = self.require_user()
        if self.get_argument("purge", "") in ("1", "true"):
            self.library.purge(snippet_id, user.id)
        else:
            self.library.delete(snippet_id, user.id)
        self.set_status(204)
        self.finish()


class RevisionsApi(LibraryHandler):
    """``GET /api/snippets/<id>/revisions``: the history, newest first; ``POST``: a new revision."""

    def get(self, snippet_id: str) -> None:
        self.snippet_or_404(snippet_id)
        self.send_json({"revisions": [{"n": h.n, "revision": h.revision, "title": h.title, "author": h.author,
                                       "created": h.created} for h in self.library.history(snippet_id)]})

    async def accept(self, *args: str) -> None:
        (snippet_id,) = args
        user = self.require_user()
        snippet = self.library.save(snippet_id, user.id, check_draft(self.json_body(), self.limits))
        self.send_json({"id": snippet.id, "revision": snippet.head.id, "url": self.absolute(f"/s/{snippet.id}")}, 201)


class RevisionApi(LibraryHandler):
    """``GET /api/snippets/<id>/revisions/<revision>``."""

    def get(self, snippet_id: str, revision_id: str) -> None:
        snippet, revision = self.revision_or_404(snippet_id, revision_id)
        self.send_json(self.snippet_json(snippet, revision))


class ForkApi(LibraryHandler):
    """``POST /api/snippets/<id>/fork`` (``{"revision"}`` optional): a copy of the caller's own."""

    async def accept(self, *args: str) -> None:
        (snippet_id,) = args
        user = self.require_user()
        body = self.json_body()
        revision = body.get("revision") if isinstance(body, dict) else None
        if revision is not None and not isinstance(revision, str):
            raise BadRequest("revision is a revision id")
        fork = self.library.fork(snippet_id, user.id, revision)
        self.send_json({"id": fork.id, "revision": fork.head.id, "url": self.absolute(f"/s/{fork.id}")}, 201)


class CommentsApi(LibraryHandler):
    """``GET``/``POST /api/snippets/<id>/comments``: ``{body, revision?, path?, line?}``."""

    def get(self, snippet_id: str) -> None:
        self.snippet_or_404(snippet_id)
        self.send_json({"comments": [comment_json(c) for c in self.library.comments(snippet_id)]})

    async def accept(self, *args: str) -> None:
        (snippet_id,) = args
        user = self.require_user()
        body = self.json_body()
        if not isinstance(body, dict) or set(body) - {"body", "revision", "path", "line"}:
            raise BadRequest('send {"body": "…"}, and for a line comment also revision, path and line')
        text = body.get("body")
        if not isinstance(text, str):
            raise BadRequest('"body" is the comment\'s text, Markdown')
        self.throttle_comments(user)
        comment = self.library.add_comment(snippet_id, user.id, text, body.get("revision"),
                                           body.get("path"), body.get("line"))
        self.send_json(comment_json(comment), 201)


class RatingApi(LibraryHandler):
    """``PUT /api/snippets/<id>/rating {"stars": 1..5}``, once per person."""

    async def accept_put(self, *args: str) -> None:
        (snippet_id,) = args
        user = self.require_user()
        body = self.json_body()
        stars = body.get("stars") if isinstance(body, dict) else None
        mean, count = self.library.rate(snippet_id, user.id, stars)  # type: ignore[arg-type]
        self.send_json({"rating": mean, "ratings": count})


class RelatedApi(LibraryHandler):
    """``PUT``/``DELETE /api/snippets/<id>/related/<other>``: the owner links related snippets."""

    async def accept_put(self, *args: str) -> None:
        snippet_id, other_id = args
        self.library.relate(snippet_id, self.require_user().id, other_id)
        self.send_json({"related": [self.summary_json(s) for s in self.library.related(snippet_id)]})

    def delete(self, snippet_id: str, other_id: str) -> None:
        self.library.relate(snippet_id, self.require_user().id, other_id, related=False)
        self.send_json({"related": [self.summary_json(s) for s in self.library.related(snippet_id)]})


class ThumbnailApi(LibraryHandler):
    """``PUT /api/snippets/<id>/thumbnail {"request", "name"}`` (an image file the run wrote) or
    ``{"request", "output"}`` (the seq of an image the run displayed, a plot say)."""

    async def accept_put(self, *args: str) -> None:
        (snippet_id,) = args
        user = self.require_user()
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest('give {"request": <id>, "name": <file>} or {"request": <id>, "output": <seq>}')
        thumbnail = set_thumbnail(self, snippet_id, user, body.get("request"), body.get("name"), body.get("output"))
        self.send_json({"thumbnail": self.thumbnail_url(thumbnail)})


# the image types a displayed output may carry as a thumbnail, best first
_DISPLAYED_IMAGES = ("image/png", "image/jpeg", "image/gif")


def _seq(output: Any) -> int | None:
    """An output's seq, from JSON (a number) or a form (digits)."""
    if isinstance(output, str) and digits(output) and len(output) < 10:
        output = int(output)
    return output if isinstance(output, int) and not isinstance(output, bool) and output >= 1 else None


def set_thumbnail(handler: LibraryHandler, snippet_id: str, user: User, request_id: Any, name: Any,
                  output: Any) -> Thumbnail:
    """The owner makes an image of a run the thumbnail: a file it wrote, or an output it displayed."""
    if not isinstance(request_id, str) or not re.fullmatch(r"[0-9a-f]{32}", request_id):
        raise BadRequest("a thumbnail is an image of a run: give the run's request id")
    if isinstance(name, str) and name:
        record = handler.services.store.get_file(request_id, name)
        image = handler.services.filestore.get(request_id, name) if record is not None else None
        if image is None:
            raise BadRequest(f"request {request_id} wrote no file named {name!r}")
    elif (seq := _seq(output)) is not None:
        found = handler.services.store.get_messages(request_id, after=seq - 1, limit=1)
        content = found[0].message.get("content") if found and found[0].seq == seq else None
        data = content.get("data") if isinstance(content, dict) else None
        encoded = next((data[t] for t in _DISPLAYED_IMAGES if isinstance(data, dict) and isinstance(data.get(t), str)),
                       None)
        if encoded is None:
            raise BadRequest(f"output {seq} of request {request_id} is not an image it displayed")
        try:
            image = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise BadRequest(f"output {seq} of request {request_id} is not a base64 image") from None
    else:
        raise BadRequest('name the image: "name" (a file the run wrote) or "output" (the seq of an image it '
                         "displayed)")
    return handler.library.set_thumbnail(snippet_id, user.id, image)


class ThumbnailImage(LibraryHandler):
    """``/thumbnails/<sha256>``: a snippet's thumbnail; its URL names its content, so it never changes."""

    def get(self, sha256: str) -> None:
        image = self.library.thumbnail_image(sha256)
        if image is None:
            raise NotFound(f"no thumbnail {sha256}")
        self.set_header("Content-Type", image_type(image))
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        self.set_header("Content-Security-Policy", RAW_SECURITY)
        self.finish(image)


class TagsApi(LibraryHandler):
    """``GET /api/tags?prefix=``: tags for autocompletion, most used first."""

    def get(self) -> None:
        tags = self.library.tags(self.get_argument("prefix", "")[:64], limit=20)
        self.send_json({"tags": [{"tag": tag, "snippets": n} for tag, n in tags]})


def comment_json(c: Any) -> dict[str, Any]:
    return {"id": c.id, "author": c.author, "body": c.body, "created": c.created, "revision": c.revision,
            "path": c.path, "line": c.line}


# -- raw files and zips ---------------------------------------------------------------------------

class RawFileHandler(LibraryHandler):
    """``/s/<id>/raw/<path>`` and ``/s/<id>/r/<rev>/raw/<path>``: one file, as text, never a page."""

    def get(self, snippet_id: str, revision_id: str, path: str) -> None:
        if not revision_id:
            revision = self.snippet_or_404(snippet_id).head
        else:
            revision = self.revision_or_404(snippet_id, revision_id)[1]
        text = self.library.file(revision, path)
        if text is None:
            raise NotFound(f"revision {revision.id} has no file {path!r}")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Security-Policy", RAW_SECURITY)
        name = urllib.parse.quote(path.rsplit("/", 1)[-1])
        self.set_header("Content-Disposition", f"inline; filename*=UTF-8''{name}")
        if revision_id:  # a revision's content never changes
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        self.finish(text.encode("utf-8"))


class ZipHandler(LibraryHandler):
    """``/s/<id>.zip`` and ``/s/<id>/r/<rev>.zip``: every file of the revision, in a folder."""

    def get(self, snippet_id: str, revision_id: str) -> None:
        if not revision_id:
            revision = self.snippet_or_404(snippet_id).head
        else:
            revision = self.revision_or_404(snippet_id, revision_id)[1]
        folder = f"{snippet_id}-{revision.id[:8]}"
        buffer = io.BytesIO()
        stamp = time.localtime(revision.created)[:6]
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, text in self.library.files(revision).items():
                info = zipfile.ZipInfo(f"{folder}/{path}", date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, text.encode("utf-8"))
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", f'attachment; filename="{folder}.zip"')
        self.finish(buffer.getvalue())


# -- pages ----------------------------------------------------------------------------------------

class LibraryPage(PageMixin, LibraryHandler):
    """A page of the library; its forms post back with their XSRF token."""

    def form_user(self) -> User:
        user = self.current_user
        if user is None:
            self.redirect("/login?next=" + urllib.parse.quote(self.request.uri or "/"))
            raise tornado.web.Finish()
        self.check_xsrf_cookie()  # a form needs its token however its user logged in
        return user

    def done(self, url: str) -> None:
        self.redirect(url, status=303)


class BrowsePage(LibraryPage):
    """``/library``: newest, best rated, by tag; full-text search."""

    def get(self) -> None:
        arguments = self.browse_arguments()
        number = self.page_number()
        found = self.library.browse(**arguments, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        self.page("library.html", found=found, number=number, pages=max(1, math.ceil(found.total / PAGE_SIZE)),
                  args=arguments, tags=self.tag_cloud(), thumbnail_url=self.thumbnail_url)

    def tag_cloud(self) -> list[tuple[str, int]]:
        """The most used tags; counted over every snippet, so kept for a few seconds."""
        now = time.monotonic()
        cached = self.services.tag_cloud
        if cached is None or cached[0] < now:
            cached = self.services.tag_cloud = (now + TAG_CLOUD_SECONDS, self.library.tags("", 30))
        return cached[1]


class SnippetPage(LibraryPage):
    """``/s/<id>`` and ``/s/<id>/r/<rev>``: the snippet, its files, a cell to run it, its comments."""

    def get(self, snippet_id: str, revision_id: str | None = None) -> None:
        if revision_id is None:
            snippet = self.snippet_or_404(snippet_id)
            revision = snippet.head
        else:
            snippet, revision = self.revision_or_404(snippet_id, revision_id)
        files = self.library.files(revision)
        comments = self.library.comments(snippet_id)
        commenting = self.get_argument("comment", "")
        path, _, line = commenting.rpartition(":")
        self.page("snippet.html", snippet=snippet, revision=revision, is_head=revision.id == snippet.head.id,
                  files={p: highlight(p, text) for p, text in files.items()}, markdown=markdown,
                  comments=comments, related=self.library.related(snippet_id), history=self.library.history(snippet_id),
                  comment_path=path if path in files else "", comment_line=line if digits(line) else "",
                  thumbnail_url=self.thumbnail_url, runs_first=len(files) == 1 and next(iter(files)).endswith(".py"))


class HistoryPage(LibraryPage):
    """``/s/<id>/history``: every revision; pick two to compare."""

    def get(self, snippet_id: str) -> None:
        snippet = self.snippet_or_404(snippet_id)
        self.page("history.html", snippet=snippet, history=self.library.history(snippet_id))


class DiffPage(LibraryPage):
    """``/s/<id>/diff?from=<rev>&to=<rev>``: what changed between two revisions of its history."""

    def get(self, snippet_id: str) -> None:
        history = self.library.history(snippet_id)
        if not history:
            raise NotFound(f"no snippet has the id {snippet_id!r}")
        to = self.get_argument("to", history[0].revision)
        start = self.get_argument("from", history[1].revision if len(history) > 1 else to)
        snippet, old = self.revision_or_404(snippet_id, start)
        _, new = self.revision_or_404(snippet_id, to)
        meta = [(name, getattr(old, name), getattr(new, name)) for name in ("title", "blurb", "command")
                if getattr(old, name) != getattr(new, name)]
        if old.tags != new.tags:
            meta.append(("tags", ", ".join(old.tags), ", ".join(new.tags)))
        self.page("diff.html", snippet=snippet, old=old, new=new, history=history, meta=meta,
                  changes=diff(self.library.files(old), self.library.files(new)))


def draft_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The JSON body of a snippet from the edit form's fields (``path-N``/``text-N``)."""
    files: dict[str, str] = {}
    slots = sorted(int(key[5:]) for key in form if re.fullmatch(r"path-\d{1,3}", key))
    for n in slots:
        path, text = form.get(f"path-{n}", "").strip(), form.get(f"text-{n}", "").replace("\r\n", "\n")
        if path or text:
            if not path:
                raise BadRequest(f"file {n + 1} has text but no name")
            files[path] = text
    return {"title": form.get("title", ""), "blurb": form.get("blurb", "").replace("\r\n", "\n"),
            "tags": form.get("tags", ""), "command": form.get("command", "").replace("\r\n", "\n"), "files": files}


class EditPage(LibraryPage):
    """``/new`` and ``/s/<id>/edit``: the form to create or change a snippet."""

    def get(self, snippet_id: str | None = None) -> None:
        user = self.current_user
        if user is None:
            self.redirect("/login?next=" + urllib.parse.quote(self.request.uri or "/"))
            return
        if snippet_id is None:
            draft = Draft(title="", blurb="", tags=(), files={"main.py": ""}, command="")
            self.page("edit.html", snippet=None, draft=draft, error=None)
            return
        snippet = self.snippet_or_404(snippet_id)
        if snippet.owner_id != user.id:
            raise NotAllowed(f"this snippet is {snippet.owner}'s: only its owner edits it; fork it to change a copy")
        draft = Draft(snippet.head.title, snippet.head.blurb, snippet.head.tags, self.library.files(snippet.head),
                      snippet.head.command)
        self.page("edit.html", snippet=snippet, draft=draft, error=None)

    async def accept(self, *args: str) -> None:
        snippet_id = args[0] if args else None
        user = self.form_user()
        payload = draft_from_form(self.form())
        try:
            draft = check_draft(payload, self.limits)
        except BadRequest as exc:  # the form again, with what the person typed and what to fix
            shown = Draft(payload["title"], payload["blurb"], (payload["tags"],), payload["files"] or {"main.py": ""},
                          payload["command"])
            self.set_status(400)
            snippet = self.snippet_or_404(snippet_id) if snippet_id else None
            self.page("edit.html", snippet=snippet, draft=shown, error=exc.message)
            return
        if snippet_id is None:
            snippet = self.library.create(user.id, draft)
        else:
            snippet = self.library.save(snippet_id, user.id, draft)
        self.done(f"/s/{snippet.id}")


class ActionPage(LibraryPage):
    """The snippet page's forms: ``POST /s/<id>/<action>`` (fork, comment, rate, delete, relate,
    thumbnail); each goes back to a page."""

    async def accept(self, *args: str) -> None:
        snippet_id, action = args
        user = self.form_user()
        form = self.form()
        if action == "fork":
            fork = self.library.fork(snippet_id, user.id, form.get("revision") or None)
            self.done(f"/s/{fork.id}")
            return
        if action == "comments":
            self.throttle_comments(user)
            line = form.get("line", "")
            revision = form.get("revision") or None
            self.library.add_comment(snippet_id, user.id, form.get("body", ""), revision if line else None,
                                     form.get("path") or None if line else None, int(line) if digits(line) else None)
            self.done(f"/s/{snippet_id}" + (f"/r/{revision}" if revision and line else "") + "#comments")
            return
        if action == "rating":
            stars = form.get("stars", "")
            self.library.rate(snippet_id, user.id, int(stars) if digits(stars) else 0)
            self.done(f"/s/{snippet_id}")
            return
        if action == "delete":
            self.library.delete(snippet_id, user.id)
            self.done(f"/u/{urllib.parse.quote(user.name)}")
            return
        if action == "related":
            other = form.get("other", "").strip().rstrip("/").rsplit("/", 1)[-1]  # an id or the snippet's URL
            if not re.fullmatch(SNIPPET_ID, other):
                raise BadRequest("give the related snippet's id or its link")
            self.library.relate(snippet_id, user.id, other, related=form.get("unlink") != "1")
            self.done(f"/s/{snippet_id}#related")
            return
        if action == "thumbnail":
            set_thumbnail(self, snippet_id, user, form.get("request"), form.get("name"), form.get("output"))
            self.done(f"/s/{snippet_id}")
            return
        raise NotFound(f"no such action {action!r}")


class UserPage(LibraryPage):
    """``/u/<name>``: someone's snippets."""

    def get(self, name: str) -> None:
        accounts = self.services.accounts
        person = accounts.user_named(name) if accounts is not None else None
        if person is None:
            raise NotFound(f"nobody is called {name!r} here")
        number = self.page_number()
        found = self.library.browse(owner=person.name, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        self.page("user.html", person=person, found=found, number=number,
                  pages=max(1, math.ceil(found.total / PAGE_SIZE)), thumbnail_url=self.thumbnail_url)


def library_routes(args: dict[str, Any]) -> list[Any]:
    snippet, revision = f"({SNIPPET_ID})", f"({REVISION_ID})"
    return [
        (r"/api/snippets", SnippetsApi, args),
        (rf"/api/snippets/{snippet}", SnippetApi, args),
        (rf"/api/snippets/{snippet}/revisions", RevisionsApi, args),
        (rf"/api/snippets/{snippet}/revisions/{revision}", RevisionApi, args),
        (rf"/api/snippets/{snippet}/fork", ForkApi, args),
        (rf"/api/snippets/{snippet}/comments", CommentsApi, args),
        (rf"/api/snippets/{snippet}/rating", RatingApi, args),
        (rf"/api/snippets/{snippet}/related/{snippet}", RelatedApi, args),
        (rf"/api/snippets/{snippet}/thumbnail", ThumbnailApi, args),
        (r"/thumbnails/([0-9a-f]{64})", ThumbnailImage, args),
        (r"/api/tags", TagsApi, args),
        (rf"/s/{snippet}()/raw/(.+)", RawFileHandler, args),
        (rf"/s/{snippet}/r/{revision}/raw/(.+)", RawFileHandler, args),
        (rf"/s/{snippet}()\.zip", ZipHandler, args),
        (rf"/s/{snippet}/r/{revision}\.zip", ZipHandler, args),
        (r"/library", BrowsePage, args),
        (r"/new", EditPage, args),
        (rf"/s/{snippet}", SnippetPage, args),
        (rf"/s/{snippet}/r/{revision}", SnippetPage, args),
        (rf"/s/{snippet}/history", HistoryPage, args),
        (rf"/s/{snippet}/diff", DiffPage, args),
        (rf"/s/{snippet}/edit", EditPage, args),
        (rf"/s/{snippet}/(fork|comments|rating|delete|related|thumbnail)", ActionPage, args),
        (r"/u/([^/]+)", UserPage, args),
    ]

