"""A cell's messages folded into the one JSON answer of ``POST /eval`` (and its plain text)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from singlecell.store.base import Status

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

EVAL_STATUS = {
    Status.DONE: "ok",
    Status.ERROR: "error",
    Status.TIMEOUT: "timeout",
    Status.ABORTED: "aborted",
    Status.LOST: "lost",
}


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def summarize(request_id: str, status: Status, messages: Iterable[dict[str, Any]],
              base_url: str = "") -> dict[str, Any]:
    """``{id, status, stdout, stderr, result, displays, error, files}`` from a finished cell."""
    stdout: list[str] = []
    stderr: list[str] = []
    result: dict[str, Any] | None = None
    displays: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    files: list[dict[str, Any]] = []
    for msg in messages:
        kind = msg.get("msg_type")
        content = msg.get("content", {})
        if kind == "stream":
            (stderr if content.get("name") == "stderr" else stdout).append(str(content.get("text", "")))
        elif kind == "execute_result":
            result = content.get("data")
        elif kind in ("display_data", "update_display_data"):
            displays.append(content.get("data", {}))
        elif kind == "error" and error is None:  # the first error is the cause; later ones follow
            error = {
                "ename": content.get("ename", ""),
                "evalue": content.get("evalue", ""),
                "traceback": [strip_ansi(str(line)) for line in content.get("traceback", [])],
            }
        elif kind == "extension" and content.get("msg_type") == "files":
            for f in content.get("content", {}).get("files", []):
                files.append({"name": f["name"], "size": f["size"], "url": base_url + f["url"]})
    return {
        "id": request_id,
        "status": EVAL_STATUS.get(status, status.value),
        "stdout": "".join(stdout),
        "stderr": "".join(stderr),
        "result": result,
        "displays": displays,
        "error": error,
        "files": files,
    }


def as_text(summary: dict[str, Any]) -> str:
    """What a terminal would have shown: output, the result's text, the traceback, file URLs."""
    parts = [summary["stdout"], summary["stderr"]]
    for display in summary["displays"]:
        if "text/plain" in display:
            parts.append(str(display["text/plain"]) + "\n")
    if summary["result"] and "text/plain" in summary["result"]:
        parts.append(str(summary["result"]["text/plain"]) + "\n")
    if summary["error"]:
        trace = summary["error"]["traceback"]
        parts.append(("\n".join(trace) if trace else
                      f"{summary['error']['ename']}: {summary['error']['evalue']}") + "\n")
    for f in summary["files"]:
        parts.append(f"[file] {f['name']} ({f['size']} bytes): {f['url']}\n")
    return "".join(parts)
