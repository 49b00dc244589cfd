"""The MongoDB store's collections: their indexes, the schema version that brings a database to
them, and lock documents, MongoDB's stand-in for the SQL store's write lock.

A database records its version in collection ``singlecell_schema`` (one document, ``_id``
``"version"``). ``MIGRATIONS[i]`` takes it from version ``i`` to ``i + 1``; :func:`migrate` runs
the missing ones while holding the lock document ``schema``, so processes started at once make
the indexes once, in turn. A database of a newer version than this code knows is refused, as on
SQL. (A standalone MongoDB server has no multi-document transactions: what the SQL store does in
one transaction, the MongoDB store does with one document's atomic update as the commit point, or
under a lock document; see singlecell/store/mongo.py.)

A lock document (``singlecell_locks``: ``{_id: name, holder, until}``) is held until released or
until its time runs out, so a process that dies holding one stalls the others for that long at
most. Taking it is one ``find_one_and_update`` that matches only a free or expired lock; when it
is held, the upsert collides with the existing ``_id`` and the caller waits and tries again.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from singlecell.errors import ConfigError, StoreUnavailable

LOCKS = "singlecell_locks"
VERSIONS = "singlecell_schema"
SCHEMA_LOCK = "schema"
LOCK_WAIT = 30.0  # seconds a caller waits for a lock before it gives up
C = TypeVar("C", bound=type)


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        from pymongo.errors import ConnectionFailure

        try:
            return method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise StoreUnavailable(f"the MongoDB server cannot be reached ({type(exc).__name__}); "
                                   "retry in a moment") from None
    return call


def reachable(cls: C) -> C:
    """A server that cannot be reached is :class:`StoreUnavailable` (a 503 with Retry-After, as
    with the SQL backends), from every public method of a MongoDB backend class."""
    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_"):
            setattr(cls, name, _translated(value))
    return cls


@contextlib.contextmanager
def locked(db: Any, name: str, hold: float = 10.0, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the lock document ``name`` for the block (at most ``hold`` seconds: then another may
    take it). ``StoreUnavailable`` when it could not be taken within ``wait`` seconds."""
    from pymongo import ReturnDocument
    from pymongo.errors import DuplicateKeyError

    token = uuid.uuid4().hex
    locks = db[LOCKS]
    deadline = time.monotonic() + wait
    pause = 0.002
    while True:
        now = time.time()
        try:
            held = locks.find_one_and_update({"_id": name, "until": {"$lt": now}},
                                             {"$set": {"holder": token, "until": now + hold}},
                                             upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # it exists, and is held
            held = None
        if held is not None and held.get("holder") == token:
            break
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"the store's lock {name!r} stayed held for {wait:g} s; retry in a moment",
                                   retry_after=1)
        time.sleep(pause * (1 + random.random()))
        pause = min(pause * 2, 0.05)
    try:
        yield
    finally:
        locks.update_one({"_id": name, "holder": token}, {"$set": {"until": 0.0, "holder": None}})


def _indexes(*specs: tuple[str, list[tuple[str, int]], dict[str, Any]]) -> Callable[[Any], None]:
    def create(db: Any) -> None:
        for collection, keys, options in specs:
            db[collection].create_index(keys, **options)
    return create


#: MIGRATIONS[i]: version i → i + 1. Version 1 is the store of schema version 7 of the SQL store:
#: requests (with their session, files and stop inside), messages, inputs, cursors, permalinks,
#: devices, batches, callbacks, the limits' paces and usage, the accounts and the snippet library.
MIGRATIONS: list[Callable[[Any], None]] = [
    _indexes(
        ("requests", [("status", 1), ("created", 1), ("_id", 1)], {"name": "claim_order"}),
        ("requests", [("status", 1), ("lease_until", 1)], {"name": "status_lease"}),
        ("requests", [("session.live", 1), ("session.device", 1)], {"name": "sessions_live_device"}),
        ("requests", [("session.live", 1), ("session.client", 1)], {"name": "sessions_live_client"}),
        ("requests", [("session.live", 1), ("session.owner", 1)], {"name": "sessions_live_owner"}),
        ("requests", [("session.live", 1), ("session.lease_until", 1)], {"name": "sessions_live_lease"}),
        ("requests", [("session_id", 1), ("status", 1)], {"name": "linked"}),
        ("requests", [("created", 1)], {"name": "created"}),
        ("requests", [("quota_key", 1), ("status", 1)], {"name": "quota_status"}),
        ("requests", [("stop", 1), ("device", 1)], {"name": "stops", "sparse": True}),
        ("messages", [("r", 1), ("e", 1), ("s", 1)], {"name": "by_request", "unique": True}),
        ("inputs", [("r", 1), ("s", 1)], {"name": "by_request", "unique": True}),
        ("callbacks", [("state", 1), ("next_try", 1)], {"name": "due"}),
        ("devices", [("seen", 1)], {"name": "seen"}),
        # the accounts (singlecell/accounts/mongo.py)
        ("users", [("name_key", 1)], {"name": "name_key", "unique": True}),
        ("login_sessions", [("user_id", 1)], {"name": "user"}),
        ("login_sessions", [("expires", 1)], {"name": "expires"}),
        ("api_tokens", [("token_hash", 1)], {"name": "token_hash", "unique": True}),
        ("api_tokens", [("user_id", 1), ("created", -1)], {"name": "user"}),
        ("rate_hits", [("key", 1), ("window", 1)], {"name": "key_window"}),
        # the snippet library (singlecell/library/mongo.py)
        ("snippets", [("deleted", 1), ("updated", -1), ("_id", -1)], {"name": "newest"}),
        ("snippets", [("terms", 1)], {"name": "terms"}),
        ("snippets", [("tags", 1)], {"name": "tags"}),
        ("snippets", [("owner_id", 1)], {"name": "owner"}),
        ("snippets", [("head", 1)], {"name": "head"}),
        ("revisions", [("files.sha256", 1)], {"name": "file_hashes"}),
        ("history", [("snippet_id", 1), ("n", 1)], {"name": "by_snippet", "unique": True}),
        ("history", [("revision_id", 1)], {"name": "revision"}),
        ("comments", [("snippet_id", 1), ("created", 1)], {"name": "by_snippet"}),
        ("ratings", [("snippet_id", 1)], {"name": "by_snippet"}),
        ("related", [("snippet_id", 1)], {"name": "by_snippet"}),
    ),
    # version 2: wake-ups relayed through a replica set's change streams (singlecell/wakeup.py)
    # are dropped a minute after they were sent
    _indexes(("wakeups", [("at", 1)], {"name": "expire", "expireAfterSeconds": 60})),
]
LATEST = len(MIGRATIONS)


def schema_version(db: Any) -> int:
    """The database's version: 0 when it was never made."""
    found = db[VERSIONS].find_one({"_id": "version"})
    return int(found["version"]) if found is not None else 0


def migrate(db: Any, to: int = LATEST) -> int:
    """Bring the database to version ``to`` under the schema lock; returns the version it had."""
    with locked(db, SCHEMA_LOCK, hold=120.0, wait=180.0):
        found = schema_version(db)
        if found > LATEST:
            raise ConfigError(f"the database has schema version {found}, made by a newer singlecell than this one "
                              f"(which knows {LATEST}); upgrade singlecell")
        for version in range(found, to):
            MIGRATIONS[version](db)
            db[VERSIONS].update_one({"_id": "version"}, {"$set": {"version": version + 1}}, upsert=True)
        return found
