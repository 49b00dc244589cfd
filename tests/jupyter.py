"""A Jupyter kernel client for the tests, over the kernel REST API and the WebSocket, as
JupyterLab and Kernel Gateway's clients speak them. The WebSocket is ``websocket-client``'s and
the v1 binary format is decoded by Jupyter Server's own functions: nobody here wrote them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import websocket
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

from tests.servers import free_port, wait_until

V1 = "v1.kernel.websocket.jupyter.org"
TOKEN = "gateway-test-token"


class JupyterServer:
    """``jupyter server --gateway-url=…`` (or ``jupyter lab``, with ``lab``) as a subprocess, in
    folders of its own; JupyterLab is told not to look for news or updates (no network here)."""

    def __init__(self, gateway: str, folder: Path, lab: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "jupyter-server.log"
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / "config"), "JUPYTER_DATA_DIR": str(folder / "data"),
               "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "JUPYTER_PLATFORM_DIRS": "1",
               "JUPYTERLAB_SETTINGS_DIR": str(folder / "lab-settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(folder / "lab-workspaces")}
        self.notebooks = folder / "notebooks"
        self.notebooks.mkdir(parents=True, exist_ok=True)
        settings = folder / "lab-settings" / "@jupyterlab" / "apputils-extension"
        notification = settings / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.log = open(self.log_path, "wb")  # closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab" if lab else "jupyter_server", "--no-browser", "--allow-root",
             f"--port={self.port}", "--ip=127.0.0.1", f"--ServerApp.token={TOKEN}", f"--gateway-url={gateway}",
             f"--ServerApp.root_dir={folder / 'notebooks'}", "--GatewayClient.request_timeout=60"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            try:
                return bool(call("GET", self.url + "/api/status", token=TOKEN))
            except (HttpError, OSError):
                return False

        if not wait_until(up, 60, 0.2):
            self.stop()
            raise AssertionError(f"jupyter server did not start:\n{self.log_path.read_text()[-3000:]}")

    def api(self, method: str, path: str, body: object = None) -> object:
        return call(method, self.url + path, body, TOKEN)

    def socket(self, kernel_id: str) -> KernelSocket:
        return KernelSocket(f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels", token=TOKEN)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()



class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def call(method: str, url: str, body: Any = None, token: str | None = None, scheme: str = "token") -> Any:
    """One REST call; the JSON answer (None for 204). ``HttpError`` for a 4xx or 5xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw = answer.read()
    except urllib.error.HTTPError as exc:
        raise HttpError(exc.code, exc.read().decode(errors="replace")) from None
    return json.loads(raw) if raw else None


class KernelSocket:
    """One WebSocket to a kernel's channels, with what it has received."""

    def __init__(self, ws_url: str, token: str | None = None, session_id: str | None = None, v1: bool = False,
                 after: int | None = None) -> None:
        self.session = session_id or uuid.uuid4().hex
        query = [f"session_id={self.session}"]
        if token:
            query.append(f"token={token}")
        if after is not None:
            query.append(f"after={after}")
        self.v1 = v1
        self.ws = websocket.create_connection(f"{ws_url}?{'&'.join(query)}", timeout=60,
                                              subprotocols=[V1] if v1 else None)
        self.received: list[dict[str, Any]] = []

    @property
    def subprotocol(self) -> str | None:
        return self.ws.getsubprotocol()  # type: ignore[no-any-return]

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell",
             buffers: list[bytes] | None = None) -> str:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session, "username": "test",
                  "date": "2026-12-04T00:00:00Z", "version": "5.3"}
        if self.v1:
            parts = [json.dumps(p).encode() for p in (header, {}, {}, content)] + list(buffers or [])
            self.ws.send_binary(serialize_msg_to_ws_v1(parts, channel))
        else:
            self.ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                     "channel": channel, "buffers": []}))
        return msg_id

    def receive(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """The next message; None once the server closed the socket."""
        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return None
        if self.v1:
            channel, parts = deserialize_msg_from_ws_v1(data)
            header, parent, metadata, content = (json.loads(p) for p in parts[:4])
            msg = {"channel": channel, "header": header, "parent_header": parent, "metadata": metadata,
                   "content": content, "msg_type": header["msg_type"], "buffers": parts[4:]}
        elif opcode == websocket.ABNF.OPCODE_BINARY:
            msg = deserialize_binary_message(data)
        else:
            msg = json.loads(data)
        self.received.append(msg)
        return msg

    def until(self, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Messages up to the first that ``predicate`` accepts."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got {[(m['channel'], m['msg_type']) for m in got]}")
            msg = self.receive(left)
            if msg is None:
                raise AssertionError(f"the socket closed; got {[(m['channel'], m['msg_type']) for m in got]}")
            got.append(msg)
            if predicate(msg):
                return got

    def answers(self, msg_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Everything answering ``msg_id`` up to its ``idle``."""
        got = self.until(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                         and m["content"]["execution_state"] == "idle", timeout)
        return [m for m in got if m["parent_header"].get("msg_id") == msg_id]

    def reply(self, msg_id: str, timeout: float = 30.0) -> dict[str, Any]:
        got = self.until(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"].endswith("_reply"),
                         timeout)
        return got[-1]

    def execute(self, code: str, allow_stdin: bool = False, timeout: float = 30.0) -> list[dict[str, Any]]:
        msg_id = self.send("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": allow_stdin,
                                               "stop_on_error": True})
        return self.answers(msg_id, timeout)

    def close(self) -> None:
        self.ws.close()


def stdout(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream"
                   and m["content"]["name"] == "stdout")


def of_type(messages: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["msg_type"] == msg_type]


class KernelCells:
    """The exploit suite's client, through a Jupyter client's kernel: each cell runs in a kernel of
    its own (``POST /api/kernels``, one ``execute_request`` over the WebSocket, then ``DELETE``),
    so an attack meets the sandbox of the kernel API instead of ``/execute``'s. It answers
    :func:`tests.servers.outcome` and ``eval``; a case that reads over ``/execute``, ``/output``
    or ``/files`` is one-shot only, and skips here, saying so."""

    def __init__(self, base: str) -> None:
        self.base = base

    def kernel_outcome(self, code: str, files: dict[str, bytes] | None = None, timeout: float | None = None,
                       deadline: float = 30.0) -> dict[str, Any]:
        """How the cell ended, as :func:`tests.servers.outcome` tells it: the status is the
        execute_reply's (``done``/``error``), or ``aborted`` when the kernel's session ended."""
        import pytest

        from tests.servers import ending

        if files:
            pytest.skip("this case uploads files: the kernel API takes none (one-shot only)")
        started = time.monotonic()
        kernel_id = call("POST", self.base + "/api/kernels", {})["id"]
        ws = KernelSocket(f"{self.base.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels")

        def dead(m: dict[str, Any]) -> bool:
            return m["msg_type"] == "status" and m["content"]["execution_state"] == "dead"

        try:
            msg_id = ws.send("execute_request", {"code": code, "silent": False, "allow_stdin": False})
            got = ws.until(lambda m: dead(m) or (m["parent_header"].get("msg_id") == msg_id
                                                 and m["msg_type"] == "status"
                                                 and m["content"]["execution_state"] == "idle"), deadline)
            if not dead(got[-1]):
                # the files the kernel wrote are collected when its session ends: read on to there
                call("DELETE", f"{self.base}/api/kernels/{kernel_id}")
                got += ws.until(dead, deadline)
        finally:
            ws.close()
        reply = [m for m in got if m["msg_type"] == "execute_reply"]
        status = "aborted" if not reply else "done" if reply[0]["content"]["status"] == "ok" else "error"
        return ending(kernel_id, status, time.monotonic() - started, got)

    def eval(self, code: str, timeout: float | None = None) -> dict[str, Any]:
        ended = self.kernel_outcome(code)
        result = next((m["content"]["data"] for m in ended["messages"] if m["msg_type"] == "execute_result"), None)
        return {"id": ended["id"], "status": ended["status"], "stdout": ended["stdout"], "stderr": ended["stderr"],
                "result": result, "error": ended["error"]}

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        import pytest

        pytest.skip(f"this case uses the HTTP client's {name}(): one-shot only")
