"""Batches: ``POST /batch`` queues up to :data:`MAX_CELLS` cells at once, ``GET /batch/<id>`` says
how each is doing. Each cell is a request of its own (read as any other, ``/output/<id>``); the
batch is all of them or none, under one caller's limits (singlecell/quotas.py: the rate counts
the batch once, ``max_running`` counts every cell), and its ``callback_url`` gets each cell's
summary as that cell ends (singlecell/callbacks.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from singlecell import protocol
from singlecell.errors import BadRequest, NotFound, PayloadTooLarge
from singlecell.store.base import NewRequest
from singlecell.web.handlers import (
    REQUEST_ID,
    BaseHandler,
    BodyHandler,
    Services,
    parse_submission,
)

MAX_CELLS = 100
CELL_FIELDS = ("code", "files", "timeout")


class BatchHandler(BodyHandler):
    """``POST /batch {"cells": [{code, files?, timeout?}, …], "callback_url"?}`` → ``202 {id, ids, batch_url}``."""

    def body_limit(self) -> int:
        return 4 * self.services.config.max_body_size

    def too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"the batch's body is {size} bytes; at most {self.body_limit()} are accepted: send "
                               "its cells in several batches")

    async def accept(self, *args: str) -> None:
        payload = self.json_body()
        if not isinstance(payload, dict) or not isinstance(payload.get("cells"), list):
            raise BadRequest('send a JSON object like {"cells": [{"code": "print(1)"}, {"code": "2 + 2"}]}')
        unknown = set(payload) - {"cells", "callback_url"}
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; a batch's fields are cells and "
                             "callback_url")
        cells = payload["cells"]
        if not 1 <= len(cells) <= MAX_CELLS:
            raise BadRequest(f"a batch has 1 to {MAX_CELLS} cells, not {len(cells)}")
        config = self.services.config
        submissions = []
        for index, cell in enumerate(cells):
            if not isinstance(cell, dict):
                raise BadRequest(f"cell {index} must be an object like {{\"code\": \"print(1)\"}}")
            extra = set(cell) - set(CELL_FIELDS)
            if extra:
                raise BadRequest(f"cell {index} has unknown field(s) {', '.join(sorted(extra))}; a batch's cells "
                                 f"take {', '.join(CELL_FIELDS)}")
            try:
                submissions.append(parse_submission("application/json", json.dumps(cell).encode(), config))
            except BadRequest as exc:
                raise BadRequest(f"cell {index}: {exc.message}") from None
            except PayloadTooLarge as exc:
                raise PayloadTooLarge(f"cell {index}: {exc.message}") from None
        caller = self.caller()
        url = payload.get("callback_url")
        callback = await self.callback(url, caller) if url is not None else None
        client = self.request.remote_ip or ""
        requests = []
        for submission in submissions:
            message = protocol.execute_request(submission.code, client=client)
            message["metadata"]["singlecell_session"] = True  # as /execute: widgets may keep its kernel
            requests.append(NewRequest(protocol.request_id(message), message, submission.timeout, submission.files,
                                       client=client, quota_key=caller.quota.key, callback=callback))
        self.services.check_session_cap(client)
        batch_id = uuid.uuid4().hex
        services = self.services
        services.store.submit_batch(batch_id, requests, config.max_queue, caller.quota)
        if services.wakeups is not None:
            services.wakeups.queued()
        self.set_header("Location", f"/batch/{batch_id}")
        self.send_json({"id": batch_id, "ids": [r.id for r in requests],
                        "batch_url": self.absolute(f"/batch/{batch_id}")}, status=202)


class BatchReader(BaseHandler):
    """``GET /batch/<id>``: each cell's status, output URL and callback, in the order submitted."""

    def get(self, batch_id: str) -> None:
        store = self.services.store
        ids = store.get_batch(batch_id)
        if ids is None:
            raise NotFound(f"no batch has the id {batch_id!r}; ids come from POST /batch")
        progress = store.progress_of(ids)
        callbacks = store.callbacks_of(ids)
        cells = []
        for request_id in ids:
            status = progress[request_id][0] if request_id in progress else "unknown"
            cell: dict[str, Any] = {"id": request_id, "status": status,
                                    "output_url": self.absolute(f"/output/{request_id}")}
            if request_id in callbacks:
                hook = callbacks[request_id]
                cell["callback"] = {"state": hook.state, "attempts": hook.attempts, "last_error": hook.last_error}
            cells.append(cell)
        ended = sum(cell["status"] not in ("queued", "running") for cell in cells)
        self.send_json({"id": batch_id, "total": len(cells), "ended": ended, "cells": cells})


def batch_routes(services: Services) -> list[Any]:
    args = {"services": services}
    return [
        (r"/batch", BatchHandler, args),
        (rf"/batch/({REQUEST_ID})", BatchReader, args),
    ]
