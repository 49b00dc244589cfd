"""The kernel WebSocket's wire formats, as Jupyter Server speaks them to its clients.

A message crosses ``/api/kernels/<id>/channels`` in one of three shapes:

- **JSON text** (no subprotocol): the message as an object with a ``channel`` field, as
  Kernel Gateway and ``jupyter_server``'s gateway client send it;
- **the legacy binary frame** (no subprotocol, a message with buffers): a count, offsets, the
  JSON, then the buffers (``serialize_binary_message`` in Jupyter Server);
- **``v1.kernel.websocket.jupyter.org``**, when the client offers that subprotocol (JupyterLab,
  ``@jupyterlab/services``): offsets, the channel, then header, parent header, metadata,
  content and buffers, each its own part.

Stored messages keep buffers as base64 strings (``device/inbox.py``); here they become bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CHANNELS = ("shell", "iopub", "stdin", "control")
MAX_PARTS = 1024  # parts one frame may claim: more is not a message


class WireError(ValueError):
    """A frame that is not a kernel message in the format of its connection; says why."""


def channel_of(message: dict[str, Any]) -> str:
    """The channel a stored message goes out on: what the device marked (``control`` replies),
    ``stdin`` for ``input_request``, ``shell`` for the other replies, else ``iopub``."""
    marked = message.get("channel")
    if marked in CHANNELS:
        return str(marked)
    msg_type = str(message.get("msg_type", ""))
    if msg_type == "input_request":
        return "stdin"
    if msg_type.endswith("_reply"):
        return "shell"
    return "iopub"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _buffers(message: dict[str, Any]) -> list[bytes]:
    out = []
    for item in message.get("buffers") or ():
        try:
            out.append(base64.b64decode(item))
        except (binascii.Error, ValueError, TypeError):
            continue
    return out


def encode(message: dict[str, Any], v1: bool) -> str | bytes:
    """A stored message as one WebSocket frame (text, or bytes for a binary one)."""
    channel = channel_of(message)
    buffers = _buffers(message)
    parts = {key: message.get(key, {}) for key in ("header", "parent_header", "metadata", "content")}
    if v1:
        msg_list = [_dumps(parts[key]) for key in ("header", "parent_header", "metadata", "content")] + buffers
        encoded_channel = channel.encode("utf-8")
        offsets = [8 * (1 + 1 + len(msg_list) + 1)]
        offsets.append(offsets[-1] + len(encoded_channel))
        for part in msg_list:
            offsets.append(offsets[-1] + len(part))
        head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
        return head + encoded_channel + b"".join(msg_list)
    body = {**parts, "msg_type": message.get("msg_type"), "channel": channel}
    body["msg_id"] = parts["header"].get("msg_id") if isinstance(parts["header"], dict) else None
    if not buffers:
        body["buffers"] = []
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    chunks = [_dumps(body), *buffers]
    offsets = [4 * (len(chunks) + 1)]
    for chunk in chunks[:-1]:
        offsets.append(offsets[-1] + len(chunk))
    return struct.pack("!" + "I" * (len(chunks) + 1), len(chunks), *offsets) + b"".join(chunks)


def decode(frame: str | bytes, v1: bool) -> dict[str, Any]:
    """One frame from a client as a message dict (with ``channel``, and ``buffers`` as base64
    strings, as inputs are stored); :class:`WireError` saying what is wrong."""
    if isinstance(frame, str):
        try:
            message = json.loads(frame)
        except ValueError as exc:
            raise WireError(f"a text frame must be a JSON message ({exc})") from None
        if not isinstance(message, dict):
            raise WireError("a text frame must be a JSON object: a message with header, content and channel")
        return message
    if v1:
        return _decode_v1(frame)
    return _decode_legacy(frame)


def _decode_v1(frame: bytes) -> dict[str, Any]:
    if len(frame) < 8:
        raise WireError("a v1 binary frame starts with the count of its offsets")
    count = int.from_bytes(frame[:8], "little")
    if not 6 <= count <= MAX_PARTS or len(frame) < 8 * (count + 1):
        raise WireError("a v1 binary frame's offsets do not describe a message")
    offsets = [int.from_bytes(frame[8 * (i + 1):8 * (i + 2)], "little") for i in range(count)]
    if offsets != sorted(offsets) or offsets[-1] > len(frame) or offsets[0] < 8 * (count + 1):
        raise WireError("a v1 binary frame's offsets do not describe a message")
    channel = frame[offsets[0]:offsets[1]].decode("utf-8", "replace")
    parts = [frame[offsets[i]:offsets[i + 1]] for i in range(1, count - 1)]
    if len(parts) < 4:
        raise WireError("a v1 binary frame needs a header, a parent header, metadata and content")
    try:
        header, parent, metadata, content = (json.loads(p) for p in parts[:4])
    except ValueError as exc:
        raise WireError(f"a v1 frame's header, parent header, metadata and content must be JSON ({exc})") from None
    message = {"header": header, "parent_header": parent, "metadata": metadata, "content": content,
               "channel": channel, "msg_type": header.get("msg_type") if isinstance(header, dict) else None}
    buffers = parts[4:]
    if buffers:
        message["buffers"] = [base64.b64encode(b).decode("ascii") for b in buffers]
    return message


def _decode_legacy(frame: bytes) -> dict[str, Any]:
    if len(frame) < 4:
        raise WireError("a binary frame starts with the count of its parts")
    count = struct.unpack("!I", frame[:4])[0]
    if not 1 <= count <= MAX_PARTS or len(frame) < 4 * (count + 1):
        raise WireError("a binary frame's offsets do not describe a message")
    offsets = list(struct.unpack("!" + "I" * count, frame[4:4 * (count + 1)]))
    if offsets != sorted(offsets) or offsets[-1] > len(frame):
        raise WireError("a binary frame's offsets do not describe a message")
    bounds = [*offsets, len(frame)]
    chunks = [frame[bounds[i]:bounds[i + 1]] for i in range(count)]
    try:
        message = json.loads(chunks[0])
    except ValueError as exc:
        raise WireError(f"a binary frame's first part must be the JSON message ({exc})") from None
    if not isinstance(message, dict):
        raise WireError("a binary frame's first part must be a JSON object")
    message["buffers"] = [base64.b64encode(c).decode("ascii") for c in chunks[1:]]
    return message
