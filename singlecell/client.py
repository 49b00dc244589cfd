"""The Python client of the HTTP API, used by the CLI, the tests and the load tests.

One :class:`Client` keeps one keep-alive connection: use one per thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8888"


class ClientError(Exception):
    """The server answered with an error: ``status`` and its ``{"error": {code, message}}``."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
                 limit: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.limit = limit  # a 429 limit_exceeded: which limit (rate, max_running, cpu_per_day)


class Client:
    def __init__(self, server: str = DEFAULT_SERVER, timeout: float = 120.0, token: str | None = None) -> None:
        parts = urllib.parse.urlsplit(server if "://" in server else "http://" + server)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"server must be an http:// or https:// URL, not {server!r}")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self.token = token  # an API token, sent as Authorization: Bearer on every request
        self._conn: http.client.HTTPConnection | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.base_path}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = kind(self.netloc, timeout=self.timeout)
        return self._conn

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange; reconnects once if the kept-alive connection was closed."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                sent = dict(headers or {})
                if self.token and "Authorization" not in sent:
                    sent["Authorization"] = f"Bearer {self.token}"
                conn.request(method, self.base_path + path, body=body, headers=sent)
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, payload: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, response_headers, data = self.request(method, path, body, headers)
        try:
            answer = json.loads(data) if data else None
        except json.JSONDecodeError:
            raise ClientError(status, "not_json", data[:200].decode("utf-8", "replace")) from None
        if status not in ok:
            err = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
            raise ClientError(status, err.get("code", "http"), err.get("message", ""), response_headers,
                              err.get("limit"))
        return answer

    @staticmethod
    def _payload(code: str, files: Mapping[str, bytes] | None, timeout: float | None, session: str | None = None,
                 linked: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {"code": code}
        if session is not None:
            payload["session"] = session
        if linked:
            payload["linked"] = True
        if files:
            payload["files"] = {name: base64.b64encode(data).decode() for name, data in files.items()}
        if timeout is not None:
            payload["timeout"] = timeout
        return payload

    def eval(self, code: str, files: Mapping[str, bytes] | None = None, timeout: float | None = None,
             session: str | None = None, linked: bool = False) -> Any:
        """Run ``code`` and wait: ``{id, status, stdout, stderr, result, displays, error, files}``.
        ``linked``: its kernel stays, and the answer's ``session`` names it; ``session``: run in
        that kernel (linked cells), with what the cells before left in it."""
        return self._json("POST", "/eval", self._payload(code, files, timeout, session, linked))

    def execute(self, code: str, files: Mapping[str, bytes] | None = None, timeout: float | None = None,
                session: str | None = None, linked: bool = False, callback_url: str | None = None) -> str:
        """Queue ``code``; returns the request id (``session`` and ``linked`` as for :meth:`eval`).
        ``callback_url``: where its summary is POSTed once it ends."""
        payload = self._payload(code, files, timeout, session, linked)
        if callback_url is not None:
            payload["callback_url"] = callback_url
        return str(self._json("POST", "/execute", payload, ok=(202,))["id"])

    def batch(self, cells: Sequence[str | Mapping[str, Any]], callback_url: str | None = None) -> Any:
        """Queue several cells at once (code, or ``{code, files?, timeout?}`` with files as bytes):
        ``{id, ids, batch_url}``; :meth:`batch_state` follows them."""
        payload: dict[str, Any] = {"cells": [
            {"code": cell} if isinstance(cell, str) else
            self._payload(cell["code"], cell.get("files"), cell.get("timeout")) for cell in cells]}
        if callback_url is not None:
            payload["callback_url"] = callback_url
        return self._json("POST", "/batch", payload, ok=(202,))

    def batch_state(self, batch_id: str) -> Any:
        """``{id, total, ended, cells: [{id, status, output_url, callback?}]}``."""
        return self._json("GET", f"/batch/{batch_id}")

    def output(self, request_id: str, after: int = 0, wait: float = 0) -> Any:
        return self._json("GET", f"/output/{request_id}?after={after}&wait={wait:g}")

    def messages(self, request_id: str, wait: float = 10.0, session: bool = False) -> Iterator[dict[str, Any]]:
        """Every message of the request, in order, as they come, until it is done; with
        ``session``, also while the cell's session is live (until it ends)."""
        after = 0
        while True:
            page = self.output(request_id, after=after, wait=wait)
            for item in page["messages"]:
                yield item["msg"]
            after = page["next"]
            live = session and (page.get("session") or {}).get("state") == "live"
            if page["done"] and not live:
                return

    def send_input(self, request_id: str, msg_type: str, content: dict[str, Any], msg_id: str | None = None,
                   buffers: Sequence[bytes] = ()) -> Any:
        """Send a comm message to the cell's live session: ``{id, seq, msg_id}``. The kernel's
        answers arrive at :meth:`output` with ``msg_id`` as their parent."""
        message: dict[str, Any] = {"msg_type": msg_type, "content": content, "header": {"msg_id": msg_id or ""}}
        if buffers:
            message["buffers"] = [base64.b64encode(b).decode() for b in buffers]
        return self._json("POST", f"/input/{request_id}", message, ok=(202,))

    def stop(self, request_id: str) -> Any:
        """Stop a cell, or end its session: ``{id, status}``."""
        return self._json("POST", f"/stop/{request_id}", {}, ok=(202,))

    def status(self, request_id: str) -> str:
        return str(self.output(request_id, after=1 << 62)["status"])

    def file(self, url_or_path: str) -> bytes:
        path = urllib.parse.urlsplit(url_or_path).path if "://" in url_or_path else url_or_path
        if self.base_path and path.startswith(self.base_path):
            path = path[len(self.base_path):]
        status, headers, data = self.request("GET", path)
        if status != 200:
            raise ClientError(status, "http", data[:200].decode("utf-8", "replace"), headers)
        return data

    def health(self) -> Any:
        return self._json("GET", "/health")

    def wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except (OSError, ClientError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                self.close()
                time.sleep(0.05)
