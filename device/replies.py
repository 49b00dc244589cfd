"""What a kernel answers to a Jupyter client's requests: execute, kernel_info, is_complete,
complete, inspect, history and comm_info.

Two kinds of kernel answer them: the standalone Jupyter kernel (:mod:`device.jupyter_kernel`),
over its five ZeroMQ channels, and a device's kernel kept as a session for a Jupyter client
(:meth:`device.kernel.Kernel.serve_session`), over its one channel to the device. Both keep one
:class:`Replies`: the answers are the same; how a reply travels is the caller's.
"""

from __future__ import annotations

import fnmatch
import platform
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import IPython
from IPython.core import page, payloadpage
from IPython.core.completer import provisionalcompleter, rectify_completions
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.tokenutil import token_at_cursor

import singlecell
from device import comms

if TYPE_CHECKING:
    from device.interrupts import Interrupts
    from device.kernel import Kernel

PROTOCOL_VERSION = "5.3"
HISTORY_SESSION = 1  # one session per kernel process: its history is kept in memory only
#: the requests :meth:`Replies.answer` takes, and the type of each one's reply
ANSWERED = {"kernel_info_request": "kernel_info_reply", "is_complete_request": "is_complete_reply",
            "complete_request": "complete_reply", "inspect_request": "inspect_reply",
            "history_request": "history_reply", "comm_info_request": "comm_info_reply"}


@dataclass
class HistoryEntry:
    line: int
    source: str
    output: str | None


class Replies:
    """The answers of one kernel (one shell, one namespace) over its life."""

    def __init__(self, shell: InteractiveShell, sandbox: str) -> None:
        self.shell = shell
        self.sandbox = sandbox  # the sandbox's layers in words, for the banner
        self.cells: list[HistoryEntry] = []  # the cells run, for history requests
        # `obj?` and %page show their text as a "page" payload of the execute_reply
        shell.set_hook("show_in_pager", page.as_hook(payloadpage.page), 99)

    def answer(self, msg_type: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The reply (type, content) to a request other than execute; None for a type not answered here."""
        reply_type = ANSWERED.get(msg_type)
        if reply_type is None:
            return None
        method = getattr(self, msg_type.removesuffix("_request"))
        answer: dict[str, Any] = method(content)
        return reply_type, answer

    # -- execute ---------------------------------------------------------------------------

    def execute(self, kernel: Kernel, content: dict[str, Any], interrupts: Interrupts) -> dict[str, Any]:
        """Run a cell (its ``execute_input`` and output go out through ``kernel``); the content of
        its ``execute_reply``."""
        code = str(content.get("code", ""))
        silent = bool(content.get("silent", False))
        store_history = bool(content.get("store_history", not silent)) and not silent
        shell = self.shell
        count = shell.execution_count
        if not silent:
            kernel.channel.send("execute_input", {"code": code, "execution_count": count})
        kernel.error_content = None
        kernel.running = True
        success = False
        user_expressions: dict[str, Any] = {}
        interrupts.executing = True
        try:
            result = shell.run_cell(code, store_history=store_history, silent=silent)
            success = result.success
            if success:
                user_expressions = shell.user_expressions(content.get("user_expressions") or {})
        except KeyboardInterrupt:  # came before IPython could catch it for the cell
            kernel.report_error(KeyboardInterrupt, "", ["KeyboardInterrupt"])
        finally:
            interrupts.executing = False
        from device.kernel import _flush_c_stdio  # a cycle at import: kernel imports comms, which we import

        _flush_c_stdio()
        kernel.flush_streams()
        kernel.running = False
        payload: list[dict[str, Any]] = []
        if shell.payload_manager is not None:
            payload = shell.payload_manager.read_payload()
            shell.payload_manager.clear_payload()
        if shell.exit_now:  # exit() or quit(): the client asks whether to shut the kernel down
            shell.exit_now = False
            payload.append({"source": "ask_exit", "keepkernel": False})
        if store_history:
            output = shell.history_manager.output_hist_reprs.get(count) if shell.history_manager else None
            self.cells.append(HistoryEntry(count, code.rstrip("\n"), output))
        reply: dict[str, Any] = {"execution_count": shell.execution_count - 1, "payload": payload,
                                 "user_expressions": user_expressions}
        if success:
            reply["status"] = "ok"
        else:
            error = kernel.error_content or {"ename": "UnknownError", "evalue": "the cell failed", "traceback": []}
            reply.update(status="error", **error)
        return reply

    # -- the others ------------------------------------------------------------------------

    def kernel_info(self, content: dict[str, Any]) -> dict[str, Any]:
        python = platform.python_version()
        return {
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "implementation": "singlecell",
            "implementation_version": singlecell.__version__,
            "language_info": {
                "name": "python",
                "version": python,
                "mimetype": "text/x-python",
                "file_extension": ".py",
                "pygments_lexer": "ipython3",
                "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
                "nbconvert_exporter": "python",
            },
            "banner": (f"Python {python} (singlecell {singlecell.__version__}, IPython {IPython.__version__})"
                       f" in the singlecell sandbox\nsandbox: {self.sandbox}\n"),
            "help_links": [],
            "debugger": False,
        }

    def is_complete(self, content: dict[str, Any]) -> dict[str, Any]:
        status, indent = self.shell.input_transformer_manager.check_complete(str(content.get("code", "")))
        answer: dict[str, Any] = {"status": status}
        if status == "incomplete":
            answer["indent"] = " " * (indent or 0)
        return answer

    def complete(self, content: dict[str, Any]) -> dict[str, Any]:
        code = str(content.get("code", ""))
        cursor = content.get("cursor_pos")
        cursor = len(code) if cursor is None else int(cursor)
        with provisionalcompleter():
            completions = list(rectify_completions(code, self.shell.Completer.completions(code, cursor)))
        start = completions[0].start if completions else cursor
        end = completions[0].end if completions else cursor
        return {
            "status": "ok",
            "matches": [c.text for c in completions],
            "cursor_start": start,
            "cursor_end": end,
            "metadata": {"_jupyter_types_experimental": [
                {"start": c.start, "end": c.end, "text": c.text, "type": c.type, "signature": c.signature}
                for c in completions]},
        }

    def inspect(self, content: dict[str, Any]) -> dict[str, Any]:
        code = str(content.get("code", ""))
        cursor = content.get("cursor_pos")
        name = token_at_cursor(code, len(code) if cursor is None else int(cursor))
        try:
            data = self.shell.object_inspect_mime(name, detail_level=int(content.get("detail_level", 0)))
            found = True
        except KeyError:  # no such object
            data, found = {}, False
        if not self.shell.enable_html_pager:
            data.pop("text/html", None)
        return {"status": "ok", "found": found, "data": data, "metadata": {}}

    def history(self, content: dict[str, Any]) -> dict[str, Any]:
        return {"status": "ok", "history": self.search_history(content)}

    def search_history(self, request: dict[str, Any]) -> list[list[Any]]:
        """IPython's history access (tail, range, search by glob) over this kernel's cells."""
        kind = request.get("hist_access_type")
        entries = self.cells
        if kind == "range":
            session = int(request.get("session", 0))
            if session not in (0, HISTORY_SESSION):
                entries = []
            start, stop = int(request.get("start", 0)), request.get("stop")
            entries = [e for e in entries if e.line >= start and (stop is None or e.line < int(stop))]
        elif kind == "search":
            pattern = str(request.get("pattern", "*"))
            entries = [e for e in entries if fnmatch.fnmatchcase(e.source, pattern)]
            if request.get("unique"):
                seen: dict[str, HistoryEntry] = {}
                for entry in entries:  # the latest of each source, in the order of those
                    seen.pop(entry.source, None)
                    seen[entry.source] = entry
                entries = list(seen.values())
        elif kind != "tail":
            entries = []
        n = request.get("n")
        if kind in ("tail", "search") and n is not None:
            entries = entries[-int(n):] if int(n) > 0 else []
        if request.get("output"):
            return [[HISTORY_SESSION, e.line, [e.source, e.output]] for e in entries]
        return [[HISTORY_SESSION, e.line, e.source] for e in entries]

    def comm_info(self, content: dict[str, Any]) -> dict[str, Any]:
        target = content.get("target_name")
        return {"status": "ok", "comms": comms.comm_info(target if isinstance(target, str) else None)}
