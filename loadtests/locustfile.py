"""Load test with locust: users that run cells the two ways clients do.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8888                 # the web UI
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8888 --headless -u 20 -r 5 -t 1m

``EvalUser`` posts to ``/eval`` and waits for the whole answer (scripts, curl); ``StreamingUser``
posts to ``/execute`` and long-polls ``/output`` until the cell is done (the browser's
``SingleCellBlock``). Both draw from the same mix of cells: trivial, a print loop, a matplotlib
plot, an error, and a file written then downloaded. Every answer is checked, not only its HTTP
status: a cell that came back wrong counts as a failed request. tests/e2e/test_locust.py runs
this headless for about 20 s against a live server and fails on any failed request.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from locust import HttpUser, between, task


@dataclass(frozen=True)
class Cell:
    name: str
    code: str
    weight: int
    status: str  # the /eval status it must end with
    stdout: str | None = None  # what it must print, when known
    displays: int = 0  # display_data messages it must send
    files: tuple[str, ...] = ()  # files it must write (downloaded and checked)
    file_bytes: bytes = b""


MIX = [
    Cell("trivial", "1 + 1", 5, "ok"),
    Cell("print loop", "for i in range(50):\n    print(i)", 3, "ok", "".join(f"{i}\n" for i in range(50))),
    Cell("plot", "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()", 1, "ok", displays=1),
    Cell("error", "print('before')\n1 / 0", 1, "error", "before\n"),
    Cell("file", "open('data.csv', 'w').write('n,square\\n' + ''.join(f'{n},{n*n}\\n' for n in range(100)))",
         1, "ok", files=("data.csv",),
         file_bytes=("n,square\n" + "".join(f"{n},{n * n}\n" for n in range(100))).encode()),
]


def pick() -> Cell:
    return random.choices(MIX, weights=[c.weight for c in MIX])[0]


def problems(cell: Cell, summary: dict[str, Any]) -> list[str]:
    """What is wrong with an /eval summary of ``cell`` (or the one built from streamed messages)."""
    found = []
    if summary.get("status") != cell.status:
        found.append(f"status {summary.get('status')!r}, not {cell.status!r}")
    if cell.stdout is not None and summary.get("stdout") != cell.stdout:
        found.append(f"stdout {str(summary.get('stdout'))[:80]!r}")
    if cell.name == "trivial" and (summary.get("result") or {}).get("text/plain") != "2":
        found.append(f"result {summary.get('result')!r}")
    if len(summary.get("displays") or []) != cell.displays:
        found.append(f"{len(summary.get('displays') or [])} displays, not {cell.displays}")
    if [f["name"] for f in summary.get("files") or []] != list(cell.files):
        found.append(f"files {summary.get('files')!r}")
    return found


def post_cell(user: HttpUser, path: str, cell: Cell, expected: int) -> dict[str, Any] | None:
    """POST the cell; its JSON answer, or None (counted as a failure) when the status is not ``expected``
    or, for /eval, the answer is wrong."""
    with user.client.post(path, json={"code": cell.code}, name=f"{path} [{cell.name}]",
                          catch_response=True) as response:
        if response.status_code != expected:
            response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            return None
        answer: dict[str, Any] = response.json()
        wrong = problems(cell, answer) if path == "/eval" else []
        if wrong:
            response.failure("; ".join(wrong))
            return None
        return answer


class EvalUser(HttpUser):
    """A script: POST /eval, wait for everything."""

    weight = 1
    wait_time = between(0.2, 1.0)

    @task
    def run_cell(self) -> None:
        cell = pick()
        summary = post_cell(self, "/eval", cell, 200)
        for record in (summary or {}).get("files") or []:
            self.download(record["url"], cell)

    def download(self, url: str, cell: Cell) -> None:
        path = url.split("://", 1)[-1].split("/", 1)[1]
        with self.client.get("/" + path, name="/files/[id]/[name]", catch_response=True) as response:
            if response.status_code != 200 or response.content != cell.file_bytes:
                response.failure(f"HTTP {response.status_code}, {len(response.content)} bytes")


class StreamingUser(HttpUser):
    """A browser: POST /execute, then long-poll /output from the last seq until done."""

    weight = 1
    wait_time = between(0.2, 1.0)

    @task
    def run_cell(self) -> None:
        cell = pick()
        accepted = post_cell(self, "/execute", cell, 202)
        if accepted is None:
            return
        request_id = accepted["id"]
        after, messages, status = 0, [], None
        deadline = time.monotonic() + 120
        while status is None:
            if time.monotonic() > deadline:
                self.environment.events.request.fire(
                    request_type="GET", name="/output/[id]", response_time=0, response_length=0,
                    exception=TimeoutError(f"{request_id} not done in 120 s"), context={})
                return
            with self.client.get(f"/output/{request_id}?after={after}&wait=25", name="/output/[id]",
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    return
                page = response.json()
                seqs = [m["seq"] for m in page["messages"]]
                if seqs != list(range(after + 1, after + 1 + len(seqs))):
                    response.failure(f"seqs {seqs} do not follow {after}")  # a gap or a repeat
                    return
                messages += [m["msg"] for m in page["messages"]]
                after = page["next"]
                if page["done"]:
                    status = page["status"]
        wrong = problems(cell, summarize(status, messages))
        if wrong:
            self.environment.events.request.fire(
                request_type="GET", name="/output/[id]", response_time=0, response_length=0,
                exception=AssertionError("; ".join(wrong)), context={})


def summarize(status: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts of an /eval summary the checks read, from streamed messages."""
    out: dict[str, Any] = {"status": {"done": "ok"}.get(status, status), "stdout": "", "result": None,
                           "displays": [], "files": []}
    for msg in messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out["stdout"] += content["text"]
        elif kind == "execute_result":
            out["result"] = content["data"]
        elif kind == "display_data":
            out["displays"].append(content["data"])
        elif kind == "extension" and content["msg_type"] == "files":
            out["files"] = content["content"]["files"]
    return out


__all__ = ["EvalUser", "StreamingUser"]
