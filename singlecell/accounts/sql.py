"""Accounts in the Store's SQL database (SQLite or PostgreSQL); tables in singlecell/store/schema.py."""

from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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
from singlecell.store.database import Database
from singlecell.store.schema import api_token_table, login_session_table, rate_table, token_limit_table, user_table

_users, _sessions, _tokens, _rates = user_table.c, login_session_table.c, api_token_table.c, rate_table.c
_limits = token_limit_table.c
TOKEN_PREFIX = "sc_"  # API tokens say what they are, for secret scanners and for people


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _limit_values(limits: TokenLimits) -> dict[str, object]:
    return {"rate": limits.rate, "max_running": limits.max_running, "cpu_per_day": limits.cpu_per_day}


def _user(row: sa.Row[object]) -> User:
    return User(id=str(row.id), name=str(row.name), created=float(row.created))


class SqlAccounts(Accounts):
    def __init__(self, url: str, hasher: PasswordHasher | None = None) -> None:
        self._db = Database(url)
        self._hasher = hasher or PasswordHasher()  # Argon2id, argon2-cffi's RFC 9106 low-memory profile
        # verified against for unknown names, so both answers take as long
        self._decoy = self._hasher.hash(secrets.token_hex(16))
        self._upsert = postgresql_insert if self._db.dialect == "postgresql" else sqlite_insert

    def close(self) -> None:
        self._db.close()

    # -- users ------------------------------------------------------------------------------

    def create_user(self, name: str, password: str) -> User:
        check_name(name)
        check_password(password)
        user = User(id=secrets.token_hex(16), name=name, created=time.time())
        row = {"id": user.id, "name": name, "name_key": name_key(name), "created": user.created,
               "password_hash": self._hasher.hash(password)}
        try:
            with self._db.writer.begin() as conn:
                conn.execute(user_table.insert(), row)
        except sa.exc.IntegrityError:
            raise Conflict(f"the name {name!r} is taken; choose another") from None
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        with self._db.reader.connect() as conn:
            row = conn.execute(sa.select(user_table).where(_users.name_key == name_key(name))).first()
        try:
            self._hasher.verify(row.password_hash if row is not None else self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if self._hasher.check_needs_rehash(row.password_hash):
            with self._db.writer.begin() as conn:
                conn.execute(user_table.update().where(_users.id == row.id)
                             .values(password_hash=self._hasher.hash(password)))
        return _user(row)

    def user(self, user_id: str) -> User | None:
        with self._db.reader.connect() as conn:
            row = conn.execute(sa.select(user_table).where(_users.id == user_id)).first()
        return _user(row) if row is not None else None

    def user_named(self, name: str) -> User | None:
        with self._db.reader.connect() as conn:
            row = conn.execute(sa.select(user_table).where(_users.name_key == name_key(name))).first()
        return _user(row) if row is not None else None

    def set_password(self, user_id: str, password: str) -> None:
        check_password(password)
        with self._db.writer.begin() as conn:
            conn.execute(user_table.update().where(_users.id == user_id)
                         .values(password_hash=self._hasher.hash(password)))
            conn.execute(login_session_table.delete().where(_sessions.user_id == user_id))

    # -- login sessions ---------------------------------------------------------------------

    def start_session(self, user_id: str, seconds: float = 30 * 24 * 3600) -> tuple[str, LoginSession]:
        token, now = secrets.token_urlsafe(32), time.time()
        with self._db.writer.begin() as conn:
            conn.execute(login_session_table.delete().where(_sessions.expires < now))  # the stale ones
            conn.execute(login_session_table.insert(), {"token_hash": _digest(token), "user_id": user_id,
                                                        "created": now, "expires": now + seconds})
            row = conn.execute(sa.select(user_table).where(_users.id == user_id)).one()
        return token, LoginSession(_user(row), now + seconds)

    def session(self, token: str) -> LoginSession | None:
        query = (sa.select(user_table, _sessions.expires)
                 .join(login_session_table, _sessions.user_id == _users.id)
                 .where(_sessions.token_hash == _digest(token), _sessions.expires > time.time()))
        with self._db.reader.connect() as conn:
            row = conn.execute(query).first()
        return LoginSession(_user(row), float(row.expires)) if row is not None else None

    def end_session(self, token: str) -> None:
        with self._db.writer.begin() as conn:
            conn.execute(login_session_table.delete().where(_sessions.token_hash == _digest(token)))

    # -- API tokens -------------------------------------------------------------------------

    def create_token(self, user_id: str, label: str, limits: TokenLimits | None = None) -> tuple[str, ApiToken]:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiToken(id=secrets.token_hex(8), label=label[:100], created=time.time(), revoked=None,
                          limits=limits or TokenLimits())
        with self._db.writer.begin() as conn:
            conn.execute(api_token_table.insert(), {"id": record.id, "token_hash": _digest(token), "user_id": user_id,
                                                    "label": record.label, "created": record.created})
            if limits is not None:
                conn.execute(token_limit_table.insert(), {"token_id": record.id, **_limit_values(limits)})
        return token, record

    def token_limits(self, token: str) -> TokenLimits | None:
        query = (sa.select(_tokens.id, _limits.rate, _limits.max_running, _limits.cpu_per_day)
                 .select_from(api_token_table.outerjoin(token_limit_table, _limits.token_id == _tokens.id))
                 .where(_tokens.token_hash == _digest(token), _tokens.revoked.is_(None)))
        with self._db.reader.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else TokenLimits(row.rate, row.max_running, row.cpu_per_day)

    def set_token_limits(self, token_id: str, limits: TokenLimits) -> bool:
        with self._db.writer.begin() as conn:
            if conn.execute(sa.select(_tokens.id).where(_tokens.id == token_id)).first() is None:
                return False
            conn.execute(self._upsert(token_limit_table).values(token_id=token_id, **_limit_values(limits))
                         .on_conflict_do_update(index_elements=[_limits.token_id], set_=_limit_values(limits)))
        return True

    def token_user(self, token: str) -> User | None:
        query = (sa.select(user_table).join(api_token_table, _tokens.user_id == _users.id)
                 .where(_tokens.token_hash == _digest(token), _tokens.revoked.is_(None)))
        with self._db.reader.connect() as conn:
            row = conn.execute(query).first()
        return _user(row) if row is not None else None

    def tokens(self, user_id: str) -> list[ApiToken]:
        query = (sa.select(api_token_table, _limits.rate, _limits.max_running, _limits.cpu_per_day)
                 .select_from(api_token_table.outerjoin(token_limit_table, _limits.token_id == _tokens.id))
                 .where(_tokens.user_id == user_id).order_by(_tokens.created.desc()))
        with self._db.reader.connect() as conn:
            return [ApiToken(r.id, r.label, r.created, r.revoked, TokenLimits(r.rate, r.max_running, r.cpu_per_day))
                    for r in conn.execute(query)]

    def revoke_token(self, user_id: str, token_id: str) -> bool:
        with self._db.writer.begin() as conn:
            changed = conn.execute(api_token_table.update()
                                   .where(_tokens.id == token_id, _tokens.user_id == user_id,
                                          _tokens.revoked.is_(None))
                                   .values(revoked=time.time())).rowcount
        return bool(changed)

    # -- rate limits ------------------------------------------------------------------------

    def throttle(self, key: str, limit: int, per_seconds: int) -> int:
        now = time.time()
        window = int(now // per_seconds)
        insert = self._upsert(rate_table).values(key=key, window=window, hits=1)
        count = insert.on_conflict_do_update(index_elements=[_rates.key, _rates.window],
                                             set_={"hits": rate_table.c.hits + 1}).returning(rate_table.c.hits)
        with self._db.writer.begin() as conn:
            hits = int(conn.execute(count).scalar_one())
            if hits == 1:  # the first hit of a window: forget this key's older ones
                conn.execute(rate_table.delete().where(_rates.key == key, _rates.window < window))
        return 0 if hits <= limit else max(1, int((window + 1) * per_seconds - now + 0.999))
