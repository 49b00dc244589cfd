"""Accounts: users, their login sessions and API tokens, and rate limits shared by web processes.

One ``Accounts`` is shared by every web process of a deployment (it lives in the Store's
database). Passwords are kept only as Argon2id hashes; login-session and API tokens only as
SHA-256 hashes of the random tokens handed out, so a copy of the database logs nobody in.
Calls are synchronous and short, except :meth:`Accounts.create_user` and
:meth:`Accounts.authenticate`, which hash a password on purpose slowly: the web tier runs those
two in an executor.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass

from singlecell.errors import BadRequest

NAME = re.compile(r"[^\W_][\w.-]{1,31}")  # letters and digits of any script, then also _ . -
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
SESSION_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class User:
    id: str
    name: str
    created: float


@dataclass(frozen=True)
class LoginSession:
    user: User
    expires: float


@dataclass(frozen=True)
class TokenLimits:
    """An API token's own limits (singlecell/quotas.py); ``None``: the server's setting."""

    rate: str | None = None  # like "5/s"; "0": none
    max_running: int | None = None
    cpu_per_day: float | None = None


@dataclass(frozen=True)
class ApiToken:
    id: str
    label: str
    created: float
    revoked: float | None
    limits: TokenLimits = TokenLimits()


def name_key(name: str) -> str:
    """The form two names are compared in: ``Ada``, ``ada`` and the full-width ``Ada`` are one account."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadRequest("a user name is 2 to 32 letters, digits, '_', '.' or '-', starting with a letter or "
                         "digit")
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


class Accounts(ABC):
    def close(self) -> None:
        """Release the connections; the process is done with the accounts."""

    @abstractmethod
    def create_user(self, name: str, password: str) -> User:
        """A new user. Raises ``BadRequest`` for a name or password :func:`check_name` and
        :func:`check_password` refuse, ``Conflict`` when the name (by :func:`name_key`) is taken."""

    @abstractmethod
    def authenticate(self, name: str, password: str) -> User | None:
        """The user whose name and password these are, else ``None`` (no hint which was wrong).
        Takes as long for an unknown name as for a wrong password."""

    @abstractmethod
    def user(self, user_id: str) -> User | None:
        """One user by id."""

    @abstractmethod
    def user_named(self, name: str) -> User | None:
        """One user by name (compared by :func:`name_key`)."""

    @abstractmethod
    def set_password(self, user_id: str, password: str) -> None:
        """Change a password and end every login session of the user."""

    # -- login sessions: the browser's cookie ---------------------------------------------

    @abstractmethod
    def start_session(self, user_id: str, seconds: float = SESSION_SECONDS) -> tuple[str, LoginSession]:
        """A new login session: (its token, for the cookie; the session). Only the token's hash
        is kept."""

    @abstractmethod
    def session(self, token: str) -> LoginSession | None:
        """The live session the token names, else ``None`` (unknown, ended or expired)."""

    @abstractmethod
    def end_session(self, token: str) -> None:
        """Log out: the token stops working at once, in every process."""

    # -- API tokens: scripts --------------------------------------------------------------

    @abstractmethod
    def create_token(self, user_id: str, label: str, limits: TokenLimits | None = None) -> tuple[str, ApiToken]:
        """A new API token: (the token, shown once; its record), with its own ``limits`` if given."""

    @abstractmethod
    def token_user(self, token: str) -> User | None:
        """The user of a live (not revoked) token, else ``None``."""

    @abstractmethod
    def token_limits(self, token: str) -> TokenLimits | None:
        """The own limits of a live token (all ``None`` when it has none), else ``None``: one read."""

    @abstractmethod
    def set_token_limits(self, token_id: str, limits: TokenLimits) -> bool:
        """Replace a token's own limits; ``False`` when no token has this id."""

    @abstractmethod
    def tokens(self, user_id: str) -> list[ApiToken]:
        """The user's tokens, newest first, revoked ones included."""

    @abstractmethod
    def revoke_token(self, user_id: str, token_id: str) -> bool:
        """Revoke one of the user's tokens; ``False`` when the user has no such token."""

    # -- rate limits ----------------------------------------------------------------------

    @abstractmethod
    def throttle(self, key: str, limit: int, per_seconds: int) -> int:
        """Count one hit of ``key`` (like ``login:203.0.113.9``) in the current window of
        ``per_seconds``; 0 while at most ``limit`` hits fell in it, else the seconds until the
        next window. Atomic across processes."""
