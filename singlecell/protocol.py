"""Jupyter messages as the server stores and serves them (JSON dicts, protocol v5.3).

A request *is* an ``execute_request``; its ``header.msg_id`` is the request id. Replies are
stored whole (``header``, ``parent_header``, ``metadata``, ``content``, ``msg_type``), with
dates as ISO-8601 strings so any JSON client can read them.
"""

from __future__ import annotations

import datetime
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

JsonDict = dict[str, Any]

PROTOCOL_VERSION = "5.3"
SERVER_SESSION = uuid.uuid4().hex  # one per process: the session of messages it writes itself


def new_id() -> str:
    return uuid.uuid4().hex


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def header(msg_type: str, session: str = "", username: str = "singlecell") -> JsonDict:
    return {
        "msg_id": new_id(),
        "msg_type": msg_type,
        "session": session or SERVER_SESSION,
        "username": username,
        "date": _now_iso(),
        "version": PROTOCOL_VERSION,
    }


def message(msg_type: str, content: JsonDict, parent: Mapping[str, Any] | None = None,
            metadata: JsonDict | None = None) -> JsonDict:
    """A whole message; ``parent`` is the message it answers (its header becomes parent_header)."""
    return {
        "header": header(msg_type),
        "parent_header": dict(parent["header"]) if parent else {},
        "metadata": metadata or {},
        "content": content,
        "msg_type": msg_type,
    }


def execute_request(code: str, client: str = "") -> JsonDict:
    """A fresh ``execute_request`` for ``code``; its msg_id becomes the request id."""
    msg = message(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    msg["header"]["username"] = client or "anonymous"
    return msg


def request_id(msg: Mapping[str, Any]) -> str:
    return str(msg["header"]["msg_id"])


def kernel_id(request_id: str) -> str:
    """A kernel's (or a linked cells' session's) id: its request's id written as Jupyter writes
    kernel ids, a UUID with dashes (Jupyter Server's routes take no other form)."""
    return str(uuid.UUID(hex=request_id))


def request_id_of_kernel(kernel_id: str) -> str | None:
    """The request id behind a kernel id, dashed or not; None for what is not one."""
    plain = kernel_id.replace("-", "")
    return plain if len(kernel_id) in (32, 36) and re.fullmatch(r"[0-9a-f]{32}", plain) else None


def error_message(parent: Mapping[str, Any], ename: str, evalue: str) -> JsonDict:
    """An ``error`` message the server writes itself (limits, crashes, lost devices)."""
    return message("error", {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}, parent)


def extension_message(parent: Mapping[str, Any], kind: str, content: JsonDict) -> JsonDict:
    """What the Jupyter spec has no type for: ``{"msg_type": kind, "content": content}``."""
    return message("extension", {"msg_type": kind, "content": content}, parent)


def limit_message(parent: Mapping[str, Any], limit: str, value: float | int, ename: str, evalue: str) -> JsonDict:
    return extension_message(parent, "limit", {"limit": limit, "value": value, "ename": ename, "evalue": evalue})


def lost_error_message(parent: Mapping[str, Any]) -> JsonDict:
    return error_message(
        parent,
        "DeviceLost",
        "the device running this cell stopped answering before it finished; its output may be "
        "incomplete. Run the cell again.",
    )


#: how deep a kernel's message may nest: far past any real message, and far short of the
#: recursion limit that walking it would otherwise hit
MAX_NESTING = 100


def json_safe(value: Any, depth: int = 0) -> Any:
    """Dates to ISO strings, bytes dropped to None, containers walked; for messages from kernels.
    Raises ``ValueError`` for containers nested deeper than :data:`MAX_NESTING`."""
    if depth > MAX_NESTING:
        raise ValueError(f"a message nested deeper than {MAX_NESTING} levels")
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    return value


def describe_exit(status: int) -> str:
    """Words for a raw wait status: 'exited with code 3', 'was killed by signal 9 (SIGKILL)'."""
    import signal

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {sig} ({name})"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"
