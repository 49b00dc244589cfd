"""The kernel WebSocket's wire formats, checked against Jupyter Server's own (de)serialisers."""

from __future__ import annotations

import base64
import json

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from singlecell import wire

MESSAGE = {"header": {"msg_id": "m1", "msg_type": "comm_msg"}, "parent_header": {"msg_id": "p"},
           "metadata": {"k": "é"}, "content": {"comm_id": "c", "data": {}}, "msg_type": "comm_msg"}


def with_buffers(*buffers: bytes) -> dict[str, object]:
    return {**MESSAGE, "buffers": [base64.b64encode(b).decode() for b in buffers]}


@pytest.mark.parametrize("buffers", [(), (b"\x00\x01", b"", b"xyz" * 100)])
def test_v1_frames_are_what_jupyter_server_reads_and_writes(buffers: tuple[bytes, ...]) -> None:
    frame = wire.encode(with_buffers(*buffers), v1=True)
    assert isinstance(frame, bytes)
    channel, parts = deserialize_msg_from_ws_v1(frame)
    assert channel == "iopub"
    assert [json.loads(p) for p in parts[:4]] == [MESSAGE[k] for k in ("header", "parent_header", "metadata",
                                                                       "content")]
    assert parts[4:] == list(buffers)
    theirs = serialize_msg_to_ws_v1([json.dumps(MESSAGE[k]).encode() for k in ("header", "parent_header", "metadata",
                                                                               "content")] + list(buffers), "shell")
    ours = wire.decode(theirs, v1=True)
    assert ours["channel"] == "shell" and ours["msg_type"] == "comm_msg" and ours["content"] == MESSAGE["content"]
    assert [base64.b64decode(b) for b in ours.get("buffers", [])] == list(buffers)


def test_legacy_frames_are_json_text_or_jupyter_servers_binary_format() -> None:
    text = wire.encode(MESSAGE, v1=False)
    assert isinstance(text, str) and json.loads(text)["channel"] == "iopub"
    binary = wire.encode(with_buffers(b"abc", b"\xff"), v1=False)
    assert isinstance(binary, bytes)
    theirs = deserialize_binary_message(binary)
    assert theirs["buffers"] == [b"abc", b"\xff"] and theirs["content"] == MESSAGE["content"]
    back = wire.decode(serialize_binary_message({**MESSAGE, "channel": "shell", "buffers": [b"q"]}), v1=False)
    assert back["channel"] == "shell" and back["buffers"] == [base64.b64encode(b"q").decode()]


@pytest.mark.parametrize(("message", "channel"), [
    ({"msg_type": "input_request"}, "stdin"), ({"msg_type": "execute_reply"}, "shell"),
    ({"msg_type": "interrupt_reply", "channel": "control"}, "control"), ({"msg_type": "stream"}, "iopub"),
    ({"msg_type": "status", "channel": "bogus"}, "iopub")])
def test_a_stored_message_goes_out_on_its_channel(message: dict[str, object], channel: str) -> None:
    assert wire.channel_of(message) == channel


@pytest.mark.parametrize(("frame", "v1"), [
    ("not json", False), ("[1, 2]", False), (b"\x01", False), (b"\x00\x00\x00\x05" + b"\x00" * 4, False),
    (b"\x01", True), ((3).to_bytes(8, "little") + b"\x00" * 24, True),
    ((7).to_bytes(8, "little") + b"".join((64 + i).to_bytes(8, "little") for i in range(7)) + b"x" * 10, True)])
def test_a_frame_that_is_not_a_message_is_a_wire_error(frame: str | bytes, v1: bool) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(frame, v1)
