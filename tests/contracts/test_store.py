"""The Store contract (singlecell/store/base.py), run once per backend.

To add a backend, add a ``pytest.param`` to ``BACKENDS``: a function from pytest's ``tmp_path``
to a fresh, empty store URL. A backend that needs a server calls ``pytest.skip`` when it is absent.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue
import sqlite3
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from singlecell.errors import ConfigError, DuplicateRequest, QueueFull, QuotaExceeded, UnknownBackend
from singlecell.protocol import execute_request, message
from singlecell.store import (
    FileRecord,
    NewRequest,
    NewSession,
    RequestRecord,
    Status,
    Store,
    StoredMessage,
    open_store,
    schema,
)
from singlecell.store.base import PERMALINK_ID_LENGTH, Callback, Quota
from tests import mongo, postgres


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'missing-dir' / 'store.db'}"  # the store must create the directory


BACKENDS = [
    pytest.param(_sqlite_url, id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

LEASE = 60.0


def _sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with postgres.database() as database_url:
            yield database_url
        return
    make_url: Callable[[Path], str] = request.param
    yield make_url(tmp_path)


@pytest.fixture(params=[*BACKENDS, pytest.param("mongodb", id="mongodb")])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every backend: SQLite, PostgreSQL, and MongoDB (a real server when SINGLECELL_TEST_MONGODB
    names one, else mongomock through the same code: tests/mongo.py)."""
    if request.param == "mongodb":
        with mongo.database() as database_url:
            yield database_url
        return
    yield from _sql(request, tmp_path)


@pytest.fixture(params=BACKENDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The SQL backends only: their schema's migrations (MongoDB's are tests/contracts/test_documents.py)."""
    yield from _sql(request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    s.create_schema()
    yield s
    s.close()


def new_request(rid: str, code: str = "1+1", inputs: dict[str, bytes] | None = None) -> NewRequest:
    msg = execute_request(code, client="alice")
    msg["header"]["msg_id"] = rid  # the request id is its execute_request's msg_id
    return NewRequest(id=rid, message=msg, timeout=30.0, inputs=inputs or {}, client="alice")


def submit_all(store: Store, ids: list[str], max_queue: int = 10_000) -> None:
    for rid in ids:
        store.submit(new_request(rid), max_queue)


def claim_one(store: Store, rid: str, device: str = "dev-a", lease: float = LEASE) -> RequestRecord:
    store.submit(new_request(rid), 10_000)
    (record,) = store.claim(device, 1, lease)
    assert record.id == rid
    return record


def stream(rid: str, seq: int, text: str = "") -> StoredMessage:
    parent = {"header": {"msg_id": rid}}
    return StoredMessage(seq, message("stream", {"name": "stdout", "text": text or f"{rid}:{seq}"}, parent))


def seqs(store: Store, rid: str, after: int = 0, limit: int = 1000) -> list[int]:
    return [m.seq for m in store.get_messages(rid, after, limit)]


FILE_A = FileRecord("a.png", 3, "image/png", "loc/a")
FILE_B = FileRecord("b.txt", 5, "text/plain", "loc/b")


# -- schema, submit, get --------------------------------------------------------------------


def test_create_schema_again_keeps_existing_requests(store: Store) -> None:
    store.submit(new_request("r1"), 10)
    store.create_schema()
    assert store.get_request("r1") is not None


def test_submitted_request_reads_back_queued_with_every_field(store: Store) -> None:
    inputs = {"data.bin": bytes(range(256)), "empty": b"", "ünï.txt": "é".encode()}
    req = new_request("r1", code="print('hi')", inputs=inputs)
    before = time.time()
    store.submit(req, 10)
    rec = store.get_request("r1")
    assert rec is not None
    assert (rec.id, rec.message, rec.timeout, rec.inputs, rec.client) == (
        "r1", req.message, 30.0, inputs, "alice")
    assert rec.status is Status.QUEUED
    assert (rec.device, rec.lease_until, rec.started, rec.finished) == (None, None, None, None)
    assert rec.last_seq == 0
    assert before <= rec.created <= time.time()


def test_unknown_request_is_none_and_has_no_messages_or_files(store: Store) -> None:
    assert store.get_request("nope") is None
    assert store.get_messages("nope") == []
    assert store.list_files("nope") == []
    assert store.get_file("nope", "a.png") is None


def test_submit_to_full_queue_raises_queue_full_and_stores_nothing(store: Store) -> None:
    submit_all(store, ["r1", "r2"], max_queue=2)
    with pytest.raises(QueueFull) as caught:
        store.submit(new_request("r3"), 2)
    assert caught.value.retry_after == 1
    assert "2" in caught.value.message and "retry" in caught.value.message
    assert store.get_request("r3") is None
    assert store.count_queued() == 2


def test_queue_limit_counts_only_queued_requests(store: Store) -> None:
    submit_all(store, ["r1", "r2"], max_queue=2)
    store.claim("dev-a", 1, LEASE)
    store.submit(new_request("r3"), 2)  # r1 is running now, so one place is free
    assert store.count_queued() == 2


def test_submit_of_existing_id_raises_duplicate_and_keeps_the_original(store: Store) -> None:
    store.submit(new_request("r1", code="first"), 10)
    with pytest.raises(DuplicateRequest):
        store.submit(new_request("r1", code="second"), 10)
    rec = store.get_request("r1")
    assert rec is not None and rec.message["content"]["code"] == "first"
    assert store.count_queued() == 1


def test_count_queued_counts_only_queued(store: Store) -> None:
    assert store.count_queued() == 0
    submit_all(store, ["r1", "r2", "r3", "r4"])
    _running, finished = store.claim("dev-a", 2, LEASE)
    assert store.finish(finished.id, "dev-a", Status.DONE)
    assert store.count_queued() == 2


# -- claim ----------------------------------------------------------------------------------


def test_claim_takes_oldest_first_up_to_limit_and_shows_new_state(store: Store) -> None:
    ids = ["r5", "r4", "r3", "r2", "r1"]  # submitted oldest first, ids sorting the other way
    submit_all(store, ids)
    before = time.time()
    first = store.claim("dev-a", 2, 30.0)
    assert [r.id for r in first] == ["r5", "r4"]
    for rec in first:
        assert rec.status is Status.RUNNING and rec.device == "dev-a"
        assert rec.started is not None and before <= rec.started <= time.time()
        assert rec.lease_until == pytest.approx(rec.started + 30.0)
        assert rec.inputs == {} and rec.message["header"]["msg_id"] == rec.id
    assert store.get_request("r5") == first[0]
    assert [r.id for r in store.claim("dev-b", 10, LEASE)] == ["r3", "r2", "r1"]
    assert store.claim("dev-a", 10, LEASE) == []


def _claim_until_empty(url: str, device: str, start: Any, out: Any) -> None:
    """Runs in a spawned process: claim small batches until the queue is empty."""
    try:
        store = open_store(url)
        start.wait()
        got: list[str] = []
        while batch := store.claim(device, 3, LEASE):
            got += [r.id for r in batch]
        store.close()
        out.put((device, got))
    except BaseException:
        out.put((device, traceback.format_exc()))


def _submit_many(url: str, prefix: str, start: Any, out: Any) -> None:
    """Runs in a spawned process: submit 50 requests, counting those refused as QueueFull."""
    try:
        store = open_store(url)
        start.wait()
        refused = 0
        for i in range(50):
            try:
                store.submit(new_request(f"{prefix}-{i}"), 100)
            except QueueFull:
                refused += 1
        store.close()
        out.put((prefix, refused))
    except BaseException:
        out.put((prefix, traceback.format_exc()))


def _run_processes(target: Callable[..., None], url: str, names: list[str]) -> dict[str, Any]:
    """Run ``target(url, name, start_barrier, out_queue)`` in one spawned process per name."""
    if url.startswith("mongodb:"):
        mongo.need_server("several processes sharing one database")
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(len(names)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, name, start, out)) for name in names]
    results: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    try:
        for p in procs:
            p.start()
        while len(results) < len(procs):
            try:
                name, result = out.get(timeout=0.5)
            except queue.Empty:
                crashed = {p.name: p.exitcode for p in procs if p.exitcode not in (None, 0)}
                assert not crashed, f"worker processes died without reporting: {crashed}"
                assert time.monotonic() < deadline, "worker processes did not finish in 120 s"
                continue
            assert not isinstance(result, str), f"{name} failed:\n{result}"
            results[name] = result
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return results


def test_concurrent_claims_from_several_processes_hand_out_each_request_once(url: str, store: Store) -> None:
    ids = [f"r{i:03d}" for i in range(200)]
    submit_all(store, ids)
    devices = [f"dev-{i}" for i in range(4)]
    claimed = _run_processes(_claim_until_empty, url, devices)
    every = [rid for got in claimed.values() for rid in got]
    assert sorted(every) == ids  # none twice, none missed
    for device, got in claimed.items():
        for rid in got:
            rec = store.get_request(rid)
            assert rec is not None and rec.device == device and rec.status is Status.RUNNING
    assert store.count_queued() == 0


def test_concurrent_submits_from_several_processes_never_exceed_max_queue(url: str, store: Store) -> None:
    refused = _run_processes(_submit_many, url, ["p0", "p1", "p2", "p3"])
    assert store.count_queued() == 100
    assert sum(refused.values()) == 4 * 50 - 100


# -- messages -------------------------------------------------------------------------------


def test_messages_read_back_in_seq_order_honouring_after_and_limit(store: Store) -> None:
    claim_one(store, "r1")
    sent = [stream("r1", s) for s in (1, 2, 3, 4, 7)]  # gaps between seqs are allowed
    assert store.add_messages("r1", "dev-a", sent[:3])
    assert store.add_messages("r1", "dev-a", sent[3:])
    assert store.get_messages("r1") == sent  # whole messages survive the round trip
    assert seqs(store, "r1", after=2) == [3, 4, 7]
    assert seqs(store, "r1", after=1, limit=2) == [2, 3]
    assert seqs(store, "r1", after=7) == []
    assert seqs(store, "r1", after=2**62) == []  # a bound past any seq (the client asks so for the status)
    rec = store.get_request("r1")
    assert rec is not None and rec.last_seq == 7


def test_add_messages_with_nothing_says_whether_the_request_is_still_held(store: Store) -> None:
    claim_one(store, "r1")
    assert store.add_messages("r1", "dev-a", [])
    assert not store.add_messages("r1", "dev-b", [])


def test_add_messages_refused_unless_running_under_that_device(store: Store) -> None:
    claim_one(store, "other", device="dev-b")
    assert not store.add_messages("other", "dev-a", [stream("other", 1)])
    claim_one(store, "done")
    assert store.finish("done", "dev-a", Status.DONE)
    store.submit(new_request("queued"), 10)
    assert not store.add_messages("queued", "dev-a", [stream("queued", 1)])
    assert not store.add_messages("done", "dev-a", [stream("done", 1)])
    assert not store.add_messages("unknown", "dev-a", [stream("unknown", 1)])
    for rid in ("queued", "other", "done"):
        assert store.get_messages(rid) == []
        rec = store.get_request(rid)
        assert rec is not None and rec.last_seq == 0


def test_add_messages_rejects_seqs_not_increasing_or_not_above_last_seq(store: Store) -> None:
    claim_one(store, "r1")
    assert store.add_messages("r1", "dev-a", [stream("r1", 1), stream("r1", 2)])
    with pytest.raises(ValueError):
        store.add_messages("r1", "dev-a", [stream("r1", 2, "again")])
    with pytest.raises(ValueError):
        store.add_messages("r1", "dev-a", [stream("r1", 4), stream("r1", 3)])
    assert seqs(store, "r1") == [1, 2]
    assert store.get_messages("r1")[1].message["content"]["text"] == "r1:2"


def test_messages_of_one_request_never_appear_in_another(store: Store) -> None:
    claim_one(store, "r1")
    claim_one(store, "r2")
    assert store.add_messages("r1", "dev-a", [stream("r1", 1), stream("r1", 2)])
    assert store.add_messages("r2", "dev-a", [stream("r2", 1)])
    assert store.finish("r2", "dev-a", Status.DONE, [stream("r2", 2)], [FILE_A])
    assert [m.message["content"]["text"] for m in store.get_messages("r1")] == ["r1:1", "r1:2"]
    assert [m.message["content"]["text"] for m in store.get_messages("r2")] == ["r2:1", "r2:2"]
    assert store.list_files("r1") == [] and store.get_file("r1", FILE_A.name) is None


# -- finish ---------------------------------------------------------------------------------


def test_finish_stores_status_messages_and_files_together(store: Store) -> None:
    claim_one(store, "r1")
    assert store.add_messages("r1", "dev-a", [stream("r1", 1)])
    before = time.time()
    assert store.finish("r1", "dev-a", Status.ERROR, [stream("r1", 2), stream("r1", 3)], [FILE_B, FILE_A])
    rec = store.get_request("r1")
    assert rec is not None and rec.status is Status.ERROR and rec.last_seq == 3
    assert rec.finished is not None and before <= rec.finished <= time.time()
    assert seqs(store, "r1") == [1, 2, 3]
    assert store.list_files("r1") == [FILE_A, FILE_B]  # by name
    assert store.get_file("r1", "b.txt") == FILE_B
    assert store.get_file("r1", "c.txt") is None


def test_finish_that_fails_part_way_changes_nothing(store: Store) -> None:
    claim_one(store, "r1")
    with pytest.raises(ValueError):  # two files with one name: rejected after the messages were sent
        store.finish("r1", "dev-a", Status.DONE, [stream("r1", 1)], [FILE_A, FILE_A])
    rec = store.get_request("r1")
    assert rec is not None and rec.status is Status.RUNNING and rec.finished is None and rec.last_seq == 0
    assert store.get_messages("r1") == [] and store.list_files("r1") == []
    assert store.finish("r1", "dev-a", Status.DONE, [stream("r1", 1)], [FILE_A])  # still finishable


def test_finish_twice_is_refused_and_changes_nothing(store: Store) -> None:
    claim_one(store, "r1")
    assert store.finish("r1", "dev-a", Status.TIMEOUT, [stream("r1", 1)], [FILE_A])
    first = store.get_request("r1")
    assert not store.finish("r1", "dev-a", Status.DONE, [stream("r1", 2)], [FILE_B])
    assert store.get_request("r1") == first
    assert seqs(store, "r1") == [1] and store.list_files("r1") == [FILE_A]


def test_finish_refused_unless_running_under_that_device(store: Store) -> None:
    claim_one(store, "r1", device="dev-b")
    store.submit(new_request("queued"), 10)
    assert not store.finish("queued", "dev-a", Status.DONE)
    assert not store.finish("r1", "dev-a", Status.DONE, [stream("r1", 1)], [FILE_A])
    assert not store.finish("unknown", "dev-a", Status.DONE)
    for rid, status in (("queued", Status.QUEUED), ("r1", Status.RUNNING)):
        rec = store.get_request(rid)
        assert rec is not None and rec.status is status and rec.finished is None
    assert store.get_messages("r1") == [] and store.list_files("r1") == []


@pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING])
def test_finish_with_non_terminal_status_raises_value_error(store: Store, status: Status) -> None:
    claim_one(store, "r1")
    with pytest.raises(ValueError):
        store.finish("r1", "dev-a", status, [stream("r1", 1)])
    rec = store.get_request("r1")
    assert rec is not None and rec.status is Status.RUNNING and store.get_messages("r1") == []


# -- leases ---------------------------------------------------------------------------------


def test_expire_leases_turns_expired_requests_lost_with_an_error_at_the_next_seq(store: Store) -> None:
    short = claim_one(store, "short", device="dev-a", lease=10.0)
    claim_one(store, "long", device="dev-b", lease=1000.0)
    assert store.add_messages("short", "dev-a", [stream("short", 1), stream("short", 2)])
    assert short.lease_until is not None
    now = short.lease_until + 1
    assert store.expire_leases(now) == ["short"]
    rec = store.get_request("short")
    assert rec is not None and rec.status is Status.LOST and rec.finished == now and rec.last_seq == 3
    lost = store.get_messages("short", after=2)
    assert [m.seq for m in lost] == [3]
    msg = lost[0].message
    assert msg["msg_type"] == "error" and msg["parent_header"]["msg_id"] == "short"
    assert msg["content"]["ename"] == "DeviceLost" and "stopped answering" in msg["content"]["evalue"]
    unexpired = store.get_request("long")
    assert unexpired is not None and unexpired.status is Status.RUNNING
    # The device that lost it learns so on its next write.
    assert not store.add_messages("short", "dev-a", [stream("short", 4)])
    assert not store.finish("short", "dev-a", Status.DONE)
    assert store.expire_leases(now) == []  # already lost: not again


def test_expire_leases_defaults_to_now_and_spares_queued_and_finished(store: Store) -> None:
    claim_one(store, "done", lease=-1.0)
    assert store.finish("done", "dev-a", Status.DONE)
    claim_one(store, "expired", lease=-1.0)
    store.submit(new_request("queued"), 10)
    assert store.expire_leases() == ["expired"]
    queued, done = store.get_request("queued"), store.get_request("done")
    assert queued is not None and queued.status is Status.QUEUED
    assert done is not None and done.status is Status.DONE and store.get_messages("done") == []


def test_renew_lease_extends_only_that_devices_running_requests(store: Store) -> None:
    a1 = claim_one(store, "a1", device="dev-a", lease=10.0)
    claim_one(store, "a2", device="dev-a", lease=10.0)
    b1 = claim_one(store, "b1", device="dev-b", lease=10.0)
    assert store.finish("a2", "dev-a", Status.DONE)
    a2_done = store.get_request("a2")
    before = time.time()
    assert store.renew_lease("dev-a", 1000.0, ["a1", "a2", "b1", "nonesuch"]) == 1
    renewed = store.get_request("a1")
    assert renewed is not None and renewed.lease_until is not None
    assert before + 1000.0 <= renewed.lease_until <= time.time() + 1000.0
    assert store.get_request("b1") == b1
    assert store.get_request("a2") == a2_done
    assert a1.lease_until is not None
    assert store.expire_leases(a1.lease_until + 1) == ["b1"]
    assert store.renew_lease("dev-c", 1000.0, ["a1", "b1"]) == 0
    assert store.renew_lease("dev-a", 1000.0, []) == 0


def test_renew_lease_leaves_out_what_the_device_gave_up(store: Store) -> None:
    kept = claim_one(store, "kept", device="dev-a", lease=10.0)
    claim_one(store, "given-up", device="dev-a", lease=10.0)
    assert store.renew_lease("dev-a", 1000.0, ["kept"]) == 1
    assert kept.lease_until is not None
    assert store.expire_leases(kept.lease_until + 1) == ["given-up"]
    given_up = store.get_request("given-up")
    assert given_up is not None and given_up.status is Status.LOST


def test_release_requeues_only_unstarted_claims_of_that_device(store: Store) -> None:
    submit_all(store, ["r1", "r2", "r3", "r4"])
    store.claim("dev-a", 3, LEASE)
    store.claim("dev-b", 1, LEASE)
    assert store.add_messages("r2", "dev-a", [stream("r2", 1)])  # r2 started on a kernel
    assert store.release("dev-b", ["r1", "r3"]) == 0
    assert store.release("dev-a", ["r1", "r2", "r3", "r4", "unknown"]) == 2
    for rid in ("r1", "r3"):
        rec = store.get_request(rid)
        assert rec is not None and rec.status is Status.QUEUED
        assert (rec.device, rec.started, rec.lease_until) == (None, None, None)
    for rid, device in (("r2", "dev-a"), ("r4", "dev-b")):
        rec = store.get_request(rid)
        assert rec is not None and rec.status is Status.RUNNING and rec.device == device
    assert store.release("dev-a", ["r1"]) == 0  # queued now
    assert store.release("dev-a", []) == 0
    assert [r.id for r in store.claim("dev-c", 10, LEASE)] == ["r1", "r3"]  # they keep their place


# -- backend choice -------------------------------------------------------------------------


def test_open_store_names_the_unknown_scheme_and_the_known_ones() -> None:
    with pytest.raises(UnknownBackend) as caught:
        open_store("couchdb://user:secret@host/db")
    assert "'couchdb'" in caught.value.message and "sqlite" in caught.value.message
    assert "mongodb" in caught.value.message
    assert "secret" not in caught.value.message


def test_sqlite_store_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    store = open_store(_sqlite_url(tmp_path))
    store.create_schema()
    store.close()
    path = tmp_path / "missing-dir" / "store.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- stopping ------------------------------------------------------------------------------


def stop_messages(rid: str) -> list[dict[str, Any]]:
    parent = {"header": {"msg_id": rid}}
    return [message("error", {"ename": "CellStopped", "evalue": "stopped", "traceback": []}, parent),
            message("status", {"execution_state": "idle"}, parent)]


def test_stopping_a_queued_request_ends_it_aborted_with_the_messages(store: Store) -> None:
    submit_all(store, ["q1", "q2"])
    assert store.request_stop("q1", stop_messages("q1")) is Status.ABORTED
    record = store.get_request("q1")
    assert record is not None and record.status is Status.ABORTED and record.finished is not None
    assert record.last_seq == 2
    assert [m.message["msg_type"] for m in store.get_messages("q1")] == ["error", "status"]
    assert store.count_queued() == 1
    # it never reaches a device
    assert [r.id for r in store.claim("dev-a", 10, LEASE)] == ["q2"]


def test_stopping_a_running_request_marks_it_for_its_device_only(store: Store) -> None:
    claim_one(store, "r1", device="dev-a")
    claim_one(store, "r2", device="dev-b")
    assert store.stops_for("dev-a") == []
    assert store.request_stop("r1", stop_messages("r1")) is Status.RUNNING
    assert store.request_stop("r1", stop_messages("r1")) is Status.RUNNING  # asking twice is harmless
    assert store.stops_for("dev-a") == ["r1"]
    assert store.stops_for("dev-b") == []
    assert store.get_messages("r1") == []  # the device, not the store, writes how it ended
    assert store.finish("r1", "dev-a", Status.ABORTED, [stream("r1", 1)])
    assert store.stops_for("dev-a") == []


def test_stopping_a_finished_or_unknown_request_changes_nothing(store: Store) -> None:
    claim_one(store, "f1")
    assert store.finish("f1", "dev-a", Status.DONE, [stream("f1", 1)])
    assert store.request_stop("f1", stop_messages("f1")) is Status.DONE
    record = store.get_request("f1")
    assert record is not None and record.status is Status.DONE and record.last_seq == 1
    assert store.request_stop("nope", stop_messages("nope")) is None


# -- permalinks ----------------------------------------------------------------------------


def test_a_permalink_keeps_its_code_and_the_same_code_keeps_its_id(store: Store) -> None:
    code = "print('héllo')\n# ünïcode ✓\n" * 3
    saved = store.save_permalink(code)
    assert len(saved.id) == PERMALINK_ID_LENGTH and saved.id.isalnum() and saved.id == saved.id.lower()
    again = store.save_permalink(code)
    assert again == saved
    assert store.get_permalink(saved.id) == saved
    other = store.save_permalink(code + " ")
    assert other.id != saved.id
    assert store.get_permalink("zzzzzzzz") is None


def test_a_permalink_id_held_by_other_code_gives_a_longer_id(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    backend = sys.modules[type(store).__module__]  # where the backend looks permalink_ids up
    first = store.save_permalink("a = 1")
    # make "b = 2" want a's id first, as a collision of 40 bits would
    real = backend.permalink_ids
    monkeypatch.setattr(backend, "permalink_ids", lambda code: iter([first.id, *list(real(code))[1:]]))
    second = store.save_permalink("b = 2")
    assert second.id != first.id and len(second.id) == PERMALINK_ID_LENGTH + 2
    assert store.get_permalink(first.id) == first
    assert store.get_permalink(second.id) is not None and store.get_permalink(second.id).code == "b = 2"  # type: ignore[union-attr]


# -- migrations ----------------------------------------------------------------------------


def raw_engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def test_a_new_database_gets_the_latest_schema(sql_url: str) -> None:
    url = sql_url
    s = open_store(url)
    s.create_schema()
    s.close()
    engine = raw_engine(url)
    with engine.connect() as conn:
        assert schema.schema_version(conn) == schema.LATEST
        assert {"requests", "messages", "files", "stops", "permalinks"} <= set(sa.inspect(conn).get_table_names())
    engine.dispose()


def test_an_upgrade_from_the_first_schema_keeps_the_data(sql_url: str) -> None:
    url = sql_url
    # a database as singlecell 0.1 made it: the first tables, and no recorded version
    s = open_store(url)  # (a SQLite store makes its folder)
    engine = raw_engine(url)
    with engine.begin() as conn:
        schema.MIGRATIONS[0](conn)
        # a finished request as singlecell 0.1 wrote it (today's code writes columns it lacks)
        now = time.time()
        conn.execute(sa.text("INSERT INTO requests (id, message, status, timeout, inputs, client, device, created, "
                             "started, finished, last_seq) VALUES ('old', :m, 'done', 30.0, '{}', 'alice', 'dev-a', "
                             ":now, :now, :now, 2)"), {"m": json.dumps(new_request("old").message), "now": now})
        for seq, text in ((1, "kept"), (2, "old:2")):
            kept = stream("old", seq, text).message
            conn.execute(sa.text("INSERT INTO messages (request_id, seq, msg_type, message) VALUES ('old', :seq, "
                                 "'stream', :m)"), {"seq": seq, "m": json.dumps(kept)})
    s.close()
    with engine.connect() as conn:
        assert schema.schema_version(conn) == 1
        assert not sa.inspect(conn).has_table("permalinks")

    s = open_store(url)
    s.create_schema()
    record = s.get_request("old")
    assert record is not None and record.status is Status.DONE and record.last_seq == 2
    assert [m.message["content"]["text"] for m in s.get_messages("old")] == ["kept", "old:2"]
    assert s.save_permalink("print(1)").code == "print(1)"  # what version 2 added works
    claim_one(s, "new")
    assert s.request_stop("new", stop_messages("new")) is Status.RUNNING
    s.create_schema()  # once more: nothing to do
    s.close()
    with engine.connect() as conn:
        assert schema.schema_version(conn) == schema.LATEST
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.version_table)).scalar() == 1
    engine.dispose()


def test_a_database_newer_than_the_code_is_refused_untouched(sql_url: str) -> None:
    url = sql_url
    s = open_store(url)
    s.create_schema()
    s.submit(new_request("r1"), 10)
    engine = raw_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.version_table.update().values(version=schema.LATEST + 1))
    with pytest.raises(ConfigError, match="newer singlecell"):
        s.create_schema()
    assert s.get_request("r1") is not None
    with engine.connect() as conn:
        assert schema.schema_version(conn) == schema.LATEST + 1
    s.close()
    engine.dispose()


# -- sessions -------------------------------------------------------------------------------------

def msgs(first: int, *kinds: str) -> list[StoredMessage]:
    return [StoredMessage(first + i, message(kind, {})) for i, kind in enumerate(kinds)]


def open_session(store: Store, rid: str, device: str = "dev-a", lease: float = LEASE) -> int:
    """A request that finished ``done`` as a live session; returns its last seq."""
    claim_one(store, rid, device)
    assert store.finish(rid, device, Status.DONE, msgs(1, "status", "execute_reply", "status"),
                        session=NewSession("alice", lease))
    return 3


def comm_msg(value: int) -> dict[str, Any]:
    return {"msg_type": "comm_msg", "header": {"msg_id": f"in{value}"}, "content": {"comm_id": "c", "data": {
        "method": "update", "state": {"value": value}}}}


def test_a_finish_with_a_session_leaves_the_request_done_and_its_session_live(store: Store) -> None:
    open_session(store, "s1")
    rec = store.get_request("s1")
    assert rec is not None and rec.status is Status.DONE and rec.last_seq == 3
    assert rec.session is not None and rec.session.live and rec.session.reason is None
    claim_one(store, "plain")
    store.finish("plain", "dev-a", Status.DONE, msgs(1, "status"))
    plain = store.get_request("plain")
    assert plain is not None and plain.session is None


def test_inputs_get_rising_seqs_and_only_a_live_session_takes_them(store: Store) -> None:
    open_session(store, "s1")
    assert [store.add_input("s1", comm_msg(n)) for n in (1, 2, 3)] == [1, 2, 3]
    assert [(seq, m["content"]["data"]["state"]["value"]) for seq, m in store.inputs("s1", 1)] == [(2, 2), (3, 3)]
    claim_one(store, "plain")
    assert store.add_input("plain", comm_msg(1)) is None
    assert store.add_input("unknown", comm_msg(1)) is None
    assert store.inputs("plain", 0) == []


def test_pending_inputs_are_the_undelivered_ones_of_that_devices_live_sessions(store: Store) -> None:
    open_session(store, "s1")
    open_session(store, "s2", device="dev-b")
    store.add_input("s1", comm_msg(1))
    store.add_input("s1", comm_msg(2))
    store.add_input("s2", comm_msg(1))
    assert {rid: [seq for seq, _ in items] for rid, items in store.pending_inputs("dev-a").items()} == {"s1": [1, 2]}
    assert store.add_session_messages("s1", "dev-a", msgs(4, "status", "stream", "status"), delivered=1)
    assert {rid: [seq for seq, _ in items] for rid, items in store.pending_inputs("dev-a").items()} == {"s1": [2]}


def test_session_messages_follow_the_cells_and_only_its_device_adds_them(store: Store) -> None:
    open_session(store, "s1")
    assert store.add_session_messages("s1", "dev-a", msgs(4, "status", "comm_msg", "status"))
    assert not store.add_session_messages("s1", "dev-b", msgs(7, "status"))
    with pytest.raises(ValueError):
        store.add_session_messages("s1", "dev-a", msgs(5, "status"))  # not above last_seq
    assert [m.seq for m in store.get_messages("s1")] == [1, 2, 3, 4, 5, 6]
    rec = store.get_request("s1")
    assert rec is not None and rec.last_seq == 6 and rec.status is Status.DONE


def test_ending_a_session_stores_its_reason_last_messages_and_files_once(store: Store) -> None:
    open_session(store, "s1")
    files = [FileRecord("out.txt", 3, "text/plain", "loc")]
    assert not store.end_session("s1", "dev-b", "idle", msgs(4, "extension"))
    assert store.end_session("s1", "dev-a", "idle", msgs(4, "extension"), files)
    assert not store.end_session("s1", "dev-a", "stopped", msgs(5, "extension"))
    rec = store.get_request("s1")
    assert rec is not None and rec.session is not None and not rec.session.live and rec.session.reason == "idle"
    assert rec.session.ended is not None and rec.last_seq == 4
    assert store.list_files("s1") == files
    assert store.add_input("s1", comm_msg(1)) is None
    assert not store.add_session_messages("s1", "dev-a", msgs(5, "status"))


def test_a_session_whose_lease_ran_out_ends_lost_with_a_readable_message(store: Store) -> None:
    open_session(store, "s1", lease=0.5)
    open_session(store, "s2", lease=60)
    now = time.time() + 1
    assert store.expire_leases(now=now) == ["s1"]
    rec = store.get_request("s1")
    assert rec is not None and rec.session is not None and rec.session.reason == "lost" and rec.last_seq == 4
    last = store.get_messages("s1", after=3)[0].message
    assert last["msg_type"] == "extension" and last["content"]["msg_type"] == "session_end"
    assert last["content"]["content"]["reason"] == "lost"
    assert last["parent_header"]["msg_id"] == "s1"
    assert store.expire_leases(now=now) == []


def test_renewing_keeps_a_devices_sessions_and_only_those(store: Store) -> None:
    open_session(store, "s1", lease=0.5)
    open_session(store, "s2", device="dev-b", lease=0.5)
    assert store.renew_lease("dev-a", 60, [], ["s1", "s2"]) == 1
    assert store.expire_leases(now=time.time() + 1) == ["s2"]


def test_stopping_a_live_session_marks_it_for_its_device(store: Store) -> None:
    open_session(store, "s1")
    assert store.request_stop("s1", []) is Status.DONE
    assert store.stops_for("dev-a") == ["s1"] and store.stops_for("dev-b") == []
    store.end_session("s1", "dev-a", "stopped")
    assert store.stops_for("dev-a") == []


def test_reads_are_recorded_for_live_sessions_and_counted_per_client(store: Store) -> None:
    open_session(store, "s1")
    open_session(store, "s2")
    before = store.session_reads("dev-a")
    assert set(before) == {"s1", "s2"}
    store.touch_session("s1", now=before["s1"] + 100)
    assert store.session_reads("dev-a")["s1"] == before["s1"] + 100
    store.touch_session("s1", now=before["s1"] + 101)  # within a few seconds: may be skipped
    assert store.session_reads("dev-a")["s1"] in (before["s1"] + 100, before["s1"] + 101)
    assert store.live_sessions("alice") == 2 and store.live_sessions("bob") == 0
    store.end_session("s2", "dev-a", "idle")
    assert store.live_sessions("alice") == 1 and set(store.session_reads("dev-a")) == {"s1"}


def test_progress_of_reads_status_last_seq_and_a_live_session_of_many_requests_at_once(store: Store) -> None:
    claim_one(store, "r1")
    store.add_messages("r1", "dev-a", msgs(1, "status", "stream"))
    open_session(store, "s1")
    submit_all(store, ["q1"])
    assert store.progress_of(["q1", "r1", "s1", "unknown"]) == {
        "q1": ("queued", 0, False), "r1": ("running", 2, False), "s1": ("done", 3, True)}
    store.end_session("s1", "dev-a", "idle", msgs(4, "extension"))
    assert store.progress_of(["s1"]) == {"s1": ("done", 4, False)}
    assert store.progress_of([]) == {}


# -- Jupyter clients' kernels (schema version 5) ---------------------------------------------------

def test_kernels_are_listed_per_owner_oldest_first_and_only_while_live(store: Store) -> None:
    for rid, owner in (("k1", "t:a"), ("k2", "t:b"), ("k3", "t:a")):
        claim_one(store, rid)
        assert store.finish(rid, "dev-a", Status.DONE, msgs(1, "status"),
                            session=NewSession("1.2.3.4", LEASE, "kernel", owner))
    open_session(store, "widgets")  # a cell's widgets are no one's kernel
    assert [rid for rid, _ in store.kernels("t:a")] == ["k1", "k3"]
    assert [rid for rid, _ in store.kernels("t:b")] == ["k2"]
    assert store.kernels("") == []
    assert [rid for rid, _ in store.kernels("t:a", client="1.2.3.4")] == ["k1", "k3"]
    assert store.kernels("t:a", client="5.6.7.8") == []  # started from another address
    _, state = store.kernels("t:a")[0]
    assert state.kind == "kernel" and state.owner == "t:a" and state.live and not state.busy
    record = store.get_request("k1")
    assert record is not None and record.session is not None and record.session.owner == "t:a"
    widgets = store.get_request("widgets")
    assert widgets is not None and widgets.session is not None and widgets.session.kind == "widgets"
    assert store.add_input("k1", comm_msg(1)) == 1  # waiting: the kernel is busy until it is answered
    assert [state.busy for _, state in store.kernels("t:a")] == [True, False]
    assert store.add_session_messages("k1", "dev-a", msgs(2, "status"), delivered=1)
    assert [state.busy for _, state in store.kernels("t:a")] == [False, False]
    assert store.end_session("k1", "dev-a", "shutdown", msgs(3, "extension"))
    assert [rid for rid, _ in store.kernels("t:a")] == ["k3"]


def test_a_readers_cursor_is_kept_per_reader_and_never_moves_back(store: Store) -> None:
    open_session(store, "k1")
    assert store.cursor("k1", "tab-1") is None
    store.save_cursor("k1", "tab-1", 5)
    store.save_cursor("k1", "tab-2", 2)
    store.save_cursor("k1", "tab-1", 3)  # an older connection closing late
    assert store.cursor("k1", "tab-1") == 5 and store.cursor("k1", "tab-2") == 2
    store.save_cursor("k1", "tab-1", 9)
    assert store.cursor("k1", "tab-1") == 9
    assert store.cursor("other", "tab-1") is None


def test_an_upgrade_from_version_4_keeps_the_sessions_and_adds_kernels(sql_url: str) -> None:
    url = sql_url
    s = open_store(url)
    engine = raw_engine(url)
    with engine.begin() as conn:
        schema.migrate(conn, 4)
    now = time.time()
    with engine.begin() as conn:  # a live session as version 4 kept it
        conn.execute(schema.request_table.insert().values(
            id="old", message='{"header": {"msg_id": "old"}}', status="done", timeout=30.0, inputs="{}",
            client="1.2.3.4", created=now, last_seq=3))
        conn.execute(sa.text("INSERT INTO sessions (request_id, device, client, live, started, lease_until, "
                             "last_read, last_input, delivered) VALUES ('old', 'dev-a', '1.2.3.4', :t, :now, "
                             ":later, :now, 0, 0)"), {"t": True, "now": now, "later": now + 60})
    s.create_schema()
    record = s.get_request("old")
    assert record is not None and record.session is not None and record.session.live
    assert record.session.kind == "widgets" and record.session.owner == ""
    assert s.add_input("old", comm_msg(1)) == 1
    s.save_cursor("old", "tab", 3)
    assert s.cursor("old", "tab") == 3
    s.close()
    with engine.connect() as conn:
        assert schema.schema_version(conn) == schema.LATEST
    engine.dispose()


def open_kernel(store: Store, rid: str, owner: str = "t:a", device: str = "dev-a") -> None:
    claim_one(store, rid, device)
    assert store.finish(rid, device, Status.DONE, msgs(1, "status"), session=NewSession("1.2.3.4", LEASE,
                                                                                         "kernel", owner))


def linked(rid: str) -> NewRequest:
    request = new_request(rid)
    request.message["metadata"]["singlecell_linked"] = True
    return request


def test_a_linked_cell_is_a_running_request_of_its_own_and_the_sessions_next_input(store: Store) -> None:
    open_kernel(store, "k1")
    assert store.add_input("k1", comm_msg(1)) == 1
    assert store.submit_linked(linked("c1"), "k1", "t:a") == 2
    record = store.get_request("c1")
    assert record is not None and record.status is Status.RUNNING and record.device == "dev-a"
    assert record.linked_to == "k1" and record.session is None
    assert [seq for seq, _ in store.inputs("k1", 0)] == [1, 2]
    assert store.inputs("k1", 1)[0][1]["header"]["msg_id"] == "c1"
    assert store.claim("dev-b", 10, LEASE) == []  # never claimed: its session's device runs it
    assert store.add_messages("c1", "dev-a", msgs(1, "status", "stream"))
    assert store.finish("c1", "dev-a", Status.DONE, msgs(3, "execute_reply", "status"))
    assert [m.seq for m in store.get_messages("c1")] == [1, 2, 3, 4]
    assert store.submit_linked(linked("c2"), "k1", "t:b") is None  # another owner's kernel
    assert store.submit_linked(linked("c3"), "nothing", "t:a") is None
    assert store.get_request("c2") is None and store.get_request("c3") is None
    open_session(store, "widgets")
    assert store.submit_linked(linked("c4"), "widgets", "") is None  # a cell's widgets take no cells


def test_the_linked_cells_a_session_leaves_waiting_end_with_it(store: Store) -> None:
    open_kernel(store, "k1")
    open_kernel(store, "k2")
    for rid, session in (("w1", "k1"), ("w2", "k1"), ("w3", "k2")):
        assert store.submit_linked(linked(rid), session, "t:a") is not None
    assert store.finish("w1", "dev-a", Status.DONE, msgs(1, "status"))
    assert store.end_session("k1", "dev-a", "idle", msgs(2, "extension"))
    record = store.get_request("w2")
    assert record is not None and record.status is Status.ABORTED
    said = [m.message for m in store.get_messages("w2")]
    assert [m["msg_type"] for m in said] == ["error", "status"] and said[0]["content"]["ename"] == "SessionEnded"
    assert "idle" in said[0]["content"]["evalue"] and said[0]["parent_header"]["msg_id"] == "w2"
    done = store.get_request("w1")
    assert done is not None and done.status is Status.DONE
    assert store.renew_lease("dev-a", -1.0, [], ["k2"]) >= 0  # its lease runs out: the session ends lost
    assert "w3" in store.expire_leases(now=time.time() + 1)
    lost = store.get_request("w3")
    assert lost is not None and lost.status is Status.ABORTED


# -- operations: timings and devices' reports (schema version 6) -------------------------------------


def test_timings_are_the_recent_requests_and_every_unfinished_one(store: Store) -> None:
    claim_one(store, "old-done")
    assert store.finish("old-done", "dev-a", Status.DONE, msgs(1, "status"))
    claim_one(store, "old-running")
    submit_all(store, ["old-queued"])
    since = time.time() + 0.01
    time.sleep(0.02)
    submit_all(store, ["new"])
    timings = store.timings(since)
    by_status = sorted(t.status.value for t in timings)
    # old-done ended before `since` (left out); old-running runs, old-queued and new wait
    assert by_status == ["queued", "queued", "running"], by_status
    new = [t for t in timings if t.created >= since]
    assert len(new) == 1 and new[0].started is None and new[0].finished is None
    running = [t for t in timings if t.status is Status.RUNNING]
    assert running[0].started is not None and running[0].started >= running[0].created
    # a window that begins later still has every request not ended yet
    assert sorted(store.timings(time.time() + 60), key=lambda t: t.created) == sorted(timings, key=lambda t: t.created)


def test_a_devices_report_replaces_its_last_and_old_ones_are_left_out(store: Store) -> None:
    from singlecell.store.base import DeviceReport

    now = time.time()
    layers = [("identity", True, "uid 60001"), ("network", False, "no user namespaces: <script>")]
    store.report_device(DeviceReport("dev-b", "host-2", now - 100, now - 100, 8, 0, 4, layers))
    store.report_device(DeviceReport("dev-a", "host-1", now - 50, now - 5, 8, 1, 3, layers))
    store.report_device(DeviceReport("dev-a", "host-1", now - 50, now, 8, 2, 2, layers[:1]))
    assert [d.name for d in store.devices(now - 200)] == ["dev-a", "dev-b"]
    (dev_a,) = store.devices(now - 10)
    assert (dev_a.host, dev_a.started, dev_a.seen, dev_a.busy, dev_a.ready) == ("host-1", now - 50, now, 2, 2)
    assert dev_a.layers == [("identity", True, "uid 60001")]


def test_an_upgrade_from_version_5_adds_devices_and_keeps_the_requests(sql_url: str) -> None:
    url = sql_url
    s = open_store(url)
    engine = raw_engine(url)
    with engine.begin() as conn:
        schema.migrate(conn, 5)
        conn.execute(schema.request_table.insert().values(
            id="old", message='{"header": {"msg_id": "old"}}', status="queued", timeout=30.0, inputs="{}",
            client="1.2.3.4", created=time.time(), last_seq=0))
    s.create_schema()
    assert [t.status for t in s.timings(time.time() + 60)] == [Status.QUEUED]
    assert s.devices(0) == []
    s.close()
    with engine.connect() as conn:
        assert schema.schema_version(conn) == schema.LATEST
        assert "requests_created" in {i["name"] for i in sa.inspect(conn).get_indexes("requests")}
    engine.dispose()


def test_an_upgrade_from_version_6_adds_quotas_batches_and_callbacks_and_keeps_the_requests(sql_url: str) -> None:
    url = sql_url
    s = open_store(url)
    engine = raw_engine(url)
    with engine.begin() as conn:
        schema.migrate(conn, 6)
        conn.execute(sa.text("INSERT INTO requests (id, message, status, timeout, inputs, client, created, last_seq) "
                             "VALUES ('old', :m, 'running', 30.0, '{}', '1.2.3.4', :now, 0)"),
                     {"m": json.dumps(new_request("old").message), "now": time.time()})
    s.create_schema()
    old = s.get_request("old")
    assert old is not None and old.quota_key == "" and old.cpu is None and old.status is Status.RUNNING
    s.submit(new_request("new"), 10, Quota("a:1.2.3.4", max_running=1))  # the old one has no key: not counted
    s.close()
    with engine.connect() as conn:
        assert schema.schema_version(conn) == schema.LATEST == 7
        assert {"token_limits", "quota_pace", "quota_usage", "batches", "callbacks"} <= set(
            sa.inspect(conn).get_table_names())
        assert "requests_quota_status" in {i["name"] for i in sa.inspect(conn).get_indexes("requests")}
    engine.dispose()


def test_list_requests_is_newest_first_and_filters_by_status_and_age(store: Store) -> None:
    claim_one(store, "first")
    assert store.finish("first", "dev-a", Status.DONE, msgs(1, "status"))
    time.sleep(0.01)
    middle = time.time()
    submit_all(store, ["second", "third"])
    assert [r.id for r in store.list_requests()] == ["third", "second", "first"]
    assert [r.id for r in store.list_requests(limit=2)] == ["third", "second"]
    assert [r.id for r in store.list_requests(Status.DONE)] == ["first"]
    assert [r.id for r in store.list_requests(Status.QUEUED, since=middle)] == ["third", "second"]
    assert store.list_requests(Status.RUNNING) == []
    (first,) = store.list_requests(Status.DONE)
    assert first.started is not None and first.finished is not None and first.device == "dev-a"


# -- quotas: a key's rate, cells at once, and CPU seconds a day ------------------------------------


def keyed(rid: str, key: str = "t:abc", callback: Callback | None = None) -> NewRequest:
    request = new_request(rid)
    return NewRequest(request.id, request.message, request.timeout, client="alice", quota_key=key, callback=callback)


def refused(store: Store, request: NewRequest, quota: Quota) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as caught:
        store.submit(request, 100, quota)
    assert store.get_request(request.id) is None  # nothing stored
    return caught.value


def test_the_rate_lets_a_burst_through_then_one_request_per_interval(store: Store) -> None:
    quota = Quota("t:abc", rate=4.0, burst=2)
    store.submit(keyed("r1"), 100, quota)
    store.submit(keyed("r2"), 100, quota)
    error = refused(store, keyed("r3"), quota)
    assert (error.limit, error.retry_after, error.status) == ("rate", 1, 429)
    assert "4/s" in error.message and "at most 2 at once" in error.message
    store.submit(keyed("other", "t:other"), 100, Quota("t:other", rate=4.0, burst=2))  # keys are apart
    time.sleep(0.3)  # one interval (0.25 s) later, one more passes, and only one
    store.submit(keyed("r3"), 100, quota)
    refused(store, keyed("r4"), quota)


def test_a_request_another_limit_refuses_does_not_use_up_the_rate(store: Store) -> None:
    quota = Quota("t:abc", rate=1 / 3600, burst=1, max_running=1)
    store.submit(keyed("r1"), 100, Quota("t:abc", max_running=1))
    assert refused(store, keyed("r2"), quota).limit == "max_running"
    claim = store.claim("dev-a", 1, LEASE)[0]
    assert store.finish(claim.id, "dev-a", Status.DONE, msgs(1, "status"))
    store.submit(keyed("r2"), 100, quota)  # the refusal above left the rate whole
    assert refused(store, keyed("r3"), Quota("t:abc", rate=1 / 3600, burst=1)).limit == "rate"


def test_max_running_counts_the_keys_queued_and_running_cells(store: Store) -> None:
    quota = Quota("a:10.0.0.1", max_running=2)
    store.submit(keyed("r1", "a:10.0.0.1"), 100, quota)
    store.submit(keyed("r2", "a:10.0.0.1"), 100, quota)
    error = refused(store, keyed("r3", "a:10.0.0.1"), quota)
    assert error.limit == "max_running" and "has 2 cells queued or running" in error.message
    assert "address (no API token)" in error.message
    store.submit(keyed("b1", "a:10.0.0.2"), 100, Quota("a:10.0.0.2", max_running=2))
    (first,) = store.claim("dev-a", 1, LEASE)
    refused(store, keyed("r3", "a:10.0.0.1"), quota)  # running still counts
    assert store.finish(first.id, "dev-a", Status.DONE, msgs(1, "status"))
    store.submit(keyed("r3", "a:10.0.0.1"), 100, quota)


def test_cpu_seconds_are_recorded_and_the_daily_quota_refuses_past_them(store: Store) -> None:
    from singlecell.quotas import day_of

    quota = Quota("t:abc", cpu_per_day=5.0)
    store.submit(keyed("r1"), 100, quota)
    claimed = store.claim("dev-a", 1, LEASE)[0]
    assert store.finish(claimed.id, "dev-a", Status.DONE, msgs(1, "status"), cpu=3.25)
    record = store.get_request("r1")
    assert record is not None and record.cpu == 3.25 and record.quota_key == "t:abc"
    assert store.cpu_used("t:abc", day_of(time.time())) == 3.25
    assert store.cpu_used("t:abc", day_of(time.time()) - 1) == 0.0
    store.submit(keyed("r2"), 100, quota)  # 3.25 < 5: it runs, and may pass the quota
    claimed = store.claim("dev-a", 1, LEASE)[0]
    assert store.finish(claimed.id, "dev-a", Status.DONE, msgs(1, "status"),
                        session=NewSession("alice", LEASE), cpu=1.0)
    assert store.end_session("r2", "dev-a", "idle", cpu=0.75)  # a session's CPU after its cell: added
    assert store.cpu_used("t:abc", day_of(time.time())) == 5.0
    record = store.get_request("r2")
    assert record is not None and record.cpu == 1.75
    error = refused(store, keyed("r3"), quota)
    assert error.limit == "cpu_per_day" and "5.0 of its 5 CPU seconds" in error.message
    assert 1 <= error.retry_after <= 86400
    store.submit(keyed("r3", ""), 100)  # a request of no key is charged to nobody
    claimed = store.claim("dev-a", 1, LEASE)[0]
    assert store.finish(claimed.id, "dev-a", Status.DONE, msgs(1, "status"), cpu=9.0)
    assert store.cpu_used("", day_of(time.time())) == 0.0


def test_pruning_forgets_rates_that_caught_up_and_usage_of_long_gone_days(store: Store) -> None:
    from singlecell.quotas import DAY, day_of

    now = time.time()
    store.submit(keyed("r1", "t:slow"), 100, Quota("t:slow", rate=1 / 3600, burst=1))  # paced an hour ahead
    store.submit(keyed("r2", "t:fast"), 100, Quota("t:fast", rate=1000.0, burst=1))  # caught up in a millisecond
    for cpu in (1.0, 2.0):
        (claimed,) = store.claim("dev-a", 1, LEASE)
        assert store.finish(claimed.id, "dev-a", Status.DONE, msgs(1, "status"), cpu=cpu)
    time.sleep(0.01)
    assert store.prune_quotas(time.time()) == 1  # t:fast's pace; both days' usage is recent
    refused(store, keyed("r3", "t:slow"), Quota("t:slow", rate=1 / 3600, burst=1))  # its pace was kept
    store.submit(keyed("r3", "t:fast"), 100, Quota("t:fast", rate=1000.0, burst=1))
    assert store.prune_quotas(now + 40 * DAY) == 4  # both paces, both keys' usage of a month and more ago
    assert store.cpu_used("t:slow", day_of(now)) == 0.0 and store.cpu_used("t:fast", day_of(now)) == 0.0


def _submit_limited(url: str, prefix: str, start: Any, out: Any) -> None:
    """Runs in a spawned process: 30 submits under one key's quota, counting each refusal's limit."""
    try:
        store = open_store(url)
        start.wait()
        refusals: dict[str, int] = {}
        for i in range(30):
            try:
                store.submit(keyed(f"{prefix}-{i}"), 10_000, Quota("t:abc", rate=1 / 3600, burst=12,
                                                                  max_running=1000))
            except QuotaExceeded as exc:
                refusals[exc.limit] = refusals.get(exc.limit, 0) + 1
        store.close()
        out.put((prefix, refusals))
    except BaseException:
        out.put((prefix, traceback.format_exc()))


def test_concurrent_submits_from_several_processes_never_pass_the_rate(url: str, store: Store) -> None:
    refusals = _run_processes(_submit_limited, url, ["p0", "p1", "p2", "p3"])
    assert store.count_queued() == 12  # the burst, and not one more
    assert sum(r.get("rate", 0) for r in refusals.values()) == 4 * 30 - 12


# -- batches --------------------------------------------------------------------------------------


def test_a_batch_is_stored_whole_in_order_and_counted_as_its_cells(store: Store) -> None:
    ids = ["b-3", "b-1", "b-2"]
    store.submit_batch("batch-1", [keyed(i) for i in ids], 100, Quota("t:abc", rate=1 / 3600, burst=1,
                                                                          max_running=3))
    assert store.get_batch("batch-1") == ids and store.get_batch("nope") is None
    assert [store.get_request(i).status for i in ids] == [Status.QUEUED] * 3  # type: ignore[union-attr]
    with pytest.raises(QuotaExceeded) as caught:  # 3 + 1 > max_running
        store.submit_batch("batch-2", [keyed("c-1")], 100, Quota("t:abc", max_running=3))
    assert caught.value.limit == "max_running"
    with pytest.raises(QuotaExceeded) as caught:  # the rate counted batch-1 once
        store.submit_batch("batch-2", [keyed("c-1")], 100, Quota("t:abc", rate=1 / 3600, burst=1))
    assert caught.value.limit == "rate"
    with pytest.raises(QuotaExceeded, match="a batch of 5 cells is more than the 4"):
        store.submit_batch("batch-2", [keyed(f"d-{i}", "t:new") for i in range(5)], 100,
                           Quota("t:new", max_running=4))
    with pytest.raises(QueueFull):  # the queue counts every cell
        store.submit_batch("batch-2", [keyed(f"e-{i}", "t:new") for i in range(3)], 5)
    with pytest.raises(DuplicateRequest):
        store.submit_batch("batch-1", [keyed("f-1", "t:new")], 100)
    with pytest.raises(DuplicateRequest):
        store.submit_batch("batch-3", [keyed("f-1", "t:new"), keyed("b-1", "t:new")], 100)
    for rid in ("c-1", "d-0", "e-0", "f-1"):
        assert store.get_request(rid) is None  # all or none
    assert store.get_batch("batch-2") is None and store.get_batch("batch-3") is None


# -- callbacks ------------------------------------------------------------------------------------


def test_a_callback_is_claimed_once_its_request_ends_then_retried_until_delivered(store: Store) -> None:
    hook = Callback("https://example.org/hook", "http://cells.test", "f" * 64)
    store.submit(keyed("r1", callback=hook), 100)
    store.submit(keyed("r2"), 100)  # no callback
    assert store.claim_callbacks(10, 30.0) == []  # its request has not ended
    claimed = store.claim("dev-a", 2, LEASE)
    assert store.claim_callbacks(10, 30.0) == []
    for record in claimed:
        assert store.finish(record.id, "dev-a", Status.DONE, msgs(1, "status"))
    (first,) = store.claim_callbacks(10, 30.0)
    assert (first.request_id, first.url, first.base_url, first.secret) == ("r1", hook.url, hook.base_url, hook.secret)
    assert (first.state, first.attempts) == ("pending", 1)
    assert store.claim_callbacks(10, 30.0) == []  # held by the first claim
    store.callback_tried("r1", False, "HTTP 503", retry_at=time.time() - 1)
    (again,) = store.claim_callbacks(10, 30.0)
    assert again.attempts == 2 and again.last_error == "HTTP 503"
    store.callback_tried("r1", True)
    assert store.claim_callbacks(10, 30.0) == []
    state = store.callbacks_of(["r1", "r2", "nope"])
    assert list(state) == ["r1"] and state["r1"].state == "delivered" and state["r1"].finished is not None
    store.callback_tried("r1", False, "late", retry_at=time.time())  # a finished callback stays as it is
    assert store.callbacks_of(["r1"])["r1"].state == "delivered"


def test_a_callback_out_of_attempts_fails_and_a_lost_request_gets_its_callback_too(store: Store) -> None:
    store.submit(keyed("r1", callback=Callback("https://example.org/a", "http://cells.test")), 100)
    store.claim("dev-a", 1, 0.01)
    time.sleep(0.05)
    assert store.expire_leases() == ["r1"]
    (claimed,) = store.claim_callbacks(10, 30.0)
    assert claimed.request_id == "r1" and claimed.secret == ""
    store.callback_tried("r1", False, "refused: 10.0.0.1 is a private address")
    state = store.callbacks_of(["r1"])["r1"]
    assert state.state == "failed" and state.last_error == "refused: 10.0.0.1 is a private address"
    assert store.claim_callbacks(10, 30.0) == []


def _claim_callbacks_until_empty(url: str, name: str, start: Any, out: Any) -> None:
    try:
        store = open_store(url)
        start.wait()
        got: list[str] = []
        while batch := store.claim_callbacks(3, 60.0):
            got += [c.request_id for c in batch]
        store.close()
        out.put((name, got))
    except BaseException:
        out.put((name, traceback.format_exc()))


def test_concurrent_callback_claims_hand_out_each_callback_once(url: str, store: Store) -> None:
    ids = [f"r{i:03d}" for i in range(60)]
    store.submit_batch("b", [keyed(i, callback=Callback("https://example.org", "http://x")) for i in ids], 1000)
    for record in store.claim("dev-a", 60, LEASE):
        assert store.finish(record.id, "dev-a", Status.DONE, msgs(1, "status"))
    claimed = _run_processes(_claim_callbacks_until_empty, url, ["s0", "s1", "s2"])
    assert sorted(rid for got in claimed.values() for rid in got) == ids
