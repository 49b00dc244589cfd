"""The store on MongoDB (``mongodb://host/database``), through pymongo; it passes the contract
suite the SQL store passes.

A standalone MongoDB server has no multi-document transactions, so what the SQL store does in one
transaction is done here with one document's atomic update as the commit point:

- A request is one document (``requests``) holding what must change together: its status,
  lease and ``last_seq``, its files, its session (``session``: live, lease, reads, inputs) and
  a client's stop (``stop``).
- Its messages are documents of their own (``messages``), written *before* the guarded update
  of the request that makes them count: a reader takes only seqs up to the request's
  ``last_seq``, so a writer whose update is refused (its request was declared lost meanwhile)
  leaves nothing anyone reads.
- Each message also carries the *epoch* of its writer: a random token the request gets whenever
  another party takes over its seqs (a device claims it; the store declares it lost, stops it in
  the queue, or ends it with its session). The request lists which epoch wrote which seqs
  (``epochs``: ``[[first seq, epoch], …]``), and readers take each seq from its epoch only. So a
  device that wakes up after its request was declared lost may still write, but only under its
  old epoch, which no reader takes for those seqs: the fencing token of a lease.
- Submits take a lock document (singlecell/store/documents.py): the queue's length, the caller's
  limits and the insert are checked and made by one process at a time, as SQLite's BEGIN
  IMMEDIATE and PostgreSQL's advisory lock do.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from filestore.mongodb import MongoBacked, describe_server
from singlecell import quotas
from singlecell.errors import DuplicateRequest, QueueFull
from singlecell.protocol import error_message, lost_error_message, message
from singlecell.sessions import end_text, session_end_message
from singlecell.store.base import (
    TERMINAL_STATUSES,
    TOUCH_EVERY,
    CallbackState,
    DeviceReport,
    FileRecord,
    JsonDict,
    NewRequest,
    NewSession,
    Permalink,
    Progress,
    Quota,
    RequestRecord,
    SessionState,
    Status,
    Store,
    StoredMessage,
    Timing,
    permalink_ids,
)
from singlecell.store.documents import locked, migrate, reachable

_QUEUED, _RUNNING = Status.QUEUED.value, Status.RUNNING.value
_TERMINAL = [s.value for s in TERMINAL_STATUSES]
ADMISSION_LOCK = "admission"
T = TypeVar("T")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _epoch() -> str:
    return uuid.uuid4().hex[:16]


def _check_seqs(msgs: Sequence[StoredMessage]) -> None:
    if any(a.seq >= b.seq for a, b in itertools.pairwise(msgs)):
        raise ValueError(f"message seqs must be strictly increasing, got {[m.seq for m in msgs]}")


def _session_state(doc: JsonDict) -> SessionState | None:
    s = doc.get("session")
    if not s:
        return None
    return SessionState(bool(s["live"]), s.get("reason"), s["started"], s.get("ended"), s.get("last_read", 0.0),
                        s.get("kind", "widgets"), s.get("owner", ""), s.get("last_input", 0) > s.get("delivered", 0))


def _record(doc: JsonDict) -> RequestRecord:
    return RequestRecord(
        id=doc["_id"],
        message=json.loads(doc["message"]),
        status=Status(doc["status"]),
        timeout=doc["timeout"],
        inputs={name: base64.b64decode(data) for name, data in json.loads(doc["inputs"]).items()},
        client=doc["client"],
        device=doc.get("device"),
        lease_until=doc.get("lease_until"),
        created=doc["created"],
        started=doc.get("started"),
        finished=doc.get("finished"),
        last_seq=doc["last_seq"],
        session=_session_state(doc),
        linked_to=doc.get("session_id"),
        quota_key=doc.get("quota_key", ""),
        cpu=doc.get("cpu"),
    )


def _request_doc(request: NewRequest, now: float) -> JsonDict:
    return {
        "_id": request.id, "message": _dumps(request.message), "status": _QUEUED, "timeout": request.timeout,
        "inputs": _dumps({k: base64.b64encode(v).decode("ascii") for k, v in request.inputs.items()}),
        "client": request.client, "quota_key": request.quota_key, "created": now, "last_seq": 0,
        "epoch": "", "epochs": [],
    }


def _callback_doc(request: NewRequest, now: float) -> JsonDict | None:
    hook = request.callback
    if hook is None:
        return None
    return {"_id": request.id, "url": hook.url, "base_url": hook.base_url, "secret": hook.secret, "state": "pending",
            "attempts": 0, "next_try": now, "finished": None, "last_error": None}


def _callback_state(doc: JsonDict) -> CallbackState:
    return CallbackState(doc["_id"], doc["url"], doc["base_url"], doc["secret"], doc["state"], doc["attempts"],
                         doc["next_try"], doc.get("finished"), doc.get("last_error"))


def _file_doc(f: FileRecord) -> JsonDict:
    return {"name": f.name, "size": f.size, "content_type": f.content_type, "location": f.location}


def _file_record(d: JsonDict) -> FileRecord:
    return FileRecord(d["name"], d["size"], d["content_type"], d["location"])


def _duplicate(request_id: str) -> DuplicateRequest:
    return DuplicateRequest(f"a request with id {request_id!r} already exists; give each request a new "
                            "header.msg_id.")


@reachable
class MongoStore(MongoBacked, Store):
    """A :class:`Store` on the MongoDB database ``url`` names."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # the epoch, last seq and key of each request this process writes for (a device's):
        # it is their only writer while the epoch holds, so it need not read them back
        self._held: dict[str, tuple[str, int, str]] = {}

    def create_schema(self) -> None:
        migrate(self.db)

    def describe(self) -> str:
        return describe_server(self.url)

    # -- messages -------------------------------------------------------------------------

    def _write(self, request_id: str, epoch: str, msgs: Sequence[StoredMessage]) -> None:
        """Write messages under ``epoch``; nobody reads them until the request's ``last_seq``
        reaches them (a retry of the same epoch rewrites them alike)."""
        if not msgs:
            return
        from pymongo.errors import BulkWriteError

        docs = [{"_id": f"{request_id}:{epoch}:{m.seq}", "r": request_id, "e": epoch, "s": m.seq,
                 "t": str(m.message.get("msg_type", "")), "m": _dumps(m.message)} for m in msgs]
        try:
            self.db.messages.insert_many(docs, ordered=False)
        except BulkWriteError:  # a retry of this epoch's write (rare): the same seqs, written again
            for doc in docs:
                self.db.messages.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    def _committed(self, doc: JsonDict, after: int, limit: int) -> list[StoredMessage]:
        last = doc["last_seq"]
        segments = doc.get("epochs") or []
        if after >= last or not segments:
            return []
        ranges = []
        for i, (first, epoch) in enumerate(segments):
            end = segments[i + 1][0] - 1 if i + 1 < len(segments) else last
            low, high = max(first, after + 1), min(end, last)
            if low <= high:
                ranges.append({"r": doc["_id"], "e": epoch, "s": {"$gte": low, "$lte": high}})
        if not ranges:
            return []
        query = ranges[0] if len(ranges) == 1 else {"$or": ranges}
        found = self.db.messages.find(query, {"s": 1, "m": 1}).sort("s", 1).limit(limit)
        return [StoredMessage(d["s"], json.loads(d["m"])) for d in found]

    def _take_over(self, doc: JsonDict, guard: JsonDict, changes: JsonDict, said: list[JsonDict]) -> bool:
        """Another party (the store itself) appends ``said`` to a request under a new epoch, with
        ``changes``, if ``guard`` still holds of the request as ``doc`` showed it."""
        epoch, last = _epoch(), doc["last_seq"]
        self._write(doc["_id"], epoch, [StoredMessage(last + 1 + i, m) for i, m in enumerate(said)])
        done = self.db.requests.update_one(
            {"_id": doc["_id"], "epoch": doc.get("epoch", ""), "last_seq": last, **guard},
            {"$set": {**changes, "epoch": epoch, "last_seq": last + len(said)},
             "$push": {"epochs": [last + 1, epoch]}})
        self._held.pop(doc["_id"], None)
        return bool(done.modified_count)

    # -- the web tier -------------------------------------------------------------------

    def _admit(self, count: int, max_queue: int | None, quota: Quota | None, now: float) -> None:
        """The checks before ``count`` requests are stored; the caller holds the admission lock."""
        if max_queue is not None:
            queued = self.db.requests.count_documents({"status": _QUEUED})
            if queued + count > max_queue:
                raise QueueFull(f"{queued} requests are already waiting, and this server queues {max_queue}; "
                                "retry in a second.", retry_after=1)
        if quota is None or not quota.limited:
            return

        def paced_until() -> float | None:
            found = self.db.quota_pace.find_one({"_id": quota.key})
            return float(found["tat"]) if found else None

        tat = quotas.admit(
            quota, count, now,
            lambda: int(self.db.requests.count_documents({"quota_key": quota.key,
                                                          "status": {"$in": [_QUEUED, _RUNNING]}})),
            lambda: self.cpu_used(quota.key, quotas.day_of(now)), paced_until)
        if tat is not None:
            self.db.quota_pace.replace_one({"_id": quota.key}, {"tat": tat}, upsert=True)

    def submit(self, request: NewRequest, max_queue: int, quota: Quota | None = None) -> None:
        from pymongo.errors import DuplicateKeyError

        now = time.time()
        with locked(self.db, ADMISSION_LOCK):
            self._admit(1, max_queue, quota, now)
            try:
                self.db.requests.insert_one(_request_doc(request, now))
            except DuplicateKeyError:
                raise _duplicate(request.id) from None
        hook = _callback_doc(request, now)
        if hook is not None:
            self.db.callbacks.insert_one(hook)

    def submit_batch(self, batch_id: str, requests: Sequence[NewRequest], max_queue: int,
                     quota: Quota | None = None) -> None:
        now = time.time()
        ids = [r.id for r in requests]
        with locked(self.db, ADMISSION_LOCK):
            if (len(set(ids)) < len(ids) or self.db.batches.find_one({"_id": batch_id}, {"_id": 1})
                    or self.db.requests.find_one({"_id": {"$in": ids}}, {"_id": 1})):
                raise DuplicateRequest(f"batch {batch_id!r} or one of its request ids exists already; give each "
                                       "a new id")
            self._admit(len(requests), max_queue, quota, now)
            self.db.batches.insert_one({"_id": batch_id, "created": now, "ids": ids})
            self.db.requests.insert_many([_request_doc(r, now) for r in requests], ordered=True)
        hooks = [doc for r in requests if (doc := _callback_doc(r, now)) is not None]
        if hooks:
            self.db.callbacks.insert_many(hooks)

    def get_batch(self, batch_id: str) -> list[str] | None:
        doc = self.db.batches.find_one({"_id": batch_id})
        return list(doc["ids"]) if doc else None

    def cpu_used(self, key: str, day: int) -> float:
        doc = self.db.quota_usage.find_one({"_id": f"{key}|{day}"})
        return float(doc["cpu"]) if doc else 0.0

    def prune_quotas(self, now: float, keep_days: int = 31) -> int:
        paces = self.db.quota_pace.delete_many({"tat": {"$lte": now}}).deleted_count
        days = self.db.quota_usage.delete_many({"day": {"$lt": quotas.day_of(now) - keep_days}}).deleted_count
        return int(paces) + int(days)

    def get_request(self, request_id: str) -> RequestRecord | None:
        doc = self.db.requests.find_one({"_id": request_id})
        return _record(doc) if doc else None

    def get_messages(self, request_id: str, after: int = 0, limit: int = 1000) -> list[StoredMessage]:
        doc = self.db.requests.find_one({"_id": request_id}, {"last_seq": 1, "epochs": 1})
        return self._committed(doc, after, limit) if doc and limit > 0 else []

    def progress_of(self, request_ids: Sequence[str]) -> dict[str, Progress]:
        if not request_ids:
            return {}
        found = self.db.requests.find({"_id": {"$in": list(request_ids)}},
                                      {"status": 1, "last_seq": 1, "session.live": 1})
        return {d["_id"]: (d["status"], d["last_seq"], bool((d.get("session") or {}).get("live"))) for d in found}

    def count_queued(self) -> int:
        return int(self.db.requests.count_documents({"status": _QUEUED}))

    def request_stop(self, request_id: str, messages: Sequence[JsonDict]) -> Status | None:
        doc = self.db.requests.find_one({"_id": request_id})
        if doc is None:
            return None
        if doc["status"] == _QUEUED:
            epoch = _epoch()
            self._write(request_id, epoch, [StoredMessage(i + 1, m) for i, m in enumerate(messages)])
            stopped = self.db.requests.update_one(
                {"_id": request_id, "status": _QUEUED},
                {"$set": {"status": Status.ABORTED.value, "finished": time.time(), "last_seq": len(messages),
                          "epoch": epoch, "epochs": [[1, epoch]]}})
            if stopped.modified_count:
                return Status.ABORTED
            doc = self.db.requests.find_one({"_id": request_id}) or doc  # claimed meanwhile
        live = bool((doc.get("session") or {}).get("live"))
        if doc["status"] == _RUNNING or live:
            self.db.requests.update_one({"_id": request_id, "stop": {"$exists": False}},
                                        {"$set": {"stop": time.time()}})
        return Status(doc["status"])

    # -- permalinks ---------------------------------------------------------------------

    def save_permalink(self, code: str) -> Permalink:
        from pymongo.errors import DuplicateKeyError

        for permalink_id in permalink_ids(code):
            with_id = {"_id": permalink_id, "code": code, "created": time.time()}
            try:
                self.db.permalinks.insert_one(with_id)
            except DuplicateKeyError:
                pass
            found = self.db.permalinks.find_one({"_id": permalink_id})
            if found["code"] == code:
                return Permalink(found["_id"], found["code"], found["created"])
        raise AssertionError("every id of a sha256 digest is taken by other code")  # pragma: no cover

    def get_permalink(self, permalink_id: str) -> Permalink | None:
        found = self.db.permalinks.find_one({"_id": permalink_id})
        return Permalink(found["_id"], found["code"], found["created"]) if found else None

    # -- a device -----------------------------------------------------------------------

    def stops_for(self, device: str) -> list[str]:
        found = self.db.requests.find({"stop": {"$exists": True}, "$or": [
            {"status": _RUNNING, "device": device}, {"session.live": True, "session.device": device}]}, {"_id": 1})
        return [d["_id"] for d in found]

    def claim(self, device: str, limit: int, lease_seconds: float) -> list[RequestRecord]:
        from pymongo import ReturnDocument

        claimed = []
        for _ in range(max(0, limit)):
            now, epoch = time.time(), _epoch()
            doc = self.db.requests.find_one_and_update(
                {"status": _QUEUED}, {"$set": {"status": _RUNNING, "device": device, "started": now,
                                               "lease_until": now + lease_seconds, "epoch": epoch,
                                               "epochs": [[1, epoch]]}},
                sort=[("created", 1), ("_id", 1)], return_document=ReturnDocument.AFTER)
            if doc is None:
                break
            self._held[doc["_id"]] = (epoch, doc["last_seq"], doc.get("quota_key", ""))
            claimed.append(_record(doc))
        return claimed

    def renew_lease(self, device: str, lease_seconds: float, request_ids: Sequence[str],
                    session_ids: Sequence[str] = ()) -> int:
        until = time.time() + lease_seconds
        renewed = 0
        if request_ids:
            renewed += self.db.requests.update_many(
                {"_id": {"$in": list(request_ids)}, "status": _RUNNING, "device": device},
                {"$set": {"lease_until": until}}).matched_count
        if session_ids:
            renewed += self.db.requests.update_many(
                {"_id": {"$in": list(session_ids)}, "session.live": True, "session.device": device},
                {"$set": {"session.lease_until": until}}).matched_count
        return int(renewed)

    def _holding(self, request_id: str, guard: JsonDict) -> tuple[str, int, str] | None:
        """(epoch, last seq, key) of a request this process writes for, if ``guard`` holds of it."""
        held = self._held.get(request_id)
        if held is not None:
            return held
        doc = self.db.requests.find_one({"_id": request_id, **guard}, {"epoch": 1, "last_seq": 1, "quota_key": 1})
        if doc is None:
            return None
        held = (doc.get("epoch", ""), doc["last_seq"], doc.get("quota_key", ""))
        self._held[request_id] = held
        return held

    def _commit(self, request_id: str, guard: JsonDict, msgs: Sequence[StoredMessage], changes: JsonDict,
                more: JsonDict | None = None) -> bool:
        """Write ``msgs`` under the request's epoch, then make them count with ``changes`` in one
        update of the request, if ``guard`` still holds of it. ``ValueError`` for seqs that are not
        above its last seq."""
        held = self._holding(request_id, guard)
        if held is None:
            return False
        epoch, last, key = held
        if msgs and msgs[0].seq <= last:
            raise ValueError(f"message seq {msgs[0].seq} is not above last_seq {last}")
        self._write(request_id, epoch, msgs)
        new_last = msgs[-1].seq if msgs else last
        update: JsonDict = {"$set": {**changes, "last_seq": new_last}}
        for operator, fields in (more or {}).items():
            update.setdefault(operator, {}).update(fields)
        done = self.db.requests.update_one({"_id": request_id, "epoch": epoch, "last_seq": last, **guard}, update)
        if not done.matched_count:
            self._held.pop(request_id, None)
            # another party moved it on: declared lost, or a seq bug of the caller
            return self._holding(request_id, guard) is not None and self._commit(request_id, guard, msgs, changes,
                                                                                more)
        self._held[request_id] = (epoch, new_last, key)
        return True

    def add_messages(self, request_id: str, device: str, messages: Sequence[StoredMessage]) -> bool:
        _check_seqs(messages)
        guard = {"status": _RUNNING, "device": device}
        if not messages:
            self._held.pop(request_id, None)
            return self._holding(request_id, guard) is not None
        return self._commit(request_id, guard, messages, {})

    def _charge(self, request_id: str, key: str, cpu: float | None, now: float) -> None:
        if cpu is None:
            return
        self.db.requests.update_one({"_id": request_id}, {"$inc": {"cpu": cpu}})
        if key:
            day = quotas.day_of(now)
            self.db.quota_usage.update_one({"_id": f"{key}|{day}"}, {"$set": {"key": key, "day": day},
                                                                     "$inc": {"cpu": cpu}}, upsert=True)

    def finish(
        self,
        request_id: str,
        device: str,
        status: Status,
        messages: Sequence[StoredMessage] = (),
        files: Sequence[FileRecord] = (),
        session: NewSession | None = None,
        cpu: float | None = None,
    ) -> bool:
        status = Status(status)
        if not status.terminal:
            raise ValueError(f"finish needs a terminal status, not {status.value!r}")
        _check_seqs(messages)
        if len({f.name for f in files}) < len(files):
            raise ValueError(f"finish got two files with one name: {sorted(f.name for f in files)}")
        now = time.time()
        changes: JsonDict = {"status": status.value, "finished": now}
        if files:
            changes["files"] = [_file_doc(f) for f in files]
        if session is not None:
            changes["session"] = {
                "device": device, "client": session.client, "live": True, "reason": None, "started": now,
                "ended": None, "lease_until": now + session.lease_seconds, "last_read": now, "last_input": 0,
                "delivered": 0, "kind": session.kind, "owner": session.owner}
        if not self._commit(request_id, {"status": _RUNNING, "device": device}, messages, changes):
            return False
        self._charge(request_id, (self._held.get(request_id) or ("", 0, ""))[2], cpu, now)
        if session is None:
            self._held.pop(request_id, None)  # no more writes for it
        return True

    def expire_leases(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        lost = [doc["_id"] for doc in self.db.requests.find({"status": _RUNNING, "lease_until": {"$lt": now}})
                if self._take_over(doc, {"status": _RUNNING, "lease_until": {"$lt": now}},
                                   {"status": Status.LOST.value, "finished": now},
                                   [lost_error_message(json.loads(doc["message"]))])]
        ended, linked = [], []
        for doc in self.db.requests.find({"session.live": True, "session.lease_until": {"$lt": now}}):
            said = session_end_message(json.loads(doc["message"]), "lost", end_text("lost"))
            if self._take_over(doc, {"session.live": True, "session.lease_until": {"$lt": now}},
                               {"session.live": False, "session.reason": "lost", "session.ended": now}, [said]):
                ended.append(doc["_id"])
                linked += self._end_linked(doc["_id"], "lost")
        return lost + ended + linked

    def _end_linked(self, session_id: str, reason: str) -> list[str]:
        """End (``aborted``) the linked cells still waiting in a session that ends."""
        ended = []
        for doc in self.db.requests.find({"session_id": session_id, "status": _RUNNING}):
            request = json.loads(doc["message"])
            said = [error_message(request, "SessionEnded", f"the session this cell was linked to ended before it "
                                                           f"ran ({reason}); run the cell again"),
                    message("status", {"execution_state": "idle"}, request)]
            if self._take_over(doc, {"status": _RUNNING}, {"status": Status.ABORTED.value, "finished": time.time()},
                               said):
                ended.append(doc["_id"])
        return ended

    def release(self, device: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0
        for request_id in request_ids:
            self._held.pop(request_id, None)
        return int(self.db.requests.update_many(
            {"_id": {"$in": list(request_ids)}, "status": _RUNNING, "device": device, "last_seq": 0},
            {"$set": {"status": _QUEUED, "device": None, "started": None, "lease_until": None}}).modified_count)

    # -- sessions -----------------------------------------------------------------------

    def _next_input(self, guard: JsonDict) -> JsonDict | None:
        from pymongo import ReturnDocument

        return self.db.requests.find_one_and_update(
            {"session.live": True, **guard}, {"$inc": {"session.last_input": 1}},
            projection={"session.last_input": 1, "session.device": 1}, return_document=ReturnDocument.AFTER)

    def add_input(self, request_id: str, message: JsonDict) -> int | None:
        doc = self._next_input({"_id": request_id})
        if doc is None:
            return None
        seq = int(doc["session"]["last_input"])
        self.db.inputs.insert_one({"_id": f"{request_id}:{seq}", "r": request_id, "s": seq, "m": _dumps(message)})
        return seq

    def submit_linked(self, request: NewRequest, session_id: str, owner: str, quota: Quota | None = None) -> int | None:
        from pymongo.errors import DuplicateKeyError

        now = time.time()
        if quota is not None and quota.limited:
            with locked(self.db, ADMISSION_LOCK):
                self._admit(1, None, quota, now)
        if self.db.requests.find_one({"_id": request.id}, {"_id": 1}) is not None:
            raise _duplicate(request.id)
        doc = self._next_input({"_id": session_id, "session.kind": "kernel", "session.owner": owner})
        if doc is None:
            return None
        seq, epoch = int(doc["session"]["last_input"]), _epoch()
        row = {**_request_doc(request, now), "status": _RUNNING, "started": now, "device": doc["session"]["device"],
               "lease_until": None, "session_id": session_id, "epoch": epoch, "epochs": [[1, epoch]]}
        try:
            self.db.requests.insert_one(row)
        except DuplicateKeyError:
            raise _duplicate(request.id) from None
        hook = _callback_doc(request, now)
        if hook is not None:
            self.db.callbacks.insert_one(hook)
        self.db.inputs.insert_one({"_id": f"{session_id}:{seq}", "r": session_id, "s": seq,
                                   "m": _dumps(request.message)})
        return seq

    def inputs(self, request_id: str, after: int) -> list[tuple[int, JsonDict]]:
        found = self.db.inputs.find({"r": request_id, "s": {"$gt": after}}).sort("s", 1)
        return [(d["s"], json.loads(d["m"])) for d in found]

    def pending_inputs(self, device: str) -> dict[str, list[tuple[int, JsonDict]]]:
        pending: dict[str, list[tuple[int, JsonDict]]] = {}
        for doc in self.db.requests.find({"session.live": True, "session.device": device},
                                         {"session.last_input": 1, "session.delivered": 1}):
            s = doc["session"]
            if s.get("last_input", 0) > s.get("delivered", 0):
                waiting = self.inputs(doc["_id"], s.get("delivered", 0))
                if waiting:
                    pending[doc["_id"]] = waiting
        return pending

    def add_session_messages(self, request_id: str, device: str, messages: Sequence[StoredMessage],
                             delivered: int | None = None) -> bool:
        _check_seqs(messages)
        guard = {"session.live": True, "session.device": device}
        changes = {} if delivered is None else {"session.delivered": delivered}
        if not messages:
            return bool(self.db.requests.update_one({"_id": request_id, **guard},
                                                    {"$set": changes or {"session.live": True}}).matched_count)
        return self._commit(request_id, guard, messages, changes)

    def end_session(self, request_id: str, device: str, reason: str, messages: Sequence[StoredMessage] = (),
                    files: Sequence[FileRecord] = (), cpu: float | None = None) -> bool:
        _check_seqs(messages)
        now = time.time()
        guard = {"session.live": True, "session.device": device}
        doc = self.db.requests.find_one({"_id": request_id, **guard}, {"files": 1, "quota_key": 1})
        if doc is None:
            return False
        names = [f.name for f in files] + [f["name"] for f in doc.get("files") or []]
        if len(set(names)) < len(names):
            raise ValueError(f"end_session got a file name the request has already: {sorted(f.name for f in files)}")
        more = {"$push": {"files": {"$each": [_file_doc(f) for f in files]}}} if files else None
        if not self._commit(request_id, guard, messages,
                            {"session.live": False, "session.reason": reason, "session.ended": now}, more):
            return False
        self._held.pop(request_id, None)
        self._charge(request_id, doc.get("quota_key", ""), cpu, now)
        self._end_linked(request_id, reason)
        return True

    def touch_session(self, request_id: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.db.requests.update_one({"_id": request_id, "session.live": True,
                                     "session.last_read": {"$lt": now - TOUCH_EVERY}},
                                    {"$set": {"session.last_read": now}})

    def session_reads(self, device: str) -> dict[str, float]:
        found = self.db.requests.find({"session.live": True, "session.device": device}, {"session.last_read": 1})
        return {d["_id"]: d["session"]["last_read"] for d in found}

    def live_sessions(self, client: str) -> int:
        return int(self.db.requests.count_documents({"session.live": True, "session.client": client}))

    def kernels(self, owner: str, client: str | None = None) -> list[tuple[str, SessionState]]:
        query: JsonDict = {"session.live": True, "session.owner": owner, "session.kind": "kernel"}
        if client is not None:
            query["session.client"] = client
        found = self.db.requests.find(query, {"session": 1}).sort([("session.started", 1), ("_id", 1)])
        return [(d["_id"], state) for d in found if (state := _session_state(d)) is not None]

    def save_cursor(self, request_id: str, reader: str, seq: int) -> None:
        from pymongo.errors import DuplicateKeyError

        try:  # a cursor never moves back: an existing one further on is left, and the upsert collides
            self.db.cursors.update_one({"_id": f"{request_id}:{reader}", "seq": {"$lt": seq}}, {"$set": {"seq": seq}},
                                       upsert=True)
        except DuplicateKeyError:
            pass

    def cursor(self, request_id: str, reader: str) -> int | None:
        doc = self.db.cursors.find_one({"_id": f"{request_id}:{reader}"})
        return int(doc["seq"]) if doc else None

    # -- operations ------------------------------------------------------------------------

    def timings(self, since: float) -> list[Timing]:
        found = self.db.requests.find({"$or": [{"created": {"$gte": since}},
                                               {"status": {"$in": [_QUEUED, _RUNNING]}}]},
                                      {"created": 1, "started": 1, "finished": 1, "status": 1})
        return [Timing(d["created"], d.get("started"), d.get("finished"), Status(d["status"])) for d in found]

    def list_requests(self, status: Status | None = None, since: float | None = None,
                      limit: int = 50) -> list[RequestRecord]:
        if limit <= 0:
            return []
        query: JsonDict = {}
        if status is not None:
            query["status"] = status.value
        if since is not None:
            query["created"] = {"$gte": since}
        found = self.db.requests.find(query).sort([("created", -1), ("_id", -1)]).limit(limit)
        return [_record(d) for d in found]

    def report_device(self, report: DeviceReport) -> None:
        self.db.devices.replace_one({"_id": report.name}, {
            "host": report.host, "started": report.started, "seen": report.seen, "kernels": report.kernels,
            "busy": report.busy, "ready": report.ready, "layers": [list(layer) for layer in report.layers]},
            upsert=True)

    def devices(self, seen_since: float) -> list[DeviceReport]:
        found = self.db.devices.find({"seen": {"$gte": seen_since}}).sort("_id", 1)
        return [DeviceReport(d["_id"], d["host"], d["started"], d["seen"], d["kernels"], d["busy"], d["ready"],
                             [(str(n), bool(a), str(t)) for n, a, t in d["layers"]]) for d in found]

    # -- callbacks ----------------------------------------------------------------------

    def claim_callbacks(self, limit: int, lease_seconds: float) -> list[CallbackState]:
        from pymongo import ReturnDocument

        now = time.time()
        due = [d["_id"] for d in self.db.callbacks.find({"state": "pending", "next_try": {"$lte": now}}, {"_id": 1})
               .sort("next_try", 1).limit(limit * 4)]
        if not due:
            return []
        ended = {d["_id"] for d in self.db.requests.find({"_id": {"$in": due}, "status": {"$in": _TERMINAL}},
                                                          {"_id": 1})}
        claimed = []
        for request_id in (rid for rid in due if rid in ended):
            doc = self.db.callbacks.find_one_and_update(
                {"_id": request_id, "state": "pending", "next_try": {"$lte": now}},
                {"$inc": {"attempts": 1}, "$set": {"next_try": now + lease_seconds}},
                return_document=ReturnDocument.AFTER)
            if doc is not None:
                claimed.append(_callback_state(doc))
                if len(claimed) == limit:
                    break
        return claimed

    def callback_tried(self, request_id: str, delivered: bool, error: str | None = None,
                       retry_at: float | None = None) -> None:
        values: JsonDict = {"last_error": error}
        if delivered or retry_at is None:
            values |= {"state": "delivered" if delivered else "failed", "finished": time.time()}
        else:
            values["next_try"] = retry_at
        self.db.callbacks.update_one({"_id": request_id, "state": "pending"}, {"$set": values})

    def callbacks_of(self, request_ids: Sequence[str]) -> dict[str, CallbackState]:
        if not request_ids:
            return {}
        return {d["_id"]: _callback_state(d) for d in self.db.callbacks.find({"_id": {"$in": list(request_ids)}})}

    # -- files --------------------------------------------------------------------------

    def list_files(self, request_id: str) -> list[FileRecord]:
        doc = self.db.requests.find_one({"_id": request_id}, {"files": 1})
        return sorted((_file_record(f) for f in (doc or {}).get("files") or []), key=lambda f: f.name)

    def get_file(self, request_id: str, name: str) -> FileRecord | None:
        doc = self.db.requests.find_one({"_id": request_id}, {"files": 1})
        found = [f for f in (doc or {}).get("files") or [] if f["name"] == name]
        return _file_record(found[0]) if found else None
