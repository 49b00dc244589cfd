"""``/output`` and ``/watch`` tell a page a cell is done even when it ended between the read of its
status and the read of its messages (a real SQLite store)."""

from __future__ import annotations

from pathlib import Path

from singlecell import protocol
from singlecell.store.base import NewRequest, NewSession, Status, StoredMessage
from singlecell.store.sql import SqlStore
from singlecell.web.handlers import output_page


def test_a_cell_that_ended_between_the_two_reads_is_done_in_that_answer(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/store.db")
    store.create_schema()
    message = protocol.execute_request("1 + 1")
    request_id = protocol.request_id(message)
    store.submit(NewRequest(request_id, message, 5.0), 10)
    assert [r.id for r in store.claim("dev", 1, 30.0)] == [request_id]
    stored = [StoredMessage(n, protocol.message("status", {}, message)) for n in (1, 2, 3)]
    assert store.add_messages(request_id, "dev", stored[:1])
    stale = store.get_request(request_id)  # the status, read first: still running
    assert stale is not None and stale.status is Status.RUNNING
    # the cell ends, keeping its kernel as a session, before the messages are read
    assert store.finish(request_id, "dev", Status.DONE, stored[1:], session=NewSession("me", 30.0))
    page = output_page(store, stale, store.get_messages(request_id, 0), 0)
    assert page["done"] and page["status"] == "done" and page["next"] == 3
    assert page["session"] is not None and page["session"]["state"] == "live"
    # a page that has only some of the messages is not told it is done
    partial = output_page(store, stale, store.get_messages(request_id, 0, limit=2), 0)
    assert not partial["done"] and partial["status"] == "running"
    store.close()
