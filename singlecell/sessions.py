"""Why a session ends, in the words a page shows.

A cell whose widgets are still open when it finishes keeps its kernel as a *session*
(``device/session.py``). It ends at the first of the reasons below; the device (or, for
``lost``, any process expiring leases) writes one ``extension`` message ``session_end``
``{reason, message}`` after the session's last output, and records the reason in the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singlecell import protocol

#: reason → what the page says. ``{}`` is filled in with the setting behind the reason, in words.
SESSION_ENDS: dict[str, str] = {
    "idle": "Session ended after {} idle: press Run to start again",
    "unread": "Session ended: no page showed it for {}; press Run to start again",
    "lifetime": "Session ended after {}, the longest a session may last: press Run to start again",
    "cpu": "Session ended: it used its {} of CPU time; press Run to start again",
    "time": "Session ended: one interaction ran longer than {}; press Run to start again",
    "output": "Session ended: its output passed the limit of {} bytes; press Run to start again",
    "memory": "Session ended: it used more than its {} MB of memory; press Run to start again",
    "file_size": "Session ended: it tried to write a file larger than {} bytes; press Run to start again",
    "disk": "Session ended: its files passed {} MB; press Run to start again",
    "processes": "Session ended: it tried to run more than {} processes and threads; press Run to start again",
    "open_files": "Session ended: it tried to keep more than {} files open; press Run to start again",
    "stopped": "Session stopped: press Run to start again",
    "shutdown": "Kernel shut down by its client",
    "evicted": "Session ended to make room for newer ones on this server: press Run to start again",
    "closed": "Session ended: its widgets were closed",
    "died": "Session ended: its kernel {}; press Run to start again",
    "error": "Session ended: {}; press Run to start again",
    "server_stopped": "Session ended: the server was restarted; press Run to start again",
    "lost": "Session lost: the server running it stopped answering; press Run to start again",
}


def duration(seconds: float) -> str:
    """Seconds in words: '5 minutes', '1 hour', '45 seconds', '90 seconds'."""
    whole = round(seconds)
    for size, unit in ((3600, "hour"), (60, "minute")):
        if whole >= size and whole % size == 0:
            n = whole // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{whole} second{'' if whole == 1 else 's'}"


def end_text(reason: str, value: object = "") -> str:
    """The words for ``reason`` (a key of :data:`SESSION_ENDS`), with ``value`` filled in."""
    return SESSION_ENDS[reason].format(value)


def session_end_message(parent: Mapping[str, Any], reason: str, text: str) -> dict[str, Any]:
    """The ``session_end`` extension message, answering ``parent`` (the cell's request)."""
    return protocol.extension_message(parent, "session_end", {"reason": reason, "message": text})


def session_live_message(parent: Mapping[str, Any], idle: float, lifetime: float) -> dict[str, Any]:
    """The ``session`` extension message a cell's output carries when it became a session."""
    return protocol.extension_message(parent, "session", {"state": "live", "idle_timeout": idle,
                                                          "lifetime": lifetime})
