"""Accounts in the Store's MongoDB database; collections and indexes in singlecell/store/documents.py.

``users`` (a unique index on the compared form of the name), ``login_sessions`` and
``api_tokens`` keyed by the SHA-256 of their token (an API token's own limits inside it), and
``rate_hits``, one document per key and window, counted with an atomic ``$inc``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from filestore.mongodb import MongoBacked
from singlecell.accounts.base import (
    Accounts,
    ApiToken,
    LoginSession,
    TokenLimits,
    User,
    check_name,
    check_password,
    name_key,
)
from singlecell.errors import Conflict
from singlecell.store.documents import reachable

TOKEN_PREFIX = "sc_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _user(doc: dict[str, Any]) -> User:
    return User(id=str(doc["_id"]), name=str(doc["name"]), created=float(doc["created"]))


def _limits(doc: dict[str, Any]) -> TokenLimits:
    own = doc.get("limits") or {}
    return TokenLimits(own.get("rate"), own.get("max_running"), own.get("cpu_per_day"))


def _limit_values(limits: TokenLimits) -> dict[str, Any]:
    return {"rate": limits.rate, "max_running": limits.max_running, "cpu_per_day": limits.cpu_per_day}


@reachable
class MongoAccounts(MongoBacked, Accounts):
    def __init__(self, url: str, hasher: PasswordHasher | None = None) -> None:
        super().__init__(url)
        self._hasher = hasher or PasswordHasher()  # Argon2id, argon2-cffi's RFC 9106 low-memory profile
        self._decoy = self._hasher.hash(secrets.token_hex(16))  # verified for unknown names: as slow

    # -- users ------------------------------------------------------------------------------

    def create_user(self, name: str, password: str) -> User:
        from pymongo.errors import DuplicateKeyError

        check_name(name)
        check_password(password)
        user = User(id=secrets.token_hex(16), name=name, created=time.time())
        try:
            self.db.users.insert_one({"_id": user.id, "name": name, "name_key": name_key(name),
                                      "created": user.created, "password_hash": self._hasher.hash(password)})
        except DuplicateKeyError:
            raise Conflict(f"the name {name!r} is taken; choose another") from None
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        doc = self.db.users.find_one({"name_key": name_key(name)})
        try:
            self._hasher.verify(doc["password_hash"] if doc is not None else self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if doc is None:
            return None
        if self._hasher.check_needs_rehash(doc["password_hash"]):
            self.db.users.update_one({"_id": doc["_id"]}, {"$set": {"password_hash": self._hasher.hash(password)}})
        return _user(doc)

    def user(self, user_id: str) -> User | None:
        doc = self.db.users.find_one({"_id": user_id})
        return _user(doc) if doc is not None else None

    def user_named(self, name: str) -> User | None:
        doc = self.db.users.find_one({"name_key": name_key(name)})
        return _user(doc) if doc is not None else None

    def set_password(self, user_id: str, password: str) -> None:
        check_password(password)
        self.db.users.update_one({"_id": user_id}, {"$set": {"password_hash": self._hasher.hash(password)}})
        self.db.login_sessions.delete_many({"user_id": user_id})

    # -- login sessions ---------------------------------------------------------------------

    def start_session(self, user_id: str, seconds: float = 30 * 24 * 3600) -> tuple[str, LoginSession]:
        token, now = secrets.token_urlsafe(32), time.time()
        self.db.login_sessions.delete_many({"expires": {"$lt": now}})  # the stale ones
        self.db.login_sessions.insert_one({"_id": _digest(token), "user_id": user_id, "created": now,
                                           "expires": now + seconds})
        doc = self.db.users.find_one({"_id": user_id})
        return token, LoginSession(_user(doc), now + seconds)

    def session(self, token: str) -> LoginSession | None:
        found = self.db.login_sessions.find_one({"_id": _digest(token), "expires": {"$gt": time.time()}})
        doc = self.db.users.find_one({"_id": found["user_id"]}) if found is not None else None
        return LoginSession(_user(doc), float(found["expires"])) if doc is not None and found is not None else None

    def end_session(self, token: str) -> None:
        self.db.login_sessions.delete_one({"_id": _digest(token)})

    # -- API tokens -------------------------------------------------------------------------

    def create_token(self, user_id: str, label: str, limits: TokenLimits | None = None) -> tuple[str, ApiToken]:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiToken(id=secrets.token_hex(8), label=label[:100], created=time.time(), revoked=None,
                          limits=limits or TokenLimits())
        doc: dict[str, Any] = {"_id": record.id, "token_hash": _digest(token), "user_id": user_id,
                               "label": record.label, "created": record.created, "revoked": None}
        if limits is not None:
            doc["limits"] = _limit_values(limits)
        self.db.api_tokens.insert_one(doc)
        return token, record

    def _live_token(self, token: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.db.api_tokens.find_one({"token_hash": _digest(token), "revoked": None})
        return found

    def token_user(self, token: str) -> User | None:
        found = self._live_token(token)
        return self.user(found["user_id"]) if found is not None else None

    def token_limits(self, token: str) -> TokenLimits | None:
        found = self._live_token(token)
        return _limits(found) if found is not None else None

    def set_token_limits(self, token_id: str, limits: TokenLimits) -> bool:
        done = self.db.api_tokens.update_one({"_id": token_id}, {"$set": {"limits": _limit_values(limits)}})
        return bool(done.matched_count)

    def tokens(self, user_id: str) -> list[ApiToken]:
        found = self.db.api_tokens.find({"user_id": user_id}).sort([("created", -1), ("_id", -1)])
        return [ApiToken(d["_id"], d["label"], d["created"], d.get("revoked"), _limits(d)) for d in found]

    def revoke_token(self, user_id: str, token_id: str) -> bool:
        done = self.db.api_tokens.update_one({"_id": token_id, "user_id": user_id, "revoked": None},
                                             {"$set": {"revoked": time.time()}})
        return bool(done.modified_count)

    # -- rate limits ------------------------------------------------------------------------

    def throttle(self, key: str, limit: int, per_seconds: int) -> int:
        from pymongo import ReturnDocument

        now = time.time()
        window = int(now // per_seconds)
        doc = self.db.rate_hits.find_one_and_update({"_id": f"{key}|{window}"},
                                                    {"$inc": {"hits": 1}, "$set": {"key": key, "window": window}},
                                                    upsert=True, return_document=ReturnDocument.AFTER)
        hits = int(doc["hits"])
        if hits == 1:  # the first hit of a window: forget this key's older ones
            self.db.rate_hits.delete_many({"key": key, "window": {"$lt": window}})
        return 0 if hits <= limit else max(1, int((window + 1) * per_seconds - now + 0.999))
