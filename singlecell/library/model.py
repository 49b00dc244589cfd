"""The snippet library's records, and the rules a snippet's content keeps.

A **revision** is immutable content: a title, a Markdown blurb, tags, a suggested command and
files. Its id is the hash of that content, so the same content is the same revision anywhere and
a link naming a revision never changes. A **snippet** is a mutable pointer to its head revision,
with an owner, a history of the revisions it has had, comments, ratings and related snippets.
File bytes live once in the FileStore, keyed by their SHA-256: forks and unchanged files cost
nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from filestore.base import FileStoreError
from filestore.base import check_name as check_file_name
from singlecell.errors import BadRequest, PayloadTooLarge

MAX_TITLE = 120
MAX_BLURB = 20_000
MAX_TAGS = 10
MAX_TAG = 64
MAX_COMMENT = 10_000
TAG = re.compile(r"[a-z0-9][a-z0-9+#._-]*(/[a-z0-9][a-z0-9+#._-]*)*")
SNIPPET_ID = r"[a-z2-7]{10}"
REVISION_ID = r"[a-z2-7]{20}"
#: the FileStore "folder" every snippet file's bytes live in, named by their SHA-256
BLOB_FOLDER = "snippet-files"
#: the FileStore "folder" of thumbnails' bytes, named by their SHA-256
THUMBNAIL_FOLDER = "snippet-thumbnails"
MAX_THUMBNAIL = 2 * 1024 * 1024
# what a thumbnail may be, known by its first bytes: raster images only (an SVG can carry script)
_IMAGE_MAGIC = (("image/png", b"\x89PNG\r\n\x1a\n"), ("image/jpeg", b"\xff\xd8\xff"), ("image/gif", b"GIF8"))


@dataclass(frozen=True)
class Limits:
    """What a saved snippet may hold: as much as one run may upload, so every snippet can run."""

    max_files: int
    max_bytes: int  # all files together, in UTF-8
    max_command: int


@dataclass(frozen=True)
class Thumbnail:
    """A snippet's picture: an image one of its runs made, kept in the FileStore by its hash, so it
    outlives the run and never changes under its URL."""

    sha256: str
    content_type: str

    def to_json(self) -> str:
        return json.dumps({"sha256": self.sha256, "type": self.content_type})

    @staticmethod
    def from_json(text: str | None) -> Thumbnail | None:
        value = json.loads(text) if text else None
        # an early form named a run's file ({request, name}) and is not read any more
        if not isinstance(value, dict) or "sha256" not in value:
            return None
        return Thumbnail(str(value["sha256"]), str(value["type"]))


def image_type(data: bytes) -> str:
    """The content type of a PNG, JPEG or GIF image, by its first bytes; else :class:`BadRequest`."""
    if len(data) > MAX_THUMBNAIL:
        raise PayloadTooLarge(f"a thumbnail is at most {MAX_THUMBNAIL // 1024 // 1024} MB; this image is "
                              f"{len(data) / 1024 / 1024:.1f} MB")
    for content_type, magic in _IMAGE_MAGIC:
        if data.startswith(magic):
            return content_type
    raise BadRequest("a thumbnail is a PNG, JPEG or GIF image")


@dataclass(frozen=True)
class Draft:
    """The content of a revision, as a person wrote it (checked by :func:`check_draft`)."""

    title: str
    blurb: str
    tags: tuple[str, ...]
    files: dict[str, str]  # path → text
    command: str = ""

    def file_hashes(self) -> dict[str, str]:
        return {path: hashlib.sha256(text.encode("utf-8")).hexdigest() for path, text in self.files.items()}

    def revision_id(self) -> str:
        """The content's id: the same for the same content, anywhere."""
        canonical = json.dumps({"title": self.title, "blurb": self.blurb, "tags": list(self.tags),
                                "command": self.command, "files": self.file_hashes()},
                               sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).digest()
        return base64.b32encode(digest).decode("ascii").lower()[:20]


@dataclass(frozen=True)
class FileRef:
    sha256: str
    size: int


@dataclass(frozen=True)
class Revision:
    id: str
    title: str
    blurb: str
    tags: tuple[str, ...]
    command: str
    files: dict[str, FileRef]
    created: float


@dataclass(frozen=True)
class Snippet:
    id: str
    owner: str  # the owner's user name
    owner_id: str
    head: Revision
    created: float
    updated: float
    forked_from: str | None = None  # a snippet id
    forked_revision: str | None = None
    example: bool = False
    deleted: float | None = None
    rating: float = 0.0  # mean stars, 0 when none
    ratings: int = 0
    thumbnail: Thumbnail | None = None  # an image a run of it made
    contributors: tuple[str, ...] = field(default=())  # user names of every revision's author


@dataclass(frozen=True)
class Summary:
    """A snippet in a list: browse, search, related."""

    id: str
    title: str
    owner: str
    tags: tuple[str, ...]
    updated: float
    rating: float
    ratings: int
    example: bool
    thumbnail: Thumbnail | None


@dataclass(frozen=True)
class HistoryEntry:
    n: int  # 1 for the first revision
    revision: str
    title: str
    author: str
    created: float


@dataclass(frozen=True)
class Comment:
    id: str
    author: str
    body: str  # Markdown
    created: float
    revision: str | None = None  # a line comment names (revision, path, line)
    path: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Page:
    items: list[Summary]
    total: int


def _text(value: Any, what: str, maximum: int, *, required: bool = False, one_line: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} holds an unpaired surrogate, which is not text") from None
    if "\x00" in value:
        raise BadRequest(f"{what} contains a NUL character")
    if one_line:
        value = " ".join(value.split())
    if required and not value.strip():
        raise BadRequest(f"{what} is empty")
    if len(value) > maximum:
        raise PayloadTooLarge(f"{what} is {len(value)} characters; at most {maximum} are kept")
    return value


def check_tag(tag: Any) -> str:
    """A tag in its one form: lower case, ``/`` between the levels of its hierarchy."""
    if not isinstance(tag, str):
        raise BadRequest("a tag must be a string")
    tag = tag.strip().strip("/").lower()
    if not TAG.fullmatch(tag) or len(tag) > MAX_TAG:
        raise BadRequest(f"bad tag {tag[:80]!r}: tags are lower-case letters, digits and + # . _ -, with / "
                         f"between levels (like plotting/3d), at most {MAX_TAG} characters")
    return tag


def _path_key(path: str) -> str:
    return unicodedata.normalize("NFKC", path).casefold()


def check_path(path: Any) -> str:
    """A file's path inside a snippet: relative, no ``..``, no NUL or control character."""
    if not isinstance(path, str):
        raise BadRequest("a file's name must be a string")
    try:
        check_file_name(path)
    except FileStoreError as exc:
        raise BadRequest(f"bad file name: {exc}") from None
    if any(unicodedata.category(ch).startswith("C") for ch in path):
        raise BadRequest(f"bad file name {path!r}: it holds a control or invisible formatting character")
    return path


def check_draft(payload: Any, limits: Limits) -> Draft:
    """A :class:`Draft` from a request body; raises ``BadRequest`` or ``PayloadTooLarge`` saying
    what to fix."""
    if not isinstance(payload, dict):
        raise BadRequest('send a JSON object like {"title": "…", "files": {"main.py": "print(1)"}}')
    unknown = set(payload) - {"title", "blurb", "tags", "files", "command"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; the fields are title, blurb, tags, "
                         "files and command")
    title = _text(payload.get("title"), "the title", MAX_TITLE, required=True, one_line=True)
    blurb = _text(payload.get("blurb"), "the blurb", MAX_BLURB)
    command = _text(payload.get("command"), "the command", limits.max_command)
    raw_tags = payload.get("tags") or []
    if isinstance(raw_tags, str):
        raw_tags = [t for t in re.split(r"[\s,]+", raw_tags) if t]
    if not isinstance(raw_tags, list):
        raise BadRequest("tags must be a list of strings")
    tags = tuple(dict.fromkeys(check_tag(t) for t in raw_tags))
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"{len(tags)} tags; at most {MAX_TAGS}")
    files = payload.get("files")
    if not isinstance(files, dict) or not files:
        raise BadRequest('files must be an object of at least one file: {"main.py": "print(1)"}')
    if len(files) > limits.max_files:
        raise BadRequest(f"{len(files)} files; a snippet holds at most {limits.max_files}")
    seen: dict[str, str] = {}
    checked: dict[str, str] = {}
    for path, text in files.items():
        check_path(path)
        key = _path_key(path)
        if key in seen:
            raise BadRequest(f"the file names {seen[key]!r} and {path!r} differ only by case or Unicode form")
        seen[key] = path
        for parent in _parents(path):
            if parent in files:
                raise BadRequest(f"{parent!r} cannot be both a file and the folder of {path!r}")
        checked[path] = _text(text, f"the file {path!r}", limits.max_bytes)
    size = sum(len(text.encode("utf-8")) for text in checked.values())
    if size > limits.max_bytes:
        raise PayloadTooLarge(f"the files hold {size} bytes; a snippet holds at most {limits.max_bytes}")
    return Draft(title=title, blurb=blurb, tags=tags, files=dict(sorted(checked.items())), command=command)


def check_comment(body: Any) -> str:
    return _text(body, "the comment", MAX_COMMENT, required=True)


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
