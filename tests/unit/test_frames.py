"""The device's reader and signer of kernel messages against jupyter_client's ``Session``, which
the kernels keep: each reads what the other writes, and what the device refuses it says why."""

from __future__ import annotations

import pytest
from jupyter_client.session import Session

from device.frames import NOT_SIGNED, KernelFrames
from singlecell import protocol

KEY = b"ab" * 32


def kernel_session() -> Session:
    return Session(key=KEY, signature_scheme="hmac-sha256", username="kernel")


def test_what_a_kernel_signs_the_device_reads_with_the_stored_date_unchanged() -> None:
    session = kernel_session()
    msg = session.msg("stream", {"name": "stdout", "text": "héllo\n"}, metadata={"m": [1, 2.5, None]})
    frames = session.serialize(msg)
    read = KernelFrames(KEY).deserialize([*frames, b"\x00buffer"])
    old = Session(key=KEY, signature_scheme="hmac-sha256").deserialize(frames[1:])  # what the device did before
    assert read["msg_type"] == "stream" and read["content"] == {"name": "stdout", "text": "héllo\n"}
    assert read["metadata"] == {"m": [1, 2.5, None]} and read["buffers"] == [b"\x00buffer"]
    assert read["header"] == protocol.json_safe(old["header"])  # the date stored as it always was
    assert read["header"]["date"].endswith("+00:00")


def test_what_the_device_signs_a_kernel_reads() -> None:
    request = protocol.execute_request("1+1")
    frames = KernelFrames(KEY).serialize(request)
    session = kernel_session()
    _, parts = session.feed_identities(frames)
    got = session.deserialize(parts)
    assert got["content"] == request["content"] and got["header"]["msg_id"] == request["header"]["msg_id"]
    assert frames == Session(key=KEY, signature_scheme="hmac-sha256").serialize(request)  # byte for byte


def test_a_message_signed_with_another_key_or_unsigned_is_refused() -> None:
    frames = Session(key=b"cd" * 32, signature_scheme="hmac-sha256").serialize(
        kernel_session().msg("status", {"execution_state": "idle"}))
    with pytest.raises(ValueError, match=NOT_SIGNED):
        KernelFrames(KEY).deserialize(frames)
    frames[1] = b""
    with pytest.raises(ValueError, match=NOT_SIGNED):
        KernelFrames(KEY).deserialize(frames)


def test_a_replayed_message_is_refused() -> None:
    frames = kernel_session().serialize(kernel_session().msg("status", {"execution_state": "idle"}))
    reader = KernelFrames(KEY)
    reader.deserialize(frames)
    with pytest.raises(ValueError, match="sent twice"):
        reader.deserialize(frames)


@pytest.mark.parametrize(("part", "raw"), [(5, b"[]"), (5, b"not json"), (5, b'{"a": 1'), (2, b'{"msg_type": "x"}'),
                                           (2, b'{"msg_id": "1"}')])
def test_a_signed_message_that_is_not_json_objects_is_refused(part: int, raw: bytes) -> None:
    session = kernel_session()
    frames = session.serialize(session.msg("status", {}))
    frames[part] = raw
    frames[1] = session.sign(frames[2:6])
    with pytest.raises(ValueError, match=r"malformed|not an object|no msg_id"):
        KernelFrames(KEY).deserialize(frames)


def test_a_message_nested_too_deep_is_refused_and_one_just_deep_enough_is_read() -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = [value]
        return value

    session = kernel_session()
    ok = KernelFrames(KEY).deserialize(session.serialize(session.msg("display_data", {"data": nested(98)})))
    assert ok["content"]["data"] == nested(98)
    with pytest.raises(ValueError, match=f"nested deeper than {protocol.MAX_NESTING}"):
        KernelFrames(KEY).deserialize(session.serialize(session.msg("display_data", {"data": nested(150)})))


def test_frames_without_the_delimiter_or_too_few_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        KernelFrames(KEY).deserialize([b"x", b"y"])
    with pytest.raises(ValueError, match="fewer than five"):
        KernelFrames(KEY).deserialize([b"<IDS|MSG>", b"sig", b"{}"])
