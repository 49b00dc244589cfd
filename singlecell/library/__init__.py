"""The snippet library: runnable snippets with revisions, forks, tags, search, comments and
ratings. :func:`open_library` opens the one in the Store's database."""

from __future__ import annotations

from filestore.base import FileStore
from singlecell.library.base import Library
from singlecell.library.mongo import MongoLibrary
from singlecell.library.sql import SqlLibrary

__all__ = ["Library", "open_library"]


def open_library(url: str, files: FileStore) -> Library:
    """The library in the database ``url`` names (the Store's; its schema is the Store's), its
    files' bytes in ``files``."""
    if url.partition(":")[0].partition("+")[0].lower() == "mongodb":
        return MongoLibrary(url, files)
    return SqlLibrary(url, files)
