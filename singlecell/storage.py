"""The store and the filestore a process of the deployment opens, from its settings."""

from __future__ import annotations

from filestore import FileStore, open_filestore
from singlecell.config import Config
from singlecell.store import Store, open_store


def open_storage(config: Config) -> tuple[Store, FileStore]:
    """Open both, making (or migrating) their tables first: every process does this at start,
    under one lock (see singlecell/store/schema.py)."""
    config.data_path.mkdir(parents=True, exist_ok=True)
    store = open_store(config.store_url)
    store.create_schema()
    files = open_filestore(config.files_url)
    files.create()
    return store, files
