"""A kernel's messages as the device reads them, and what it keeps of each."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

from device.base import RunningKernel

STANDARD_KEYS = ("header", "parent_header", "metadata", "content", "msg_type")
#: the message types a kernel may send; anything else it sends is dropped (``extension`` above
#: all: files, limits and session ends are the device's word alone)
FROM_KERNELS = frozenset({"status", "execute_input", "stream", "display_data", "update_display_data",
                          "execute_result", "error", "execute_reply", "clear_output",
                          "comm_open", "comm_msg", "comm_close"})
#: … and what a Jupyter client's kernel may send too: the replies to its requests, and input()'s question
FROM_JUPYTER_KERNELS = FROM_KERNELS | {"kernel_info_reply", "is_complete_reply", "complete_reply", "inspect_reply",
                                      "history_reply", "comm_info_reply", "input_request"}


def clean(msg: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """What is stored of a kernel's message: the standard keys (JSON values already, as
    ``RunningKernel.receive`` promises), binary buffers (widgets' arrays, images) as base64
    strings, and ``parent`` (the header of the message the device knows it answers) as its
    parent_header."""
    kept = {key: msg.get(key, {}) for key in STANDARD_KEYS}
    kept["parent_header"] = dict(parent)
    buffers = msg.get("buffers")
    if buffers:
        kept["buffers"] = [base64.b64encode(bytes(b)).decode("ascii") for b in buffers]
    return kept


class Inbox:
    """A kernel's messages as the device reads them.

    One receive is outstanding at a time, and it is not cancelled while the conversation goes
    on: a receive that has taken a message off the socket must hand it over, even when the wait
    for it ended first (the coalescing window closed in the same turn of the loop). Cancelling it
    then would drop that message."""

    def __init__(self, kernel: RunningKernel) -> None:
        self.kernel = kernel
        self.receiving: asyncio.Future[list[tuple[dict[str, Any], int]]] | None = None

    async def next(self, timeout: float) -> list[tuple[dict[str, Any], int]] | ValueError | None:
        """The kernel's next messages; ``[]`` when none came within ``timeout`` seconds; after
        it exited, what it sent before dying, then ``None``; a ``ValueError`` for a message that
        cannot be believed."""
        if self.receiving is None:
            self.receiving = asyncio.ensure_future(self.kernel.receive())
        receiving = self.receiving
        exited: asyncio.Future[Any] = self.kernel.exited
        done, _ = await asyncio.wait({receiving, exited}, timeout=None if timeout == math.inf else max(timeout, 0),
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            return []  # the receive stays outstanding, for the next call
        if receiving not in done:
            # ZeroMQ may still be handing over what it wrote just before it died
            done, _ = await asyncio.wait({receiving}, timeout=0.1)
            if not done:
                return None
        self.receiving = None
        try:
            return receiving.result()
        except ValueError as exc:
            return exc

    async def next_or(self, other: asyncio.Future[Any], timeout: float) -> list[tuple[dict[str, Any], int]] | \
            ValueError | None:
        """As :meth:`next`, but ``[]`` as soon as ``other`` resolves too (a session's wake-up)."""
        if self.receiving is None:
            self.receiving = asyncio.ensure_future(self.kernel.receive())
        done, _ = await asyncio.wait({self.receiving, other}, timeout=None if timeout == math.inf else timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.receiving in done or self.kernel.exited.done():
            return await self.next(0)
        return []

    def close(self) -> None:
        """The conversation is over: nothing more it sends is read."""
        if self.receiving is not None:
            self.receiving.cancel()
