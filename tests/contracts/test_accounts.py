"""The Accounts contract (singlecell/accounts/base.py), on SQLite, PostgreSQL and MongoDB."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from singlecell.accounts import Accounts, open_accounts
from singlecell.errors import BadRequest, Conflict
from tests import mongo


@pytest.fixture
def url(schema_url: str) -> str:
    return schema_url


@pytest.fixture
def accounts(url: str) -> Iterator[Accounts]:
    made = open_accounts(url)
    yield made
    made.close()


def test_a_user_logs_in_with_their_password_only(accounts: Accounts) -> None:
    ada = accounts.create_user("Ada", "correct horse battery")
    assert accounts.authenticate("Ada", "correct horse battery") == ada
    assert accounts.authenticate("ada", "correct horse battery") == ada  # names compare case-folded
    assert accounts.authenticate("Ada", "wrong password!") is None
    assert accounts.authenticate("nobody", "correct horse battery") is None
    assert accounts.user(ada.id) == ada and accounts.user_named("ADA") == ada


def stored(url: str, table: str, column: str) -> list[str]:
    """What the database holds in ``column`` of ``table`` (a collection's field on MongoDB), as
    someone with a copy of it reads it."""
    if url.startswith("mongodb:"):
        from filestore.mongodb import database_for

        return [doc[column] for doc in database_for(url)[table].find({}, {column: 1})]
    with sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://")).connect() as conn:
        return list(conn.execute(sa.text(f"SELECT {column} FROM {table}")).scalars())


def test_the_password_is_stored_as_an_argon2id_hash(accounts: Accounts, url: str) -> None:
    accounts.create_user("grace", "a long passphrase")
    (kept,) = stored(url, "users", "password_hash")
    assert kept.startswith("$argon2id$") and "a long passphrase" not in kept


@pytest.mark.parametrize("name", ["Ada", "ada", "ＡＤＡ", "Ａda"])
def test_a_name_is_taken_in_any_case_or_width(accounts: Accounts, name: str) -> None:
    accounts.create_user("ada", "first password")
    with pytest.raises(Conflict, match="taken"):
        accounts.create_user(name, "another password")


@pytest.mark.parametrize("name", ["", "a", "<script>", "a b", "x" * 33, "_ada", "ada/../x", "ada\n", "'or'1'='1"])
def test_a_name_outside_the_rules_is_refused(accounts: Accounts, name: str) -> None:
    with pytest.raises(BadRequest, match="user name"):
        accounts.create_user(name, "a fine password")


def test_a_short_password_is_refused(accounts: Accounts) -> None:
    with pytest.raises(BadRequest, match="password"):
        accounts.create_user("ada", "short")


def test_a_session_token_logs_in_until_it_ends(accounts: Accounts) -> None:
    ada = accounts.create_user("ada", "a fine password")
    token, session = accounts.start_session(ada.id)
    again = accounts.session(token)
    assert again is not None and again.user == ada and again.expires == session.expires and len(token) >= 40
    assert accounts.session(token + "x") is None
    accounts.end_session(token)
    assert accounts.session(token) is None


def test_an_expired_session_logs_nobody_in(accounts: Accounts) -> None:
    ada = accounts.create_user("ada", "a fine password")
    token, _ = accounts.start_session(ada.id, seconds=-1)
    assert accounts.session(token) is None


def test_a_new_password_ends_every_session(accounts: Accounts) -> None:
    ada = accounts.create_user("ada", "a fine password")
    token, _ = accounts.start_session(ada.id)
    accounts.set_password(ada.id, "a newer password")
    assert accounts.session(token) is None
    assert accounts.authenticate("ada", "a newer password") == ada


def test_tokens_are_stored_hashed_and_can_be_revoked(accounts: Accounts, url: str) -> None:
    ada = accounts.create_user("ada", "a fine password")
    token, record = accounts.create_token(ada.id, "my script")
    assert token.startswith("sc_") and accounts.token_user(token) == ada
    hashes = stored(url, "api_tokens", "token_hash")
    assert hashes and token not in hashes
    grace = accounts.create_user("grace", "a fine password")
    assert not accounts.revoke_token(grace.id, record.id)  # not hers
    assert accounts.revoke_token(ada.id, record.id)
    assert accounts.token_user(token) is None
    assert [(t.id, t.revoked is not None) for t in accounts.tokens(ada.id)] == [(record.id, True)]


def test_a_token_keeps_its_own_limits_and_they_can_be_changed(accounts: Accounts) -> None:
    from singlecell.accounts.base import TokenLimits

    ada = accounts.create_user("ada", "a fine password")
    plain, plain_record = accounts.create_token(ada.id, "no limits of its own")
    assert accounts.token_limits(plain) == TokenLimits() == plain_record.limits
    limited, record = accounts.create_token(ada.id, "limited", TokenLimits("5/s", 4, 600.0))
    assert accounts.token_limits(limited) == TokenLimits("5/s", 4, 600.0)
    assert accounts.token_limits("sc_not-a-token") is None
    assert accounts.set_token_limits(record.id, TokenLimits("1/min", None, 30.0))
    assert accounts.set_token_limits(plain_record.id, TokenLimits(max_running=2))
    assert not accounts.set_token_limits("nope", TokenLimits())
    assert accounts.token_limits(limited) == TokenLimits("1/min", None, 30.0)
    assert {t.id: t.limits for t in accounts.tokens(ada.id)} == {record.id: TokenLimits("1/min", None, 30.0),
                                                                plain_record.id: TokenLimits(max_running=2)}
    assert accounts.revoke_token(ada.id, record.id)
    assert accounts.token_limits(limited) is None  # revoked: no longer a token


def test_throttle_counts_per_key_and_window(accounts: Accounts) -> None:
    assert [accounts.throttle("login:1.2.3.4", 3, 60) for _ in range(3)] == [0, 0, 0]
    assert 1 <= accounts.throttle("login:1.2.3.4", 3, 60) <= 60
    assert accounts.throttle("login:5.6.7.8", 3, 60) == 0  # another key
    assert accounts.throttle("burst", 1, 1) == 0
    time.sleep(1.05)
    assert accounts.throttle("burst", 1, 1) == 0  # a new window


def _hit(url: str, n: int, out: multiprocessing.Queue[int]) -> None:
    accounts = open_accounts(url)
    out.put(sum(accounts.throttle("shared", 1000, 3600) == 0 for _ in range(n)))


def test_throttle_is_atomic_across_processes(accounts: Accounts, url: str) -> None:
    """Hits from several processes at once are all counted: 4 times 25 hits, and the next one over."""
    if url.startswith("mongodb:"):
        mongo.need_server("several processes sharing one database")
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = context.Queue()
    processes = [context.Process(target=_hit, args=(url, 25, out)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert sum(out.get(timeout=10) for _ in processes) == 100  # all allowed under 1000
    assert accounts.throttle("shared", 100, 3600) > 0  # the 101st is over a limit of 100
