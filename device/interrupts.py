"""Interrupts: SIGINT becomes a ``KeyboardInterrupt`` in the running cell, and only there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import FrameType


class Interrupts:
    """The SIGINT handler of a kernel that lives on between cells (a Jupyter kernel, a session).

    Between cells it is ignored. While the main thread is sending a message, the interrupt waits
    until the message is out: a multipart message cut in half would garble the channel."""

    def __init__(self) -> None:
        self.executing = False
        self.depth = 0  # nesting of the main thread's sends
        self.deferred = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.executing:
            return
        if self.depth:
            self.deferred = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """Hold interrupts back for a send of the main thread; raise one that came meanwhile."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.deferred:
            self.deferred = False
            if self.executing:
                raise KeyboardInterrupt
