"""A FileStore on MongoDB's GridFS: ``mongodb://host[:port]/database``.

The files are GridFS files of the bucket ``cellfiles`` (collections ``cellfiles.files`` and
``cellfiles.chunks``, as the GridFS specification lays them out, so ``mongofiles`` and any
driver's GridFS can read them): filename ``<request_id>/<name>``, ``metadata`` ``{request_id,
name}``, chunks of 255 KiB. They are written with plain collection calls rather than pymongo's
``gridfs`` module, so that the same code runs on mongomock, the stand-in the tests use where no
server can run.

A put writes its chunks, then its file document (so a file visible is whole), then removes the
older revisions of the name: of two puts at once the later one stays. A get reads the newest
revision whose chunks are all there.
"""

from __future__ import annotations

import datetime
from typing import Any

from filestore.base import FileStore, check_name, check_request_id
from filestore.mongodb import MongoBacked, describe_server

BUCKET = "cellfiles"
CHUNK_BYTES = 255 * 1024  # the GridFS default


class GridFileStore(MongoBacked, FileStore):
    """Bytes as GridFS files of bucket ``cellfiles``; location ``gridfs:<request_id>/<name>``."""

    @property
    def _files(self) -> Any:
        return self.db[f"{BUCKET}.files"]

    @property
    def _chunks(self) -> Any:
        return self.db[f"{BUCKET}.chunks"]

    def create(self) -> None:
        # the indexes the GridFS specification asks for, and ours by request (idempotent)
        self._files.create_index([("filename", 1), ("uploadDate", 1)])
        self._files.create_index([("metadata.request_id", 1)])
        self._chunks.create_index([("files_id", 1), ("n", 1)], unique=True)

    def put(self, request_id: str, name: str, data: bytes) -> str:
        from bson import ObjectId

        check_request_id(request_id)
        check_name(name)
        file_id = ObjectId()
        chunks = [{"files_id": file_id, "n": n, "data": data[offset:offset + CHUNK_BYTES]}
                  for n, offset in enumerate(range(0, len(data), CHUNK_BYTES))]
        if chunks:
            self._chunks.insert_many(chunks, ordered=True)
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # BSON dates are UTC, naive here,
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # and in milliseconds: compare as stored
        self._files.insert_one({"_id": file_id, "length": len(data), "chunkSize": CHUNK_BYTES, "uploadDate": now,
                                "filename": f"{request_id}/{name}",
                                "metadata": {"request_id": request_id, "name": name}})
        older = [doc["_id"] for doc in self._files.find({"filename": f"{request_id}/{name}"}, {"uploadDate": 1})
                 if (doc["uploadDate"], doc["_id"]) < (now, file_id)]
        self._remove(older)
        return f"gridfs:{request_id}/{name}"

    def get(self, request_id: str, name: str) -> bytes | None:
        check_request_id(request_id)
        check_name(name)
        for _ in range(3):  # a newer put may remove the revision being read: read the newest again
            doc = next(iter(self._files.find({"filename": f"{request_id}/{name}"})
                            .sort([("uploadDate", -1), ("_id", -1)]).limit(1)), None)
            if doc is None:
                return None
            parts = list(self._chunks.find({"files_id": doc["_id"]}).sort("n", 1))
            data = b"".join(bytes(part["data"]) for part in parts)
            if len(data) == doc["length"] and [p["n"] for p in parts] == list(range(len(parts))):
                return data
        return None

    def delete_file(self, request_id: str, name: str) -> bool:
        check_request_id(request_id)
        check_name(name)
        ids = [doc["_id"] for doc in self._files.find({"filename": f"{request_id}/{name}"}, {"_id": 1})]
        self._remove(ids)
        return bool(ids)

    def delete(self, request_id: str) -> int:
        check_request_id(request_id)
        docs = list(self._files.find({"metadata.request_id": request_id}, {"_id": 1, "filename": 1}))
        self._remove([doc["_id"] for doc in docs])
        return len({doc["filename"] for doc in docs})

    def _remove(self, file_ids: list[Any]) -> None:
        if file_ids:  # the file documents first: a file is never seen without its chunks
            self._files.delete_many({"_id": {"$in": file_ids}})
            self._chunks.delete_many({"files_id": {"$in": file_ids}})

    def describe(self) -> str:
        return f"GridFS (bucket {BUCKET}) on {describe_server(self.url)}"

