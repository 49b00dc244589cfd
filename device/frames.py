"""A kernel's messages on the wire, as the device and its one-shot kernels sign and read them.

Jupyter's wire format, byte for byte as ``jupyter_client.Session`` writes it: ``<IDS|MSG>``, the
HMAC-SHA256 of the four JSON parts (hex), header, parent header, metadata, content, then any
binary buffers. Both ends do Session's work without its costs: no traitlets object per kernel
(whose machinery a forked kernel would copy page by page), and no ISO dates parsed into
``datetime`` objects only to be written back as strings. The standalone kernel
(``device/jupyter_kernel.py``) keeps ``Session``: its clients are Jupyter's own.

What :meth:`KernelFrames.deserialize` returns holds only JSON values, nested at most
``protocol.MAX_NESTING`` deep (unless told not to check), as ``RunningKernel.receive`` promises.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

from jupyter_client.jsonutil import json_clean, json_default
from jupyter_client.session import protocol_version

from singlecell import protocol

DELIM = b"<IDS|MSG>"
NOT_SIGNED = "a message that was not signed with its key"
#: how many signatures a kernel's channel remembers to refuse a replayed message (as Session's
#: ``digest_history_size``)
DIGEST_HISTORY = 2**16


def _pack(obj: Any) -> bytes:
    """jupyter_client's ``json_packer``: what JSON cannot say (dates, bytes, numpy numbers)
    as ``json_default`` says it, and anything else cleaned as ``json_clean`` does."""
    try:
        text = json.dumps(obj, default=json_default, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(json_clean(obj), default=json_default, ensure_ascii=False, allow_nan=False)
    return text.encode("utf8", errors="surrogateescape")


def _unpack(raw: bytes) -> Any:
    return json.loads(raw.decode("utf8", "replace"))


def _utc(date: Any) -> Any:
    """A header's date as the device has always stored it: jupyter_client writes UTC as ``Z``
    and Session's date parsing turned it into ``+00:00``; the stored form stays the latter."""
    if isinstance(date, str) and date.endswith("Z"):
        return date[:-1] + "+00:00"
    return date


class KernelFrames:
    """One kernel's channel: signs what the device sends it, verifies and reads what it sends."""

    def __init__(self, key: bytes) -> None:
        self._auth = hmac.new(key, digestmod=hashlib.sha256)
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def sign(self, parts: Sequence[bytes]) -> bytes:
        mac = self._auth.copy()
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode()

    def signed(self, header: Any, parent: Any, metadata: Any, content: Any) -> list[bytes]:
        """``[DELIM, signature, header, parent_header, metadata, content]``, each part packed."""
        parts = [_pack(header), _pack(parent), _pack(metadata), _pack(content)]
        return [DELIM, self.sign(parts), *parts]

    def serialize(self, msg: dict[str, Any]) -> list[bytes]:
        """The frames of a message whose parts are JSON values (the requests and inputs the
        device relays are)."""
        return self.signed(msg["header"], msg["parent_header"], msg.get("metadata", {}), msg.get("content", {}))

    def deserialize(self, frames: Sequence[bytes], check_nesting: bool = True) -> dict[str, Any]:
        """The message in ``frames``; ``ValueError``, whose words say why for the cell's error,
        if it is not signed with the key, was seen before, is not made of JSON objects, or is
        nested too deep."""
        try:
            start = frames.index(DELIM) + 1
        except ValueError:
            raise ValueError("a message without the <IDS|MSG> delimiter") from None
        if len(frames) < start + 5:
            raise ValueError("a malformed message: fewer than five parts after the delimiter")
        signature, parts = frames[start], frames[start + 1:start + 5]
        if not signature or not hmac.compare_digest(signature, self.sign(parts)):
            raise ValueError(NOT_SIGNED)
        if signature in self._seen:
            raise ValueError("a message sent twice (its signature was seen before)")
        self._remember(signature)
        try:
            header, parent, metadata, content = (_unpack(part) for part in parts)
        except ValueError as exc:
            raise ValueError(f"a malformed message ({exc})") from exc
        if not (isinstance(header, dict) and isinstance(parent, dict) and isinstance(content, dict)
                and isinstance(metadata, dict) and isinstance(header.get("msg_type"), str)
                and isinstance(header.get("msg_id"), str)):
            raise ValueError("a message whose header, content or metadata is not an object, or whose header "
                             "has no msg_id and msg_type")
        # a message cannot be nested deeper than it has brackets: walk only one that might be
        if check_nesting and sum(part.count(b"[") + part.count(b"{") for part in parts) > protocol.MAX_NESTING:
            for value in (header, parent, metadata, content):
                protocol.json_safe(value)  # raises ValueError if too deep
        if "date" in header:
            header["date"] = _utc(header["date"])
        return {"header": header, "msg_id": header["msg_id"], "msg_type": header["msg_type"],
                "parent_header": parent, "metadata": metadata, "content": content,
                "buffers": [memoryview(b) for b in frames[start + 5:]]}

    def _remember(self, signature: bytes) -> None:
        self._seen.add(signature)
        self._order.append(signature)
        if len(self._order) > DIGEST_HISTORY:
            self._seen.discard(self._order.popleft())


class Signer:
    """A one-shot kernel's messages, with the headers ``jupyter_client.Session`` writes
    (``msg_id`` ``<session>_<pid>_<n>``, ``username``, ``session``, a UTC ``date``, ``version``),
    signed with the kernel's key; and the requests it reads, verified with it."""

    def __init__(self, key: bytes, session: str, username: str = "kernel") -> None:
        self.key = key  # the cell's own: it can read its memory anyway
        self.frames = KernelFrames(key)
        self.session = session
        self.username = username
        self.count = 0

    def serialize(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any],
                  metadata: dict[str, Any] | None = None) -> list[bytes]:
        header = {"msg_id": f"{self.session}_{os.getpid()}_{self.count}", "msg_type": msg_type,
                  "username": self.username, "session": self.session,
                  "date": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
                  "version": protocol_version}
        self.count += 1
        return self.frames.signed(header, parent, metadata or {}, content)

    def deserialize(self, frames: Sequence[bytes]) -> dict[str, Any]:
        """A request from the device (or a Jupyter client, relayed): not limited in nesting,
        which is the device's to police in what it stores."""
        return self.frames.deserialize(frames, check_nesting=False)
