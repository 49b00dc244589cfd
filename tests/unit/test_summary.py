"""Folding a cell's messages into the /eval answer and its plain text."""

from __future__ import annotations

from typing import Any

from singlecell import protocol
from singlecell.store.base import Status
from singlecell.summary import as_text, summarize

REQUEST = protocol.execute_request("x")


def msg(kind: str, content: dict[str, Any]) -> dict[str, Any]:
    return protocol.message(kind, content, REQUEST)


def test_streams_results_displays_errors_and_files_land_in_their_fields() -> None:
    messages = [
        msg("stream", {"name": "stdout", "text": "a\n"}),
        msg("stream", {"name": "stderr", "text": "warn\n"}),
        msg("stream", {"name": "stdout", "text": "b\n"}),
        msg("display_data", {"data": {"text/html": "<b>x</b>"}, "metadata": {}}),
        msg("execute_result", {"data": {"text/plain": "42"}, "execution_count": 1, "metadata": {}}),
        msg("error", {"ename": "E", "evalue": "v", "traceback": ["\x1b[31mred\x1b[0m line"]}),
        protocol.error_message(REQUEST, "Later", "ignored: the first error is the cause"),
        protocol.extension_message(REQUEST, "files",
                                   {"files": [{"name": "p.png", "size": 3, "url": "/files/i/p.png"}]}),
    ]
    summary = summarize("i", Status.ERROR, messages, base_url="http://h")
    assert summary["stdout"] == "a\nb\n"
    assert summary["stderr"] == "warn\n"
    assert summary["displays"] == [{"text/html": "<b>x</b>"}]
    assert summary["result"] == {"text/plain": "42"}
    assert summary["error"] == {"ename": "E", "evalue": "v", "traceback": ["red line"]}
    assert summary["files"] == [{"name": "p.png", "size": 3, "url": "http://h/files/i/p.png"}]
    assert summary["status"] == "error"


def test_done_reads_ok_and_an_empty_cell_has_null_result_and_error() -> None:
    summary = summarize("i", Status.DONE, [])
    assert (summary["status"], summary["result"], summary["error"], summary["stdout"]) == ("ok", None, None, "")


def test_plain_text_is_what_a_terminal_shows() -> None:
    summary = summarize("i", Status.DONE, [
        msg("stream", {"name": "stdout", "text": "42\n"}),
        msg("execute_result", {"data": {"text/plain": "7"}, "execution_count": 1, "metadata": {}}),
    ])
    assert as_text(summary) == "42\n7\n"
