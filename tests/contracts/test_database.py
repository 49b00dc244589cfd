"""PostgreSQL connections the server dropped are replaced at checkout (singlecell/store/database.py).

The pool does not ping at every checkout (a round trip each); it polls the idle socket, where a
server that ended the connection has left its goodbye. These tests end real backends with
``pg_terminate_backend``, as a restart or an administrator would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from singlecell.protocol import execute_request
from singlecell.store import NewRequest, open_store
from singlecell.store.database import Database
from tests import postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
def database() -> Iterator[Database]:
    with postgres.database() as url:
        db = Database(url)
        try:
            yield db
        finally:
            db.close()


def _terminate(pids: list[int]) -> None:
    """End those backends, and wait until the server has let them go."""
    with postgres.admin() as admin:
        for pid in pids:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone() != (0,):
            assert time.monotonic() < deadline, f"backends {pids} did not end"
            time.sleep(0.02)


def _pid(conn: Connection) -> int:
    return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.parametrize("view", ["reader", "writer"])
def test_a_connection_the_server_ended_is_replaced_not_failed(database: Database, view: str) -> None:
    engine = getattr(database, view)
    use: Callable[[], int]
    if view == "reader":
        def use() -> int:
            with engine.connect() as conn:
                return _pid(conn)
    else:
        def use() -> int:
            with engine.begin() as conn:
                return _pid(conn)
    first = use()
    assert use() == first  # pooled: the same backend again
    _terminate([first])
    # The next checkout finds the pooled connection dead and opens another: no error.
    second = use()
    assert second != first
    assert use() == second


def test_a_store_serves_on_after_every_connection_was_ended(database: Database) -> None:
    store = open_store(database.engine.url.render_as_string(hide_password=False))
    try:
        store.create_schema()

        def submit() -> str:
            message = execute_request("1+1")
            request_id: str = message["header"]["msg_id"]
            store.submit(NewRequest(id=request_id, message=message, timeout=5.0, client="test"), max_queue=10)
            return request_id

        first = submit()
        with postgres.admin() as admin:
            name = database.engine.url.database
            pids = [row[0] for row in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))]
        assert pids  # the store's pooled connections
        _terminate(pids)
        second = submit()
        assert {r.id for r in store.claim("dev", 5, 30.0)} == {first, second}
    finally:
        store.close()


def test_text_postgresql_cannot_hold_is_a_bad_request_not_a_server_error(database: Database) -> None:
    from singlecell.errors import BadRequest

    store = open_store(database.engine.url.render_as_string(hide_password=False))
    try:
        store.create_schema()
        with pytest.raises(BadRequest, match="NUL"):
            store.save_permalink("x = 1\x00")
    finally:
        store.close()
